"""Attacks on the running service (issue 7), each through the real stack: the Rasa server with the
project's channel connectors and the action server (the `assistant` fixture), the ingest API of
`python -m bots`, and the staff console on the same records. What is checked is what a user or an
operator would see: the HTTP answer, the reply text, what Rasa's tracker received, and the tables.

- forged and replayed webhook signatures on every channel
- WeChat XML with external entities and entity bombs
- bodies over each webhook's limit, declared or chunked, and on the ingest API
- SQL and markup in every free-text field, and in the staff console
- guessing VIN suffixes for one plate from several people on several channels
- asking for someone else's report or appointment by its number
- the ingest API without the right token
"""
from __future__ import annotations

import json
import re
import secrets
import socket
import time
from datetime import datetime
from urllib.parse import urlencode, urlsplit

import pytest
import requests
import xmltodict
from sqlalchemy import func, inspect, select

from actions.records.clock import now_local
from actions.records.db import make_sync_engine
from actions.records.models import (Appointment, AuditEntry, Base, Handoff, ProofAttempt, Report, Vehicle,
                                    Violation)
from channels.sms import SMSConfig
from channels.telegram import TelegramConfig
from channels.wechat import WeChatConfig
from channels.weibo import WeiboConfig
from tests.support.background import BackgroundServer
from tests.support.channel_clients import WeChatClient
from tests.support.console_client import create_account, signed_in
from tests.support.sms_user import twilio_signature
from tests.support.wechat_user import WeChatPlatform, WeChatUser, next_msg_id, signature, text_xml
from tests.test_e2e_channels import client, hooks, person_of, query, user_texts, weibo_platform
from tests.test_e2e_push import bots  # noqa: F401  (fixture: `python -m bots` with its ingest API)
from tests.test_outbox_fanout import violation_row

pytestmark = pytest.mark.e2e

CHANNELS = ["wechat", "weibo", "sms-twilio", "sms-aliyun", "sms-generic", "telegram"]
HOUR = 3600
BUSY = "系统繁忙"


def wechat_user(assistant) -> WeChatUser:
    return WeChatUser(assistant.platform)


def wechat_tracker_texts(assistant, openid: str) -> list[str]:
    return user_texts(assistant, openid)


def table_counts(assistant) -> dict:
    """Every table of the records and its row count: a dropped table or lost rows show here."""
    engine = make_sync_engine(assistant.database_url)
    try:
        names = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                      for t in Base.metadata.sorted_tables if t.name in names}
    finally:
        engine.dispose()
    assert names >= {t.name for t in Base.metadata.sorted_tables}, "a table of the records is missing"
    return counts


def raw_post(url: str, head: dict, body: bytes, timeout: float = 5.0) -> tuple[int, float]:
    """A POST over a bare socket: `head` is sent as is (it may declare a length the body never
    reaches). Returns the status of the answer and the seconds it took (status 0: no answer)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}", "Connection: close",
             *(f"{k}: {v}" for k, v in head.items())]
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        try:
            sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass  # the server may close while we still send: its answer is what counts
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    elapsed = time.monotonic() - started
    found = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return (int(found.group(1)) if found else 0), elapsed


# -- 1. forged and replayed signatures ------------------------------------------------------------

def test_wechat_forged_signatures_are_refused_and_not_processed(assistant):
    p = assistant.platform
    user = wechat_user(assistant)
    xml = text_xml(p.account, user.openid, "查一下鲁B12345的违章", next_msg_id())
    # The query signed with a wrong token.
    forged = WeChatPlatform(p.webhook, "wrongtoken0001", p.app_id, p.aes_key, "safe")
    url, body, _ = forged.sign(xml)
    assert requests.post(url, data=body, timeout=10).status_code == 403
    # Signed with the right token, but sealed with another AES key: not from WeChat.
    other_key = WeChatPlatform(p.webhook, p.token, p.app_id, "B" * 43, "safe")
    url, body, _ = other_key.sign(xml)
    assert requests.post(url, data=body, timeout=10).status_code == 403
    # URL verification with a forged signature does not echo.
    assert forged.verify_url("forged-echo").status_code == 403
    assert wechat_tracker_texts(assistant, user.openid) == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_signatures_that_are_not_even_hex_are_refused_not_crashed(assistant, channel):
    """Non-ASCII (and raw, undecodable) bytes where a signature or secret belongs: a refusal, never
    a 500 from the comparison."""
    base = hooks(assistant)
    ts, nonce = str(int(time.time())), secrets.token_hex(5)
    for forged in ("签名" * 20, "\u00e9" * 40):
        if channel in ("wechat", "weibo"):
            webhook = assistant.platform.webhook if channel == "wechat" else f"{base}/weibo/webhook"
            query_ = urlencode({"signature": forged, "timestamp": ts, "nonce": nonce})
            res = requests.post(f"{webhook}?{query_}", data=b"<xml/>", timeout=10)
            verify = requests.get(f"{webhook}?{query_}&echostr=x", timeout=10)
            assert (res.status_code, verify.status_code) == (403, 403), (forged, res.status_code, verify.status_code)
            continue
        raw = forged.encode()  # sent as raw UTF-8 bytes in a header
        if channel == "sms-aliyun":
            res = requests.post(f"{base}/sms/aliyun/{forged}", json=[], timeout=10)
        elif channel == "sms-generic":
            res = requests.post(f"{base}/sms/generic", data=b"{}", timeout=10,
                                headers={"X-Timestamp": ts, "X-Signature": raw})
            stamp = requests.post(f"{base}/sms/generic", data=b"{}", timeout=10,
                                  headers={"X-Timestamp": raw, "X-Signature": "0" * 64})
            assert stamp.status_code == 403
        elif channel == "sms-twilio":
            res = requests.post(f"{base}/sms/twilio", data=b"From=%2B8613900000000&Body=x", timeout=10,
                                headers={"X-Twilio-Signature": raw,
                                         "Content-Type": "application/x-www-form-urlencoded"})
        else:
            res = requests.post(f"{base}/telegram/webhook", json={"update_id": 1}, timeout=10,
                                headers={"X-Telegram-Bot-Api-Secret-Token": raw})
        assert res.status_code in (401, 403), (channel, forged, res.status_code)


@pytest.mark.parametrize("offset", [-HOUR, HOUR, -24 * HOUR])
def test_wechat_replay_outside_the_clock_skew_is_refused(assistant, offset):
    """A genuinely signed message whose timestamp is an hour (or a day) away: a captured request
    replayed later, or one signed ahead of time."""
    user = wechat_user(assistant)
    xml = text_xml(assistant.platform.account, user.openid, "你好", next_msg_id())
    url, body, _ = assistant.platform.sign(xml, timestamp=int(time.time()) + offset)
    res = requests.post(url, data=body, timeout=10)
    assert res.status_code == 403 and "交警助手" not in res.text
    assert wechat_tracker_texts(assistant, user.openid) == []
    # Verification of the URL with a stale timestamp does not echo either.
    ts, nonce = str(int(time.time()) + offset), secrets.token_hex(5)
    stale = requests.get(assistant.platform.webhook, timeout=10, params={
        "signature": signature(assistant.platform.token, ts, nonce), "timestamp": ts, "nonce": nonce,
        "echostr": "stale-echo"})
    assert stale.status_code == 403 and "stale-echo" not in stale.text


def test_wechat_timestamps_inside_the_skew_are_accepted(assistant):
    """WeChat's servers sign with their own clock: a few minutes off is still a message."""
    skew = WeChatConfig.from_credentials(assistant.channels.wechat.credentials()).max_clock_skew
    user = wechat_user(assistant)
    xml = text_xml(assistant.platform.account, user.openid, "你好", next_msg_id())
    url, body, query_ = assistant.platform.sign(xml, timestamp=int(time.time()) - skew + 60)
    res = requests.post(url, data=body, timeout=15)
    assert res.status_code == 200 and "交警助手" in (assistant.platform.read_reply(res.text, query_) or "")


def test_wechat_exact_replay_inside_the_skew_is_answered_once(assistant):
    user = wechat_user(assistant)
    url, body, query_ = assistant.platform.sign(text_xml(assistant.platform.account, user.openid, "你好",
                                                         next_msg_id()))
    first = requests.post(url, data=body, timeout=15)
    time.sleep(1.0)
    again = requests.post(url, data=body, timeout=15)
    assert first.status_code == 200 and "交警助手" in assistant.platform.read_reply(first.text, query_)
    assert again.status_code == 200 and again.text == "success"
    assert wechat_tracker_texts(assistant, user.openid) == ["你好"]


@pytest.mark.parametrize("offset", [-HOUR, HOUR])
def test_weibo_replay_outside_the_clock_skew_is_refused(assistant, offset):
    user = client(assistant, "weibo").user
    stale = user.post(user.push_doc("text", "你好"), timestamp=int(time.time()) + offset)
    assert stale.status == 403 and not stale.answered
    assert weibo_platform(assistant).verify_url("stale-echo", timestamp=int(time.time()) + offset).status_code == 403
    assert user_texts(assistant, str(user.user_id)) == []
    # Control: the same push signed now is a message.
    skew = WeiboConfig.from_credentials(assistant.channels.weibo.credentials()).max_clock_skew
    fresh = user.post(user.push_doc("text", "你好"), timestamp=int(time.time()) - skew + 60)
    assert fresh.status == 200 and user_texts(assistant, str(user.user_id)) == ["你好"]


def test_weibo_exact_replay_is_answered_once(assistant):
    user = client(assistant, "weibo").user
    url = weibo_platform(assistant).signed_url()
    body = json.dumps(user.push_doc("text", "你好"), ensure_ascii=False).encode()
    statuses = [requests.post(url, data=body, timeout=15).status_code for _ in range(2)]
    assert statuses == [200, 200]
    assert user_texts(assistant, str(user.user_id)) == ["你好"]


@pytest.mark.parametrize("offset", [-HOUR, HOUR])
def test_sms_generic_replay_outside_the_clock_skew_is_refused(assistant, offset):
    sms = client(assistant, "sms-generic")
    stale = sms.user.via_generic(sms.gateway, "你好", msg_id=secrets.token_hex(8),
                                 timestamp=int(time.time()) + offset)
    assert stale.status == 403
    time.sleep(0.5)
    assert user_texts(assistant, sms.sender_id) == []
    skew = SMSConfig.from_credentials(assistant.channels.sms.credentials()).max_clock_skew
    fresh = sms.user.via_generic(sms.gateway, "你好", timestamp=int(time.time()) - skew + 60)
    assert fresh.status == 200
    deadline = time.monotonic() + 15
    while user_texts(assistant, sms.sender_id) != ["你好"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert user_texts(assistant, sms.sender_id) == ["你好"]


def test_sms_generic_exact_replay_is_answered_once(assistant):
    sms = client(assistant, "sms-generic")
    stamp, msg_id = int(time.time()), secrets.token_hex(8)
    first = sms.user.via_generic(sms.gateway, "你好", msg_id=msg_id, timestamp=stamp)
    again = sms.user.via_generic(sms.gateway, "你好", msg_id=msg_id, timestamp=stamp)
    assert (first.status, again.status) == (200, 200) and json.loads(again.body).get("duplicate") is True
    assert len(sms.user.wait_for_texts(1, timeout=15)) >= 1
    time.sleep(1.0)
    assert user_texts(assistant, sms.sender_id) == ["你好"]


def test_twilio_replayed_message_sid_is_answered_once(assistant):
    """Twilio signs no timestamp: a captured post replayed later carries the same MessageSid and
    gets an empty TwiML answer, however long after."""
    sms = client(assistant, "sms-twilio")
    sid = "SM" + secrets.token_hex(16)
    first = sms.user.via_twilio(sms.gateway, "你好", sid=sid)
    time.sleep(2.0)
    replay = sms.user.via_twilio(sms.gateway, "你好", sid=sid)
    assert first.status == 200 and first.replies and "交警" in "".join(first.replies)
    assert replay.status == 200 and replay.replies == []
    # A replay with the text changed does not carry Twilio's signature.
    tampered = sms.user.via_twilio(sms.gateway, "查一下鲁B12345的违章", sid=sid,
                                   signature=twilio_signature(sms.gateway.auth_token, sms.gateway.webhook,
                                                              {"MessageSid": sid, "Body": "你好"}))
    assert tampered.status == 403
    assert user_texts(assistant, sms.sender_id) == ["你好"]


# -- 2. XML external entities and entity bombs --------------------------------------------------

XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       '<xml><ToUserName>gh_jiaojing0001</ToUserName><FromUserName>{openid}</FromUserName>'
       '<CreateTime>{now}</CreateTime><MsgType>text</MsgType><Content>&xxe;</Content>'
       '<MsgId>{msg_id}</MsgId></xml>')
LOL = "".join(f'<!ENTITY lol{i} "{"&lol%d;" % (i - 1) * 10}">' for i in range(1, 10))
BOMB = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY lol0 "lol">' + LOL + ']>'
        '<xml><ToUserName>gh_jiaojing0001</ToUserName><FromUserName>{openid}</FromUserName>'
        '<CreateTime>{now}</CreateTime><MsgType>text</MsgType><Content>&lol9;</Content>'
        '<MsgId>{msg_id}</MsgId></xml>')


def sealed(platform: WeChatPlatform, inner: str, envelope_prefix: str = "") -> tuple[str, bytes]:
    """The URL and body WeChat would post in safe mode for this inner XML, sealed as is (the test
    user's own sign() parses the inner XML first, which an entity-laden document must not go through)."""
    ts, nonce = str(int(time.time())), secrets.token_hex(5)
    out = xmltodict.parse(platform.crypto().encrypt_message(inner, nonce, ts))["xml"]
    query_ = {"signature": signature(platform.token, ts, nonce), "timestamp": ts, "nonce": nonce,
              "encrypt_type": "aes", "msg_signature": out["MsgSignature"], "openid": "unused"}
    body = (f"{envelope_prefix}<xml><ToUserName><![CDATA[gh_jiaojing0001]]></ToUserName>"
            f"<Encrypt><![CDATA[{out['Encrypt']}]]></Encrypt></xml>")
    return f"{platform.webhook}?{urlencode(query_)}", body.encode()


def plain(platform: WeChatPlatform, xml: str) -> tuple[str, bytes]:
    """The XML as the body itself, with a valid query signature."""
    ts, nonce = str(int(time.time())), secrets.token_hex(5)
    query_ = {"signature": signature(platform.token, ts, nonce), "timestamp": ts, "nonce": nonce}
    return f"{platform.webhook}?{urlencode(query_)}", xml.encode()


def rasa_rss_kb(assistant) -> int:
    pid = assistant.stack.processes[-1].popen.pid  # the Rasa server, which hosts the channels
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


@pytest.mark.parametrize("payload", ["xxe", "bomb"])
@pytest.mark.parametrize("how", ["plain body", "sealed inside Encrypt", "DTD on the envelope"])
def test_wechat_xml_entities_are_refused_quickly(assistant, payload, how):
    user = wechat_user(assistant)
    xml = (XXE if payload == "xxe" else BOMB).format(openid=user.openid, now=int(time.time()),
                                                     msg_id=next_msg_id())
    p = assistant.platform
    if how == "plain body":
        url, body = plain(p, xml)
    elif how == "sealed inside Encrypt":
        url, body = sealed(p, xml)
    else:
        inner = text_xml(p.account, user.openid, "你好", next_msg_id())
        url, body = sealed(p, inner, envelope_prefix=xml.split("<xml>")[0])
    rss_before = rasa_rss_kb(assistant)
    started = time.monotonic()
    res = requests.post(url, data=body, timeout=10)
    elapsed = time.monotonic() - started
    assert 400 <= res.status_code < 500 and elapsed < 3.0, (res.status_code, elapsed)
    assert "root:" not in res.text and "lol" not in res.text
    assert rasa_rss_kb(assistant) - rss_before < 50_000  # no entity expansion in memory
    assert wechat_tracker_texts(assistant, user.openid) == []
    # The server is unharmed: the same user's next ordinary message is answered.
    assert "交警助手" in (user.say("你好").text or "")


# -- 3. bodies over the limit ---------------------------------------------------------------------

def webhook_target(assistant, channel: str) -> tuple[str, dict, int]:
    """Where the platform posts, the headers it sends (credentials included) and the channel's
    configured body limit."""
    c = assistant.channels
    if channel == "wechat":
        url, _, _ = assistant.platform.sign(text_xml(assistant.platform.account, "o-size", "x", next_msg_id()))
        return url, {"Content-Type": "text/xml"}, WeChatConfig.from_credentials(c.wechat.credentials()).max_body_bytes
    if channel == "weibo":
        return (weibo_platform(assistant).signed_url(), {"Content-Type": "application/json"},
                WeiboConfig.from_credentials(c.weibo.credentials()).max_body_bytes)
    if channel == "telegram":
        return (f"{hooks(assistant)}/telegram/webhook", {"Content-Type": "application/json",
                                                         "X-Telegram-Bot-Api-Secret-Token": c.telegram.secret_token},
                TelegramConfig.from_credentials(c.telegram.credentials()).max_body_bytes)
    limit = SMSConfig.from_credentials(c.sms.credentials()).max_body_bytes
    if channel == "sms-twilio":
        return (f"{hooks(assistant)}/sms/twilio", {"Content-Type": "application/x-www-form-urlencoded",
                                                   "X-Twilio-Signature": "c2lnbmVk"}, limit)
    if channel == "sms-aliyun":
        return f"{hooks(assistant)}/sms/aliyun/{c.sms.aliyun_path_secret}", {"Content-Type": "application/json"}, limit
    stamp = str(int(time.time()))
    return (f"{hooks(assistant)}/sms/generic", {"Content-Type": "application/json", "X-Timestamp": stamp,
                                                "X-Signature": "0" * 64}, limit)


@pytest.fixture(params=CHANNELS)
def channel(request) -> str:
    return request.param


def test_a_body_over_the_channel_limit_is_413(assistant, channel):
    url, head, limit = webhook_target(assistant, channel)
    assert limit <= 256 * 1024, "text webhooks keep a small limit"
    over = requests.post(url, data=b"x" * (limit + 1), headers=head, timeout=10)
    assert over.status_code == 413
    # Control: at the limit the body is read, and refused for what it is, not for its size.
    at = requests.post(url, data=b"x" * limit, headers=head, timeout=10)
    assert at.status_code in (400, 401, 403)


def test_a_declared_huge_body_is_refused_before_it_is_sent(assistant, channel):
    """50 MB announced, 1 KB sent: the answer comes at once, so nothing waited for (or kept) the rest."""
    url, head, _ = webhook_target(assistant, channel)
    status, elapsed = raw_post(url, {**head, "Content-Length": str(50 * 1024 * 1024)}, b"x" * 1024)
    assert status == 413 and elapsed < 3.0, (status, elapsed)


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(assistant, channel):
    url, head, limit = webhook_target(assistant, channel)
    chunk = b"y" * 16384
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (limit // len(chunk) + 2)  # over the limit, unfinished
    status, elapsed = raw_post(url, {**head, "Transfer-Encoding": "chunked"}, body)
    assert status == 413 and elapsed < 3.0, (status, elapsed)


def test_the_ingest_api_refuses_oversized_bodies_without_reading_them(assistant, bots):  # noqa: F811
    ingest, token = bots
    before = table_counts(assistant)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for path in ("/ingest/violations", "/ingest/violation-status", "/reports/R209901010001/decision"):
        status, elapsed = raw_post(f"{ingest}{path}", {**auth, "Content-Length": str(500 * 1024 * 1024)}, b"[" * 1024)
        assert status == 413 and elapsed < 3.0, (path, status, elapsed)
    res = requests.post(f"{ingest}/ingest/violations", data=b"[" * (5 * 1024 * 1024 + 1), headers=auth, timeout=30)
    assert res.status_code == 413 and res.json()["error"] == "too_large"
    assert table_counts(assistant) == before


# -- 4. SQL and markup in every text field ------------------------------------------------------

SQL = "'; DROP TABLE violations; --"
SCRIPT = "<script>alert(1)</script>"
EMOJI = "😀🚗💥"
HOSTILE = [SQL, SCRIPT, EMOJI, "1' OR '1'='1", "\u202e\u0000%00"]


def sensible(answer: str) -> bool:
    """An answer the user can read: some text, not the apology for a failure, no markup echoed."""
    return bool(answer.strip()) and BUSY not in answer and "<script" not in answer.lower()


def answered(user, text: str) -> str:
    """The whole answer on any channel; asserts the webhook took the message."""
    got = user.say(text)
    assert got.status == 200, (text, got.status)
    return got.text


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_on_every_channel_gets_a_sensible_answer(assistant, channel, text):
    if channel == "wechat":
        text = text.replace("\x00", "")  # XML 1.0 cannot carry NUL: WeChat never delivers one
    before = table_counts(assistant)
    user = client(assistant, channel)
    answer = answered(user, text)
    assert sensible(answer), answer
    after = table_counts(assistant)
    assert {t: after[t] for t in ("violations", "vehicles", "reports")} == \
        {t: before[t] for t in ("violations", "vehicles", "reports")}


def test_empty_text_is_answered_or_refused_but_never_crashes(assistant, channel):
    user = client(assistant, channel)
    if channel == "wechat":  # WeChat delivers it to Rasa, which asks for words
        assert sensible(answered(user, ""))
    elif channel == "weibo":  # answered on the spot, Rasa never sees it
        assert sensible(answered(user, ""))
    elif channel in ("sms-twilio", "sms-generic"):
        assert user.deliver("").status == 400  # documented: an empty text is a bad request
    else:
        assert user.deliver("").status == 200  # Alibaba's batch and Telegram's update are taken, and dropped
    if channel != "wechat":
        time.sleep(0.5)
        assert user_texts(assistant, user.sender_id) == []
    assert sensible(answered(user, "你好"))


@pytest.mark.parametrize("channel", ["wechat", "sms-twilio"])
@pytest.mark.parametrize("text", [SQL, SCRIPT, EMOJI])
def test_hostile_plate_and_proof(assistant, channel, text):
    before = table_counts(assistant)
    user = client(assistant, channel)
    # As the plate in the question.
    assert sensible(answered(user, f"查一下{text}的违章"))
    # As the answer when the plate is asked for.
    user = client(assistant, channel)
    asked = answered(user, "查违章")
    assert "车牌" in asked
    answer = answered(user, text)
    assert sensible(answer) and "违法记录" not in answer
    # As the proof when the VIN suffix is asked for: refused, nothing disclosed. ("<script>" reads
    # as the 6-letter guess SCRIPT and counts as a failure: a plate no other test proves.)
    user = client(assistant, channel)
    plate, _ = quiet_vehicle(assistant, nth=2)
    assert "后6位" in answered(user, f"查一下{plate}的违章")
    answer = answered(user, text)
    assert sensible(answer) and "未处理的交通违法记录" not in answer
    assert query(assistant, select(AuditEntry.id).where(AuditEntry.sender_id == user.sender_id)) == []
    after = table_counts(assistant)
    assert after["violations"] == before["violations"] and after["vehicles"] == before["vehicles"]


@pytest.fixture
def console(assistant):
    """The staff console on the assistant's records, reading transcripts from its Rasa server."""
    from console.app import make_app
    from console.settings import ConsoleSettings

    settings = ConsoleSettings(database_url=assistant.database_url, session_minutes=30,
                               rasa_url=assistant.rasa_url, rasa_token=assistant.channels.rasa_api_token)
    with BackgroundServer(make_app(settings)) as server:
        yield server


async def test_markup_and_sql_reaching_the_console_are_shown_as_text(assistant, console, bots):  # noqa: F811
    """Three ways hostile text reaches staff: a report description (SQL, filed in a conversation),
    the deciding system's free-text reason (markup, through the ingest API), and the user's own
    words in a hand-off transcript (markup). The console shows each as text, escaped."""
    ingest, token = bots
    user = WeChatClient(assistant.platform, assistant.platforms.wechat.url)
    done = answered(user, f"车管所门口有黄牛，说交钱驾考包过，他的微信是{SQL}")
    number = re.search(r"R\d{12}", done).group()
    [(stored,)] = query(assistant, select(Report.description).where(Report.report_no == number))
    assert SQL in stored  # kept as written: nothing ran it
    decided = requests.post(f"{ingest}/reports/{number}/decision", timeout=10,
                            json={"status": "rejected", "reason": f"{SCRIPT}<img src=x onerror=alert(2)>"},
                            headers={"Authorization": f"Bearer {token}"})
    assert decided.status_code == 200, decided.text
    status = answered(user, f"查询举报{number}")
    assert number in status and sensible(status.replace(SCRIPT, "")) and BUSY not in status
    assert sensible(answered(user, SCRIPT))
    assert "人工" in answered(user, "转人工")
    pid = person_of(assistant, "wechat", user.sender_id)
    [(handoff,)] = query(assistant, select(Handoff.id).where(Handoff.person_id == pid))
    assert table_counts(assistant)["violations"] > 0

    http, _ = await signed_in(console.url, *await create_account(assistant.database_url, "supervisor"))
    try:
        pages = {}
        for page in (f"/reports/{number}", "/reports", f"/handoffs/{handoff}", "/handoffs", "/audit"):
            async with http.get(console.url + page) as res:
                assert res.status == 200, page
                pages[page] = await res.text()
            assert "<script" not in pages[page].lower() and "<img src=x" not in pages[page], page
    finally:
        await http.close()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escaped in pages[f"/reports/{number}"] and "&lt;img src=x onerror=alert(2)&gt;" in pages[f"/reports/{number}"]
    assert "&#39;; DROP TABLE violations; --" in pages[f"/reports/{number}"]
    assert escaped in pages[f"/handoffs/{handoff}"]


def test_nul_and_control_characters_in_a_report_are_stored_or_refused_not_crashed(assistant):
    """JSON platforms can carry U+0000, which PostgreSQL text cannot store."""
    user = client(assistant, "weibo")
    answer = answered(user, "车管所门口有黄牛，说交钱驾考包过\u0000\u0007\u202e")
    assert sensible(answer), answer
    if "编号" in answer:
        number = re.search(r"R\d{12}", answer).group()
        [(stored,)] = query(assistant, select(Report.description).where(Report.report_no == number))
        assert "\x00" not in stored and "驾考包过" in stored


# -- 5. guessing VIN suffixes -----------------------------------------------------------------------

def quiet_vehicle(assistant, nth: int = 0) -> tuple[str, str]:
    """A demo vehicle no other test asks about (from the last of the office): plate and VIN suffix."""
    named = ("鲁B12345", "鲁BD12345", "鲁B88888", "鲁B12345D")
    [(plate, vin)] = query(assistant, select(Vehicle.plate, Vehicle.vin)
                           .where(Vehicle.plate.like("鲁B%"), Vehicle.plate.notin_(named))
                           .order_by(Vehicle.id.desc()).offset(nth).limit(1))
    return plate, vin[-6:]


def lifts_at(answer: str) -> datetime:
    found = re.search(r"将于 (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) 解除", answer)
    assert found, answer
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M")


def test_guessing_vin_suffixes_is_locked_per_person_and_per_plate_across_channels(assistant):
    plate, right = quiet_vehicle(assistant)
    guesses = iter(f"{n:06d}" for n in range(100_001, 100_200) if f"{n:06d}" != right)
    per_person = 3   # JJ_PROOF_MAX_FAILURES of the test stack
    per_plate = 10   # JJ_PROOF_MAX_FAILURES_PER_PLATE, default
    started = now_local().replace(tzinfo=None)

    # Three people on three channels each guess until their own lock-out: 9 failures on the plate.
    for channel in ("wechat", "weibo", "sms-twilio"):
        user = client(assistant, channel)
        assert "后6位" in answered(user, f"查一下{plate}的违章")
        for left in range(per_person - 1, 0, -1):
            assert f"还可以再试 {left} 次" in answered(user, next(guesses))
        locked = answered(user, next(guesses))
        assert "查询已暂时锁定" in locked, (channel, locked)
        assert 55 * 60 <= (lifts_at(locked) - started).total_seconds() <= 61 * 60
        # Still locked: even the right proof gets nothing.
        again = answered(user, f"查一下{plate}的违章")
        assert "查询已暂时锁定" in again and "未处理" not in again
        assert "未处理" not in answered(user, right)

    # A fourth person, on Telegram, has tries left of their own, but the plate has one failure left.
    fourth = client(assistant, "telegram")
    assert "后6位" in answered(fourth, f"查一下{plate}的违章")
    locked = answered(fourth, next(guesses))
    assert "查询已暂时锁定" in locked and lifts_at(locked) > started

    # A fifth person, on yet another channel, with no failure at all, is locked out of this plate
    # before any proof is asked, and the right proof discloses nothing.
    fifth = client(assistant, "sms-aliyun")
    locked = answered(fifth, f"查一下{plate}的违章")
    assert "查询已暂时锁定" in locked and "后6位" not in locked
    assert "未处理的交通违法记录" not in answered(fifth, right)
    # ... while other plates stay open to them.
    assert "后6位" in answered(fifth, "查一下鲁B12345的违章")

    failures = query(assistant, select(ProofAttempt.person_id).where(ProofAttempt.subject == plate,
                                                                     ProofAttempt.success.is_(False)))
    assert len(failures) == per_plate and len({p for (p,) in failures}) == 4
    assert query(assistant, select(ProofAttempt.id).where(ProofAttempt.subject == plate,
                                                          ProofAttempt.success.is_(True))) == []
    assert query(assistant, select(AuditEntry.id).where(AuditEntry.subject == plate)) == []


# -- 6. someone else's report or appointment ----------------------------------------------------------

def test_someone_elses_report_number_gets_not_found_and_no_detail(assistant):
    owner = client(assistant, "wechat")
    done = answered(owner, "车管所门口有黄牛，说交钱驾考包过")
    number = re.search(r"R\d{12}", done).group()
    assert "待审核" in answered(owner, f"查询举报{number}")  # control: the owner sees it

    for channel in ("weibo", "sms-twilio", "telegram"):
        stranger = client(assistant, channel)
        answer = answered(stranger, f"查询举报{number}")
        assert "没有找到" in answer and "待审核" not in answer and "黄牛" not in answer, (channel, answer)
        # The same answer as for a number that does not exist: existence is not revealed.
        unknown = "R" + str(int(number[1:]) + 7_000_000)
        assert answered(stranger, f"查询举报{unknown}").replace(unknown, "#") == answer.replace(number, "#")
        assert number not in answered(stranger, "我的举报")
        pid = person_of(assistant, stranger.channel, stranger.sender_id)
        assert query(assistant, select(AuditEntry.id).where(AuditEntry.person_id == pid,
                                                            AuditEntry.subject == number)) == []


def test_someone_elses_appointment_number_discloses_nothing(assistant):
    owner = client(assistant, "wechat")
    answered(owner, "预约远程视频处理事故")
    answered(owner, "1")
    phone = f"139{secrets.randbelow(10**8):08d}"
    done = answered(owner, phone)
    number = re.search(r"A\d{12}", done).group()
    when = re.search(r"时间 (.+?)，联系电话", done).group(1)
    masked = f"{phone[:3]}****{phone[-4:]}"
    assert masked in done
    assert query(assistant, select(Appointment.contact_phone).where(Appointment.appointment_no == number)) == [(phone,)]

    for channel in ("weibo", "sms-twilio"):
        stranger = client(assistant, channel)
        for ask in (f"查询预约{number}", f"我的预约号{number}", number):
            answer = answered(stranger, ask)
            assert sensible(answer)
            assert "预约成功" not in answer and f"预约号 {number}" not in answer, (ask, answer)
            assert phone not in answer and masked not in answer and phone[-4:] not in answer, (ask, answer)
            assert when not in answer or "请选择" in answer, (ask, answer)  # an offer of open slots is not this booking
            answered(stranger, "取消")


# -- 7. the ingest API without the right token --------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong-token-0123456789",
                                           "bearer {token}", "Bearer {token}x", "{token}", "Basic {token}",
                                           "Bearer  {token}"])
def test_the_ingest_api_needs_its_token(assistant, bots, authorization):  # noqa: F811
    ingest, token = bots
    before = table_counts(assistant)
    plate, _ = quiet_vehicle(assistant, nth=1)  # the control row below is kept: nobody else counts its violations
    row = violation_row(plate)
    record_no = row["record_no"]
    headers = {} if authorization is None else {"Authorization": authorization.format(token=token)}
    for path, body in [("/ingest/violations", [row]),
                       ("/ingest/violation-status", [{"record_no": record_no, "status": "paid"}]),
                       ("/reports/R209901010001/decision", {"status": "accepted"})]:
        res = requests.post(f"{ingest}{path}", json=body, headers=headers, timeout=10)
        assert res.status_code == 401 and res.json()["error"] == "unauthorized", (path, res.status_code)
        assert "record_no" not in res.text and "accepted" not in res.text
    assert query(assistant, select(Violation.id).where(Violation.record_no == record_no)) == []
    assert table_counts(assistant)["outbox"] == before["outbox"]
    # Control: with the token the same row is taken (so the 401s above were the token's doing).
    res = requests.post(f"{ingest}/ingest/violations", json=[row], timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200 and res.json()["accepted"] == 1
