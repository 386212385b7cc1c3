"""The Telegram channel's protocol, over real HTTP: the webhook's secret token, answers through
aiogram to the stand-in Bot API, inline keyboards and callback queries, redeliveries, bad input,
photos and locations, long answers, 429s, proactive sends from another event loop, setWebhook."""
from __future__ import annotations

import asyncio
import json
import random
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import requests

from channels.base import BUSY, ChannelConfigError
from channels.telegram import (UNSUPPORTED, TelegramConfig, TelegramConfigError, TelegramInput, TelegramOutput,
                               split_text, utf16_len)
from tests.conftest import REDIS_URL, need_service
from tests.support.background import BackgroundServer, free_port
from tests.support.channel_host import ChannelHost
from tests.support.telegram_api import TelegramAPIStandIn
from tests.support.telegram_user import SECRET_HEADER, TelegramPlatform, TelegramUser, next_update_id

TOKEN = f"{random.randrange(10**9, 10**10)}:{secrets.token_urlsafe(27)}"
USERNAME = "JiaojingTestBot"
SECRET = secrets.token_urlsafe(32)


def credentials(api_url: str, **changes) -> dict:
    creds = {"access_token": TOKEN, "verify": USERNAME, "secret_token": SECRET, "api_base_url": api_url,
             "webhook_url": "https://jj.example.gov.cn/webhooks/telegram/webhook"}
    creds.update(changes)
    return {k: v for k, v in creds.items() if v is not None}


@pytest.fixture(scope="module")
def telegram_api():
    standin = TelegramAPIStandIn(TOKEN, USERNAME)
    with BackgroundServer(standin.app()) as server:
        standin.url = server.url
        yield standin


@pytest.fixture(scope="module")
def hosted(telegram_api):
    channels = {"main": TelegramInput.from_credentials(credentials(telegram_api.url)),
                "wrongbot": TelegramInput.from_credentials(credentials(telegram_api.url, verify="OtherBot"))}
    with ChannelHost(channels) as host:
        yield host, channels


@dataclass
class Bot:
    platform: TelegramPlatform
    agent: object
    channel: TelegramInput
    url: str
    api: TelegramAPIStandIn


@pytest.fixture
def bot(hosted, telegram_api) -> Bot:
    host, channels = hosted
    agent = host.agents["main"]
    agent.received.clear()
    platform = TelegramPlatform(f"{host.urls['main']}/webhook", SECRET, telegram_api.url, USERNAME)
    return Bot(platform, agent, channels["main"], host.urls["main"], telegram_api)


def post_raw(bot: Bot, body: bytes, secret: str = SECRET) -> requests.Response:
    return requests.post(bot.platform.webhook, data=body, timeout=10,
                         headers={"Content-Type": "application/json", SECRET_HEADER: secret})


# -- the webhook ---------------------------------------------------------------------------------

def test_update_is_answered_through_send_message(bot):
    user = TelegramUser(bot.platform)
    delivery = user.say("你好")
    assert delivery.status == 200
    [answer] = user.wait_answers()
    assert answer["text"] == "收到：你好" and answer["chat_id"] == str(user.id)
    [message] = bot.agent.received
    assert (message.text, message.sender_id, message.input_channel) == ("你好", str(user.id), "telegram")
    assert message.metadata["telegram_update_id"] == delivery.update_id


@pytest.mark.parametrize("secret", ["wrong-secret", None, "", SECRET[:-1], SECRET + "x", SECRET.upper()])
def test_missing_or_wrong_secret_token_is_refused_and_nothing_processed(bot, secret):
    user = TelegramUser(bot.platform)
    assert user.say("你好", secret=secret).status == 403
    assert bot.agent.received == []
    assert user.wait_answers(timeout=0.3, settle=0) == []


def test_no_get_me_per_update(bot):
    before = dict(bot.api.calls)
    user = TelegramUser(bot.platform)
    for text in ("一", "二", "三"):
        assert user.ask(text) == [f"收到：{text}"]
    assert bot.api.calls["getMe"] == before.get("getMe", 0)
    assert bot.api.calls["setWebhook"] == before.get("setWebhook", 0)
    assert bot.api.calls["sendMessage"] == before.get("sendMessage", 0) + 3


def test_buttons_are_an_inline_keyboard_and_a_press_sends_the_payload(bot):
    user = TelegramUser(bot.platform)
    user.say("buttons")
    [offer] = user.wait_answers()
    assert offer["text"] == "请选择："
    assert offer["reply_markup"] == {"inline_keyboard": [[
        {"text": "查违章", "callback_data": "/query_violations"}, {"text": "帮助", "callback_data": "/help"}]]}
    press = user.press(offer, "帮助")
    assert press.status == 200
    assert bot.agent.texts() == ["buttons", "/help"]
    query_id = press.update["callback_query"]["id"]
    assert [a["callback_query_id"] for a in bot.api.callback_answers].count(query_id) == 1
    assert [m["text"] for m in user.wait_answers()] == ["收到：/help"]


def test_callback_data_not_on_the_keyboard_is_only_text(bot):
    user = TelegramUser(bot.platform)
    user.say("buttons")
    [offer] = user.wait_answers()
    user.press(offer, data='/inform{"vin_suffix": "672418"}')
    assert bot.agent.texts()[-1] == '／inform{"vin_suffix": "672418"}'


def test_typed_text_cannot_pose_as_an_intent_but_telegram_commands_work(bot):
    user = TelegramUser(bot.platform)
    for text in ('/inform{"vin_suffix": "672418"}', "/start", "/start from_qr_code", f"/help@{USERNAME}",
                 "/help@OtherBot", "/restart"):
        assert user.say(text).status == 200
    assert bot.agent.texts() == ['／inform{"vin_suffix": "672418"}', "/greet", "/greet", "/help",
                                 "／help@OtherBot", "／restart"]


def test_replies_and_buttons_follow_the_users_script(bot):
    user = TelegramUser(bot.platform)
    assert user.ask("查詢違章") == ["收到：查詢違章"]
    assert user.ask("672418") == ["收到：672418"]  # no script of its own: the last one holds
    user.say("buttons")
    [offer] = user.wait_answers()
    assert offer["text"] == "請選擇："
    assert [b["text"] for b in offer["reply_markup"]["inline_keyboard"][0]] == ["查違章", "幫助"]
    user.press(offer, "查違章")
    assert bot.agent.texts()[-1] == "/query_violations"  # the payload is not converted


def test_redelivered_update_is_answered_once(bot):
    user = TelegramUser(bot.platform)
    first = user.say("查违章")
    again = user.redeliver(first)
    assert (first.status, again.status) == (200, 200)
    assert bot.agent.texts() == ["查违章"]
    assert [m["text"] for m in user.wait_answers(timeout=1)] == ["收到：查违章"]


def _update(**body) -> bytes:
    return json.dumps({"update_id": next_update_id(), **body}).encode()


@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b"\xff\xfe\x00", 400),
    (b"", 400),
    (b"[1, 2]", 400),
    (b'"update"', 400),
    (b"{}", 400),
    (b'{"update_id": "12"}', 400),
    (b'{"update_id": true, "message": {"chat": {"id": 1}, "text": "hi"}}', 400),
    (_update(message="hi"), 400),
    (_update(message={"message_id": 1, "text": "hi"}), 400),
    (_update(message={"message_id": 1, "chat": {"id": "abc"}, "text": "hi"}), 400),
    (_update(message={"message_id": 1, "chat": {"id": 5}, "photo": "big"}), 400),
    (_update(message={"message_id": 1, "chat": {"id": 5}, "location": {"latitude": "north"}}), 400),
    (b'{"update_id": 77, "message": {"chat": {"id": 5}, "location": {"latitude": NaN, "longitude": 1}}}', 400),
    (_update(callback_query={"id": "7", "from": {"id": 5}}), 400),
    (_update(callback_query="pressed"), 400),
    (_update(message={"message_id": 1, "chat": {"id": 5}, "text": "x" * 300_000}), 413),
])
def test_malformed_or_oversized_bodies_get_a_4xx(bot, body, status):
    assert post_raw(bot, body).status_code == status
    assert bot.agent.received == []


def test_oversized_body_without_secret_is_still_refused(bot):
    assert post_raw(bot, b"x" * 300_000, secret="wrong").status_code in (403, 413)
    assert bot.agent.received == []


def test_updates_without_anything_to_answer_are_acknowledged(bot):
    user = TelegramUser(bot.platform)
    member = {"chat": user.chat, "from": user.profile, "date": int(time.time()),
              "old_chat_member": {"status": "member", "user": user.profile},
              "new_chat_member": {"status": "kicked", "user": user.profile}}
    assert user.send({"update_id": next_update_id(), "my_chat_member": member}).status == 200
    assert user.say("   ").status == 200  # blank text: nothing to understand
    pinned = user.message_update(pinned_message={"message_id": 3, "chat": user.chat, "date": 1, "text": "置顶"})
    assert user.send(pinned).status == 200  # a service message is nobody's question
    assert bot.agent.received == [] and user.wait_answers(timeout=0.3, settle=0) == []
    edited = {"message_id": 9, "from": user.profile, "chat": user.chat, "date": 1, "edit_date": 2, "text": "改一下"}
    assert user.send({"update_id": next_update_id(), "edited_message": edited}).status == 200
    assert bot.agent.texts() == ["改一下"]


def test_emoji_and_sql_are_just_text(bot):
    user = TelegramUser(bot.platform)
    assert user.ask("😀👍") == ["收到：😀👍"]
    assert user.ask("'; DROP TABLE vehicles; --") == ["收到：'; DROP TABLE vehicles; --"]


def test_photo_and_location_become_inform_payloads_and_stickers_get_an_answer(bot):
    user = TelegramUser(bot.platform)
    assert user.send_photo("AgACAgUAAxkBAAIC-test-photo", caption="路口信号灯坏了").status == 200
    assert user.send_location(36.0671, 120.3826).status == 200
    assert bot.agent.texts() == [
        '/inform{"photo": "telegram-file:AgACAgUAAxkBAAIC-test-photo"}',
        '/inform{"location": "36.0671,120.3826", "latitude": "36.0671", "longitude": "120.3826"}']
    user.answers()
    assert user.send_sticker().status == 200
    assert [m["text"] for m in user.wait_answers()] == [UNSUPPORTED]
    assert len(bot.agent.received) == 2  # the sticker never reached Rasa


def test_long_answer_is_split_under_telegrams_limit(bot):
    user = TelegramUser(bot.platform)
    text = "\n".join(["违法记录" * 25] * 41)[:4096]  # as long as a Telegram message can be
    user.say(text)
    pieces = [m["text"] for m in user.wait_answers(2)]
    assert len(pieces) == 2 and all(utf16_len(p) <= 4096 for p in pieces)
    assert "\n".join(pieces) == "收到：" + text


def test_agent_failure_gets_an_apology(bot):
    user = TelegramUser(bot.platform)
    assert user.ask("boom") == [BUSY]


def test_429_retry_after_is_honoured_once(bot):
    user = TelegramUser(bot.platform)
    bot.api.rate_limit("sendMessage", retry_after=1)
    assert user.ask("限流") == ["收到：限流"]
    first, second = [at for method, at in bot.api.attempts if method == "sendMessage"][-2:]
    assert second - first >= 1.0


def test_a_second_429_is_not_retried_again(bot):
    user = TelegramUser(bot.platform)
    calls = bot.api.calls["sendMessage"]
    bot.api.rate_limit("sendMessage", retry_after=1, times=2)
    assert user.say("限流两次").status == 200
    assert user.wait_answers(timeout=2.5) == []
    assert bot.api.calls["sendMessage"] == calls + 2


# -- sending first, from any event loop ----------------------------------------------------------

async def test_proactive_send_from_inside_a_running_event_loop(bot):
    user = TelegramUser(bot.platform)
    assert user.ask("你好") == ["收到：你好"]  # the channel's output has been used from the server's loop
    out = bot.channel.get_output_channel()
    await out.send_text_message(user.id, "您的车辆鲁B12345有一条新的违法记录。")
    fresh = TelegramOutput(TelegramConfig.from_credentials(credentials(bot.api.url)))
    await fresh.send_text_message(str(user.id), "检验有效期即将届满。")
    await asyncio.gather(out.close(), fresh.close())
    assert [m["text"] for m in user.answers()] == ["您的车辆鲁B12345有一条新的违法记录。", "检验有效期即将届满。"]


async def test_proactive_text_is_split_by_utf16_length():
    api = TelegramAPIStandIn(TOKEN, USERNAME)
    with BackgroundServer(api.app()) as server:
        out = TelegramOutput(TelegramConfig.from_credentials(credentials(server.url)))
        await out.send_text_message("42", "😀" * 2100)  # 2100 characters, 4200 UTF-16 units
        await out.close()
    assert [len(s.text) for s in api.messages_to(42)] == [2048, 52]


async def test_payloads_too_long_for_a_button_map_back(bot):
    user = TelegramUser(bot.platform)
    out = bot.channel.get_output_channel()
    payload = '/inform{"plate": "鲁B12345", "vin_suffix": "672418", "note": "第一辆车"}'
    await out.send_text_with_buttons(user.id, "请选择车辆：", [{"title": "鲁B12345", "payload": payload}],
                                     button_type="vertical")
    await out.close()
    [offer] = user.answers()
    [[button]] = offer["reply_markup"]["inline_keyboard"]
    assert len(button["callback_data"].encode()) <= 64
    user.press(offer, "鲁B12345")
    assert bot.agent.texts() == [payload]


async def test_vertical_buttons_keep_rasas_rendering(bot):
    user = TelegramUser(bot.platform)
    out = bot.channel.get_output_channel()
    await out.send_text_with_buttons(user.id, "请选择：", [{"title": "是", "payload": "/affirm"},
                                                          {"title": "否", "payload": "/deny"}], button_type="vertical")
    await out.close()
    [offer] = user.answers()
    assert offer["reply_markup"]["inline_keyboard"] == [[{"text": "是", "callback_data": "/affirm"}],
                                                         [{"text": "否", "callback_data": "/deny"}]]


# -- setWebhook ----------------------------------------------------------------------------------

def test_set_webhook_sends_the_secret_token_and_needs_it(bot):
    assert requests.post(f"{bot.url}/set_webhook", timeout=10).status_code == 403
    assert requests.post(f"{bot.url}/set_webhook", headers={SECRET_HEADER: "wrong"}, timeout=10).status_code == 403
    res = requests.post(f"{bot.url}/set_webhook", headers={SECRET_HEADER: SECRET}, timeout=10)
    assert res.status_code == 200
    assert bot.api.webhook["url"] == "https://jj.example.gov.cn/webhooks/telegram/webhook"
    assert bot.api.webhook["secret_token"] == SECRET
    assert "callback_query" in bot.api.webhook["allowed_updates"]


def test_set_webhook_for_the_wrong_bot_names_verify(hosted, telegram_api):
    host, _ = hosted
    telegram_api.webhook = {}
    res = requests.post(f"{host.urls['wrongbot']}/set_webhook", headers={SECRET_HEADER: SECRET}, timeout=10)
    assert res.status_code == 502 and "'verify'" in res.text and f"@{USERNAME}" in res.text
    assert telegram_api.webhook == {}


async def test_identity_is_asked_once(telegram_api):
    out = TelegramOutput(TelegramConfig.from_credentials(credentials(telegram_api.url)))
    before = telegram_api.calls["getMe"]
    assert await out.set_webhook() and await out.set_webhook("https://jj.example.gov.cn/other")
    await out.close()
    assert telegram_api.calls["getMe"] == before + 1
    assert telegram_api.webhook["url"] == "https://jj.example.gov.cn/other"


def test_set_webhook_on_start(telegram_api):
    url = "https://jj.example.gov.cn/on-start/webhook"
    channel = TelegramInput.from_credentials(credentials(telegram_api.url, webhook_url=url,
                                                         set_webhook_on_start=True))
    telegram_api.webhook = {}
    with ChannelHost({"start": channel}) as host:
        # ChannelHost starts the server without its after-start event; fire it as `rasa run` does.
        asyncio.run_coroutine_threadsafe(host._server.after_start(), host.loop).result(10)
    assert telegram_api.webhook["url"] == url and telegram_api.webhook["secret_token"] == SECRET


def test_making_the_channel_calls_nothing(telegram_api):
    calls = dict(telegram_api.calls)
    channel = TelegramInput.from_credentials(credentials(telegram_api.url))
    channel.get_output_channel()
    assert dict(telegram_api.calls) == calls


# -- several processes ---------------------------------------------------------------------------

def test_redelivery_to_another_process_is_answered_once_through_redis(telegram_api):
    url = need_service(REDIS_URL, "redis")
    channels = {f"p{i}": TelegramInput.from_credentials(credentials(telegram_api.url, dedup=url)) for i in (1, 2)}
    with ChannelHost(channels) as host:
        platforms = [TelegramPlatform(f"{host.urls[k]}/webhook", SECRET, telegram_api.url) for k in channels]
        user = TelegramUser(platforms[0])
        first = user.say("查违章")
        assert platforms[1].deliver(first.update).status == 200  # Telegram retried, another process got it
        assert sum(len(a.received) for a in host.agents.values()) == 1
        assert [m["text"] for m in user.wait_answers(timeout=1)] == ["收到：查违章"]


# -- configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("access_token", None), ("access_token", "not-a-token"), ("access_token", "12345:short"),
    ("verify", None), ("verify", "jiaojing"), ("verify", "x"),
    ("secret_token", None), ("secret_token", "has space"), ("secret_token", "x" * 257), ("secret_token", "密钥"),
    ("webhook_url", None), ("webhook_url", "ftp://jj.example.gov.cn/webhook"),
    ("api_base_url", "api.telegram.org"), ("dedup", "memcached://127.0.0.1"),
    ("max_body_bytes", 10), ("max_body_bytes", "lots"), ("set_webhook_on_start", "maybe"),
])
def test_config_errors_name_the_key(key, value):
    with pytest.raises(TelegramConfigError) as err:
        TelegramInput.from_credentials(credentials("https://api.telegram.org", **{key: value}))
    assert isinstance(err.value, ChannelConfigError)
    assert "channels.telegram.TelegramInput" in str(err.value) and f"'{key}'" in str(err.value)


def test_config_defaults_and_no_credentials():
    config = TelegramConfig.from_credentials({"access_token": TOKEN, "verify": f"@{USERNAME}", "secret_token": "s",
                                              "webhook_url": "https://jj.example.gov.cn/webhook"})
    assert (config.verify, config.api_base_url, config.dedup, config.set_webhook_on_start) == \
        (USERNAME, "https://api.telegram.org", "memory", False)
    with pytest.raises(TelegramConfigError, match="'access_token' is required"):
        TelegramConfig.from_credentials(None)


def test_split_text_counts_utf16_and_keeps_lines():
    text = "\n".join(["甲" * 1000] * 9)
    pieces = split_text(text)
    assert all(utf16_len(p) <= 4096 for p in pieces) and "\n".join(pieces) == text
    assert split_text("😀" * 3000) == ["😀" * 2048, "😀" * 952]


# -- the stand-in as a command -------------------------------------------------------------------

async def test_stand_in_runs_as_a_command():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.telegram_api", "--port", str(port),
                             "--token", TOKEN, "--username", USERNAME])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        out = TelegramOutput(TelegramConfig.from_credentials(credentials(f"http://127.0.0.1:{port}")))
        assert (await out.identity()).username == USERNAME
        await out.send_text_message("7", "测试")
        await out.close()
        sent = requests.get(f"http://127.0.0.1:{port}/_standin/sent", params={"chat_id": "7"}, timeout=5).json()
        assert [s["text"] for s in sent] == ["测试"]
    finally:
        proc.terminate()
        proc.wait(10)
