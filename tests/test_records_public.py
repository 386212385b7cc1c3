"""Records queries behind the public's conversations, on each database backend."""
import asyncio
import re

import pytest
from sqlalchemy import update

from actions.records import queries
from actions.records.db import Database
from actions.records.models import AppointmentSlot, Report


@pytest.fixture
async def db(seeded_url):
    database = Database(seeded_url)
    yield database
    await database.dispose()


async def _person(db, name):
    async with db.session() as s, s.begin():
        return (await queries.person_for(s, "wechat", name)).id


async def test_report_numbers_are_unique_under_concurrency(db):
    pid = await _person(db, "o_reporter_many")

    async def one(i):
        async with db.session() as s, s.begin():
            return (await queries.create_report(s, person_id=pid, channel="wechat", kind="facility",
                                                photos=[f"http://x.example/{i}.jpg"], facility_type="signal",
                                                location="香港中路")).report_no

    numbers = await asyncio.gather(*(one(i) for i in range(8)))
    assert len(set(numbers)) == 8 and all(re.fullmatch(r"R\d{12}", n) for n in numbers)


async def test_reports_are_private_and_counted(db):
    me, other = await _person(db, "o_stats_me"), await _person(db, "o_stats_other")
    async with db.session() as s, s.begin():
        mine = [await queries.create_report(s, person_id=me, channel="wechat", kind="violation", photos=[],
                                            plate="鲁B54321") for _ in range(4)]
        theirs = await queries.create_report(s, person_id=other, channel="wechat", kind="violation", photos=[])
        await s.execute(update(Report).where(Report.id.in_([mine[0].id, mine[1].id, theirs.id]))
                        .values(status="accepted"))
    async with db.session() as s:
        assert await queries.report_for(s, me, theirs.report_no) is None
        assert (await queries.report_for(s, me, mine[2].report_no)).report_no == mine[2].report_no
        stats = await queries.report_stats(s, me)
        assert (stats.made, stats.accepted, round(stats.rate, 2)) == (4, 2, 0.5)
        assert stats.rank == 1 and stats.reporters >= 2
        assert (await queries.report_stats(s, other)).rank == 2


async def test_a_slot_is_never_overbooked(db):
    pid = await _person(db, "o_booker")
    async with db.session() as s, s.begin():
        await queries.ensure_slots(s)
        [slot] = await queries.open_slots(s, "accident", limit=1)

    async def attempt(i):
        async with db.session() as s, s.begin():
            return await queries.book(s, person_id=pid, slot_id=slot.id, kind="accident", phone="13900000000")

    results = await asyncio.gather(*(attempt(i) for i in range(6)), return_exceptions=True)
    booked = [r for r in results if r is not None and not isinstance(r, Exception)]
    assert len(booked) == slot.capacity
    async with db.session() as s:
        assert (await s.get(AppointmentSlot, slot.id)).booked == slot.capacity


async def test_subscribe_and_unsubscribe_per_channel(db):
    pid = await _person(db, "o_subscriber")
    async with db.session() as s, s.begin():
        await queries.subscribe(s, pid, "wechat")
        await queries.subscribe(s, pid, "sms")
        await queries.subscribe(s, pid, "sms")  # twice is once
    async with db.session() as s, s.begin():
        assert len(await queries.active_subscriptions(s, pid)) == 8
        assert await queries.unsubscribe(s, pid, "sms") == 4
        assert {x.channel for x in await queries.active_subscriptions(s, pid)} == {"wechat"}
        assert await queries.unsubscribe(s, pid) == 4
        assert await queries.active_subscriptions(s, pid) == []
