"""One person across channels: link codes and merging, on each database backend."""
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from actions.records import queries
from actions.records.clock import now_local
from actions.records.db import Database
from actions.records.models import ChannelIdentity, LinkCode, Person


@pytest.fixture
async def db(seeded_url):
    database = Database(seeded_url)
    yield database
    await database.dispose()


async def _person(s, channel, external_id):
    return await queries.person_for(s, channel, external_id)


async def test_a_code_from_one_channel_typed_on_another_makes_one_person(db, request):
    tag = request.node.name[-12:]
    async with db.session() as s, s.begin():
        wechat = await _person(s, "wechat", f"o-link-{tag}")
        car = await queries.vehicle_by_plate(s, "鲁B12345")
        await queries.bind_vehicle(s, wechat.id, car.id)
        await queries.subscribe(s, wechat.id, "wechat")
        code = await queries.issue_link_code(s, wechat.id, "wechat", f"o-link-{tag}")
    async with db.session() as s, s.begin():
        sms = await _person(s, "sms", "13900007001")
        assert sms.phone == "13900007001"  # the gateway verified the sender's number
        other = await queries.vehicle_by_plate(s, "鲁B88888")
        await queries.bind_vehicle(s, sms.id, other.id)
        await queries.subscribe(s, sms.id, "sms", kinds=("violation",))
        outcome = await queries.redeem_link_code(s, sms.id, "sms", "13900007001", code)
    assert (outcome.status, outcome.other_channel, outcome.person_id) == ("linked", "wechat", wechat.id)
    async with db.session() as s:
        via_sms = await _person(s, "sms", "13900007001")
        plates = sorted(v.plate for v in await queries.bound_vehicles(s, via_sms.id))
        subs = {(x.channel, x.alert_kind) for x in await queries.active_subscriptions(s, via_sms.id)}
        merged = await s.get(Person, sms.id)
    assert via_sms.id == wechat.id and via_sms.phone == "13900007001"
    assert plates == ["鲁B12345", "鲁B88888"]
    assert ("sms", "violation") in subs and ("wechat", "report") in subs
    assert merged.merged_into_id == wechat.id
    # The code is spent.
    async with db.session() as s, s.begin():
        again = await queries.redeem_link_code(s, wechat.id, "telegram", "777", code)
    assert again.status == "invalid"


async def test_own_code_wrong_code_and_expired_code_link_nothing(db):
    async with db.session() as s, s.begin():
        a = await _person(s, "weibo", "wb-own-1")
        code = await queries.issue_link_code(s, a.id, "weibo", "wb-own-1")
        assert (await queries.redeem_link_code(s, a.id, "weibo", "wb-own-1", code)).status == "own_code"
        b = await _person(s, "telegram", "tg-own-1")
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        assert (await queries.redeem_link_code(s, b.id, "telegram", "tg-own-1", wrong)).status == "invalid"
        await s.execute(update(LinkCode).where(LinkCode.person_id == a.id)
                        .values(expires_at=now_local() - timedelta(seconds=1)))
        assert (await queries.redeem_link_code(s, b.id, "telegram", "tg-own-1", code)).status == "invalid"
        assert (await _person(s, "telegram", "tg-own-1")).id == b.id != a.id


async def test_a_new_code_replaces_the_old_one_and_codes_are_stored_hashed(db):
    async with db.session() as s, s.begin():
        a = await _person(s, "weibo", "wb-new-1")
        first = await queries.issue_link_code(s, a.id, "weibo", "wb-new-1")
        second = await queries.issue_link_code(s, a.id, "weibo", "wb-new-1")
        stored = (await s.execute(select(LinkCode.code_hash).where(LinkCode.person_id == a.id))).scalars().all()
        b = await _person(s, "sms", "13900007002")
        stale = await queries.redeem_link_code(s, b.id, "sms", "13900007002", first) if first != second else None
        fresh = await queries.redeem_link_code(s, b.id, "sms", "13900007002", second)
    assert first not in stored and second not in stored and len(stored) == 2
    assert stale is None or stale.status == "invalid"
    assert fresh.status == "linked"


async def test_linking_twice_is_already_linked(db):
    async with db.session() as s, s.begin():
        a = await _person(s, "wechat", "o-twice-1")
        code = await queries.issue_link_code(s, a.id, "wechat", "o-twice-1")
        b = await _person(s, "sms", "13900007003")
        assert (await queries.redeem_link_code(s, b.id, "sms", "13900007003", code)).status == "linked"
        b = await _person(s, "sms", "13900007003")
        code = await queries.issue_link_code(s, b.id, "sms", "13900007003")
        a = await _person(s, "wechat", "o-twice-1")
        assert (await queries.redeem_link_code(s, a.id, "wechat", "o-twice-1", code)).status == "already_linked"


async def test_an_sms_opt_out_stays_until_resubscribed(db):
    async with db.session() as s, s.begin():
        await _person(s, "sms", "13900007010")
        await queries.mark_identity_blocked(s, "sms", "13900007010")
        await _person(s, "sms", "13900007010")  # texting again (e.g. asking a question) is not 订阅
        assert await queries.sms_opted_out(s, "13900007010")
        await queries.mark_identity_blocked(s, "sms", "13900007010", blocked=False)
        assert not await queries.sms_opted_out(s, "13900007010")
        assert not await queries.sms_opted_out(s, "13900007099")  # never texted: not opted out
        await _person(s, "wechat", "o-blocked-1")
        await queries.mark_identity_blocked(s, "wechat", "o-blocked-1")
        await _person(s, "wechat", "o-blocked-1")  # writing again on WeChat means following again
        [(blocked,)] = (await s.execute(select(ChannelIdentity.blocked).where(
            ChannelIdentity.external_id == "o-blocked-1"))).all()
        assert blocked is False
