"""End to end over every channel: the real Rasa server and action server, each platform's webhook
protocol, and answers read back the way each platform delivers them (passive replies, TwiML, or the
stand-in platform APIs). Then one person on WeChat and SMS at once."""
from __future__ import annotations

import re

import pytest
import requests
from sqlalchemy import select

from actions.records.db import make_sync_engine
from actions.records.models import AuditEntry, ChannelIdentity, Person, Report, Subscription
from tests.support.channel_clients import SMSClient, TelegramClient, WeChatClient, WeiboClient
from tests.support.sms_user import AliyunGateway, GenericGateway, TwilioGateway
from tests.support.telegram_user import TelegramPlatform
from tests.support.weibo_user import WeiboPlatform

pytestmark = pytest.mark.e2e

CHANNELS = ["weibo", "sms-twilio", "sms-aliyun", "sms-generic", "telegram"]


def hooks(assistant) -> str:
    return f"{assistant.rasa_url}/webhooks"


def weibo_platform(assistant, secret=None) -> WeiboPlatform:
    return WeiboPlatform(f"{hooks(assistant)}/weibo/webhook", secret or assistant.channels.weibo.app_secret,
                         assistant.platforms.weibo.account_id)


def telegram_platform(assistant, secret=None) -> TelegramPlatform:
    c = assistant.channels.telegram
    return TelegramPlatform(f"{hooks(assistant)}/telegram/webhook", secret or c.secret_token,
                            assistant.platforms.telegram_url, c.verify)


def client(assistant, channel: str, path_secret=None):
    c, p = assistant.channels, assistant.platforms
    if channel == "weibo":
        return WeiboClient(weibo_platform(assistant), p.weibo_url)
    if channel == "telegram":
        return TelegramClient(telegram_platform(assistant))
    if channel == "wechat":
        return WeChatClient(assistant.platform, p.wechat.url)
    gateway = {
        "sms-twilio": lambda: TwilioGateway(f"{hooks(assistant)}/sms/twilio", c.sms.twilio_auth_token),
        "sms-aliyun": lambda: AliyunGateway(f"{hooks(assistant)}/sms/aliyun/{path_secret or c.sms.aliyun_path_secret}"),
        "sms-generic": lambda: GenericGateway(f"{hooks(assistant)}/sms/generic", c.sms.generic_secret),
    }[channel]()
    return SMSClient(gateway, p.sms_url)


def user_texts(assistant, sender: str) -> list[str]:
    """What Rasa received from this sender: nothing means nothing was processed."""
    res = requests.get(f"{assistant.rasa_url}/conversations/{sender}/tracker",
                       params={"token": assistant.channels.rasa_api_token}, timeout=10)
    res.raise_for_status()
    return [e.get("text") for e in res.json()["events"] if e["event"] == "user"]


def query(assistant, statement):
    engine = make_sync_engine(assistant.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(statement).all()
    finally:
        engine.dispose()


def person_of(assistant, channel: str, sender: str) -> int:
    [(pid,)] = query(assistant, select(ChannelIdentity.person_id).where(
        ChannelIdentity.channel == channel, ChannelIdentity.external_id == sender))
    return pid


@pytest.fixture(params=CHANNELS)
def channel(request) -> str:
    return request.param


def test_violation_query_with_proof(assistant, channel):
    user = client(assistant, channel)
    assert "后6位" in user.say("查一下鲁B12345的违章").text
    listing = user.say("672418").text
    assert "有 3 条未处理的交通违法记录" in listing and "合计：罚款 400 元，记 9 分。" in listing
    assert "张*明" in listing and "张晓明" not in listing
    [entry] = query(assistant, select(AuditEntry.channel, AuditEntry.action, AuditEntry.subject)
                    .where(AuditEntry.sender_id == user.sender_id))
    assert tuple(entry) == (user.channel, "disclose_violations", "鲁B12345")


def test_a_report_is_recorded_with_its_channel(assistant, channel):
    user = client(assistant, channel)
    done = user.say("车管所门口有黄牛，说交钱驾考包过").text
    number = re.search(r"R\d{12}", done).group()
    [(kind, via, pid)] = query(assistant, select(Report.kind, Report.channel, Report.person_id)
                               .where(Report.report_no == number))
    assert (kind, via) == ("misconduct", user.channel)
    assert pid == person_of(assistant, user.channel, user.sender_id)
    assert number in user.say("我的举报").text


def test_unsubscribe(assistant, channel):
    user = client(assistant, channel)
    if user.channel == "sms":
        assert "订阅成功" in user.say("订阅").text
        stopped = user.say("TD").text
        assert "退订" in stopped and "订阅" in stopped
    else:
        assert "哪个渠道" in user.say("订阅提醒").text
        assert "订阅成功" in user.say("1").text
        assert "已退订" in user.say("退订").text
    pid = person_of(assistant, user.channel, user.sender_id)
    subs = query(assistant, select(Subscription.channel, Subscription.active).where(Subscription.person_id == pid))
    assert subs and {c for c, _ in subs} == {user.channel} and not any(active for _, active in subs)
    if user.channel == "sms":
        [(consent,)] = query(assistant, select(Person.sms_consent).where(Person.id == pid))
        assert consent is False


def forged(assistant, channel: str):
    """One delivery with a forged signature (or secret) and the sender it claims to be."""
    if channel == "weibo":
        user = WeiboClient(weibo_platform(assistant, secret="f" * 32), "").user
        return user.say("查一下鲁B12345的违章").status, str(user.user_id)
    if channel == "telegram":
        user = TelegramClient(telegram_platform(assistant, secret="forged-secret-token")).user
        return user.say("查一下鲁B12345的违章").status, str(user.id)
    sms = client(assistant, channel, path_secret="x" * 32)
    if channel == "sms-twilio":
        return sms.user.via_twilio(sms.gateway, "查违章", signature="Zm9yZ2Vk").status, sms.sender_id
    if channel == "sms-generic":
        return sms.user.via_generic(sms.gateway, "查违章", secret="wrong-secret-0123456789").status, sms.sender_id
    return sms.user.via_aliyun(sms.gateway, "查违章").status, sms.sender_id


def test_forged_deliveries_are_refused_and_not_processed(assistant, channel):
    status, sender = forged(assistant, channel)
    assert status in (401, 403)
    assert user_texts(assistant, sender) == []


def test_a_retried_delivery_is_answered_once(assistant, channel):
    user = client(assistant, channel)
    if channel == "weibo":
        doc = user.user.push_doc("text", "你好")
        statuses = [user.user.post(doc).status for _ in range(2)]
    elif channel == "telegram":
        first = user.user.say("你好")
        statuses = [first.status, user.user.redeliver(first).status]
    elif channel == "sms-twilio":
        statuses = [user.user.via_twilio(user.gateway, "你好", sid="SM" + "ab" * 16).status for _ in range(2)]
    elif channel == "sms-aliyun":
        statuses = [user.user.via_aliyun(user.gateway, "你好", sequence_id=990_000_001).status for _ in range(2)]
    else:
        statuses = [user.user.via_generic(user.gateway, "你好", msg_id="retry-0001").status for _ in range(2)]
    assert statuses == [200, 200]
    assert user_texts(assistant, user.sender_id).count("你好") == 1


WEBHOOK_PATHS = {"weibo": "weibo/webhook", "telegram": "telegram/webhook", "sms-twilio": "sms/twilio",
                 "sms-generic": "sms/generic"}


def post_raw(assistant, channel: str, body: bytes) -> int:
    """A body posted where the platform posts, with whatever credentials go outside the body."""
    if channel == "weibo":
        return requests.post(weibo_platform(assistant).signed_url(), data=body, timeout=10).status_code
    if channel == "telegram":
        return requests.post(f"{hooks(assistant)}/telegram/webhook", data=body, timeout=10, headers={
            "X-Telegram-Bot-Api-Secret-Token": assistant.channels.telegram.secret_token}).status_code
    if channel == "sms-aliyun":
        url = f"{hooks(assistant)}/sms/aliyun/{assistant.channels.sms.aliyun_path_secret}"
    else:
        url = f"{hooks(assistant)}/{WEBHOOK_PATHS[channel]}"
    return requests.post(url, data=body, timeout=10).status_code


def test_malformed_and_oversized_bodies_get_4xx(assistant, channel):
    for body in (b"{\"broken\": ", b"\xff\xfe<xml>", b"[1, 2, 3]", b"null", b""):
        status = post_raw(assistant, channel, body)
        assert 400 <= status < 500, (body, status)
    assert post_raw(assistant, channel, b"a" * (3 * 1024 * 1024)) in (400, 401, 403, 413)


# -- one person, many channels -----------------------------------------------------------------

def test_a_binding_made_on_wechat_is_used_over_sms_once_linked(assistant):
    wechat = client(assistant, "wechat")
    assert "后6位" in wechat.say("绑定车辆鲁B12345").text
    assert "绑定成功" in wechat.say("672418").text
    sms = client(assistant, "sms-aliyun")
    # Before linking, the phone is a stranger: it must prove the vehicle.
    assert "后6位" in sms.say("查鲁B12345的违章").text
    sms.say("取消")
    issued = sms.say("关联账号").text
    code = re.search(r"关联码是 (\d{6})", issued).group(1)
    linked = wechat.say(f"关联 {code}").text
    assert "关联成功" in linked and "鲁B12345" in linked
    listing = sms.say("查违章").text
    assert "有 3 条未处理的交通违法记录" in listing and "后6位" not in listing
    assert person_of(assistant, "sms", sms.sender_id) == person_of(assistant, "wechat", wechat.sender_id)
    # The code is spent; a stranger who saw it cannot use it again.
    stranger = client(assistant, "telegram")
    assert "不正确或已过期" in stranger.say(f"关联 {code}").text
    [(action,)] = query(assistant, select(AuditEntry.action).where(AuditEntry.sender_id == wechat.sender_id,
                                                                  AuditEntry.action == "link_channels"))
    assert action == "link_channels"


def test_sms_gets_the_short_answers_and_wechat_the_full_ones(assistant):
    sms = client(assistant, "sms-twilio").say("你好").text
    assert "回复TD退订" in sms and len(sms) <= 70  # one message, signature included
    wechat = client(assistant, "wechat").say("你好").text
    assert "回复TD退订" not in wechat and "预约远程视频处理事故或违法" in wechat
