"""Which appointment slot a reply picks, as people say it: 2, 第二个, 最后一个, 最早的, 明天下午,
周三上午10点, 12月8日14:30, 有没有晚一点的."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Optional

from actions.records.plates import to_halfwidth
from actions.timeparse import _N, _cn_number, clock_time

WEEKDAYS = "一二三四五六日"
_WEEKDAY_INDEX = {**{c: i for i, c in enumerate(WEEKDAYS)}, "天": 6, "七": 6}
# Hour ranges [start, end) of the parts of a day.
_PERIODS = [("上午", (0, 12)), ("早上", (0, 12)), ("早晨", (0, 12)), ("明早", (0, 12)), ("中午", (11, 14)),
            ("下午", (12, 18)), ("傍晚", (17, 24)), ("晚上", (17, 24))]
_EARLIEST = re.compile(r"最早|越早越好|越快越好|尽快|最近的|第一个|随便|都行|都可以|哪个都")
_LATEST = re.compile(r"最后|最晚|最迟")
# Later than the slots offered: the next ones, as turning a page.
_LATER = re.compile(r"靠后|往后|后面的|晚[一点些]|再晚|更晚|推迟|不要太早|别太早|太早了|其他时间|别的时间|换个时间|"
                    r"还有别的|还有其他|有没有别的|更多")


def _clean(text: str) -> str:
    return re.sub(r"[\s,，。.!！~～]", "", to_halfwidth(text or ""))


def position(text: str, count: int) -> Optional[int]:
    """The 0-based place in a numbered list of `count` that the reply picks; `count` when it names a
    number past the end; None when it names no place."""
    text = _clean(text)
    m = re.fullmatch(r"(?:我)?(?:选|要|约|就)?(?:第)?" + _N + r"(?:个|号)?(?:时段|吧|的|那个|那个吧)?", text)
    if not (m and (text.isdigit() or "第" in text or re.match(r"(?:我)?(?:选|要|约|就)", text))):
        m = re.search(r"第" + _N + r"(?:个|时段)", text)  # "那就第二个呗"
    n = _cn_number(m[1]) if m else None
    if n is not None:
        return n - 1 if 1 <= n <= count else count
    if _LATEST.search(text):
        return count - 1 if count else None
    if _EARLIEST.search(text):
        return 0 if count else None
    return None


@dataclass(frozen=True)
class SlotWish:
    """What a reply says about when: a day, a part of the day, an exact time; each may be missing."""
    day: Optional[date] = None
    hours: Optional[tuple[int, int]] = None
    at: Optional[tuple[int, int]] = None
    period: str = ""
    later: bool = False  # later than what was offered
    after: Optional[datetime] = None  # what "later" means, once the offered slots are known

    def __bool__(self) -> bool:
        return bool(self.day or self.hours or self.at or self.later)

    def matches(self, starts_at: datetime) -> bool:
        return ((self.day is None or starts_at.date() == self.day)
                and (self.hours is None or self.hours[0] <= starts_at.hour < self.hours[1])
                and (self.at is None or (starts_at.hour, starts_at.minute) == self.at)
                and (self.after is None or starts_at > self.after))

    def later_than(self, offered: list[datetime]) -> "SlotWish":
        """"Later" read against the slots offered: after the last of them."""
        return replace(self, after=max(offered)) if self.later and offered else self

    def loosened(self) -> "SlotWish":
        """The same day and part of the day, without the exact time."""
        return replace(self, at=None)

    def describe(self) -> str:
        parts = []
        if self.day:
            parts.append(f"{self.day:%m月%d日}（周{WEEKDAYS[self.day.weekday()]}）")
        if self.at:
            parts.append(f"{self.at[0]:02d}:{self.at[1]:02d}")
        elif self.period:
            parts.append(self.period)
        return "".join(parts)


def _day(text: str, today: date) -> Optional[date]:
    for word, ahead in (("大后天", 3), ("后天", 2), ("明天", 1), ("明日", 1), ("明早", 1), ("明儿", 1),
                        ("今天", 0), ("今日", 0)):
        if word in text:
            return today + timedelta(days=ahead)
    m = re.search(r"(下个?)?(?:周|星期|礼拜)([一二三四五六日天七])", text)
    if m:
        weekday = _WEEKDAY_INDEX[m[2]]
        if m[1]:
            return today - timedelta(days=today.weekday()) + timedelta(days=7 + weekday)
        return today + timedelta(days=(weekday - today.weekday()) % 7 or 7)
    m = re.search(r"(\d{1,2})月(\d{1,2})[日号]?", text)
    try:
        if m:
            day = date(today.year, int(m[1]), int(m[2]))
            return day if day >= today else day.replace(year=today.year + 1)
        m = re.search(r"(?<![\d:])(\d{1,2})[日号]", text)
        if m:
            day = today.replace(day=int(m[1])) if int(m[1]) >= today.day else \
                (today.replace(day=1) + timedelta(days=32)).replace(day=int(m[1]))
            return day
    except ValueError:  # 2月30日, 31号 in a short month
        return None
    return None


def wish(text: str, now: datetime) -> SlotWish:
    """What the reply says about when the appointment should be (future days only)."""
    text = _clean(text)
    day = _day(text, now.date())
    period, hours = next(((word, span) for word, span in _PERIODS if word in text), ("", None))
    at = clock_time(re.sub(r"[早晚]一点", "", text))  # "晚一点" is later, not one o'clock
    if at is not None:
        hour, minute = at[0], at[1] or 0
        # Nobody books a video call at 3 in the night: 1-7 o'clock without a part of the day is afternoon.
        if hour < 12 and (hours and hours[0] >= 12 or (not hours and 1 <= hour <= 7)):
            hour += 12
        at = (hour, minute) if hour <= 23 and minute <= 59 else None
    later = not (day or at) and bool(_LATER.search(text))
    return SlotWish(day, hours, at, period, later)
