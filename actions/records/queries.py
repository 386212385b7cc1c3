"""Queries on the records, all async, each taking the session it runs in.

The caller owns the transaction: these functions add and flush, they never commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .clock import now_local
from .models import (
    AuditEntry,
    ChannelIdentity,
    Person,
    ProofAttempt,
    Vehicle,
    VehicleBinding,
    Violation,
    ViolationCode,
)


async def person_for(session: AsyncSession, channel: str, external_id: str) -> Person:
    """The person behind a channel identity, created on first contact."""
    now = now_local()
    identity = (await session.execute(
        select(ChannelIdentity).where(ChannelIdentity.channel == channel,
                                      ChannelIdentity.external_id == external_id)
    )).scalar_one_or_none()
    if identity is not None:
        identity.last_seen_at = now
        return await session.get(Person, identity.person_id)
    person = Person(created_at=now)
    session.add(person)
    await session.flush()
    try:
        async with session.begin_nested():
            session.add(ChannelIdentity(person_id=person.id, channel=channel, external_id=external_id,
                                        created_at=now, last_seen_at=now))
    except IntegrityError:
        # Another process registered the same identity first: use theirs.
        identity = (await session.execute(
            select(ChannelIdentity).where(ChannelIdentity.channel == channel,
                                          ChannelIdentity.external_id == external_id)
        )).scalar_one()
        await session.delete(person)
        return await session.get(Person, identity.person_id)
    return person


async def vehicle_by_plate(session: AsyncSession, plate: str) -> Optional[Vehicle]:
    return (await session.execute(select(Vehicle).where(Vehicle.plate == plate))).scalar_one_or_none()


async def is_bound(session: AsyncSession, person_id: int, vehicle_id: int) -> bool:
    row = (await session.execute(
        select(VehicleBinding.id).where(VehicleBinding.person_id == person_id,
                                        VehicleBinding.vehicle_id == vehicle_id)
    )).first()
    return row is not None


@dataclass(frozen=True)
class ViolationRow:
    record_no: str
    occurred_at: datetime
    place: str
    code: str
    behaviour: str
    fine: int
    points: int
    status: str
    authority: str


async def unprocessed_violations(session: AsyncSession, vehicle_id: int) -> list[ViolationRow]:
    rows = (await session.execute(
        select(Violation, ViolationCode.short_name)
        .join(ViolationCode, ViolationCode.code == Violation.code)
        .where(Violation.vehicle_id == vehicle_id, Violation.status == "unprocessed")
        .order_by(Violation.occurred_at.desc())
    )).all()
    return [ViolationRow(v.record_no, v.occurred_at, v.place, v.code, short or v.description,
                         v.fine, v.points, v.status, v.authority) for v, short in rows]


def proof_matches(vehicle: Vehicle, proof: str, length: int) -> bool:
    """The last `length` characters of the VIN or of the engine number."""
    proof = (proof or "").upper()
    if len(proof) != length:
        return False
    return vehicle.vin.upper().endswith(proof) or vehicle.engine_no.upper().endswith(proof)


@dataclass(frozen=True)
class ProofPolicy:
    max_failures_per_person: int = 5
    max_failures_per_subject: int = 10
    window: timedelta = timedelta(minutes=60)


async def _lock_until(session: AsyncSession, condition, limit: int, now: datetime,
                      window: timedelta) -> Optional[datetime]:
    times: Sequence[datetime] = (await session.execute(
        select(ProofAttempt.at).where(condition, ProofAttempt.success.is_(False),
                                      ProofAttempt.at > now - window)
        .order_by(ProofAttempt.at.desc()).limit(limit)
    )).scalars().all()
    if len(times) < limit:
        return None
    # The lock lifts when the limit-th most recent failure leaves the window.
    return times[limit - 1] + window


async def proof_locked_until(session: AsyncSession, person_id: int, subject: str,
                             policy: ProofPolicy, now: datetime | None = None) -> Optional[datetime]:
    """When a lock-out lifts, if this person, or anyone on this subject, failed too often."""
    now = now or now_local()
    by_person = await _lock_until(session, ProofAttempt.person_id == person_id,
                                  policy.max_failures_per_person, now, policy.window)
    by_subject = await _lock_until(session, ProofAttempt.subject == subject,
                                   policy.max_failures_per_subject, now, policy.window)
    locks = [t for t in (by_person, by_subject) if t is not None]
    return max(locks) if locks else None


async def failures_left(session: AsyncSession, person_id: int, policy: ProofPolicy,
                        now: datetime | None = None) -> int:
    now = now or now_local()
    count = (await session.execute(
        select(func.count(ProofAttempt.id)).where(
            ProofAttempt.person_id == person_id, ProofAttempt.success.is_(False),
            ProofAttempt.at > now - policy.window)
    )).scalar_one()
    return max(policy.max_failures_per_person - count, 0)


async def record_proof_attempt(session: AsyncSession, person_id: int, subject_kind: str,
                               subject: str, success: bool, at: datetime | None = None) -> None:
    session.add(ProofAttempt(at=at or now_local(), person_id=person_id, subject_kind=subject_kind,
                             subject=subject, success=success))
    await session.flush()


async def audit(session: AsyncSession, *, person_id: Optional[int], channel: str, sender_id: str,
                action: str, subject: str, detail: dict) -> None:
    session.add(AuditEntry(at=now_local(), person_id=person_id, channel=channel, sender_id=sender_id,
                           action=action, subject=subject, detail=detail))
    await session.flush()
