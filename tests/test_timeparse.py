from datetime import datetime

import pytest

from actions.timeparse import parse_when

NOW = datetime(2026, 11, 21, 15, 40)


@pytest.mark.parametrize("text, expected", [
    ("刚才", datetime(2026, 11, 21, 15, 40)),
    ("今天早上8点", datetime(2026, 11, 21, 8, 0)),
    ("今天上午８点", datetime(2026, 11, 21, 8, 0)),
    ("昨天下午三点半", datetime(2026, 11, 20, 15, 30)),
    ("前天晚上十点二十分", datetime(2026, 11, 19, 22, 20)),
    ("11月20日14:30", datetime(2026, 11, 20, 14, 30)),
    ("2026-11-19 09:05", datetime(2026, 11, 19, 9, 5)),
    ("20号下午3点", datetime(2026, 11, 20, 15, 0)),
    ("下午2点", datetime(2026, 11, 21, 14, 0)),
    ("12月30日", datetime(2025, 12, 30)),  # a date later this year means last year
    ("昨天", datetime(2026, 11, 20)),
])
def test_times_people_say(text, expected):
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "不知道", "很久以前", "25点", "8点70分"])
def test_not_a_time(text):
    assert parse_when(text, NOW) is None
