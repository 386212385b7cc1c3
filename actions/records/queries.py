"""Queries on the records, all async, each taking the session it runs in.

The caller owns the transaction: these functions add and flush, they never commit.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Optional, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .clock import now_local
from .models import (
    Appointment,
    AppointmentSlot,
    AuditEntry,
    ChannelIdentity,
    Feedback,
    Handoff,
    Licence,
    LicenceBinding,
    LinkCode,
    OutboxMessage,
    Person,
    ProofAttempt,
    Report,
    ReportMedia,
    Subscription,
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
        if channel != "sms":
            # Anyone who writes to us again can be reached again; an SMS opt-out (TD) stays until 订阅.
            identity.blocked = False
        return await session.get(Person, identity.person_id)
    # A text message's sender is a phone number the gateway has verified.
    person = Person(created_at=now, phone=external_id if channel == "sms" else None)
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


async def mark_identity_blocked(session: AsyncSession, channel: str, external_id: str,
                                blocked: bool = True) -> None:
    """The user unfollowed, blocked us or opted out (SMS 退订) on this channel: no pushes go there."""
    await session.execute(update(ChannelIdentity).where(
        ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id).values(blocked=blocked))


async def sms_opted_out(session: AsyncSession, phone: str) -> bool:
    """Whether this number sent 退订/TD (and not 订阅 since)."""
    return (await session.execute(select(ChannelIdentity.blocked).where(
        ChannelIdentity.channel == "sms", ChannelIdentity.external_id == phone))).scalar_one_or_none() is True


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


# -- bindings ------------------------------------------------------------------------------

MAX_BOUND_VEHICLES = 5


async def bound_vehicles(session: AsyncSession, person_id: int) -> list[Vehicle]:
    return list((await session.execute(
        select(Vehicle).join(VehicleBinding, VehicleBinding.vehicle_id == Vehicle.id)
        .where(VehicleBinding.person_id == person_id).order_by(VehicleBinding.verified_at)
    )).scalars().all())


async def bind_vehicle(session: AsyncSession, person_id: int, vehicle_id: int) -> bool:
    """Bind; False if it was bound already. The caller checks the limit and the proof."""
    if await is_bound(session, person_id, vehicle_id):
        return False
    try:
        async with session.begin_nested():
            session.add(VehicleBinding(person_id=person_id, vehicle_id=vehicle_id, verified_at=now_local()))
    except IntegrityError:
        return False
    return True


async def unbind_vehicle(session: AsyncSession, person_id: int, vehicle_id: int) -> bool:
    result = await session.execute(
        delete(VehicleBinding).where(VehicleBinding.person_id == person_id,
                                     VehicleBinding.vehicle_id == vehicle_id))
    return result.rowcount > 0


async def licence_by_number(session: AsyncSession, licence_no: str) -> Optional[Licence]:
    return (await session.execute(select(Licence).where(Licence.licence_no == licence_no))).scalar_one_or_none()


async def bound_licences(session: AsyncSession, person_id: int) -> list[Licence]:
    return list((await session.execute(
        select(Licence).join(LicenceBinding, LicenceBinding.licence_id == Licence.id)
        .where(LicenceBinding.person_id == person_id).order_by(LicenceBinding.verified_at)
    )).scalars().all())


async def bind_licence(session: AsyncSession, person_id: int, licence_id: int) -> bool:
    exists = (await session.execute(select(LicenceBinding.id).where(
        LicenceBinding.person_id == person_id, LicenceBinding.licence_id == licence_id))).first()
    if exists:
        return False
    session.add(LicenceBinding(person_id=person_id, licence_id=licence_id, verified_at=now_local()))
    await session.flush()
    return True


# -- subscriptions -------------------------------------------------------------------------

ALERT_KINDS = ("violation", "inspection", "licence", "report")


async def subscribe(session: AsyncSession, person_id: int, channel: str,
                    kinds: tuple[str, ...] = ALERT_KINDS) -> None:
    existing = {s.alert_kind: s for s in (await session.execute(
        select(Subscription).where(Subscription.person_id == person_id, Subscription.channel == channel)
    )).scalars()}
    for kind in kinds:
        if kind in existing:
            existing[kind].active = True
        else:
            session.add(Subscription(person_id=person_id, alert_kind=kind, channel=channel,
                                     quiet_start="22:00" if channel == "sms" else None,
                                     quiet_end="08:00" if channel == "sms" else None,
                                     active=True, created_at=now_local()))
    await session.flush()


async def unsubscribe(session: AsyncSession, person_id: int, channel: Optional[str] = None) -> int:
    """Stop alerts over one channel (or all); the number of subscriptions stopped."""
    condition = [Subscription.person_id == person_id, Subscription.active.is_(True)]
    if channel:
        condition.append(Subscription.channel == channel)
    result = await session.execute(update(Subscription).where(*condition).values(active=False))
    return result.rowcount


async def active_subscriptions(session: AsyncSession, person_id: int) -> list[Subscription]:
    return list((await session.execute(select(Subscription).where(
        Subscription.person_id == person_id, Subscription.active.is_(True)))).scalars().all())


# -- reports -------------------------------------------------------------------------------

async def _next_number(session: AsyncSession, model, column, prefix: str) -> str:
    """PREFIX + yyyymmdd + a 4-digit serial for the day, unique by the column's constraint."""
    day = now_local().strftime("%Y%m%d")
    stem = f"{prefix}{day}"
    latest = (await session.execute(select(func.max(column)).where(column.like(f"{stem}%")))).scalar()
    serial = int(latest[len(stem):]) + 1 if latest else 1
    return f"{stem}{serial:04d}"


async def create_report(session: AsyncSession, *, person_id: int, channel: str, kind: str,
                        photos: list[str], **fields) -> Report:
    # Reports numbered at the same instant collide on the unique number: the loser takes the next.
    for _ in range(50):
        number = await _next_number(session, Report, Report.report_no, "R")
        try:
            async with session.begin_nested():
                report = Report(report_no=number, person_id=person_id, channel=channel, kind=kind,
                                status="received", created_at=now_local(), **fields)
                session.add(report)
                await session.flush()
            break
        except IntegrityError:
            continue
    else:
        raise RuntimeError("could not number the report")
    for url in photos:
        session.add(ReportMedia(report_id=report.id, kind="video" if url.endswith((".mp4", ".mov")) else "photo",
                                url=url, created_at=now_local()))
    await session.flush()
    return report


async def report_for(session: AsyncSession, person_id: int, report_no: str) -> Optional[Report]:
    """A report by number, only if it is this person's own."""
    return (await session.execute(select(Report).where(
        Report.report_no == report_no, Report.person_id == person_id))).scalar_one_or_none()


async def recent_reports(session: AsyncSession, person_id: int, limit: int = 5) -> list[Report]:
    return list((await session.execute(select(Report).where(Report.person_id == person_id)
                                       .order_by(Report.created_at.desc(), Report.id.desc())
                                       .limit(limit))).scalars().all())


@dataclass(frozen=True)
class ReportStats:
    made: int
    accepted: int
    month_accepted: int
    rank: Optional[int]      # among reporters with an accepted report this month
    reporters: int

    @property
    def rate(self) -> float:
        return self.accepted / self.made if self.made else 0.0


ACCEPTED = ("accepted", "fixed")


async def report_stats(session: AsyncSession, person_id: int) -> ReportStats:
    made = (await session.execute(select(func.count(Report.id)).where(Report.person_id == person_id))).scalar_one()
    accepted = (await session.execute(select(func.count(Report.id)).where(
        Report.person_id == person_id, Report.status.in_(ACCEPTED)))).scalar_one()
    month_start = now_local().replace(day=1, hour=0, minute=0, second=0)
    per_person = (await session.execute(
        select(Report.person_id, func.count(Report.id)).where(
            Report.status.in_(ACCEPTED), Report.created_at >= month_start).group_by(Report.person_id)
    )).all()
    counts = {pid: n for pid, n in per_person}
    mine = counts.get(person_id, 0)
    rank = 1 + sum(1 for n in counts.values() if n > mine) if mine else None
    return ReportStats(made, accepted, mine, rank, len(counts))


# -- appointments --------------------------------------------------------------------------

async def ensure_slots(session: AsyncSession, days: int = 7, capacity: int = 3) -> None:
    """Working-day slots for the coming days: 9-11:30 and 14-17, half-hourly, per kind."""
    today = now_local().date()
    existing = set((await session.execute(select(AppointmentSlot.kind, AppointmentSlot.starts_at).where(
        AppointmentSlot.starts_at >= datetime.combine(today, datetime.min.time())))).all())
    for offset in range(1, days + 1):
        day = today + timedelta(days=offset)
        if day.weekday() >= 5:
            continue
        for hour, minute in [(9, 0), (9, 30), (10, 0), (10, 30), (11, 0), (14, 0), (14, 30), (15, 0),
                             (15, 30), (16, 0), (16, 30)]:
            start = datetime.combine(day, datetime.min.time()).replace(hour=hour, minute=minute)
            for kind in ("accident", "violation"):
                if (kind, start) not in existing:
                    session.add(AppointmentSlot(kind=kind, starts_at=start, ends_at=start + timedelta(minutes=30),
                                                capacity=capacity, booked=0))
    await session.flush()


async def open_slots(session: AsyncSession, kind: str, limit: int = 6,
                     matching: Optional[Callable[[datetime], bool]] = None) -> list[AppointmentSlot]:
    """The earliest slots with places left; with `matching`, only those whose start it accepts."""
    query = select(AppointmentSlot).where(
        AppointmentSlot.kind == kind, AppointmentSlot.starts_at > now_local(),
        AppointmentSlot.booked < AppointmentSlot.capacity).order_by(AppointmentSlot.starts_at)
    if matching is None:
        return list((await session.execute(query.limit(limit))).scalars().all())
    # At most a week of half-hour slots: filtering here keeps the wish's calendar rules in one place.
    return [s for s in (await session.execute(query)).scalars().all() if matching(s.starts_at)][:limit]


async def book(session: AsyncSession, *, person_id: int, slot_id: int, kind: str, phone: str) -> Optional[Appointment]:
    """Take a place in the slot if one is left (atomically), else None."""
    taken = await session.execute(update(AppointmentSlot).where(
        AppointmentSlot.id == slot_id, AppointmentSlot.kind == kind,
        AppointmentSlot.booked < AppointmentSlot.capacity).values(booked=AppointmentSlot.booked + 1))
    if taken.rowcount != 1:
        return None
    number = await _next_number(session, Appointment, Appointment.appointment_no, "A")
    appointment = Appointment(appointment_no=number, person_id=person_id, slot_id=slot_id, kind=kind,
                              contact_phone=phone, status="booked", created_at=now_local())
    session.add(appointment)
    await session.flush()
    return appointment


# -- staff hand-off and feedback -----------------------------------------------------------

async def open_handoff(session: AsyncSession, person_id: int, channel: str, sender_id: str,
                       reason: str) -> Handoff:
    handoff = Handoff(person_id=person_id, channel=channel, sender_id=sender_id, reason=reason[:2000],
                      status="open", created_at=now_local())
    session.add(handoff)
    await session.flush()
    return handoff


async def store_feedback(session: AsyncSession, person_id: int, channel: str, text: str) -> Feedback:
    feedback = Feedback(person_id=person_id, channel=channel, text=text[:2000], created_at=now_local())
    session.add(feedback)
    await session.flush()
    return feedback


# -- one person across channels ---------------------------------------------------------------

LINK_CODE_TTL = timedelta(minutes=10)


def _code_hash(code: str) -> str:
    return hashlib.sha256(f"jj-link:{code}".encode()).hexdigest()


async def issue_link_code(session: AsyncSession, person_id: int, channel: str, external_id: str) -> str:
    """A fresh 6-digit code for this channel identity; its earlier unused codes stop working."""
    now = now_local()
    await session.execute(update(LinkCode).where(
        LinkCode.channel == channel, LinkCode.external_id == external_id, LinkCode.used_at.is_(None),
        LinkCode.expires_at > now).values(expires_at=now))
    while True:
        code = f"{secrets.randbelow(10**6):06d}"
        live = (await session.execute(select(LinkCode.id).where(
            LinkCode.code_hash == _code_hash(code), LinkCode.used_at.is_(None), LinkCode.expires_at > now)
        )).first()
        if live is None:
            break
    session.add(LinkCode(code_hash=_code_hash(code), person_id=person_id, channel=channel,
                         external_id=external_id, created_at=now, expires_at=now + LINK_CODE_TTL))
    await session.flush()
    return code


@dataclass(frozen=True)
class LinkOutcome:
    status: str                      # linked, already_linked, own_code, invalid
    other_channel: Optional[str] = None
    person_id: Optional[int] = None  # the person both identities now belong to


async def redeem_link_code(session: AsyncSession, person_id: int, channel: str, external_id: str,
                           code: str) -> LinkOutcome:
    """Link the identity typing the code to the person whose channel showed it."""
    now = now_local()
    row = (await session.execute(select(LinkCode).where(
        LinkCode.code_hash == _code_hash(code), LinkCode.used_at.is_(None), LinkCode.expires_at > now
    ).with_for_update())).scalars().first()
    if row is None:
        return LinkOutcome("invalid")
    if (row.channel, row.external_id) == (channel, external_id):
        return LinkOutcome("own_code")
    issuer = await session.get(Person, row.person_id)
    while issuer.merged_into_id is not None:
        issuer = await session.get(Person, issuer.merged_into_id)
    row.used_at, row.used_by_person_id = now, person_id
    if issuer.id == person_id:
        return LinkOutcome("already_linked", row.channel, person_id)
    await merge_persons(session, source_id=person_id, target_id=issuer.id)
    return LinkOutcome("linked", row.channel, issuer.id)


async def merge_persons(session: AsyncSession, source_id: int, target_id: int) -> None:
    """Everything of `source` now belongs to `target`: identities, bindings, subscriptions, reports,
    appointments, proofs. Duplicates keep the target's row. The audit log is left as written."""
    async def move(model, *unique: str) -> None:
        rows = (await session.execute(select(model).where(model.person_id == source_id))).scalars().all()
        for row in rows:
            if unique:
                clash = (await session.execute(select(model).where(
                    model.person_id == target_id,
                    *[getattr(model, c) == getattr(row, c) for c in unique]))).scalars().first()
                if clash is not None:
                    if model is Subscription:
                        clash.active = clash.active or row.active
                    await session.delete(row)
                    continue
            row.person_id = target_id
        await session.flush()

    await move(ChannelIdentity)
    await move(VehicleBinding, "vehicle_id")
    await move(LicenceBinding, "licence_id")
    await move(Subscription, "alert_kind", "channel")
    for model in (Report, Appointment, Handoff, Feedback, ProofAttempt, LinkCode):
        await move(model)
    await move(OutboxMessage, "event_key", "channel")
    source, target = await session.get(Person, source_id), await session.get(Person, target_id)
    target.phone = target.phone or source.phone
    target.email = target.email or source.email
    target.sms_consent = target.sms_consent or source.sms_consent
    source.merged_into_id = target_id
    await session.flush()
