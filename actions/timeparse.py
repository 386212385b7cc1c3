"""When something happened, as people say it: 刚才, 今天早上8点, 昨天下午三点半, 11月20日14:30."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Optional

from actions.records.plates import to_halfwidth

_NUM = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _cn_number(text: str) -> Optional[int]:
    """Arabic or Chinese numbers up to 59: 3, 十, 十一, 二十三, 三十."""
    if text.isdigit():
        return int(text)
    if not text or any(c not in _NUM and c != "十" for c in text):
        return None
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_NUM[tens] if tens else 1) * 10 + (_NUM[ones] if ones else 0)
    return _NUM[text[0]] if len(text) == 1 else None


_N = r"(\d{1,2}|[零〇一二两三四五六七八九十]{1,3})"
_DAY_WORDS = {"今天": 0, "今日": 0, "今早": 0, "今晚": 0, "昨天": 1, "昨日": 1, "昨晚": 1, "前天": 2}
_PERIODS = {"凌晨": 0, "早上": 0, "早晨": 0, "上午": 0, "中午": 12, "下午": 12, "傍晚": 12, "晚上": 12, "夜里": 12,
            "今晚": 12, "昨晚": 12}


def clock_time(text: str) -> Optional[tuple[int, Optional[int]]]:
    """The hour and minute as written: 14:30, 三点半, 10点20分; the minute is None when unreadable."""
    m = re.search(r"(\d{1,2})[:：](\d{2})", text)
    if m:
        return int(m[1]), int(m[2])
    m = re.search(_N + r"[点时](半|" + _N + r"分?)?", text)
    if not m or _cn_number(m[1]) is None:
        return None
    return _cn_number(m[1]), 30 if m[2] == "半" else (_cn_number(m[3]) if m[3] else 0)


def parse_when(text: str, now: datetime) -> Optional[datetime]:
    text = to_halfwidth(text or "").replace(" ", "")
    if not text:
        return None
    if re.search(r"刚才|刚刚|现在|就在刚|此刻", text):
        return now.replace(second=0)
    day = None
    m = re.search(r"(\d{4})[-/年](\d{1,2})[-/月](\d{1,2})", text)
    if m:
        day = datetime(int(m[1]), int(m[2]), int(m[3]))
    else:
        m = re.search(r"(\d{1,2})月(\d{1,2})[日号]?", text) or re.search(r"(\d{1,2})/(\d{1,2})", text)
        if m:
            day = datetime(now.year, int(m[1]), int(m[2]))
            if day > now:
                day = day.replace(year=now.year - 1)
        else:
            m = re.search(r"(\d{1,2})[日号]", text)
            if m:
                day = now.replace(day=int(m[1]), hour=0, minute=0, second=0)
    for word, back in _DAY_WORDS.items():
        if word in text:
            day = (now - timedelta(days=back)).replace(hour=0, minute=0, second=0)
            break
    hour, minute = clock_time(text) or (None, None)
    if hour is not None:
        shift = next((v for k, v in _PERIODS.items() if k in text), 0)
        if shift and hour < 12:
            hour += shift
    if day is None and hour is None:
        return None
    day = day or now.replace(hour=0, minute=0, second=0)
    if hour is None or minute is None or not (0 <= hour <= 23 and 0 <= minute <= 59):
        return day.replace(microsecond=0) if hour is None else None
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)
