"""The staff console over real HTTP on loopback, on SQLite and PostgreSQL: sessions (none, expired,
disabled account), CSRF, roles, report decisions and hand-off replies written to the outbox and
the audit log, appointments, and the dashboard's figures against SQL counts of the same data."""
from __future__ import annotations

import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import ClientSession
from sqlalchemy import select, text, update

from actions.records import queries
from actions.records.clock import now_local
from actions.records.db import Database
from actions.records.models import (Appointment, AppointmentSlot, AuditEntry, ChannelIdentity, Handoff,
                                    OutboxMessage, Person, Report, StaffSession)
from console.app import make_app
from console.settings import ConsoleConfigError, ConsoleSettings
from tests.support.background import BackgroundServer
from tests.support.console_client import add_account, create_account, csrf_of, signed_in

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["/reports", "/reports/R202401010001", "/handoffs", "/handoffs/1", "/appointments", "/dashboard",
         "/audit", "/accounts", "/"]
APIS = ["/api/dashboard", "/api/audit"]


@pytest.fixture(scope="module")
def console(seeded_url):
    settings = ConsoleSettings(database_url=seeded_url, session_minutes=30)
    with BackgroundServer(make_app(settings)) as server:
        server.db_url = seeded_url
        yield server


@pytest.fixture(scope="module")
def reviewer(console):
    return add_account(console.db_url, "reviewer")


@pytest.fixture(scope="module")
def supervisor(console):
    return add_account(console.db_url, "supervisor")


@pytest.fixture
async def db(console):
    database = Database(console.db_url)
    yield database
    await database.dispose()


async def new_person(db: Database, channel: str, external_id: str, seen_ago: timedelta = timedelta(0)) -> int:
    now = now_local()
    async with db.session() as s, s.begin():
        person = Person(created_at=now, phone=external_id if channel == "sms" else None, sms_consent=channel == "sms")
        s.add(person)
        await s.flush()
        s.add(ChannelIdentity(person_id=person.id, channel=channel, external_id=external_id, created_at=now,
                              last_seen_at=now - seen_ago))
        return person.id


async def new_report(db: Database, person_id: int, channel: str, kind: str = "violation", **fields) -> str:
    fields.setdefault("location", f"香港中路{secrets.randbelow(900) + 100}号")
    async with db.session() as s, s.begin():
        report = await queries.create_report(s, person_id=person_id, channel=channel, kind=kind,
                                             photos=["https://media.example.cn/p/1.jpg"], **fields)
        return report.report_no


def openid() -> str:
    return "o" + secrets.token_hex(13)


# -- sessions, CSRF, roles ------------------------------------------------------------------------

def test_settings_name_the_bad_variable():
    for env, name in [({"JJ_CONSOLE_PORT": "80x"}, "JJ_CONSOLE_PORT"),
                      ({"JJ_CONSOLE_SESSION_MINUTES": "0"}, "JJ_CONSOLE_SESSION_MINUTES"),
                      ({"RASA_URL": "ftp://x"}, "RASA_URL"), ({"JJ_DATABASE_URL": "mysql://x/y"}, "JJ_DATABASE_URL")]:
        with pytest.raises(ConsoleConfigError, match=name):
            ConsoleSettings.from_env(env)
    assert ConsoleSettings.from_env({}).port == 8095


async def test_nothing_answers_without_a_session(console):
    async with ClientSession() as http:
        for path in PAGES:
            async with http.get(console.url + path, allow_redirects=False) as res:
                assert res.status == 303 and res.headers["Location"] == "/login", path
        for path in APIS:
            async with http.get(console.url + path) as res:
                assert res.status == 401, path
                assert "reports_total" not in await res.text()
        async with http.post(console.url + "/reports/R202401010001/decide", data={"status": "accepted"}) as res:
            assert res.status == 401
        async with http.get(console.url + "/reports", cookies={"jj_console_session": "forged-token"},
                            allow_redirects=False) as res:
            assert res.status == 303
        async with http.get(console.url + "/login") as res:
            assert res.status == 200 and "登录" in await res.text()


async def test_wrong_password_and_login_without_csrf_are_refused(console, reviewer):
    async with ClientSession() as http:
        async with http.post(console.url + "/login", data={"username": reviewer[0], "password": reviewer[1]},
                             allow_redirects=False) as res:
            assert res.status == 403
    http, _ = await signed_in(console.url, *reviewer)
    await http.close()
    from aiohttp import CookieJar
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        async with http.get(console.url + "/login") as res:
            token = csrf_of(await res.text())
        async with http.post(console.url + "/login", data={"_csrf": token, "username": reviewer[0],
                                                            "password": reviewer[1] + "x"}, allow_redirects=False) as res:
            assert res.status == 401 and "用户名或密码错误" in await res.text()


async def test_an_expired_session_is_refused(console, reviewer, db):
    http, _ = await signed_in(console.url, *reviewer)
    try:
        async with db.session() as s, s.begin():
            await s.execute(update(StaffSession).values(expires_at=now_local() - timedelta(seconds=1))
                            .where(StaffSession.expires_at > now_local() + timedelta(minutes=29)))
        async with http.get(console.url + "/reports", allow_redirects=False) as res:
            assert res.status == 303 and res.headers["Location"] == "/login"
        async with http.get(console.url + "/api/dashboard") as res:
            assert res.status == 401
    finally:
        await http.close()


async def test_csrf_missing_or_wrong_is_refused(console, reviewer, db):
    pid = await new_person(db, "wechat", openid())
    number = await new_report(db, pid, "wechat")
    http, csrf = await signed_in(console.url, *reviewer)
    try:
        for data in ({"status": "accepted"}, {"status": "accepted", "_csrf": csrf[:-2] + "xx"},
                     {"status": "accepted", "_csrf": csrf[:-2] + "令牌"}):  # non-ASCII: refused, not a 500
            async with http.post(f"{console.url}/reports/{number}/decide", data=data, allow_redirects=False) as res:
                assert res.status == 403
        async with http.post(f"{console.url}/logout", allow_redirects=False) as res:
            assert res.status == 403  # even signing out needs the token
        async with db.session() as s:
            assert (await s.execute(select(Report.status).where(Report.report_no == number))).scalar() == "received"
            assert not (await s.execute(select(OutboxMessage).where(
                OutboxMessage.event_key.like(f"report:{number}:%")))).all()
    finally:
        await http.close()


async def test_a_reviewer_cannot_see_the_audit_log_or_manage_accounts(console, reviewer, supervisor):
    http, csrf = await signed_in(console.url, *reviewer)
    try:
        for path in ("/audit", "/api/audit", "/accounts"):
            async with http.get(console.url + path) as res:
                assert res.status == 403, path
        async with http.post(f"{console.url}/accounts/{supervisor[0]}/disable", data={"_csrf": csrf},
                             allow_redirects=False) as res:
            assert res.status == 403
        async with http.get(console.url + "/reports") as res:
            assert "审计日志" not in await res.text()
    finally:
        await http.close()
    http, _ = await signed_in(console.url, *supervisor)
    try:
        for path in ("/audit", "/api/audit", "/accounts"):
            async with http.get(console.url + path) as res:
                assert res.status == 200, path
    finally:
        await http.close()


async def test_a_disabled_account_loses_its_session(console, supervisor):
    victim = await create_account(console.db_url, "reviewer")
    http, _ = await signed_in(console.url, *victim)
    boss, csrf = await signed_in(console.url, *supervisor)
    try:
        async with boss.post(f"{console.url}/accounts/{victim[0]}/disable", data={"_csrf": csrf},
                             allow_redirects=False) as res:
            assert res.status == 303
        async with http.get(console.url + "/reports", allow_redirects=False) as res:
            assert res.status == 303
        async with boss.get(console.url + "/api/audit") as res:
            entries = await res.json()
        assert any(e["action"] == "staff_disable_account" and e["subject"] == victim[0]
                   and e["sender_id"] == supervisor[0] for e in entries)
    finally:
        await http.close()
        await boss.close()


# -- decisions --------------------------------------------------------------------------------------

async def test_decisions_write_outbox_rows_and_audit_entries(console, reviewer, db):
    oid = openid()
    pid = await new_person(db, "wechat", oid)
    accepted, rejected = await new_report(db, pid, "wechat"), await new_report(db, pid, "wechat")
    facility = await new_report(db, pid, "wechat", kind="facility", facility_type="signal")
    http, csrf = await signed_in(console.url, *reviewer)
    try:
        async with http.get(f"{console.url}/reports/{accepted}") as res:
            page = await res.text()
        assert "香港中路" in page and "采纳 0 / 共 3 件" in page and "media.example.cn" in page
        steps = [(accepted, {"status": "accepted"}), (rejected, {"status": "rejected", "reason": "unclear_plate"}),
                 (facility, {"status": "dispatched"}), (facility, {"status": "fixed"})]
        for number, data in steps:
            async with http.post(f"{console.url}/reports/{number}/decide", data={**data, "_csrf": csrf},
                                 allow_redirects=False) as res:
                assert res.status == 303, await res.text()
        # No reason given: refused, nothing written.
        other = await new_report(db, pid, "wechat")
        async with http.post(f"{console.url}/reports/{other}/decide", data={"status": "rejected", "_csrf": csrf}) as res:
            assert res.status == 409 and "须说明理由" in await res.text()
    finally:
        await http.close()
    async with db.session() as s:
        rows = {r.event_key: r for r in (await s.execute(select(OutboxMessage).where(
            OutboxMessage.person_id == pid))).scalars()}
        audit = (await s.execute(select(AuditEntry).where(AuditEntry.channel == "console",
                                                          AuditEntry.person_id == pid))).scalars().all()
    assert set(rows) == {f"report:{accepted}:accepted", f"report:{rejected}:rejected",
                         f"report:{facility}:dispatched", f"report:{facility}:fixed"}
    assert all(r.channel == "wechat" and r.payload["to"] == oid and r.event_kind == "report_decided"
               for r in rows.values())
    assert rows[f"report:{rejected}:rejected"].payload["reason"] == "号牌不清晰，无法辨认"
    assert sorted((a.action, a.subject) for a in audit) == sorted([
        ("staff_accept_report", accepted), ("staff_reject_report", rejected),
        ("staff_dispatch_report", facility), ("staff_fix_report", facility)])
    assert {a.sender_id for a in audit} == {reviewer[0]}


# -- hand-offs --------------------------------------------------------------------------------------

async def test_handoff_replies_go_to_the_outbox_within_the_channel_rules(console, reviewer, db):
    fresh, stale = openid(), openid()
    ids = {}
    for who, ago in ((fresh, timedelta(minutes=5)), (stale, timedelta(hours=49))):
        pid = await new_person(db, "wechat", who, ago)
        async with db.session() as s, s.begin():
            ids[who] = (await queries.open_handoff(s, pid, "wechat", who, "我要找人工")).id
    http, csrf = await signed_in(console.url, *reviewer)
    try:
        # No Rasa configured here: taking must fail rather than let the assistant talk over staff.
        async with http.post(f"{console.url}/handoffs/{ids[fresh]}/take", data={"_csrf": csrf}) as res:
            assert res.status == 502 and "无法暂停助手" in await res.text()
        async with db.session() as s, s.begin():
            await s.execute(update(Handoff).where(Handoff.id.in_(ids.values())).values(status="taken",
                                                                                      taken_by=reviewer[0]))
        for n in (1, 2):
            async with http.post(f"{console.url}/handoffs/{ids[fresh]}/reply",
                                 data={"_csrf": csrf, "text": f"您好，第{n}条回复"}, allow_redirects=False) as res:
                assert res.status == 303
        async with http.post(f"{console.url}/handoffs/{ids[stale]}/reply",
                             data={"_csrf": csrf, "text": "迟到的回复"}) as res:
            assert res.status == 409 and "48小时" in await res.text()
        async with http.get(f"{console.url}/handoffs/{ids[fresh]}") as res:
            page = await res.text()
        assert "您好，第2条回复" in page and "未配置 RASA_URL" in page
    finally:
        await http.close()
    async with db.session() as s:
        rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.event_kind == "staff_reply",
                                                            OutboxMessage.payload["to"].as_string().in_([fresh, stale]))
                                .order_by(OutboxMessage.id))).scalars().all()
        actions = (await s.execute(select(AuditEntry.action).where(AuditEntry.subject == str(ids[fresh]),
                                                                   AuditEntry.channel == "console"))).scalars().all()
    assert [(r.event_key, r.channel, r.payload["text"]) for r in rows] == [
        (f"reply:{ids[fresh]}:1", "wechat", "您好，第1条回复"), (f"reply:{ids[fresh]}:2", "wechat", "您好，第2条回复")]
    assert actions.count("staff_reply_handoff") == 2


# -- appointments -----------------------------------------------------------------------------------

async def test_confirm_and_move_an_appointment(console, reviewer, db):
    phone = "139" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    pid = await new_person(db, "sms", phone)
    async with db.session() as s, s.begin():
        await queries.ensure_slots(s, days=10)
        slots = await queries.open_slots(s, "violation", limit=3)
        appointment = await queries.book(s, person_id=pid, slot_id=slots[0].id, kind="violation", phone=phone)
        number, first, second = appointment.appointment_no, slots[0].id, slots[1].id
    http, csrf = await signed_in(console.url, *reviewer)
    try:
        async with http.get(f"{console.url}/appointments") as res:
            assert number in await res.text()
        async with http.post(f"{console.url}/appointments/{number}/confirm", data={"_csrf": csrf},
                             allow_redirects=False) as res:
            assert res.status == 303
        async with http.post(f"{console.url}/appointments/{number}/move", data={"_csrf": csrf, "slot_id": second},
                             allow_redirects=False) as res:
            assert res.status == 303
    finally:
        await http.close()
    async with db.session() as s:
        a = (await s.execute(select(Appointment).where(Appointment.appointment_no == number))).scalar_one()
        booked = dict((await s.execute(select(AppointmentSlot.id, AppointmentSlot.booked).where(
            AppointmentSlot.id.in_([first, second])))).all())
        rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.person_id == pid)
                                .order_by(OutboxMessage.id))).scalars().all()
    assert (a.slot_id, a.status) == (second, "confirmed")
    assert [(r.event_kind, r.channel, r.payload["to"], r.payload["change"]) for r in rows] == [
        ("appointment_changed", "sms", phone, "confirmed"), ("appointment_changed", "sms", phone, "moved")]
    assert booked[second] >= 1


# -- dashboard --------------------------------------------------------------------------------------

async def test_dashboard_figures_equal_sql_counts(console, reviewer, db):
    pid = await new_person(db, "weibo", str(10**9 + secrets.randbelow(10**9)))
    for i in range(3):
        await new_report(db, pid, "weibo", kind="facility", facility_type="signal", location="台东三路与威海路路口",
                         latitude=f"36.08{i}", longitude="120.35")
    http, _ = await signed_in(console.url, *reviewer)
    try:
        async with http.get(f"{console.url}/api/dashboard?days=30") as res:
            f = await res.json()
        async with http.get(f"{console.url}/dashboard?days=30") as res:
            page = await res.text()
    finally:
        await http.close()
    since = (now_local() - timedelta(days=29)).replace(hour=0, minute=0, second=0)
    async with db.session() as s:
        async def one(sql: str):
            return (await s.execute(text(sql), {"since": since})).all()
        total = (await one("SELECT count(*) FROM reports WHERE created_at >= :since"))[0][0]
        kinds = dict(await one("SELECT kind, count(*) FROM reports WHERE created_at >= :since GROUP BY kind"))
        taken = (await one("SELECT count(*) FROM reports WHERE created_at >= :since AND status IN "
                           "('accepted','dispatched','fixed')"))[0][0]
        decided = (await one("SELECT count(*) FROM reports WHERE created_at >= :since AND status <> 'received'"))[0][0]
        codes = await one("SELECT code, count(*) AS n FROM violations WHERE occurred_at >= :since GROUP BY code "
                          "ORDER BY n DESC, code LIMIT 10")
        push = await one("SELECT channel, status, count(*) FROM outbox WHERE created_at >= :since GROUP BY channel, status")
        top_place = (await one("SELECT location, count(*) AS n FROM reports WHERE created_at >= :since AND location "
                               "IS NOT NULL GROUP BY location ORDER BY n DESC, location LIMIT 1"))[0]
    assert f["reports_total"] == total and total >= 3
    assert f["reports_by_kind"] == kinds
    assert (f["acceptance"]["taken_up"], f["acceptance"]["decided"]) == (taken, decided)
    assert [[c, n] for c, _, n in f["top_codes"]] == [[c, n] for c, n in codes]
    assert {(ch, st, n) for ch, v in f["push"].items() for st, n in v.items() if st != "rate"} == set(map(tuple, push))
    assert f["hotspots"][0] == [top_place[0], top_place[1]]
    assert sum(sum(d.values()) for _, d in f["reports_by_day"]) == total
    assert len(f["points"]) >= 3
    assert f'id="reports-total">{total}<' in page and page.count("<svg") >= 6


# -- the accounts command ---------------------------------------------------------------------------

def test_accounts_command(console):
    env = {"JJ_DATABASE_URL": console.db_url, "PATH": "/usr/bin:/bin"}
    name = f"cli_{secrets.token_hex(3)}"

    def run(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "console.accounts", *args], cwd=ROOT, env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)

    assert run("add", name, "--role", "supervisor", "--password-stdin", stdin="short\n").returncode == 2
    assert run("add", name, "--role", "supervisor", "--password-stdin", stdin="a-long-password-1\n").returncode == 0
    assert run("add", name, "--role", "reviewer", "--password-stdin", stdin="a-long-password-1\n").returncode == 2
    listed = run("list").stdout
    assert f"{name}\tsupervisor\tactive" in listed
    assert run("disable", name).returncode == 0
    assert f"{name}\tsupervisor\tdisabled" in run("list").stdout
