"""The records queries, on each database backend (SQLite always, PostgreSQL when reachable)."""
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from actions.records import demo, queries
from actions.records.clock import now_local
from actions.records.db import Database
from actions.records.models import AuditEntry, ChannelIdentity, Vehicle, Violation
from actions.records.plates import is_valid_vin, parse_plate


@pytest.fixture
async def db(seeded_url):
    database = Database(seeded_url)
    yield database
    await database.dispose()


async def test_fixture_vehicle_and_its_unprocessed_violations(db):
    async with db.session() as s:
        car = await queries.vehicle_by_plate(s, "鲁B12345")
        rows = await queries.unprocessed_violations(s, car.id)
    assert car.owner_name == "张晓明"
    assert car.vin.endswith("672418") and car.engine_no.endswith("719034")
    assert sorted(r.code for r in rows) == ["1039", "1223", "1625"]
    assert all(r.status == "unprocessed" for r in rows)
    assert [r.occurred_at for r in rows] == sorted((r.occurred_at for r in rows), reverse=True)
    red_light = next(r for r in rows if r.code == "1625")
    assert (red_light.points, red_light.fine, red_light.behaviour) == (6, 200, "闯红灯")


async def test_vehicle_without_unprocessed_violations(db):
    async with db.session() as s:
        car = await queries.vehicle_by_plate(s, "鲁B88888")
        assert await queries.unprocessed_violations(s, car.id) == []
        paid = (await s.execute(select(func.count()).select_from(Violation)
                                .where(Violation.vehicle_id == car.id))).scalar_one()
    assert paid == 2


async def test_unknown_plate(db):
    async with db.session() as s:
        assert await queries.vehicle_by_plate(s, "鲁B00000X") is None


async def test_proof_is_last_six_of_vin_or_engine_number(db):
    async with db.session() as s:
        car = await queries.vehicle_by_plate(s, "鲁B12345")
    assert queries.proof_matches(car, "672418", 6)
    assert queries.proof_matches(car, "719034", 6)
    assert not queries.proof_matches(car, "672419", 6)
    assert not queries.proof_matches(car, "72418", 6)
    assert not queries.proof_matches(car, "", 6)


async def test_person_for_is_stable_per_channel_identity(db):
    async with db.session() as s, s.begin():
        first = await queries.person_for(s, "wechat", "o_same_user")
    async with db.session() as s, s.begin():
        again = await queries.person_for(s, "wechat", "o_same_user")
        other = await queries.person_for(s, "sms", "o_same_user")
    assert first.id == again.id != other.id
    async with db.session() as s:
        n = (await s.execute(select(func.count()).select_from(ChannelIdentity)
                             .where(ChannelIdentity.external_id == "o_same_user"))).scalar_one()
    assert n == 2


async def test_lock_out_after_the_limit_and_when_it_lifts(db):
    policy = queries.ProofPolicy(max_failures_per_person=3, max_failures_per_subject=10,
                                 window=timedelta(minutes=60))
    t0 = now_local() - timedelta(minutes=30)
    async with db.session() as s, s.begin():
        person = await queries.person_for(s, "wechat", "o_guesser")
        for i in range(2):
            await queries.record_proof_attempt(s, person.id, "vehicle", "鲁B12345", False,
                                               at=t0 + timedelta(minutes=i))
        assert await queries.proof_locked_until(s, person.id, "鲁B12345", policy) is None
        assert await queries.failures_left(s, person.id, policy) == 1
        await queries.record_proof_attempt(s, person.id, "vehicle", "鲁B12345", False,
                                           at=t0 + timedelta(minutes=2))
        until = await queries.proof_locked_until(s, person.id, "鲁B12345", policy)
        # The lock lifts when the oldest of the three failures leaves the 60-minute window.
        assert until == t0 + timedelta(minutes=60)
        # A successful proof does not count against anyone.
        await queries.record_proof_attempt(s, person.id, "vehicle", "鲁B12345", True)
        later = t0 + timedelta(minutes=61)
        assert await queries.proof_locked_until(s, person.id, "鲁B12345", policy, now=later) is None


async def test_lock_out_per_plate_across_people(db):
    policy = queries.ProofPolicy(max_failures_per_person=100, max_failures_per_subject=4)
    async with db.session() as s, s.begin():
        people = [await queries.person_for(s, "wechat", f"o_ring_{i}") for i in range(4)]
        for p in people:
            await queries.record_proof_attempt(s, p.id, "vehicle", "鲁BD12345", False)
        newcomer = await queries.person_for(s, "wechat", "o_ring_new")
        assert await queries.proof_locked_until(s, newcomer.id, "鲁BD12345", policy) is not None
        assert await queries.proof_locked_until(s, newcomer.id, "鲁B88888", policy) is None


async def test_audit_log_is_append_only(db):
    async with db.session() as s, s.begin():
        await queries.audit(s, person_id=None, channel="wechat", sender_id="o_auditor",
                            action="disclose_violations", subject="鲁B12345", detail={"records": ["1"]})
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.session() as s, s.begin():
            await s.execute(update(AuditEntry).values(subject="x"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.session() as s, s.begin():
            await s.execute(text("DELETE FROM audit_log"))
    async with db.session() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.sender_id == "o_auditor"))).scalars().all()
    assert len(rows) == 1 and rows[0].subject == "鲁B12345"


async def test_sql_in_a_plate_is_just_a_plate(db):
    async with db.session() as s:
        assert await queries.vehicle_by_plate(s, "鲁B12345' OR '1'='1") is None
        assert (await s.execute(select(func.count()).select_from(Vehicle))).scalar_one() == 400


async def test_plates_are_unique(db):
    with pytest.raises(IntegrityError):
        async with db.session() as s, s.begin():
            s.add(Vehicle(plate="鲁B12345", plate_type="02", vin="X" * 17, engine_no="1", vehicle_type="小型轿车",
                          use_nature="非营运", seats=5, owner_name="测试", owner_phone="1", registered_on=date.today(),
                          inspection_due=date.today()))


def test_demo_data_is_realistic_and_repeatable():
    codes = demo.load_codes()
    a = demo.build(7, 1500, 300, date(2026, 11, 21), codes)
    b = demo.build(7, 1500, 300, date(2026, 11, 21), codes)
    assert a == b
    assert len(codes) >= 30 and all(c["points"] in (0, 1, 3, 6, 9, 12) for c in codes)
    assert len(a["vehicles"]) == 1500 and len(a["violations"]) > 1500
    plates = [v["plate"] for v in a["vehicles"]]
    assert len(set(plates)) == len(plates)
    assert all(parse_plate(p) is not None for p in plates)
    assert sum(parse_plate(p).kind.startswith("new_energy") for p in plates) > 150
    assert all(is_valid_vin(v["vin"]) for v in a["vehicles"])
    assert all(v["owner_phone"].startswith("1990000") for v in a["vehicles"])
    assert {v["status"] for v in a["violations"]} == {"unprocessed", "processed", "paid"}
    assert demo.build(8, 1500, 300, date(2026, 11, 21), codes)["vehicles"] != a["vehicles"]


def test_reference_codes_follow_the_2022_points_rules():
    by_code = {c["code"]: c for c in demo.load_codes()}
    expected = {"1625": 6, "1039": 0, "1116": 1, "1117": 1, "1223": 3, "1357": 3, "1622": 6,
                "1712": 12, "1709": 9, "1340": 1, "1019": 0}
    assert {code: by_code[code]["points"] for code in expected} == expected
