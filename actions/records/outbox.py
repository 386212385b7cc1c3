"""The ingest side of the push: new violations, status changes, report decisions and reminders,
each written together with its outbox rows in the caller's transaction (the caller commits).

Outbox rows carry facts only (the dispatcher renders them per channel) and the address on that
channel at write time ("to"). One row per (event_key, person_id, channel): the unique key makes
every notification at most once, whoever writes it and however often.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Iterator, Optional, Sequence

from sqlalchemy import and_, false, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from . import queries
from .clock import BEIJING, now_local
from .masking import mask_id_number
from .models import (
    ChannelIdentity,
    Licence,
    LicenceBinding,
    OutboxMessage,
    Person,
    Report,
    Subscription,
    Vehicle,
    VehicleBinding,
    Violation,
    ViolationCode,
)
from .plates import normalise_plate

CHANNELS = ("wechat", "sms", "email", "telegram", "weibo")
IDENTITY_CHANNELS = ("wechat", "telegram", "weibo")  # addressed by their channel identity
SERIOUS_POINTS = 6          # the registered owner is also told by SMS
INSPECTION_WINDOW = timedelta(days=30)
LICENCE_WINDOW = timedelta(days=90)
POINTS_HIGH = 9
CLOCK_SKEW = timedelta(minutes=5)  # the sender's clock may run a little ahead of ours
RECORD_NO = re.compile(r"^[0-9]{15,20}$")      # 违法编号: 3702 + 12 digits in this city's records
DECISION_NO = re.compile(r"^[0-9A-Za-z]{6,32}$")
PHONE = re.compile(r"^1[0-9]{10}$")
CHUNK = 500  # IN lists stay below every SQLite build's parameter limit

# 随手拍: why a report was not accepted. Staff may also write their own reason.
REJECT_REASONS = {
    "unclear_plate": "号牌不清晰，无法辨认",
    "insufficient_evidence": "证据不足，无法认定违法行为",
    "non_compliant_media": "照片或视频不符合要求（如翻拍屏幕、张数不足）",
    "out_of_scope": "不属于随手拍受理范围",
    "outside_jurisdiction": "不在本市管辖范围内",
    "duplicate": "重复举报，相同线索已在处理",
    "time_limit": "超过举报时限",
    "self_filmed": "驾驶人驾车时拍摄，不予采纳",
    "incomplete_information": "时间、地点等信息不完整",
}
# A facility report goes received -> dispatched (a crew is on its way) -> fixed.
DECISIONS = ("accepted", "rejected", "fixed", "dispatched")
REPORT_NO = re.compile(r"^R[0-9]{12,16}$")  # R + yyyymmdd + serial, as queries.create_report numbers them
MAX_REASON = 200

_STATUS_RANK = {"unprocessed": 0, "processed": 1, "paid": 2}


# -- results ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowError:
    row: int                 # 1-based position in the batch (= JSONL line, CSV data row)
    record_no: Optional[str]
    field: str
    error: str               # stable English key
    message: str             # Chinese, for the department's staff

    def as_dict(self) -> dict:
        return {"row": self.row, "record_no": self.record_no, "field": self.field,
                "error": self.error, "message": self.message}


@dataclass
class IngestResult:
    accepted: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)
    notifications: int = 0   # outbox rows written

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "unchanged": self.unchanged,
                "rejected": [e.as_dict() for e in self.rejected], "notifications": self.notifications}


class _Invalid(Exception):
    def __init__(self, field_name: str, error: str, message: str) -> None:
        super().__init__(error)
        self.field, self.error, self.message = field_name, error, message


class DecisionError(ValueError):
    """A report decision that cannot be made: key in English, message in Chinese."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}")
        self.error, self.message = error, message


@dataclass(frozen=True)
class Decision:
    report_no: str
    status: str
    reason: Optional[str]
    changed: bool
    notifications: int


# -- small helpers ------------------------------------------------------------------------------

def _chunks(items: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def cycle_end(cycle_start: date) -> date:
    """The last day of a 12-month points cycle."""
    return _add_years(cycle_start, 1) - timedelta(days=1)


def _phone(raw: Optional[str]) -> Optional[str]:
    """11 mainland digits, or None: SMS gateways take nothing else."""
    digits = re.sub(r"[\s\-]", "", raw or "")
    if digits.startswith("+86"):
        digits = digits[3:]
    return digits if PHONE.match(digits) else None


async def _begin_write(session: AsyncSession) -> None:
    """On SQLite, open the real transaction (and take the write lock) before any SAVEPOINT:
    pysqlite only begins at the first DML, so an earlier SAVEPOINT would become the outermost
    transaction and its RELEASE would commit on its own."""
    if (await session.connection()).dialect.name == "sqlite":
        await session.execute(update(ViolationCode).where(false()).values(code=ViolationCode.code))


def _parse_time(value: Any, field_name: str, *, required: bool = True) -> Optional[datetime]:
    if value is None or value == "":
        if required:
            raise _Invalid(field_name, "missing", f"缺少{_LABELS.get(field_name, field_name)}")
        return None
    if not isinstance(value, str):
        raise _Invalid(field_name, "bad_time", "时间格式不对，应为 ISO 格式，如 2024-05-01T08:30:00")
    text = value.strip().replace("/", "-")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Invalid(field_name, "bad_time", "时间格式不对，应为 ISO 格式，如 2024-05-01T08:30:00") from None
    if parsed.tzinfo is not None:  # stored as naive Beijing time
        parsed = parsed.astimezone(BEIJING).replace(tzinfo=None)
    if parsed > now_local() + CLOCK_SKEW:
        raise _Invalid(field_name, "in_future", "时间晚于当前时间")
    return parsed.replace(microsecond=0)


def _text(row: dict, key: str, limit: int, *, required: bool = True) -> Optional[str]:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _Invalid(key, "missing", f"缺少{_LABELS.get(key, key)}")
        return None
    if not isinstance(value, str):
        raise _Invalid(key, "not_text", f"{_LABELS.get(key, key)}应为文字")
    value = value.strip()
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise _Invalid(key, "bad_text", f"{_LABELS.get(key, key)}含有非法字符")
    if len(value) > limit:
        raise _Invalid(key, "too_long", f"{_LABELS.get(key, key)}超过 {limit} 个字符")
    return value


def _integer(row: dict, key: str, low: int, high: int) -> Optional[int]:
    value = row.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):  # CSV cells are text
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(key, "not_integer", f"{_LABELS.get(key, key)}应为整数")
    if not low <= value <= high:
        raise _Invalid(key, "out_of_range", f"{_LABELS.get(key, key)}应在 {low} 到 {high} 之间")
    return value


def _record_no(row: dict) -> str:
    value = row.get("record_no")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("record_no", "missing", "缺少违法编号")
    value = value.strip()
    if not RECORD_NO.match(value):
        raise _Invalid("record_no", "bad_record_no", "违法编号格式不对（应为 15–20 位数字）")
    return value


_LABELS = {"record_no": "违法编号", "plate": "号牌", "occurred_at": "违法时间", "place": "违法地点",
           "code": "违法代码", "fine": "罚款金额", "points": "记分", "authority": "采集机关",
           "description": "违法行为描述", "status": "状态", "decision_no": "决定书编号",
           "processed_at": "处理时间", "paid_at": "缴款时间", "late_fee": "滞纳金"}


def _raw_record_no(row: Any) -> Optional[str]:
    """The record number as sent, for the error report (not validated)."""
    value = row.get("record_no") if isinstance(row, dict) else None
    return str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _record_numbers(rows: Sequence[Any]) -> list[str]:
    """The well-formed record numbers of a batch, to load what is stored in one go."""
    return sorted({n for n in map(_raw_record_no, rows) if n and RECORD_NO.match(n)})


# -- addresses ------------------------------------------------------------------------------------

async def _opted_out_phones(session: AsyncSession, phones: Iterable[str]) -> set[str]:
    """Numbers that sent 退订/TD (the set-based twin of queries.sms_opted_out)."""
    phones, out = sorted(set(phones)), set()
    for part in _chunks(phones):
        out.update((await session.execute(select(ChannelIdentity.external_id).where(
            ChannelIdentity.channel == "sms", ChannelIdentity.external_id.in_(part),
            ChannelIdentity.blocked.is_(True)))).scalars())
    return out


async def _identities(session: AsyncSession, person_ids: Sequence[int],
                      channels: Sequence[str]) -> dict[tuple[int, str], str]:
    """(person, channel) -> the external id last seen there, blocked identities left out."""
    found: dict[tuple[int, str], tuple[datetime, str]] = {}
    for part in _chunks(sorted(set(person_ids))):
        rows = await session.execute(select(
            ChannelIdentity.person_id, ChannelIdentity.channel, ChannelIdentity.external_id,
            ChannelIdentity.last_seen_at).where(
            ChannelIdentity.person_id.in_(part), ChannelIdentity.channel.in_(channels),
            ChannelIdentity.blocked.is_(False)))
        for pid, channel, external_id, seen in rows:
            key = (pid, channel)
            if key not in found or seen > found[key][0]:
                found[key] = (seen, external_id)
    return {key: external_id for key, (_, external_id) in found.items()}


async def _addresses(session: AsyncSession, wanted: set[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """The address of each (person, channel) a subscription names; missing where none may be used:
    a blocked identity, SMS without consent or after 退订, no e-mail address."""
    person_ids = sorted({pid for pid, _ in wanted})
    if not person_ids:
        return {}
    out = await _identities(session, person_ids, IDENTITY_CHANNELS)
    out = {key: value for key, value in out.items() if key in wanted}
    people = {}
    if any(ch in ("sms", "email") for _, ch in wanted):
        for part in _chunks(person_ids):
            for pid, phone, email, consent in await session.execute(select(
                    Person.id, Person.phone, Person.email, Person.sms_consent).where(Person.id.in_(part))):
                people[pid] = (_phone(phone) if consent else None, email)
    opted_out = await _opted_out_phones(session, [p for p, _ in people.values() if p])
    for pid, channel in wanted:
        phone, email = people.get(pid, (None, None))
        if channel == "sms" and phone and phone not in opted_out:
            out[(pid, "sms")] = phone
        elif channel == "email" and email:
            out[(pid, "email")] = email
    return out


async def _subscribed(session: AsyncSession, query) -> tuple[list[tuple], dict[tuple[int, str], str]]:
    """Rows of (subject..., person_id, channel) from a subscribers query, and their addresses."""
    rows = [tuple(r) for r in await session.execute(query)]
    addresses = await _addresses(session, {(r[-2], r[-1]) for r in rows})
    return rows, addresses


def _message(kind: str, key: str, person_id: int, channel: str, to: str, facts: dict, now: datetime) -> dict:
    return dict(event_kind=kind, event_key=key, person_id=person_id, channel=channel,
                payload={**facts, "to": to}, status="pending", attempts=0, next_attempt_at=now,
                created_at=now)


async def write_outbox(session: AsyncSession, messages: list[dict]) -> int:
    """Insert outbox rows; those whose (event_key, person_id, channel) exists are left out.
    Returns the number of rows written."""
    unique: dict[tuple, dict] = {}
    for m in messages:
        unique.setdefault((m["event_key"], m["person_id"], m["channel"]), m)
    if not unique:
        return 0
    keys = sorted({k for k, _, _ in unique})
    for part in _chunks(keys):
        for existing in await session.execute(select(
                OutboxMessage.event_key, OutboxMessage.person_id, OutboxMessage.channel).where(
                OutboxMessage.event_key.in_(part))):
            unique.pop(tuple(existing), None)
    rows = list(unique.values())
    if not rows:
        return 0
    # A concurrent writer of the same event may slip in between: the unique key decides.
    dialect = (await session.connection()).dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for part in _chunks(rows):
        await session.execute(insert(OutboxMessage.__table__).on_conflict_do_nothing(
            index_elements=["event_key", "person_id", "channel"]), list(part))
    return len(rows)


# -- violations -----------------------------------------------------------------------------------

def violation_facts(v: Violation, plate: str, behaviour: str) -> dict:
    return {"plate": plate, "record_no": v.record_no, "occurred_at": v.occurred_at.isoformat(),
            "place": v.place, "behaviour": behaviour, "fine": v.fine, "points": v.points,
            "authority": v.authority}


async def fan_out_violations(session: AsyncSession, violations: Sequence[Violation]) -> int:
    """Outbox rows for new violations: every person who bound the vehicle and subscribed to
    violation alerts, on each subscribed channel; for serious ones (points >= 6) also the
    registered owner by SMS unless the number opted out. A fixed number of queries per batch."""
    if not violations:
        return 0
    now = now_local()
    vehicle_ids = sorted({v.vehicle_id for v in violations})
    vehicles, bound, channels = {}, [], {}
    for part in _chunks(vehicle_ids):
        for vid, plate, owner_phone in await session.execute(
                select(Vehicle.id, Vehicle.plate, Vehicle.owner_phone).where(Vehicle.id.in_(part))):
            vehicles[vid] = (plate, owner_phone)
        # Bindings first, then their subscriptions: one join lets SQLite scan every subscription.
        bound.extend(await session.execute(select(VehicleBinding.vehicle_id, VehicleBinding.person_id)
                                           .where(VehicleBinding.vehicle_id.in_(part))))
    for part in _chunks(sorted({pid for _, pid in bound})):
        for pid, channel in await session.execute(select(Subscription.person_id, Subscription.channel).where(
                Subscription.person_id.in_(part), Subscription.alert_kind == "violation",
                Subscription.active.is_(True), Subscription.channel.in_(CHANNELS))):
            channels.setdefault(pid, []).append(channel)
    addresses = await _addresses(session, {(pid, ch) for pid, chs in channels.items() for ch in chs})
    subscribers: dict[int, list[tuple[int, str, str]]] = {}
    for vid, pid in bound:
        for channel in channels.get(pid, ()):
            if (pid, channel) in addresses:
                subscribers.setdefault(vid, []).append((pid, channel, addresses[(pid, channel)]))
    names = dict((await session.execute(select(ViolationCode.code, ViolationCode.short_name).where(
        ViolationCode.code.in_(sorted({v.code for v in violations}))))).all())

    messages, facts_of = [], {}
    for v in violations:
        plate = vehicles[v.vehicle_id][0]
        facts = facts_of[v.record_no] = violation_facts(v, plate, names.get(v.code) or v.description)
        for pid, channel, to in subscribers.get(v.vehicle_id, ()):
            messages.append(_message("violation", f"violation:{v.record_no}", pid, channel, to, facts, now))

    serious = [v for v in violations if v.points >= SERIOUS_POINTS and _phone(vehicles[v.vehicle_id][1])]
    if serious:
        phones = sorted({_phone(vehicles[v.vehicle_id][1]) for v in serious})
        owners: dict[str, Optional[int]] = {}
        for part in _chunks(phones):
            for phone, pid, blocked in await session.execute(select(
                    ChannelIdentity.external_id, ChannelIdentity.person_id, ChannelIdentity.blocked).where(
                    ChannelIdentity.channel == "sms", ChannelIdentity.external_id.in_(part))):
                owners[phone] = None if blocked else pid  # blocked: the number sent 退订/TD
        for phone in phones:
            if phone not in owners:  # never heard from: the owner becomes a person of their own
                owners[phone] = (await queries.person_for(session, "sms", phone)).id
        taken = {(m["event_key"], m["person_id"], m["channel"]) for m in messages}
        for v in serious:
            phone = _phone(vehicles[v.vehicle_id][1])
            pid, key = owners[phone], f"violation:{v.record_no}"
            if pid is None or (key, pid, "sms") in taken:  # opted out, or told already as a subscriber
                continue
            messages.append(_message("violation_owner", key, pid, "sms", phone, facts_of[v.record_no], now))
    return await write_outbox(session, messages)


def _same_violation(v: Violation, new: dict) -> bool:
    return all(getattr(v, k) == new[k] for k in
               ("vehicle_id", "occurred_at", "place", "code", "description", "fine", "points", "authority"))


async def record_violations(session: AsyncSession, rows: Sequence[Any]) -> IngestResult:
    """Store new violation records and their notifications. Each row: record_no, plate,
    occurred_at (ISO), place, code, authority, and optionally fine, points, description (defaults
    from the violation-code table). A record already stored with the same content is `unchanged`
    (and notifies no one again); with other content it is rejected (record_conflict): corrections
    are not taken silently. Bad rows are reported, good ones kept."""
    result = IngestResult()
    await _begin_write(session)
    codes = {c.code: c for c in (await session.execute(select(ViolationCode))).scalars()}
    plates = sorted({normalise_plate(r["plate"]) for r in rows
                     if isinstance(r, dict) and isinstance(r.get("plate"), str) and "\x00" not in r["plate"]})
    vehicles: dict[str, int] = {}
    for part in _chunks(plates):
        vehicles.update((await session.execute(
            select(Vehicle.plate, Vehicle.id).where(Vehicle.plate.in_(part)))).all())
    numbers = _record_numbers(rows)
    stored: dict[str, Violation] = {}
    for part in _chunks(numbers):
        for v in (await session.execute(select(Violation).where(Violation.record_no.in_(part)))).scalars():
            stored[v.record_no] = v

    now, pending = now_local(), []
    for index, row in enumerate(rows, start=1):
        record_no = _raw_record_no(row)
        try:
            if not isinstance(row, dict):
                raise _Invalid("", "not_an_object", "每条记录应为一个 JSON 对象")
            values = _violation_values(row, codes, vehicles)
            record_no = values["record_no"]
            if record_no in stored:  # in the database, or earlier in this batch
                if not _same_violation(stored[record_no], values):
                    raise _Invalid("record_no", "record_conflict", "该违法编号已入库，内容与本次不同")
                result.unchanged += 1
                continue
            values.update(status="unprocessed", recorded_at=now, late_fee=0)
            stored[record_no] = Violation(**values)  # transient: what this batch adds
            pending.append((index, values))
        except _Invalid as bad:
            result.rejected.append(RowError(index, record_no, bad.field, bad.error, bad.message))
    new = await _insert_violations(session, pending, result)
    result.accepted = len(new)
    result.rejected.sort(key=lambda e: e.row)
    result.notifications = await fan_out_violations(session, new)
    return result


async def _insert_violations(session: AsyncSession, pending: list[tuple[int, dict]],
                             result: IngestResult) -> list[Violation]:
    """Insert validated rows: all at once, or, if one clashes (another ingest stored the same
    record meanwhile), row by row, each in a SAVEPOINT of its own so that the others stay."""
    if not pending:
        return []
    table = Violation.__table__
    try:
        async with session.begin_nested():
            for part in _chunks(pending):
                await session.execute(table.insert(), [values for _, values in part])
        return [Violation(**values) for _, values in pending]
    except IntegrityError:
        pass
    new = []
    for index, values in pending:
        try:
            async with session.begin_nested():
                await session.execute(table.insert(), values)
            new.append(Violation(**values))
        except IntegrityError:
            other = (await session.execute(select(Violation).where(
                Violation.record_no == values["record_no"]))).scalar_one_or_none()
            if other is not None and _same_violation(other, values):
                result.unchanged += 1
            else:
                result.rejected.append(RowError(index, values["record_no"], "record_no", "record_conflict",
                                                "该违法编号已入库，内容与本次不同"))
    return new


def _violation_values(row: dict, codes: dict, vehicles: dict) -> dict:
    record_no = _record_no(row)
    raw_plate = _text(row, "plate", 16)
    plate = normalise_plate(raw_plate)
    if plate not in vehicles:
        raise _Invalid("plate", "unknown_plate", "号牌不在本市机动车记录中")
    code_value = row.get("code")
    code_value = str(code_value).strip() if isinstance(code_value, (str, int)) and not isinstance(code_value, bool) else ""
    if not code_value:
        raise _Invalid("code", "missing", "缺少违法代码")
    code = codes.get(code_value)
    if code is None:
        raise _Invalid("code", "unknown_code", "违法代码不在代码表中")
    occurred_at = _parse_time(row.get("occurred_at"), "occurred_at")
    fine = _integer(row, "fine", 0, 1_000_000)
    if fine is not None and not code.fine_min <= fine <= code.fine_max:
        raise _Invalid("fine", "fine_out_of_range",
                       f"罚款金额超出该违法代码的范围（{code.fine_min}–{code.fine_max} 元）")
    points = _integer(row, "points", 0, 12)
    return dict(record_no=record_no, vehicle_id=vehicles[plate], occurred_at=occurred_at,
                place=_text(row, "place", 128), code=code.code,
                description=_text(row, "description", 2000, required=False) or code.description,
                fine=code.fine_default if fine is None else fine,
                points=code.points if points is None else points,
                authority=_text(row, "authority", 64))


async def change_violation_status(session: AsyncSession, rows: Sequence[Any]) -> IngestResult:
    """Processing and payment of stored violations. Each row: record_no, status processed|paid,
    decision_no (required unless already stored), processed_at / paid_at (ISO; paid_at required for
    paid), late_fee. The same change sent again is `unchanged`; going back (paid -> processed) or
    another decision number for the same status is rejected. No one is notified: the person who
    processed or paid knows, and the dispatcher has no event for it."""
    result = IngestResult()
    await _begin_write(session)
    numbers = _record_numbers(rows)
    stored: dict[str, Violation] = {}
    for part in _chunks(numbers):
        for v in (await session.execute(select(Violation).where(Violation.record_no.in_(part)))).scalars():
            stored[v.record_no] = v
    for index, row in enumerate(rows, start=1):
        record_no = _raw_record_no(row)
        try:
            if not isinstance(row, dict):
                raise _Invalid("", "not_an_object", "每条记录应为一个 JSON 对象")
            record_no = _record_no(row)
            v = stored.get(record_no)
            if v is None:
                raise _Invalid("record_no", "unknown_record", "没有这条违法记录")
            if _apply_status(v, row):
                async with session.begin_nested():
                    await session.flush()
                result.accepted += 1
            else:
                result.unchanged += 1
        except _Invalid as bad:
            result.rejected.append(RowError(index, record_no, bad.field, bad.error, bad.message))
    return result


def _apply_status(v: Violation, row: dict) -> bool:
    """Validate the change against the stored record; apply it and say whether anything changed."""
    status = row.get("status")
    if status not in ("processed", "paid"):
        raise _Invalid("status", "bad_status", "状态应为 processed（已处理）或 paid（已缴款）")
    decision_no = _text(row, "decision_no", 32, required=False)
    if decision_no is not None and not DECISION_NO.match(decision_no):
        raise _Invalid("decision_no", "bad_decision_no", "决定书编号格式不对")
    processed_at = _parse_time(row.get("processed_at"), "processed_at", required=False)
    paid_at = _parse_time(row.get("paid_at"), "paid_at", required=status == "paid")
    late_fee = _integer(row, "late_fee", 0, 1_000_000)
    for name, when in (("processed_at", processed_at), ("paid_at", paid_at)):
        if when is not None and when < v.occurred_at:
            raise _Invalid(name, "before_violation", "时间早于违法时间")
    if processed_at and paid_at and paid_at < processed_at:
        raise _Invalid("paid_at", "before_processing", "缴款时间早于处理时间")
    current, wanted = _STATUS_RANK[v.status], _STATUS_RANK[status]
    if wanted < current:
        raise _Invalid("status", "status_backwards", "记录已缴款，不能改回已处理")
    if v.decision_no and decision_no and decision_no != v.decision_no:
        raise _Invalid("decision_no", "decision_conflict", "决定书编号与已入库的不同")
    if wanted == current:
        same = (processed_at in (None, v.processed_at) and paid_at in (None, v.paid_at)
                and late_fee in (None, v.late_fee))
        if not same:
            raise _Invalid("status", "status_conflict", "状态相同但时间或金额与已入库的不同")
        return False
    if not (decision_no or v.decision_no):
        raise _Invalid("decision_no", "missing", "缺少决定书编号")
    v.decision_no = v.decision_no or decision_no
    v.processed_at = v.processed_at or processed_at or paid_at or now_local()
    if status == "paid":
        v.paid_at = paid_at
    if late_fee is not None:
        v.late_fee = late_fee
    v.status = status
    return True


# -- report decisions --------------------------------------------------------------------------------

def reason_text(reason: Optional[str]) -> Optional[str]:
    """A known reason key's Chinese text, or the staff's own words."""
    if reason is None or not str(reason).strip():
        return None
    reason = str(reason).strip()
    return REJECT_REASONS.get(reason, reason)


async def decide_report(session: AsyncSession, report_no: str, status: str,
                        reason: Optional[str] = None) -> Decision:
    """Accept, reject (with a reason: a REJECT_REASONS key or free text), or for facility reports
    mark dispatched or fixed, and tell the reporter. The same status again changes nothing,
    whatever the reason: the reporter has been told already. Raises DecisionError."""
    if status not in DECISIONS:
        raise DecisionError("bad_status", "处理结果应为 accepted（采纳）、rejected（不予采纳）、"
                                          "dispatched（已派单）或 fixed（已修复）")
    text = reason_text(reason) if status == "rejected" else None
    if status == "rejected" and not text:
        raise DecisionError("missing_reason", "不予采纳时须说明理由")
    if text and "\x00" in text:
        raise DecisionError("bad_reason", "理由含有非法字符")
    if text and len(text) > MAX_REASON:
        raise DecisionError("reason_too_long", f"理由不超过 {MAX_REASON} 个字")
    if not isinstance(report_no, str) or not REPORT_NO.match(report_no):
        raise DecisionError("unknown_report", "没有这个举报编号")
    await _begin_write(session)
    report = (await session.execute(select(Report).where(Report.report_no == report_no)
                                    .with_for_update())).scalar_one_or_none()
    if report is None:
        raise DecisionError("unknown_report", "没有这个举报编号")
    if report.status == status:
        return Decision(report_no, status, report.reject_reason, False, 0)
    if status == "fixed" and report.kind != "facility":
        raise DecisionError("fixed_only_for_facility", "只有设施报修可以标记为已修复")
    if status == "dispatched" and report.kind != "facility":
        raise DecisionError("dispatched_only_for_facility", "只有设施报修可以派单")
    if report.status == "fixed":
        raise DecisionError("already_fixed", "该报修已修复，不能再改")
    report.status, report.reject_reason, report.decided_at = status, text, now_local()
    await session.flush()
    sent = await write_outbox(session, await _report_messages(session, report, text))
    return Decision(report_no, status, text, True, sent)


async def _report_messages(session: AsyncSession, report: Report, text: Optional[str]) -> list[dict]:
    person_id = report.person_id
    while True:  # a reporter linked into another person is reached through that one
        merged = (await session.execute(select(Person.merged_into_id).where(Person.id == person_id))).scalar()
        if merged is None:
            break
        person_id = merged
    channels = (await session.execute(select(Subscription.channel).where(
        Subscription.person_id == person_id, Subscription.alert_kind == "report",
        Subscription.active.is_(True), Subscription.channel.in_(CHANNELS)))).scalars().all()
    addresses = await _addresses(session, {(person_id, ch) for ch in channels})
    if not addresses and report.channel in CHANNELS:
        # Not subscribed (or nowhere reachable): answer where the report came in.
        found = await _identities(session, [person_id], [report.channel])
        to = found.get((person_id, report.channel))
        if report.channel == "sms" and to and (_phone(to) is None or await queries.sms_opted_out(session, to)):
            to = None
        if to:
            addresses = {(person_id, report.channel): to}
    facts = {"report_no": report.report_no, "kind": report.kind, "status": report.status, "reason": text}
    now, key = now_local(), f"report:{report.report_no}:{report.status}"
    return [_message("report_decided", key, pid, ch, to, facts, now) for (pid, ch), to in sorted(addresses.items())]


# -- reminders ------------------------------------------------------------------------------------------

async def due_reminders(session: AsyncSession, today: Optional[date] = None) -> dict[str, int]:
    """Reminders due today, once per occasion (the event key): inspections due within 30 days,
    licences expiring within 90 days, 9 or more points in the current cycle. One query per kind
    for the subscribers, whatever the number of vehicles. Returns the rows written per kind."""
    today = today or now_local().date()
    now = now_local()
    await _begin_write(session)
    counts = {}

    rows, addresses = await _subscribed(session, select(
        Vehicle.plate, Vehicle.inspection_due, Subscription.person_id, Subscription.channel)
        .join(VehicleBinding, VehicleBinding.vehicle_id == Vehicle.id)
        .join(Subscription, and_(Subscription.person_id == VehicleBinding.person_id,
                                 Subscription.alert_kind == "inspection", Subscription.active.is_(True)))
        .where(Vehicle.inspection_due >= today, Vehicle.inspection_due <= today + INSPECTION_WINDOW))
    counts["inspection_due"] = await write_outbox(session, [
        _message("inspection_due", f"inspection:{plate}:{due.isoformat()}", pid, ch, addresses[(pid, ch)],
                 {"plate": plate, "due_on": due.isoformat()}, now)
        for plate, due, pid, ch in rows if (pid, ch) in addresses])

    licence_subscribers = (
        select(Licence.id, Licence.licence_no, Licence.expires_on, Licence.points, Licence.cycle_start,
               Subscription.person_id, Subscription.channel)
        .join(LicenceBinding, LicenceBinding.licence_id == Licence.id)
        .join(Subscription, and_(Subscription.person_id == LicenceBinding.person_id,
                                 Subscription.alert_kind == "licence", Subscription.active.is_(True))))
    rows, addresses = await _subscribed(session, licence_subscribers.where(
        Licence.expires_on >= today, Licence.expires_on <= today + LICENCE_WINDOW))
    counts["licence_expiring"] = await write_outbox(session, [
        _message("licence_expiring", f"licence:{lid}:{expires.isoformat()}", pid, ch, addresses[(pid, ch)],
                 {"licence_no_masked": mask_id_number(number), "expires_on": expires.isoformat()}, now)
        for lid, number, expires, _, _, pid, ch in rows if (pid, ch) in addresses])

    rows, addresses = await _subscribed(session, licence_subscribers.where(
        Licence.points >= POINTS_HIGH, Licence.cycle_start <= today,
        Licence.cycle_start > today - timedelta(days=367)))
    counts["points_high"] = await write_outbox(session, [
        _message("points_high", f"points:{lid}:{start.isoformat()}", pid, ch, addresses[(pid, ch)],
                 {"licence_no_masked": mask_id_number(number), "points": points,
                  "cycle_end": cycle_end(start).isoformat()}, now)
        for lid, number, _, points, start, pid, ch in rows
        if (pid, ch) in addresses and cycle_end(start) >= today])
    return counts
