"""The department's clock: naive Beijing time, as stored in every DateTime column."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8))


def now_local() -> datetime:
    return datetime.now(BEIJING).replace(tzinfo=None, microsecond=0)
