"""The dashboard's figures (民意晴雨表), each one SQL aggregate over the records for a period."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.records.clock import now_local
from actions.records.models import Handoff, OutboxMessage, Report, Violation, ViolationCode

# Taken up by the department: accepted, dispatched to a crew, or fixed.
TAKEN_UP = ("accepted", "dispatched", "fixed")
DECIDED = TAKEN_UP + ("rejected",)
TOP = 10


def period_start(days: int) -> datetime:
    return datetime.combine(now_local().date() - timedelta(days=days - 1), datetime.min.time())


async def figures(session: AsyncSession, days: int = 30) -> dict[str, Any]:
    since = period_start(days)
    in_period = Report.created_at >= since

    async def rows(stmt) -> list[tuple]:
        return [tuple(r) for r in (await session.execute(stmt)).all()]

    by_kind = dict(await rows(select(Report.kind, func.count()).where(in_period).group_by(Report.kind)))
    day = func.date(Report.created_at)  # SQLite and PostgreSQL alike (PostgreSQL reads it as a cast)
    daily: dict[str, dict[str, int]] = {}
    for d, kind, n in await rows(select(day, Report.kind, func.count()).where(in_period).group_by(day, Report.kind)):
        daily.setdefault(str(d)[:10], {})[kind] = n
    # Reports name their place in words; the most frequent places are the hotspots.
    places = await rows(select(Report.location, func.count().label("n")).where(
        in_period, Report.location.isnot(None)).group_by(Report.location)
        .order_by(func.count().desc(), Report.location).limit(TOP))
    subtypes = await rows(select(func.coalesce(Report.facility_type, Report.violation_type, Report.kind),
                                 func.count()).where(in_period).group_by(
        func.coalesce(Report.facility_type, Report.violation_type, Report.kind)).order_by(func.count().desc()).limit(TOP))
    points = await rows(select(Report.latitude, Report.longitude, Report.kind).where(
        in_period, Report.latitude.isnot(None), Report.longitude.isnot(None)).limit(5000))
    status = dict(await rows(select(Report.status, func.count()).where(in_period).group_by(Report.status)))
    taken_up = sum(status.get(s, 0) for s in TAKEN_UP)
    decided = sum(status.get(s, 0) for s in DECIDED)
    codes = await rows(select(Violation.code, ViolationCode.short_name, func.count()).join(
        ViolationCode, ViolationCode.code == Violation.code).where(Violation.occurred_at >= since)
        .group_by(Violation.code, ViolationCode.short_name).order_by(func.count().desc(), Violation.code).limit(TOP))
    pushes: dict[str, dict[str, int]] = {}
    for channel, st, n in await rows(select(OutboxMessage.channel, OutboxMessage.status, func.count()).where(
            OutboxMessage.created_at >= since).group_by(OutboxMessage.channel, OutboxMessage.status)):
        pushes.setdefault(channel, {})[st] = n
    report_channels = dict(await rows(select(Report.channel, func.count()).where(in_period).group_by(Report.channel)))
    handoff_channels = dict(await rows(select(Handoff.channel, func.count()).where(
        Handoff.created_at >= since).group_by(Handoff.channel)))

    def geo(value: Any) -> float | None:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    return {
        "days": days, "since": since.date().isoformat(),
        "reports_total": sum(by_kind.values()),
        "reports_by_kind": by_kind,
        "reports_by_type": [[t, n] for t, n in subtypes],
        "reports_by_day": [[d, daily.get(d, {})] for d in _days(since.date(), days)],
        "hotspots": [[place, n] for place, n in places],
        "points": [[geo(la), geo(lo), k] for la, lo, k in points if geo(la) is not None and geo(lo) is not None],
        "status": status,
        "acceptance": {"taken_up": taken_up, "decided": decided,
                       "rate": round(taken_up / decided, 4) if decided else None},
        "top_codes": [[code, name, n] for code, name, n in codes],
        "push": {ch: {**v, "rate": _rate(v)} for ch, v in sorted(pushes.items())},
        "messages_by_channel": {ch: sum(v.get(s, 0) for s in ("sent", "failed", "pending")) for ch, v in pushes.items()},
        "reports_by_channel": report_channels,
        "handoffs_by_channel": handoff_channels,
    }


def _rate(counts: dict[str, int]) -> float | None:
    done = counts.get("sent", 0) + counts.get("failed", 0)
    return round(counts.get("sent", 0) / done, 4) if done else None


def _days(start: date, days: int) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range(days)]
