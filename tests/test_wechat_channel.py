"""The WeChat channel's protocol, over real HTTP: signatures, modes, retries, the reply budget,
customer-service fallback through wechatpy to the stand-in WeChat API, and bad input."""
from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass

import pytest
import requests
from wechatpy.crypto.base import WeChatCipher
from wechatpy.exceptions import WeChatClientException

from channels.dedup import MemoryDedup, RedisDedup
from channels.base import BUSY
from channels.wechat import UNSUPPORTED, WeChatConfig, WeChatInput, make_client, split_text
from scripts.stack import WeChatSettings
from tests.conftest import REDIS_URL, need_service
from tests.support.channel_host import ChannelHost
from tests.support.wechat_user import WeChatPlatform, WeChatUser, next_msg_id, signature, text_xml


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    return predicate()


VARIANTS = [("plain", 1.0), ("compatible", 1.0), ("safe", 1.0), ("safe", 0.5)]


@pytest.fixture(scope="module")
def hosts(wechat_api):
    """WeChat channels in each mode and budget, hosted with echo agents on one server."""
    settings, channels = {}, {}
    for mode, budget in VARIANTS:
        key = f"{mode}-{budget}".replace(".", "_")
        settings[key] = WeChatSettings.generate(app_id=wechat_api.app_id, app_secret=wechat_api.app_secret,
                                                api_base=wechat_api.url, mode=mode, reply_budget=budget)
        channels[key] = WeChatInput(WeChatConfig.from_credentials(settings[key].credentials()))
    with ChannelHost(channels) as host:
        yield host, settings


@dataclass
class Host:
    platform: WeChatPlatform
    agent: object


@pytest.fixture
def host(hosts, request):
    """One of the hosted channels (param: mode, budget), its agent's memory cleared."""
    server, settings = hosts
    mode, budget = getattr(request, "param", ("safe", 1.0))
    key = f"{mode}-{budget}".replace(".", "_")
    s = settings[key]
    agent = server.agents[key]
    agent.received.clear()
    return Host(WeChatPlatform(f"{server.urls[key]}/webhook", s.token, s.app_id, s.aes_key, mode), agent)


@pytest.mark.parametrize("host", [("plain", 1.0), ("compatible", 1.0), ("safe", 1.0)], indirect=True)
def test_text_round_trip_in_every_mode(host):
    user = WeChatUser(host.platform)
    reply = user.say("你好")
    assert reply.status == 200
    assert reply.text == "收到：你好"
    if host.platform.mode != "plain":
        assert "<Encrypt>" in reply.body and "收到" not in reply.body  # the reply is sealed too
    [message] = host.agent.received
    assert (message.sender_id, message.input_channel) == (user.openid, "wechat")


def test_url_verification(host):
    assert host.platform.verify_url("hello-wechat").text == "hello-wechat"
    forged = WeChatPlatform(host.platform.webhook, "wrongtoken", host.platform.app_id)
    assert forged.verify_url().status_code == 403
    ts = str(int(time.time()) - 3600)
    stale = requests.get(host.platform.webhook, params={"signature": signature(host.platform.token, ts, "n"),
                                                        "timestamp": ts, "nonce": "n", "echostr": "x"})
    assert stale.status_code == 403


def test_forged_signature_is_refused_and_nothing_processed(host):
    forged = WeChatPlatform(host.platform.webhook, "forgedtoken", host.platform.app_id,
                            host.platform.aes_key, "safe")
    assert WeChatUser(forged).say("你好").status == 403
    # Right token, but the sealed body was encrypted with another key.
    other_key = WeChatSettings.generate().aes_key
    tampered = WeChatPlatform(host.platform.webhook, host.platform.token, host.platform.app_id, other_key, "safe")
    assert WeChatUser(tampered).say("你好").status == 403
    # Safe mode refuses plaintext bodies even when the URL signature is right.
    plain = WeChatPlatform(host.platform.webhook, host.platform.token, host.platform.app_id, None, "plain")
    assert WeChatUser(plain).say("你好").status == 403
    assert host.agent.received == []


def post_sealed(platform: WeChatPlatform, ciphertext: bytes) -> requests.Response:
    """A safe-mode body signed with the right token, whose sealed block is the given bytes."""
    ts, nonce = str(int(time.time())), "n0nce"
    encrypt = base64.b64encode(ciphertext).decode()
    query = {"signature": signature(platform.token, ts, nonce), "timestamp": ts, "nonce": nonce,
             "encrypt_type": "aes", "msg_signature": signature(platform.token, ts, nonce, encrypt)}
    body = (f"<xml><ToUserName><![CDATA[{platform.account}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
    return requests.post(platform.webhook, params=query, data=body.encode(), timeout=10)


def sealed_under(aes_key: str, plaintext: bytes) -> bytes:
    return WeChatCipher(base64.b64decode(aes_key + "=")).encrypt(plaintext)


@pytest.mark.parametrize("make_block", [
    # What a wrong key decrypts to now and then: a padding byte of 0 leaves no length field.
    lambda key: sealed_under(key, b"r" * 31 + b"\x00"),
    lambda key: sealed_under(key, b"r" * 31 + b"\xff"),   # padding longer than the block
    lambda key: sealed_under(key, b"r" * 16 + b"\xff\xff\xff\xff" + b"x" * 11 + b"\x01"),  # length past the end
    lambda key: b"",                                      # nothing sealed
    lambda key: b"\x01" * 15,                             # not whole AES blocks
], ids=["zero-padding", "long-padding", "long-length", "empty", "partial-block"])
def test_a_signed_body_that_is_not_sealed_with_our_key_is_refused(host, make_block):
    reply = post_sealed(host.platform, make_block(host.platform.aes_key))
    assert (reply.status_code, reply.text) == (403, "forbidden")
    assert host.agent.received == []


def test_bodies_sealed_with_other_keys_are_all_refused(host):
    """Another key decrypts to random bytes, and each way wechatpy can fail on them is a 403."""
    statuses = set()
    for _ in range(40):
        other_key = WeChatSettings.generate().aes_key
        tampered = WeChatPlatform(host.platform.webhook, host.platform.token, host.platform.app_id, other_key, "safe")
        statuses.add(WeChatUser(tampered).say("你好").status)
    assert statuses == {403}
    assert host.agent.received == []


@pytest.mark.parametrize("host", [("plain", 1.0)], indirect=True)
@pytest.mark.parametrize("body, status", [
    ("<xml><ToUserName>", 400),
    ("not xml at all", 400),
    ('{"json": true}', 400),
    ("<xml><MsgType>text</MsgType><Content>hi</Content></xml>", 400),  # no sender
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
     "<xml><Content>&b;</Content></xml>", 400),
    ("x" * 70_000, 413),
])
def test_malformed_or_oversized_bodies_get_a_4xx(host, body, status):
    url, _, _ = host.platform.sign("<xml/>")
    res = requests.post(url, data=body.encode(), timeout=10)
    assert res.status_code == status
    assert host.agent.received == []


def test_retry_of_the_same_msgid_is_answered_once(host):
    user = WeChatUser(host.platform)
    msg_id = next_msg_id()
    first = user.say("查违章", msg_id=msg_id)
    retry = user.say("查违章", msg_id=msg_id)
    assert first.text == "收到：查违章"
    assert retry.status == 200 and retry.text is None and retry.body == "success"
    assert host.agent.texts() == ["查违章"]


def test_events_are_deduplicated_by_sender_and_time(host):
    from tests.support.wechat_user import event_xml

    user = WeChatUser(host.platform)
    xml = event_xml(host.platform.account, user.openid, "subscribe", created=1_700_000_000)
    assert user.post_xml(xml).text == "收到：/greet"  # following the account greets
    assert user.post_xml(xml).body == "success"
    assert host.agent.texts() == ["/greet"]


@pytest.mark.parametrize("host", [("safe", 0.5)], indirect=True)
def test_slow_answer_goes_out_through_customer_service(host, wechat_api):
    user = WeChatUser(host.platform)
    reply = user.say("slow:1.5")
    assert reply.body == "success" and reply.text is None
    assert reply.elapsed < 1.0  # answered within the budget, not when the agent finished
    sent = wait_for(lambda: wechat_api.messages_to(user.openid), timeout=5)
    assert [s.text for s in sent] == ["收到：slow:1.5"]


def test_answer_to_a_platform_that_hung_up_goes_out_through_customer_service(host, wechat_api):
    user = WeChatUser(host.platform)
    with pytest.raises(requests.exceptions.ReadTimeout):
        user.post_xml(text_xml(host.platform.account, user.openid, "slow:0.6", next_msg_id()), timeout=0.2)
    sent = wait_for(lambda: wechat_api.messages_to(user.openid), timeout=5)
    assert [s.text for s in sent] == ["收到：slow:0.6"]


def test_agent_failure_gets_an_apology_not_a_500(host):
    reply = WeChatUser(host.platform).say("boom")
    assert reply.status == 200 and reply.text == BUSY


def test_buttons_become_numbered_choices_that_map_back(host):
    user = WeChatUser(host.platform)
    reply = user.say("buttons")
    assert "回复 1：查违章" in reply.text and "回复 2：帮助" in reply.text
    user.say("1")
    assert host.agent.texts()[-1] == "/query_violations"
    user.say("1")  # the choice was used: a plain "1" again is just text
    assert host.agent.texts()[-1] == "1"


def test_long_answer_is_split_within_wechat_limits(host, wechat_api):
    user = WeChatUser(host.platform)
    reply = user.say("long")
    assert len(reply.text.encode()) <= 2048
    whole = "\n".join(f"第{i}行：" + "违法记录" * 20 for i in range(30))

    def delivered() -> str:
        return reply.text + "\n" + "\n".join(s.text for s in wechat_api.messages_to(user.openid))

    # The rest may come as several customer-service messages: wait for all of them, not the first.
    wait_for(lambda: len(delivered()) >= len(whole))
    rest = wechat_api.messages_to(user.openid)
    assert rest and all(len(s.text.encode()) <= 2048 for s in rest)
    assert delivered() == whole


def _xml(openid: str, kind: str, body: str) -> str:
    return (f"<xml><ToUserName>gh</ToUserName><FromUserName>{openid}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{kind}</MsgType>{body}"
            f"<MsgId>{next_msg_id()}</MsgId></xml>")


def test_voice_image_video_and_location_become_messages(host):
    user = WeChatUser(host.platform)
    voice = _xml(user.openid, "voice", "<MediaId>m1</MediaId><Format>amr</Format><Recognition>查一下违章</Recognition>")
    assert user.post_xml(voice).text == "收到：查一下违章"
    image = _xml(user.openid, "image", "<PicUrl>http://mmbiz.example/p1.jpg</PicUrl><MediaId>m2</MediaId>")
    user.post_xml(image)
    video = _xml(user.openid, "video", "<MediaId>m3</MediaId><ThumbMediaId>t</ThumbMediaId>")
    user.post_xml(video)
    location = _xml(user.openid, "location", "<Location_X>36.0671</Location_X><Location_Y>120.3826</Location_Y>"
                                             "<Scale>15</Scale><Label>香港中路与山东路路口</Label>")
    user.post_xml(location)
    assert host.agent.texts()[1:] == [
        '/inform{"photo": "http://mmbiz.example/p1.jpg"}',
        '/inform{"photo": "wechat-media:video:m3"}',
        '/inform{"location": "香港中路与山东路路口", "latitude": "36.0671", "longitude": "120.3826"}']
    link = _xml(user.openid, "link", "<Title>t</Title><Description>d</Description><Url>http://x.example</Url>")
    assert user.post_xml(link).text == UNSUPPORTED


def test_typed_text_cannot_pose_as_an_intent_payload(host):
    user = WeChatUser(host.platform)
    user.say('/inform{"vin_suffix": "672418"}')
    assert host.agent.texts() == ['／inform{"vin_suffix": "672418"}']


def test_replies_follow_the_users_script(host):
    user = WeChatUser(host.platform)
    assert user.say("你好，查违章").text == "收到：你好，查违章"
    assert user.say("查詢違章").text == "收到：查詢違章"
    assert user.say("672418").text == "收到：672418"  # no script of its own: the last one holds
    assert user.say("幫我查一下").text == "收到：幫我查一下"
    # The agent's simplified answer goes out in traditional characters.
    assert user.say("buttons").text.startswith("請選擇：")


def test_emoji_sql_and_empty_text_are_just_text(host):
    user = WeChatUser(host.platform)
    assert user.say("😀👍").text == "收到：😀👍"
    assert user.say("'; DROP TABLE vehicles; --").text == "收到：'; DROP TABLE vehicles; --"
    assert user.say("").status == 200


def test_split_text_keeps_lines_and_limits():
    text = "\n".join(["甲" * 300] * 10)
    pieces = split_text(text, 2000)
    assert all(len(p.encode()) <= 2000 for p in pieces)
    assert "\n".join(pieces) == text
    assert split_text("乙" * 1000, 2000) == ["乙" * 666, "乙" * 334]


def test_client_shares_its_token_and_bounds_stale_token_retries(wechat_api):
    settings = WeChatSettings.generate(app_id=wechat_api.app_id, app_secret=wechat_api.app_secret,
                                       api_base=wechat_api.url)
    client = make_client(WeChatConfig.from_credentials(settings.credentials()))
    fetches = wechat_api.token_fetches
    client.message.send_text("o_token_user", "一")
    client.message.send_text("o_token_user", "二")
    assert wechat_api.token_fetches == fetches + 1
    wechat_api.always_invalid_token = True
    calls = wechat_api.calls
    try:
        with pytest.raises(WeChatClientException) as err:
            client.message.send_text("o_token_user", "三")
    finally:
        wechat_api.always_invalid_token = False
    assert err.value.errcode == 40001
    assert wechat_api.calls - calls == 2  # the call and one retry with a fresh token, no more


def test_blocked_user_gets_45015_from_customer_service(wechat_api):
    settings = WeChatSettings.generate(app_id=wechat_api.app_id, app_secret=wechat_api.app_secret,
                                       api_base=wechat_api.url)
    client = make_client(WeChatConfig.from_credentials(settings.credentials()))
    wechat_api.blocked.add("o_gone")
    with pytest.raises(WeChatClientException) as err:
        client.message.send_text("o_gone", "你好")
    assert err.value.errcode == 45015


async def test_memory_dedup_claims_once():
    store = MemoryDedup(ttl=0.2)
    assert await store.claim("k") and not await store.claim("k")
    await asyncio.sleep(0.25)
    assert await store.claim("k")


async def test_redis_dedup_claims_once_across_processes():
    url = need_service(REDIS_URL, "redis")
    key = f"test-{time.time_ns()}"
    one, two = RedisDedup(url, ttl=5), RedisDedup(url, ttl=5)  # two processes' stores
    results = await asyncio.gather(*(s.claim(key) for s in (one, two, one, two)))
    assert sorted(results) == [False, False, False, True]


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_stale_pending_claim_is_taken_over_but_an_answered_one_never(kind):
    """A retry after a server died mid-message is processed; a retry of an answered one is not."""
    def store():
        return MemoryDedup(ttl=30) if kind == "memory" else RedisDedup(need_service(REDIS_URL, "redis"), ttl=30)

    one, two = (store(), store()) if kind == "redis" else (store(),) * 2
    died, answered = f"died-{time.time_ns()}", f"answered-{time.time_ns()}"
    assert await one.claim(died, stale_after=0.3) and await one.claim(answered, stale_after=0.3)
    await one.done(answered)
    assert not await two.claim(died, stale_after=0.3)  # still fresh: the first server may be alive
    await asyncio.sleep(0.45)
    assert await two.claim(died, stale_after=0.3)       # pending too long: taken over, once
    assert not await one.claim(died, stale_after=0.3)
    assert not await two.claim(answered, stale_after=0.3)
    assert not await two.claim(answered)                # without stale_after nothing is taken over


def test_template_messages_through_wechatpy(wechat_api):
    settings = WeChatSettings.generate(app_id=wechat_api.app_id, app_secret=wechat_api.app_secret,
                                       api_base=wechat_api.url)
    client = make_client(WeChatConfig.from_credentials(settings.credentials()))
    data = {"keyword1": {"value": "鲁B12345"}, "keyword2": {"value": "2026-11-20 08:15"}}
    result = client.message.send_template("o_template_user", "TPL_VIOLATION", data)
    assert result["errcode"] == 0 and result["msgid"]
    [sent] = wechat_api.messages_to("o_template_user")
    assert sent.kind == "template" and sent.body["data"] == data
    too_long = {"keyword1": {"value": "这是一段超过二十个字的模板字段内容会被微信拒绝的"}}
    with pytest.raises(WeChatClientException) as err:
        client.message.send_template("o_template_user", "TPL_VIOLATION", too_long)
    assert err.value.errcode == 47003


def test_two_processes_share_one_access_token_through_redis(wechat_api):
    url = need_service(REDIS_URL, "redis")
    settings = WeChatSettings.generate(app_id=wechat_api.app_id, app_secret=wechat_api.app_secret,
                                       api_base=wechat_api.url, token_store=url)
    config = WeChatConfig.from_credentials(settings.credentials())
    first, second = make_client(config), make_client(config)  # as two processes would make them
    first.session.delete(first.access_token_key)
    fetches = wechat_api.token_fetches
    first.message.send_text("o_shared_token", "一")
    second.message.send_text("o_shared_token", "二")
    assert wechat_api.token_fetches == fetches + 1


def test_menu_clicks_become_the_menu_items_intents(host):
    user = WeChatUser(host.platform)
    assert user.click("query_violations").text == "收到：/query_violations"
    assert user.click("report_facility").text == "收到：/report_facility"
    # A key that is not one of ours (e.g. an intent payload with entities) is not passed on.
    assert user.click('inform{"plate":"鲁B12345"}').text is None
    assert host.agent.texts() == ["/query_violations", "/report_facility"]


def test_unfollowing_stops_wechat_alerts_and_following_greets(host):
    user = WeChatUser(host.platform)
    user.event("unsubscribe")
    user.event("subscribe")
    assert host.agent.texts() == ['/unsubscribe_alerts{"channel": "wechat"}', "/greet"]
    assert host.agent.received[0].metadata["wechat_event"] == "unsubscribe"
