from datetime import date, datetime

import pytest

from actions.slotchoice import SlotWish, position, wish

NOW = datetime(2026, 12, 4, 20, 0)  # a Friday


@pytest.mark.parametrize("text, expected", [
    ("2", 1), ("２", 1), ("第二个", 1), ("第2个", 1), ("选3", 2), ("要第三个", 2), ("就第一个吧", 0),
    ("最早的那个", 0), ("那就第二个呗", 1), ("我看第3个时段合适", 2), ("越早越好", 0), ("随便，都行", 0), ("最后一个", 5), ("要最晚的", 5),
    ("9", 6), ("第十个", 6),  # past the end of a list of 6
])
def test_places_people_pick(text, expected):
    assert position(text, 6) == expected


@pytest.mark.parametrize("text", ["", "好的", "3点", "明天下午", "13900001234", "2号"])
def test_not_a_place(text):
    assert position(text, 6) is None


@pytest.mark.parametrize("text, expected", [
    ("明天上午", SlotWish(date(2026, 12, 5), (0, 12), None, "上午")),
    ("后天下午3点", SlotWish(date(2026, 12, 6), (12, 18), (15, 0), "下午")),
    ("下周一", SlotWish(date(2026, 12, 7))),
    ("周五", SlotWish(date(2026, 12, 11))),              # today is Friday: the next one
    ("星期三下午两点半", SlotWish(date(2026, 12, 9), (12, 18), (14, 30), "下午")),
    ("12月8日10:30", SlotWish(date(2026, 12, 8), None, (10, 30))),
    ("1月5号", SlotWish(date(2027, 1, 5))),             # a January day said in December: next year
    ("10号", SlotWish(date(2026, 12, 10))),
    ("3号", SlotWish(date(2027, 1, 3))),                # already past this month
    ("3点", SlotWish(None, None, (15, 0))),             # afternoon: no video calls at 3 in the night
    ("上午十点", SlotWish(None, (0, 12), (10, 0), "上午")),
])
def test_times_people_want(text, expected):
    assert wish(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "第二个", "最早的", "好的", "13900001234", "2月30日", "昨天"])
def test_no_time_wanted(text):
    assert not wish(text, NOW)


def test_a_wish_matches_the_slots_it_names():
    tuesday_afternoon = wish("周二下午", NOW)
    assert tuesday_afternoon.matches(datetime(2026, 12, 8, 14, 30))
    assert not tuesday_afternoon.matches(datetime(2026, 12, 8, 10, 0))
    assert not tuesday_afternoon.matches(datetime(2026, 12, 9, 14, 30))
    assert wish("周二下午3点", NOW).matches(datetime(2026, 12, 8, 15, 0))
    assert tuesday_afternoon.describe() == "12月08日（周二）下午"


@pytest.mark.parametrize("text", ["挑个靠后的", "有没有晚一点的", "不要太早的", "还有别的时间吗", "再晚些", "往后的呢"])
def test_later_than_offered(text):
    later = wish(text, NOW)
    assert later and later.later and later.day is None
    offered = [datetime(2026, 12, 7, 9, 0), datetime(2026, 12, 7, 10, 30)]
    paged = later.later_than(offered)
    assert not paged.matches(datetime(2026, 12, 7, 10, 30)) and paged.matches(datetime(2026, 12, 7, 11, 0))


def test_a_day_or_the_evening_is_not_later():
    assert not wish("明天晚一点", NOW).later          # the day says when
    assert wish("晚上", NOW) == SlotWish(None, (17, 24), None, "晚上")
    assert wish("好的", NOW).later_than([datetime(2026, 12, 7, 9, 0)]) == wish("好的", NOW)
