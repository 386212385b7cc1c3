"""What a text channel remembers between messages, in one process or shared through Redis by
several Rasa servers: numbered choices and the user's script."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from channels.base import BUSY, Conversations
from tests.conftest import REDIS_URL, need_service

OFFER = [{"text": "请选择：", "buttons": [{"title": "查违章", "payload": "/query_violations"},
                                      {"title": "查记分", "payload": "/query_licence_points"}]}]


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


async def offer_then_choose(first: Conversations, second: Conversations, user: str) -> tuple[str, str]:
    await first.incoming(user, "請問怎麼查")
    shown = await first.outgoing(user, OFFER)
    return shown, await second.incoming(user, "2")


def test_choices_and_script_in_one_process():
    conv = Conversations("wechat")
    shown, chosen = run(offer_then_choose(conv, conv, "u1"))
    assert "回复 1" in shown or "回覆 1" in shown  # traditional in, traditional out
    assert "請選擇" in shown
    assert chosen == "/query_licence_points"


def test_process_memory_is_not_shared_between_servers():
    shown, chosen = run(offer_then_choose(Conversations("wechat"), Conversations("wechat"), "u1"))
    assert chosen == "2"


def test_redis_memory_is_shared_between_servers():
    url = need_service(REDIS_URL, "redis")
    user = f"u-{uuid.uuid4().hex[:8]}"

    async def scenario():
        server_a, server_b = Conversations("wechat", url), Conversations("wechat", url)
        shown, chosen = await offer_then_choose(server_a, server_b, user)
        # The script travels too: server B answers a digits-only message in traditional.
        busy = await server_b.busy(user)
        # Another channel's user of the same id is someone else.
        other = await Conversations("weibo", url).incoming(user, "2")
        return chosen, busy, other

    chosen, busy, other = asyncio.run(scenario())
    assert chosen == "/query_licence_points"
    assert busy == "系統繁忙，請稍後再試。"
    assert other == "2"


def test_typed_payload_is_never_an_intent():
    assert run(Conversations("sms").incoming("u", "/restart")) == "／restart"


@pytest.mark.parametrize("spec", ["redis://127.0.0.1:1/0"])
def test_unreachable_redis_still_answers(spec):
    conv = Conversations("wechat", spec)
    assert run(conv.incoming("u", "你好")) == "你好"
    assert run(conv.outgoing("u", [{"text": "您好"}])) == "您好"
    assert run(conv.busy("u")) == BUSY
