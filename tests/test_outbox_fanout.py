"""The ingest side of the push (actions/records/outbox.py) on each database backend: who hears of a
new violation, the outbox written with its cause, idempotent re-sends, row-level errors, status
changes, report decisions and reminders once per occasion."""
from __future__ import annotations

import asyncio
import itertools
from contextlib import contextmanager
from datetime import date, timedelta

import pytest
from sqlalchemy import event, func, select, update

from actions.records import outbox, queries
from actions.records.clock import now_local
from actions.records.db import Database
from actions.records.models import (
    ChannelIdentity,
    Licence,
    OutboxMessage,
    Person,
    Report,
    Vehicle,
    Violation,
)

_serial = itertools.count(1)
PLACE = "市南区香港中路与山东路路口"
AUTHORITY = "青岛市公安局交通警察支队市南大队"


# -- helpers (also used by test_ingest) ------------------------------------------------------------

def next_record_no() -> str:
    return f"3799{next(_serial):012d}"


def violation_row(plate: str, code: str = "1039", **fields) -> dict:
    row = dict(record_no=next_record_no(), plate=plate,
               occurred_at=(now_local() - timedelta(hours=3)).isoformat(), place=PLACE, code=code,
               authority=AUTHORITY)
    row.update(fields)
    return row


async def make_vehicle(s, owner_phone: str | None = None, inspection_due: date | None = None) -> Vehicle:
    n = next(_serial)
    vehicle = Vehicle(plate=f"鲁Q{n % 100000:05d}", plate_type="02", vin=f"LTEST{n:012d}",
                      engine_no=f"E{n:08d}", vehicle_type="小型轿车", use_nature="非营运", seats=5,
                      owner_name="测试车主", owner_phone=owner_phone or f"1990009{n % 10000:04d}",
                      registered_on=date(2020, 1, 1),
                      inspection_due=inspection_due or now_local().date() + timedelta(days=400))
    s.add(vehicle)
    await s.flush()
    return vehicle


async def make_person(s, channel: str, external_id: str, *, phone: str | None = None,
                      email: str | None = None, consent: bool = False, blocked: bool = False) -> Person:
    person = await queries.person_for(s, channel, external_id)
    person.phone = phone or person.phone
    person.email = email
    person.sms_consent = consent
    if blocked:
        await queries.mark_identity_blocked(s, channel, external_id)
    await s.flush()
    return person


async def follow(s, person: Person, vehicle: Vehicle, channels, kind: str = "violation") -> None:
    await queries.bind_vehicle(s, person.id, vehicle.id)
    for channel in channels:
        await queries.subscribe(s, person.id, channel, kinds=(kind,))


def tag(request) -> str:
    return f"{request.node.name[-20:]}-{next(_serial)}"


async def outbox_rows(s, key: str) -> list[OutboxMessage]:
    return list((await s.execute(select(OutboxMessage).where(OutboxMessage.event_key == key)
                                 .order_by(OutboxMessage.person_id, OutboxMessage.channel))).scalars())


@pytest.fixture
async def db(seeded_url):
    database = Database(seeded_url)
    yield database
    await database.dispose()


@contextmanager
def statements(database: Database):
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.lstrip().split()[0].upper())

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)


# -- who hears of a new violation -----------------------------------------------------------------

async def test_bound_and_subscribed_persons_get_one_row_per_channel_and_nobody_else(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        car, other_car = await make_vehicle(s), await make_vehicle(s)
        fan = await make_person(s, "wechat", f"o-fan-{t}", phone="13900001111", email="fan@example.com",
                                consent=True)
        await follow(s, fan, car, ["wechat", "sms", "email"])
        await queries.person_for(s, "telegram", f"tg-fan-{t}")  # another person's telegram: not the fan's
        other_kind = await make_person(s, "wechat", f"o-kind-{t}")
        await follow(s, other_kind, car, ["wechat"], kind="inspection")
        unbound = await make_person(s, "wechat", f"o-unbound-{t}")
        await queries.subscribe(s, unbound.id, "wechat", kinds=("violation",))
        blocked = await make_person(s, "wechat", f"o-blocked-{t}", blocked=True)
        await follow(s, blocked, car, ["wechat"])
        lapsed = await make_person(s, "weibo", f"wb-lapsed-{t}")
        await follow(s, lapsed, car, ["weibo"])
        await queries.unsubscribe(s, lapsed.id)
        no_consent = await make_person(s, "wechat", f"o-noconsent-{t}", phone="13900002222")
        await follow(s, no_consent, car, ["sms", "telegram"])  # no consent, no telegram identity
        stranger = await make_person(s, "telegram", f"tg-stranger-{t}")
        await follow(s, stranger, other_car, ["telegram"])
        row = violation_row(car.plate, "1039", fine=200)
        result = await outbox.record_violations(s, [row])
    assert (result.accepted, result.unchanged, result.rejected) == (1, 0, [])
    async with db.session() as s:
        rows = await outbox_rows(s, f"violation:{row['record_no']}")
    assert {(r.person_id, r.channel, r.payload["to"]) for r in rows} == {
        (fan.id, "wechat", f"o-fan-{t}"), (fan.id, "sms", "13900001111"), (fan.id, "email", "fan@example.com")}
    assert result.notifications == 3
    for r in rows:
        assert (r.event_kind, r.status, r.attempts) == ("violation", "pending", 0)
        assert abs((r.next_attempt_at - now_local()).total_seconds()) < 120
        facts = {k: v for k, v in r.payload.items() if k != "to"}
        assert facts == {"plate": car.plate, "record_no": row["record_no"],
                         "occurred_at": row["occurred_at"].split(".")[0], "place": PLACE,
                         "behaviour": "违法停车", "fine": 200, "points": 0, "authority": AUTHORITY}


async def test_serious_violation_reaches_the_owner_by_sms_unless_opted_out(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        owned = await make_vehicle(s, owner_phone="13900003001")
        opted = await make_vehicle(s, owner_phone="13900003002")
        await make_person(s, "sms", "13900003002", blocked=True)  # sent 退订
        light = await make_vehicle(s, owner_phone="13900003003")
        rows = [violation_row(owned.plate, "1625"), violation_row(opted.plate, "1625"),
                violation_row(light.plate, "1116")]
        result = await outbox.record_violations(s, rows)
    assert result.accepted == 3 and result.notifications == 1
    async with db.session() as s:
        [owner_row] = await outbox_rows(s, f"violation:{rows[0]['record_no']}")
        assert await outbox_rows(s, f"violation:{rows[1]['record_no']}") == []
        assert await outbox_rows(s, f"violation:{rows[2]['record_no']}") == []  # 1 point: not serious
        owner = await queries.person_for(s, "sms", "13900003001")
    assert (owner_row.event_kind, owner_row.channel, owner_row.person_id) == ("violation_owner", "sms", owner.id)
    assert owner_row.payload["to"] == "13900003001"
    assert (owner_row.payload["points"], owner_row.payload["behaviour"]) == (6, "闯红灯")


async def test_an_owner_who_subscribed_by_sms_gets_one_sms_not_two(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        car = await make_vehicle(s, owner_phone="13900004001")
        owner = await make_person(s, "sms", "13900004001", consent=True)
        await follow(s, owner, car, ["sms"])
        wechat_too = await make_person(s, "wechat", f"o-owner-{t}")
        await follow(s, wechat_too, car, ["wechat"])
        row = violation_row(car.plate, "1622")
        await outbox.record_violations(s, [row])
    async with db.session() as s:
        rows = await outbox_rows(s, f"violation:{row['record_no']}")
    assert [(r.person_id, r.channel, r.event_kind) for r in rows] == sorted(
        [(owner.id, "sms", "violation"), (wechat_too.id, "wechat", "violation")])


async def test_a_batch_takes_the_same_selects_whatever_its_size(db, request):
    """No N+1: bindings, subscriptions and addresses are loaded for the whole batch at once."""
    t = tag(request)
    counts = []
    for size in (2, 40):
        async with db.session() as s, s.begin():
            rows = []
            for i in range(size):
                car = await make_vehicle(s)
                fan = await make_person(s, "wechat", f"o-batch-{t}-{size}-{i}", email=f"b{i}@example.com")
                await follow(s, fan, car, ["wechat", "email"])
                rows.append(violation_row(car.plate, "1039"))
        async with db.session() as s, s.begin():
            with statements(db) as seen:
                result = await outbox.record_violations(s, rows)
        assert (result.accepted, result.notifications) == (size, 2 * size)
        counts.append(seen.count("SELECT"))
    assert counts[0] == counts[1], counts


# -- one transaction, idempotence, errors -----------------------------------------------------------

async def test_the_violation_and_its_outbox_rows_commit_together_or_not_at_all(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        car = await make_vehicle(s)
        fan = await make_person(s, "wechat", f"o-atomic-{t}")
        await follow(s, fan, car, ["wechat"])
    row = violation_row(car.plate, "1625")
    with pytest.raises(RuntimeError):
        async with db.session() as s, s.begin():
            result = await outbox.record_violations(s, [row])
            assert result.accepted == 1 and result.notifications == 2  # subscriber + owner
            raise RuntimeError("the caller fails before commit")
    async with db.session() as s:
        assert (await s.execute(select(Violation).where(Violation.record_no == row["record_no"]))).first() is None
        assert await outbox_rows(s, f"violation:{row['record_no']}") == []
    async with db.session() as s, s.begin():
        result = await outbox.record_violations(s, [row])
    async with db.session() as s:
        assert (await s.execute(select(Violation).where(Violation.record_no == row["record_no"]))).first()
        assert len(await outbox_rows(s, f"violation:{row['record_no']}")) == 2


async def test_resending_a_record_changes_nothing_and_other_content_is_refused(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        car = await make_vehicle(s)
        fan = await make_person(s, "wechat", f"o-resend-{t}")
        await follow(s, fan, car, ["wechat"])
    row = violation_row(car.plate, "1039", occurred_at="2025-03-01T09:15:00+08:00")
    async with db.session() as s, s.begin():
        first = await outbox.record_violations(s, [row, dict(row)])  # twice in one batch, too
    async with db.session() as s, s.begin():
        await s.execute(update(OutboxMessage).where(OutboxMessage.event_key == f"violation:{row['record_no']}")
                        .values(status="sent"))
    changed = dict(row, place="别的地方")
    async with db.session() as s, s.begin():
        again = await outbox.record_violations(s, [dict(row, plate=" 鲁q" + row["plate"][2:]), changed])
    assert (first.accepted, first.unchanged, first.notifications) == (1, 1, 1)
    assert (again.accepted, again.unchanged, again.notifications) == (0, 1, 0)
    assert [(e.row, e.field, e.error) for e in again.rejected] == [(2, "record_no", "record_conflict")]
    async with db.session() as s:
        rows = await outbox_rows(s, f"violation:{row['record_no']}")
        stored = (await s.execute(select(Violation).where(Violation.record_no == row["record_no"]))).scalar_one()
    assert [r.status for r in rows] == ["sent"] and stored.place == PLACE


async def test_two_ingests_of_the_same_records_at_once_store_and_notify_once(db, request):
    """The second waits for the first (a row lock on PostgreSQL, the write lock on SQLite), then
    finds the records stored: unchanged, while its own new row is still kept."""
    t = tag(request)
    async with db.session() as s, s.begin():
        car = await make_vehicle(s)
        fan = await make_person(s, "wechat", f"o-race-{t}")
        await follow(s, fan, car, ["wechat"])
    shared, own = violation_row(car.plate, "1039"), violation_row(car.plate, "1116")
    clash = dict(shared, place="另一个地点", record_no=next_record_no())

    async def second():
        async with db.session() as s, s.begin():
            return await outbox.record_violations(s, [shared, own, dict(clash, place=PLACE)])

    async with db.session() as s, s.begin():
        first = await outbox.record_violations(s, [shared, clash])
        racing = asyncio.create_task(second())
        await asyncio.sleep(0.5)
        assert not racing.done()
    later = await asyncio.wait_for(racing, 20)
    assert (first.accepted, later.accepted, later.unchanged) == (2, 1, 1)
    assert [(e.row, e.error) for e in later.rejected] == [(3, "record_conflict")]
    async with db.session() as s:
        for row in (shared, own, clash):
            assert len(await outbox_rows(s, f"violation:{row['record_no']}")) == 1


async def test_bad_rows_are_reported_and_good_rows_kept(db, request):
    async with db.session() as s, s.begin():
        car = await make_vehicle(s)
    future = (now_local() + timedelta(days=1)).isoformat()
    rows = [
        violation_row(car.plate, "1039"),
        violation_row("鲁B0000Z", "1039"),                      # no such vehicle
        violation_row(car.plate, "9999"),                       # no such code
        violation_row(car.plate, "1039", occurred_at=future),
        violation_row(car.plate, "1039", occurred_at="昨天"),
        violation_row(car.plate, "1039", record_no="ABC"),
        violation_row(car.plate, "1039", place=""),
        violation_row(car.plate, "1625", fine=5000),            # over the code's legal range
        violation_row(car.plate, "1039", points="many"),
        "not an object",
        violation_row(car.plate.replace("鲁", "鲁 ").lower(), "1116", fine="100", points="1"),  # CSV-style
    ]
    async with db.session() as s, s.begin():
        result = await outbox.record_violations(s, rows)
    assert (result.accepted, result.unchanged) == (2, 0)
    assert [(e.row, e.field, e.error) for e in result.rejected] == [
        (2, "plate", "unknown_plate"), (3, "code", "unknown_code"), (4, "occurred_at", "in_future"),
        (5, "occurred_at", "bad_time"), (6, "record_no", "bad_record_no"), (7, "place", "missing"),
        (8, "fine", "fine_out_of_range"), (9, "points", "not_integer"), (10, "", "not_an_object")]
    assert result.rejected[0].record_no == rows[1]["record_no"]
    assert all(e.message and not e.message.isascii() for e in result.rejected)  # Chinese for the staff
    async with db.session() as s:
        stored = (await s.execute(select(Violation.record_no, Violation.fine, Violation.points).where(
            Violation.vehicle_id == car.id).order_by(Violation.record_no))).all()
    assert stored == [(rows[0]["record_no"], 150, 0), (rows[10]["record_no"], 100, 1)]


# -- processing and payment ------------------------------------------------------------------------

async def test_status_changes_are_applied_once_and_never_backwards(db):
    async with db.session() as s, s.begin():
        car = await make_vehicle(s)
        a, b = violation_row(car.plate, "1039"), violation_row(car.plate, "1116")
        await outbox.record_violations(s, [a, b])
    now = now_local().replace(microsecond=0)
    processed = {"record_no": a["record_no"], "status": "processed", "decision_no": "3702001234567890",
                 "processed_at": now.isoformat()}
    paid_b = {"record_no": b["record_no"], "status": "paid", "decision_no": "3702009876543210",
              "paid_at": now.isoformat()}
    async with db.session() as s, s.begin():
        first = await outbox.change_violation_status(s, [processed, paid_b])
    async with db.session() as s, s.begin():
        again = await outbox.change_violation_status(s, [
            processed, paid_b,
            {"record_no": b["record_no"], "status": "processed", "decision_no": "3702009876543210"},
            {"record_no": a["record_no"], "status": "paid"},                     # paid without paid_at
            {"record_no": a["record_no"], "status": "paid", "paid_at": now.isoformat(), "decision_no": "X99999"},
            {"record_no": "3799999999999999", "status": "paid", "paid_at": now.isoformat()},
            {"record_no": a["record_no"], "status": "cancelled"}])
    async with db.session() as s, s.begin():
        pay_a = await outbox.change_violation_status(s, [
            {"record_no": a["record_no"], "status": "paid", "paid_at": now.isoformat(), "late_fee": 6}])
    assert (first.accepted, first.unchanged, first.rejected) == (2, 0, [])
    assert (again.accepted, again.unchanged) == (0, 2)
    assert [(e.row, e.field, e.error) for e in again.rejected] == [
        (3, "status", "status_backwards"), (4, "paid_at", "missing"), (5, "decision_no", "decision_conflict"),
        (6, "record_no", "unknown_record"), (7, "status", "bad_status")]
    assert (pay_a.accepted, pay_a.notifications) == (1, 0)
    async with db.session() as s:
        va = (await s.execute(select(Violation).where(Violation.record_no == a["record_no"]))).scalar_one()
        vb = (await s.execute(select(Violation).where(Violation.record_no == b["record_no"]))).scalar_one()
    assert (va.status, va.decision_no, va.processed_at, va.paid_at, va.late_fee) == (
        "paid", "3702001234567890", now, now, 6)
    assert (vb.status, vb.decision_no, vb.processed_at, vb.paid_at) == ("paid", "3702009876543210", now, now)


# -- report decisions ------------------------------------------------------------------------------

async def _report(s, person: Person, channel: str, kind: str = "violation") -> Report:
    return await queries.create_report(s, person_id=person.id, channel=channel, kind=kind, photos=[],
                                       plate="鲁B12345", location=PLACE, description="违停")


async def test_a_decision_reaches_the_reporter_on_subscribed_channels_once(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        reporter = await make_person(s, "wechat", f"o-rep-{t}", phone="13900005001", consent=True)
        for ch in ("wechat", "sms"):
            await queries.subscribe(s, reporter.id, ch, kinds=("report",))
        report = await _report(s, reporter, "wechat")
    async with db.session() as s, s.begin():
        decided = await outbox.decide_report(s, report.report_no, "rejected", "unclear_plate")
    async with db.session() as s, s.begin():
        twice = await outbox.decide_report(s, report.report_no, "rejected", "insufficient_evidence")
    assert (decided.changed, decided.notifications, decided.reason) == (True, 2, "号牌不清晰，无法辨认")
    assert (twice.changed, twice.notifications) == (False, 0)
    async with db.session() as s:
        stored = await s.get(Report, report.id)
        rows = await outbox_rows(s, f"report:{report.report_no}:rejected")
    assert (stored.status, stored.reject_reason) == ("rejected", "号牌不清晰，无法辨认")
    assert stored.decided_at is not None
    assert {(r.channel, r.payload["to"]) for r in rows} == {("wechat", f"o-rep-{t}"), ("sms", "13900005001")}
    assert rows[0].event_kind == "report_decided"
    assert {k: v for k, v in rows[0].payload.items() if k != "to"} == {
        "report_no": report.report_no, "kind": "violation", "status": "rejected", "reason": "号牌不清晰，无法辨认"}
    # On appeal the department may accept after all: a new occasion, a new notice.
    async with db.session() as s, s.begin():
        accepted = await outbox.decide_report(s, report.report_no, "accepted")
    assert (accepted.changed, accepted.notifications, accepted.reason) == (True, 2, None)


async def test_an_unsubscribed_reporter_hears_back_where_the_report_came_in(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        reporter = await make_person(s, "telegram", f"tg-rep-{t}")
        report = await _report(s, reporter, "telegram", kind="facility")
        quiet = await make_person(s, "sms", "13900005002", blocked=True)
        quiet_report = await _report(s, quiet, "sms")
    async with db.session() as s, s.begin():
        decided = await outbox.decide_report(s, report.report_no, "rejected", "视频不足 5 秒，无法认定")
        fixed = await outbox.decide_report(s, report.report_no, "fixed")
        muted = await outbox.decide_report(s, quiet_report.report_no, "accepted")
    assert (decided.notifications, fixed.notifications, muted.notifications) == (1, 1, 0)
    async with db.session() as s:
        [row] = await outbox_rows(s, f"report:{report.report_no}:rejected")
        [done] = await outbox_rows(s, f"report:{report.report_no}:fixed")
    assert (row.channel, row.payload["to"], row.payload["reason"]) == ("telegram", f"tg-rep-{t}", "视频不足 5 秒，无法认定")
    assert (done.payload["status"], done.payload["reason"]) == ("fixed", None)


async def test_decisions_that_cannot_be_made_change_nothing(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        reporter = await make_person(s, "weibo", f"wb-rep-{t}")
        report = await _report(s, reporter, "weibo")
    for status, reason, error in [("rejected", None, "missing_reason"), ("rejected", "  ", "missing_reason"),
                                  ("fixed", None, "fixed_only_for_facility"), ("maybe", None, "bad_status"),
                                  ("rejected", "长" * 201, "reason_too_long")]:
        async with db.session() as s, s.begin():
            with pytest.raises(outbox.DecisionError) as refused:
                await outbox.decide_report(s, report.report_no, status, reason)
        assert refused.value.error == error
    async with db.session() as s, s.begin():
        with pytest.raises(outbox.DecisionError) as unknown:
            await outbox.decide_report(s, "R209901010001", "accepted")
    assert unknown.value.error == "unknown_report"
    async with db.session() as s:
        assert (await s.get(Report, report.id)).status == "received"
        assert (await s.execute(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.event_key.like(f"report:{report.report_no}:%")))).scalar_one() == 0


# -- reminders ---------------------------------------------------------------------------------------

async def _licence(s, n: int, *, points: int, expires_in: int, cycle_days_ago: int = 100) -> Licence:
    today = now_local().date()
    licence = Licence(licence_no=f"37029919900101{n % 10000:04d}", file_no=f"3799{n % 10**8:08d}",
                      holder_name="测试人", holder_phone="19900090000", licence_class="C1",
                      first_issued=today - timedelta(days=3000), cycle_start=today - timedelta(days=cycle_days_ago),
                      points=points, expires_on=today + timedelta(days=expires_in), status="valid")
    s.add(licence)
    await s.flush()
    return licence


async def test_reminders_are_written_once_per_occasion(db, request):
    t = tag(request)
    today = now_local().date()
    async with db.session() as s, s.begin():
        soon = await make_vehicle(s, inspection_due=today + timedelta(days=10))
        later = await make_vehicle(s, inspection_due=today + timedelta(days=45))
        driver = await make_person(s, "wechat", f"o-remind-{t}", email="driver@example.com")
        await follow(s, driver, soon, ["wechat", "email"], kind="inspection")
        await follow(s, driver, later, ["wechat"], kind="inspection")
        watcher = await make_person(s, "telegram", f"tg-remind-{t}")
        await follow(s, watcher, soon, ["telegram"], kind="violation")  # not subscribed to inspections
        expiring = await _licence(s, next(_serial), points=9, expires_in=60)
        old_cycle = await _licence(s, next(_serial), points=10, expires_in=2000, cycle_days_ago=400)
        for licence in (expiring, old_cycle):
            await queries.bind_licence(s, driver.id, licence.id)
        await queries.subscribe(s, driver.id, "wechat", kinds=("licence",))
    async with db.session() as s, s.begin():
        with statements(db) as seen:
            first = await outbox.due_reminders(s, today)
    async with db.session() as s, s.begin():
        second = await outbox.due_reminders(s, today)
    assert second == {"inspection_due": 0, "licence_expiring": 0, "points_high": 0}
    assert first["inspection_due"] >= 2 and first["licence_expiring"] >= 1 and first["points_high"] >= 1
    assert seen.count("SELECT") <= 12  # a fixed number of set-based queries
    async with db.session() as s:
        inspection = await outbox_rows(s, f"inspection:{soon.plate}:{soon.inspection_due.isoformat()}")
        assert await outbox_rows(s, f"inspection:{later.plate}:{later.inspection_due.isoformat()}") == []
        licence = await outbox_rows(s, f"licence:{expiring.id}:{expiring.expires_on.isoformat()}")
        points = await outbox_rows(s, f"points:{expiring.id}:{expiring.cycle_start.isoformat()}")
        assert await outbox_rows(s, f"points:{old_cycle.id}:{old_cycle.cycle_start.isoformat()}") == []
    assert {(r.person_id, r.channel, r.payload["to"]) for r in inspection} == {
        (driver.id, "wechat", f"o-remind-{t}"), (driver.id, "email", "driver@example.com")}
    assert inspection[0].payload["due_on"] == soon.inspection_due.isoformat()
    assert [r.event_kind for r in licence + points] == ["licence_expiring", "points_high"]
    assert licence[0].payload["licence_no_masked"] == expiring.licence_no[:4] + "*" * 12 + expiring.licence_no[-2:]
    assert points[0].payload["points"] == 9
    assert points[0].payload["cycle_end"] == outbox.cycle_end(expiring.cycle_start).isoformat()
    # A new occasion (the inspection date moved on a year) is a new reminder.
    async with db.session() as s, s.begin():
        await s.execute(update(Vehicle).where(Vehicle.id == soon.id).values(inspection_due=today + timedelta(days=20)))
        third = await outbox.due_reminders(s, today)
    assert third["inspection_due"] == 2


async def test_blocked_wechat_identity_gets_no_reminder(db, request):
    t = tag(request)
    today = now_local().date()
    async with db.session() as s, s.begin():
        car = await make_vehicle(s, inspection_due=today + timedelta(days=5))
        gone = await make_person(s, "wechat", f"o-gone-{t}", blocked=True)
        await follow(s, gone, car, ["wechat"], kind="inspection")
        await outbox.due_reminders(s, today)
        assert await outbox_rows(s, f"inspection:{car.plate}:{car.inspection_due.isoformat()}") == []
        identity = (await s.execute(select(ChannelIdentity).where(
            ChannelIdentity.external_id == f"o-gone-{t}"))).scalar_one()
        assert identity.blocked
