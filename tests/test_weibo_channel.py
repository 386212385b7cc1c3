"""The Weibo private-message channel's protocol, over real HTTP: verification, signatures, retries
without message ids, the reply budget, the reply API through aiohttp to the stand-in, and bad input."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import pytest
import requests

from channels.base import BUSY
from channels.weibo import (PLEASE_TYPE, PLEASE_WRITE, WeiboAPIError, WeiboConfig, WeiboConfigError, WeiboInput,
                            WeiboOutput, split_text)
from tests.conftest import REDIS_URL, need_service
from tests.support.background import BackgroundServer
from tests.support.channel_host import ChannelHost
from tests.support.weibo_api import INVALID_TOKEN, WeiboAPIStandIn
from tests.support.weibo_user import WeiboPlatform, WeiboUser, signature

SECRET = "weibo-test-app-secret-0123456789"
TOKEN = "2.00jjTestFansServiceToken0123"
ACCOUNT = 5_000_000_001
LONG = "\n".join(f"第{i}行：" + "违法记录" * 20 for i in range(30))


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    return predicate()


def credentials(api_url: str, **overrides) -> dict:
    return {"app_secret": SECRET, "access_token": TOKEN, "api_base_url": api_url, **overrides}


@pytest.fixture(scope="module")
def weibo_api():
    standin = WeiboAPIStandIn(TOKEN, ACCOUNT)
    with BackgroundServer(standin.app()) as server:
        standin.url = server.url
        yield standin


@pytest.fixture(scope="module")
def hosts(weibo_api):
    """Weibo channels with a 1 s and a 0.5 s budget, and two sharing Redis de-duplication as two
    processes would (when Redis is configured), hosted with echo agents on one server."""
    channels = {key: WeiboInput(WeiboConfig.from_credentials(credentials(weibo_api.url, reply_budget=budget)))
                for key, budget in (("budget-1", 1.0), ("budget-0_5", 0.5))}
    if REDIS_URL:
        for key in ("redis-a", "redis-b"):
            channels[key] = WeiboInput(WeiboConfig.from_credentials(credentials(weibo_api.url, dedup=REDIS_URL)))
    with ChannelHost(channels) as host:
        yield host


@dataclass
class Host:
    platform: WeiboPlatform
    agent: object


def hosted(server, key: str) -> Host:
    agent = server.agents[key]
    agent.received.clear()
    return Host(WeiboPlatform(f"{server.urls[key]}/webhook", SECRET, ACCOUNT), agent)


@pytest.fixture
def host(hosts, request):
    return hosted(hosts, getattr(request, "param", "budget-1"))


def test_url_verification(host):
    assert host.platform.verify_url("hello-weibo").text == "hello-weibo"
    assert WeiboPlatform(host.platform.webhook, "wrong-secret").verify_url().status_code == 403
    assert host.platform.verify_url(timestamp=int(time.time()) - 3600).status_code == 403
    assert requests.get(host.platform.webhook, params={"echostr": "x"}, timeout=10).status_code == 403


def test_text_gets_a_passive_reply(host):
    user = WeiboUser(host.platform)
    reply = user.say("你好")
    assert reply.status == 200 and reply.text == "收到：你好"
    assert reply.doc["sender_id"] == ACCOUNT and reply.doc["receiver_id"] == user.user_id
    assert "收到" not in reply.body  # `data` goes URL-encoded, as Weibo requires
    [message] = host.agent.received
    assert (message.sender_id, message.input_channel) == (str(user.user_id), "weibo")


def test_forged_or_missing_signature_is_refused_and_nothing_processed(host):
    forged = WeiboUser(WeiboPlatform(host.platform.webhook, "forged-secret", ACCOUNT))
    assert forged.say("你好").status == 403
    user = WeiboUser(host.platform)
    body = json.dumps(user.push_doc("text", "你好")).encode()
    assert requests.post(host.platform.webhook, data=body, timeout=10).status_code == 403
    ts = str(int(time.time()))
    swapped = {"signature": signature(SECRET, ts, "nonce1"), "timestamp": ts, "nonce": "nonce2"}
    assert requests.post(host.platform.webhook, params=swapped, data=body, timeout=10).status_code == 403
    assert host.agent.received == []


def test_stale_timestamp_is_refused(host):
    user = WeiboUser(host.platform)
    assert user.post(user.push_doc("text", "你好"), timestamp=int(time.time()) - 3600).status == 403
    assert host.agent.received == []


def _push(**fields) -> dict:
    doc = {"type": "text", "receiver_id": ACCOUNT, "sender_id": 1234567890,
           "created_at": "Mon Jul 16 18:09:20 +0800 2012", "text": "你好", "data": {}}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize("body, status", [
    (b'{"type": "text", "sender_id": ', 400),
    (b"not json at all", 400),
    (b"", 400),
    (b"[1, 2, 3]", 400),
    (b'"text"', 400),
    (b'{"type": "text", "text": "\xff\xfe"}', 400),
    (_push(sender_id=None), 400),
    (_push(sender_id="abc"), 400),
    (_push(sender_id=True), 400),
    (_push(receiver_id=None), 400),
    (_push(type=None), 400),
    (_push(created_at=None), 400),
    (_push(text=["你好"]), 400),
    (_push(data="not an object"), 400),
    (_push(type="position", data={"label": "香港中路"}), 400),
    (_push(type="position", data={"latitude": "nan", "longitude": "120.38"}), 400),
    (_push(type="position", data={"latitude": "95", "longitude": "120.38"}), 400),
    (_push(type="image", data={}), 400),
    (_push(text="x" * 70_000), 413),
])
def test_malformed_or_oversized_pushes_get_a_4xx(host, body, status):
    res = WeiboUser(host.platform).post(body)
    assert res.status == status
    assert host.agent.received == []


def test_a_retry_is_answered_once(host):
    user = WeiboUser(host.platform)
    doc = user.push_doc("text", "查违章")
    first, retry = user.post(doc), user.post(doc)
    assert first.text == "收到：查违章"
    assert retry.status == 200 and retry.body == ""
    assert host.agent.texts() == ["查违章"]
    # The same words a second later are a new message, not a retry.
    assert user.say("查违章").text == "收到：查违章"


def test_a_retry_reaching_another_process_is_answered_once(hosts):
    need_service(REDIS_URL, "redis")
    one, two = hosted(hosts, "redis-a"), hosted(hosts, "redis-b")
    user = WeiboUser(one.platform)
    doc = user.push_doc("text", "查违章")
    assert user.post(doc).text == "收到：查违章"
    retry = WeiboUser(two.platform, user.user_id).post(doc)
    assert retry.status == 200 and retry.body == ""
    assert one.agent.texts() == ["查违章"] and two.agent.received == []


@pytest.mark.parametrize("host", ["budget-0_5"], indirect=True)
def test_slow_answer_arrives_through_the_reply_api(host, weibo_api):
    user = WeiboUser(host.platform)
    reply = user.say("slow:1.5")
    assert reply.status == 200 and reply.body == ""
    assert reply.elapsed < 1.0  # answered within the budget, not when the agent finished
    sent = wait_for(lambda: weibo_api.messages_to(user.user_id))
    assert [(s.type, s.text) for s in sent] == [("text", "收到：slow:1.5")]


def test_long_answer_is_split_under_300_characters(host, weibo_api):
    user = WeiboUser(host.platform)
    reply = user.say("long")
    assert reply.status == 200 and reply.body == ""
    wait_for(lambda: "\n".join(s.text for s in weibo_api.messages_to(user.user_id)) == LONG)
    sent = weibo_api.messages_to(user.user_id)
    assert len(sent) > 1
    assert all(len(s.text) < 300 for s in sent)
    assert "\n".join(s.text for s in sent) == LONG


@pytest.mark.parametrize("host", ["budget-0_5"], indirect=True)
def test_reply_api_errors_are_logged_not_raised(host, weibo_api, caplog):
    user = WeiboUser(host.platform)
    weibo_api.fail_next(status=503)
    with caplog.at_level(logging.ERROR, logger="channels.weibo"):
        assert user.say("slow:0.8").status == 200
        assert wait_for(lambda: any("reply API" in r.getMessage() for r in caplog.records))
    assert weibo_api.messages_to(user.user_id) == []
    assert user.say("你好").text == "收到：你好"  # the channel carries on


def test_agent_failure_gets_an_apology_not_a_500(host):
    reply = WeiboUser(host.platform).say("boom")
    assert reply.status == 200 and reply.text == BUSY


def test_buttons_become_numbered_choices_that_map_back(host):
    user = WeiboUser(host.platform)
    reply = user.say("buttons")
    assert "回复 1：查违章" in reply.text and "回复 2：帮助" in reply.text
    user.say("1")
    assert host.agent.texts()[-1] == "/query_violations"
    user.say("1")  # the choice was used: a plain "1" again is just text
    assert host.agent.texts()[-1] == "1"


def test_replies_follow_the_users_script(host):
    user = WeiboUser(host.platform)
    assert user.say("查詢違章").text == "收到：查詢違章"
    assert user.say("672418").text == "收到：672418"
    assert user.say("buttons").text.startswith("請選擇：")  # the simplified answer, in traditional
    assert user.say("你好").text == "收到：你好"
    assert user.say("buttons").text.startswith("请选择：")


def test_position_image_and_voice_become_messages(host):
    user = WeiboUser(host.platform)
    user.position("36.0671", "120.3826", label="香港中路与山东路路口")
    user.position("36.0671", "120.3826")
    user.image(tovfid=821804469)
    assert user.voice(recognition="查一下违章").text == "收到：查一下违章"
    assert host.agent.texts() == [
        '/inform{"location": "香港中路与山东路路口", "latitude": "36.0671", "longitude": "120.3826"}',
        '/inform{"location": "36.0671,120.3826", "latitude": "36.0671", "longitude": "120.3826"}',
        '/inform{"photo": "weibo-media:image:821804469"}',
        "查一下违章"]
    assert user.voice().text == PLEASE_TYPE  # nothing recognised: asked to type, nothing processed
    assert len(host.agent.received) == 4


def test_events(host):
    user = WeiboUser(host.platform)
    assert user.event("follow").text == "收到：/greet"
    assert user.event("click", key="/query_violations").text == "收到：/query_violations"
    assert user.event("click", key="查违章").text == "收到：查违章"
    for subtype in ("unfollow", "unsubscribe", "mention", "view"):
        reply = user.event(subtype)
        assert reply.status == 200 and reply.body == ""
    assert host.agent.texts() == ["/greet", "/query_violations", "查违章"]
    retry = user.push_doc("event", data={"subtype": "subscribe"})
    assert user.post(retry).text == "收到：/greet" and user.post(retry).body == ""
    assert host.agent.texts()[-1:] == ["/greet"] and len(host.agent.received) == 4


def test_typed_text_cannot_pose_as_an_intent_payload(host):
    user = WeiboUser(host.platform)
    user.say("/greet")
    user.say('/inform{"vin_suffix": "672418"}')
    assert host.agent.texts() == ["／greet", '／inform{"vin_suffix": "672418"}']


def test_emoji_is_text_and_empty_text_asks_for_words(host):
    user = WeiboUser(host.platform)
    assert user.say("😀👍").text == "收到：😀👍"
    assert user.say("  ").text == PLEASE_WRITE
    assert host.agent.texts() == ["😀👍"]


async def test_proactive_sends_from_a_running_loop(weibo_api):
    output = WeiboOutput(WeiboConfig.from_credentials(credentials(weibo_api.url)))
    try:
        await output.send_text_message("2000000001", "您的车辆鲁B12345有一条新的违法记录。")
        await output.send_text_with_buttons("2000000001", "要查看吗？", [{"title": "查看", "payload": "/query_violations"}])
    finally:
        await output.close()
    assert [s.text for s in weibo_api.messages_to(2000000001)] == [
        "您的车辆鲁B12345有一条新的违法记录。", "要查看吗？\n回复 1：查看"]


async def test_reply_api_errors_reach_the_sender(weibo_api):
    wrong = WeiboOutput(WeiboConfig.from_credentials(credentials(weibo_api.url, access_token="stale")))
    output = WeiboOutput(WeiboConfig.from_credentials(credentials(weibo_api.url)))
    try:
        with pytest.raises(WeiboAPIError) as err:
            await wrong.send_text_message("2000000002", "你好")
        assert err.value.error_code == INVALID_TOKEN and not err.value.transient
        weibo_api.fail_next(status=502)
        with pytest.raises(WeiboAPIError) as err:
            await output.send_text_message("2000000002", "你好")
        assert err.value.status == 502 and err.value.transient
    finally:
        await wrong.close()
        await output.close()
    assert weibo_api.messages_to(2000000002) == []


def test_split_text_counts_characters():
    text = "\n".join(["甲" * 200] * 5)
    pieces = split_text(text)
    assert all(len(p) < 300 for p in pieces) and "\n".join(pieces) == text
    assert split_text("乙" * 700) == ["乙" * 299, "乙" * 299, "乙" * 102]


@pytest.mark.parametrize("overrides, key", [
    ({"app_secret": None}, "app_secret"),
    ({"access_token": "  "}, "access_token"),
    ({"api_base_url": "ftp://weibo"}, "api_base_url"),
    ({"reply_budget": 5}, "reply_budget"),
    ({"reply_budget": "soon"}, "reply_budget"),
    ({"max_body_bytes": 10}, "max_body_bytes"),
    ({"max_clock_skew": 0}, "max_clock_skew"),
    ({"dedup": "mysql://db"}, "dedup"),
])
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(WeiboConfigError) as err:
        WeiboConfig.from_credentials(credentials("https://m.api.weibo.com", **overrides))
    assert "channels.weibo.WeiboInput" in str(err.value) and f"'{key}'" in str(err.value)


def test_config_defaults_and_secrets_kept_out_of_its_repr():
    config = WeiboConfig.from_credentials({"app_secret": SECRET, "access_token": TOKEN})
    assert (config.api_base_url, config.reply_budget, config.max_body_bytes, config.max_clock_skew,
            config.dedup) == ("https://m.api.weibo.com", 4.0, 65536, 300, "memory")
    assert SECRET not in repr(config) and TOKEN not in repr(config)
