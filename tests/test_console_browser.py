"""The staff console in headless Chromium (Debian's chromium + chromium-driver via Selenium): sign
in, accept one report and reject another and see the reporters' stand-in platforms receive the
outcome (the real dispatcher, in process, with the real senders pointed at the stand-ins); take a
hand-off (a real Rasa server pauses), reply, and see the user's WeChat receive it; the dashboard's
figures against the database. A screenshot of every page goes to var/screenshots/ (or
JJ_SCREENSHOTS)."""
from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from actions.records import queries
from actions.records.clock import now_local
from actions.records.db import Database
from actions.records.models import ChannelIdentity, Handoff, OutboxMessage, Person
from bots.config import BotSettings
from bots.senders.factory import make_dispatcher
from console.app import make_app
from console.settings import ConsoleSettings
from tests.conftest import REQUIRED, fresh_database
from tests.support import browser
from tests.support.background import BackgroundServer
from tests.support.console_client import add_account
from tests.test_dispatcher import bot_env

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("JJ_SCREENSHOTS") or ROOT / "var" / "screenshots")

why_not = browser.missing()
if why_not:
    if REQUIRED:
        pytest.fail(f"browser tests are required here (CI): {why_not}", pytrace=False)
    pytest.skip(why_not, allow_module_level=True)

from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def submit(driver, element_id: str, by: str = By.ID) -> None:
    """Click a button or link and wait until the next page has replaced this one and loaded.

    The old page is marked in its window object, which a new page starts without. (Waiting for its
    html element to go stale raced: Chromium 156 may answer "Node with given id does not belong to
    the document" mid-navigation, an error Selenium's staleness check does not expect.)"""
    driver.execute_script("window.jjOldPage = true")
    driver.find_element(by, element_id).click()
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return window.jjOldPage === undefined && document.readyState === 'complete'"))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from scripts.stack import prepare_database

    url, drop = fresh_database("sqlite", tmp_path_factory.mktemp("console-browser"))
    prepare_database(url, vehicles=200)
    yield url
    drop()


@pytest.fixture(scope="module")
def rasa(tmp_path_factory):
    from tests.support.rasa_api import RasaAPI, newest_model

    model = newest_model()
    if model is None:
        if REQUIRED:
            pytest.fail("no trained Rasa model in models/ (scripts/train.py)")
        pytest.skip("no trained Rasa model in models/: the hand-off test needs a real Rasa server")
    with RasaAPI(model, tmp_path_factory.mktemp("rasa")) as server:
        yield server


def serve(records: str, rasa=None) -> BackgroundServer:
    settings = ConsoleSettings(database_url=records, session_minutes=30,
                               rasa_url=rasa.url if rasa else None, rasa_token=rasa.token if rasa else None)
    return BackgroundServer(make_app(settings)).start()


@pytest.fixture(scope="module")
def shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield SHOTS
    print(f"\nconsole screenshots: {SHOTS}")


@pytest.fixture(scope="module")
def chrome():
    driver = browser.start()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def supervisor(records):
    return add_account(records, "supervisor")


def sign_in(driver, base: str, account) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "username").send_keys(account[0])
    driver.find_element(By.ID, "password").send_keys(account[1])
    submit(driver, "sign-in")
    assert driver.current_url.endswith("/reports"), (driver.current_url, driver.page_source[:1500])


async def person(db: Database, channel: str, external_id: str, phone: str | None = None) -> int:
    now = now_local()
    async with db.session() as s, s.begin():
        p = Person(created_at=now, phone=phone, sms_consent=phone is not None)
        s.add(p)
        await s.flush()
        s.add(ChannelIdentity(person_id=p.id, channel=channel, external_id=external_id, created_at=now,
                              last_seen_at=now))
        return p.id


async def deliver(db: Database, platforms, url: str, keys: list[str]) -> None:
    """The real dispatcher with the real senders, pointed at the stand-ins, until the rows are sent."""
    dispatcher = make_dispatcher(BotSettings.from_env(bot_env(platforms, url)), db)
    try:
        for _ in range(20):
            await dispatcher.dispatch_once()
            async with db.session() as s:
                statuses = (await s.execute(select(OutboxMessage.status).where(
                    OutboxMessage.event_key.in_(keys)))).scalars().all()
            if len(statuses) == len(keys) and set(statuses) == {"sent"}:
                return
        raise AssertionError(f"not delivered: {statuses}")
    finally:
        await dispatcher.close()


def openid() -> str:
    return "o" + secrets.token_hex(13)


async def test_unauthenticated_browser_is_sent_to_sign_in(records, chrome, shots):
    server = serve(records)
    try:
        chrome.delete_all_cookies()
        for path in ("/dashboard", "/audit", "/handoffs"):
            chrome.get(server.url + path)
            assert chrome.current_url == f"{server.url}/login"
        browser.screenshot(chrome, shots, "01-login")
    finally:
        server.stop()


async def test_accept_and_reject_reach_the_reporters(records, chrome, shots, supervisor, platforms):
    db = Database(records)
    server = serve(records)
    try:
        wx, phone = openid(), "139" + "".join(str(secrets.randbelow(10)) for _ in range(8))
        wx_person, sms_person = await person(db, "wechat", wx), await person(db, "sms", phone, phone)
        async with db.session() as s, s.begin():
            good = (await queries.create_report(
                s, person_id=wx_person, channel="wechat", kind="violation", violation_type="闯红灯", plate="鲁B7K2Q8",
                location="香港中路与燕儿岛路路口", latitude="36.0621", longitude="120.3852",
                photos=["https://media.example.cn/r/1.jpg"])).report_no
            bad = (await queries.create_report(
                s, person_id=sms_person, channel="sms", kind="violation", violation_type="违停", plate="鲁B",
                location="香港中路与燕儿岛路路口", latitude="36.0623", longitude="120.3850", photos=[])).report_no
        sign_in(chrome, server.url, supervisor)
        browser.screenshot(chrome, shots, "02-review-queue")
        assert good in chrome.page_source and bad in chrome.page_source

        submit(chrome, good, By.LINK_TEXT)
        assert "附近的相似举报（1）" in chrome.page_source  # the other report, 20-odd metres away
        browser.screenshot(chrome, shots, "03-report")
        submit(chrome, "accept")
        assert "已处理：已采纳" in chrome.find_element(By.ID, "done").text

        chrome.get(f"{server.url}/reports/{bad}")
        Select(chrome.find_element(By.ID, "reason")).select_by_value("unclear_plate")
        submit(chrome, "reject")
        assert chrome.find_element(By.ID, "status").text == "未采纳"
        browser.screenshot(chrome, shots, "04-report-rejected")

        await deliver(db, platforms, records, [f"report:{good}:accepted", f"report:{bad}:rejected"])
        template = [m for m in platforms.wechat.messages_to(wx) if m.kind == "template"]
        assert len(template) == 1
        fields = {k: v["value"] for k, v in template[0].body["data"].items()}
        assert (fields["character_string1"], fields["phrase3"]) == (good, "已采纳")
        texts = [m.text for m in platforms.aliyun.outbox.to(phone)]
        assert len(texts) == 1 and bad in texts[0] and "未采纳" in texts[0] and "号牌不清晰" in texts[0]

        chrome.get(f"{server.url}/audit")
        assert "staff_accept_report" in chrome.page_source and "staff_reject_report" in chrome.page_source
        browser.screenshot(chrome, shots, "05-audit")
        chrome.get(f"{server.url}/accounts")
        assert supervisor[0] in chrome.page_source
        browser.screenshot(chrome, shots, "06-accounts")
    finally:
        server.stop()
        await db.dispose()


async def test_reply_to_a_handoff_reaches_the_user(records, chrome, shots, supervisor, platforms, rasa):
    db = Database(records)
    server = serve(records, rasa)
    try:
        wx = openid()
        pid = await person(db, "wechat", wx)
        async with db.session() as s, s.begin():
            handoff_id = (await queries.open_handoff(s, pid, "wechat", wx, "我要投诉，转人工")).id
        rasa.events(wx, [{"event": "user", "text": "我要投诉，转人工", "parse_data": {"intent": {"name": "human_handoff"}}},
                         {"event": "bot", "text": "已为您转接人工客服，您的对话已标记给值班民警。"}])
        sign_in(chrome, server.url, supervisor)
        chrome.get(f"{server.url}/handoffs")
        browser.screenshot(chrome, shots, "07-handoff-inbox")
        submit(chrome, str(handoff_id), By.LINK_TEXT)
        assert "我要投诉，转人工" in chrome.find_element(By.ID, "transcript").text
        submit(chrome, "take")
        assert chrome.find_element(By.ID, "handoff-status").text == "人工处理中"
        assert rasa.tracker(wx)["paused"] is True

        reply = "您好，我是值班民警，您的投诉已登记，我们将在三个工作日内联系您。"
        chrome.find_element(By.ID, "reply-text").send_keys(reply)
        submit(chrome, "reply")
        await deliver(db, platforms, records, [f"reply:{handoff_id}:1"])
        custom = [m for m in platforms.wechat.messages_to(wx) if m.kind == "custom"]
        assert [m.text for m in custom] == [reply]
        chrome.refresh()
        assert "已送达" in chrome.find_element(By.ID, "transcript").text
        browser.screenshot(chrome, shots, "08-handoff")

        submit(chrome, "close")
        assert chrome.find_element(By.ID, "handoff-status").text == "已结束"
        assert rasa.tracker(wx)["paused"] is False
        async with db.session() as s:
            h = await s.get(Handoff, handoff_id)
        assert (h.status, h.taken_by) == ("closed", supervisor[0]) and h.closed_at is not None
    finally:
        server.stop()
        await db.dispose()


async def test_dashboard_shows_the_database_figures(records, chrome, shots, supervisor):
    db = Database(records)
    server = serve(records)
    try:
        sign_in(chrome, server.url, supervisor)
        chrome.get(f"{server.url}/dashboard?days=30")
        browser.screenshot(chrome, shots, "09-dashboard")
        since = (now_local() - timedelta(days=29)).replace(hour=0, minute=0, second=0)
        async with db.session() as s:
            total = (await s.execute(text("SELECT count(*) FROM reports WHERE created_at >= :s"), {"s": since})).scalar()
            taken = (await s.execute(text("SELECT count(*) FROM reports WHERE created_at >= :s AND status IN "
                                          "('accepted','dispatched','fixed')"), {"s": since})).scalar()
            decided = (await s.execute(text("SELECT count(*) FROM reports WHERE created_at >= :s AND "
                                            "status <> 'received'"), {"s": since})).scalar()
            codes = (await s.execute(text("SELECT code, count(*) AS n FROM violations WHERE occurred_at >= :s "
                                          "GROUP BY code ORDER BY n DESC, code LIMIT 1"), {"s": since})).first()
        assert chrome.find_element(By.ID, "reports-total").text == str(total)
        assert chrome.find_element(By.ID, "taken-up").text == str(taken)
        assert chrome.find_element(By.ID, "decided").text == str(decided)
        if decided:
            assert chrome.find_element(By.ID, "acceptance").text == f"{taken / decided * 100:.1f}%"
        if codes:
            first = chrome.find_elements(By.CSS_SELECTOR, "#codes li")[0].text
            assert first.startswith(codes[0]) and first.endswith(f"：{codes[1]}")
        assert len(chrome.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 5

        # Appointments: the calendar, and a confirmation from it.
        async with db.session() as s, s.begin():
            pid = (await s.execute(select(Person.id).limit(1))).scalar()
            await queries.ensure_slots(s, days=10)
            slot = (await queries.open_slots(s, "violation", limit=1))[0]
            number = (await queries.book(s, person_id=pid, slot_id=slot.id, kind="violation",
                                         phone="13912345678")).appointment_no
        chrome.get(f"{server.url}/appointments")
        submit(chrome, f"confirm-{number}")
        assert "已确认" in chrome.find_element(By.ID, "done").text
        browser.screenshot(chrome, shots, "10-appointments")
    finally:
        server.stop()
        await db.dispose()
