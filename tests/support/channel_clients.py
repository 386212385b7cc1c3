"""One way to talk to the assistant over any channel: `say(text)` returns the whole answer, however
the channel delivers it (passively in the HTTP response, or later through the platform's API,
read back from the stand-in). Used by the end-to-end suites and the inbound benchmark.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Callable, Optional

from tests.support.sms_user import AliyunGateway, GenericGateway, SMSUser, TwilioGateway
from tests.support.telegram_user import TelegramPlatform, TelegramUser
from tests.support.wechat_user import WeChatPlatform, WeChatUser
from tests.support.weibo_user import WeiboPlatform, WeiboUser


@dataclass
class Sent:
    """One message delivered as the platform delivers it. The clock runs from the request leaving to
    the response read: signing before it and decrypting or parsing after it are the platform's work
    (and, in a benchmark, compete for this process's interpreter lock with every other user)."""
    status: int
    passive: Optional[str]  # the answer carried by the HTTP response, if any
    sent_at: float          # wall clock when the request went out
    elapsed: float          # seconds of the HTTP exchange


@dataclass
class Answer:
    status: int
    text: str          # every message of the answer, joined; "" when none came
    elapsed: float     # seconds until the answer was complete


def _poll(fetch: Callable[[float], list[dict]], since: float, timeout: float, settle: float = 0.4,
          interval: float = 0.02) -> list[dict]:
    """Messages (dicts with "text" and "at") from `fetch(after)`, once something has arrived and
    nothing more came for `settle` seconds."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    quiet_since = 0.0
    while time.monotonic() < deadline:
        new = fetch(max([since] + [m["at"] for m in got]))
        if new:
            got += new
            quiet_since = time.monotonic()
        elif got and time.monotonic() - quiet_since >= settle:
            break
        time.sleep(interval)
    return got


class ChannelClient:
    """Say something, get the whole answer. Subclasses deliver one message as the platform does
    (returning the status and any passive answer) and fetch what the platform API received."""
    channel: str
    sender_id: str
    joiner = "\n"
    # How often the stand-in is asked for answers; the load benchmark asks less often so that its
    # many users do not load the stand-ins (answers are timed by the stand-in's receipt either way).
    poll_interval = 0.02

    def deliver(self, text: str) -> Sent:
        raise NotImplementedError

    def fetch(self, after: float) -> list[dict]:
        raise NotImplementedError

    def say(self, text: str, timeout: float = 15) -> Answer:
        sent = self.deliver(text)
        if sent.passive is not None or sent.status != 200:
            return Answer(sent.status, sent.passive or "", sent.elapsed)
        items = _poll(self.fetch, sent.sent_at, timeout, interval=self.poll_interval)
        # Timed by the stand-in's receipt of the last piece, not by our polling.
        elapsed = max(m["at"] for m in items) - sent.sent_at if items else time.time() - sent.sent_at
        return Answer(sent.status, self.joiner.join(m["text"] for m in items), elapsed)


class WeChatClient(ChannelClient):
    channel = "wechat"

    def __init__(self, platform: WeChatPlatform, api_url: str) -> None:
        self.user = WeChatUser(platform)
        self.sender_id, self.api_url = self.user.openid, api_url

    def deliver(self, text: str) -> Sent:
        reply = self.user.say(text)
        return Sent(reply.status, reply.text, reply.sent_at, reply.elapsed)

    def fetch(self, after: float) -> list[dict]:  # slow answers come through customer service
        return self.user.http.get(f"{self.api_url}/_standin/inbox", params={"touser": self.sender_id,
                                                                            "after": after}, timeout=5).json()


class WeiboClient(ChannelClient):
    channel = "weibo"
    joiner = ""

    def __init__(self, platform: WeiboPlatform, api_url: str) -> None:
        self.user = WeiboUser(platform)
        self.sender_id, self.api_url = str(self.user.user_id), api_url

    def deliver(self, text: str) -> Sent:
        reply = self.user.say(text)
        return Sent(reply.status, reply.text, reply.sent_at, reply.elapsed)

    def fetch(self, after: float) -> list[dict]:  # slow or long answers come through the reply API
        return self.user.http.get(f"{self.api_url}/_standin/inbox", params={"receiver_id": self.sender_id,
                                                                            "after": after}, timeout=5).json()


class SMSClient(ChannelClient):
    """A phone texting through one gateway; answers come as TwiML or through the gateways' APIs."""
    channel = "sms"
    joiner = ""

    def __init__(self, gateway: TwilioGateway | AliyunGateway | GenericGateway, outbox_url: str,
                 phone: Optional[str] = None) -> None:
        self.gateway = gateway
        self.user = SMSUser(phone or f"+86139{secrets.randbelow(10**8):08d}", outbox_url=outbox_url, retries=0)
        self.sender_id = self.user.number

    def deliver(self, text: str) -> Sent:
        if isinstance(self.gateway, TwilioGateway):
            delivery = self.user.via_twilio(self.gateway, text)
        elif isinstance(self.gateway, AliyunGateway):
            delivery = self.user.via_aliyun(self.gateway, text)
        else:
            delivery = self.user.via_generic(self.gateway, text)
        return Sent(delivery.status, "".join(delivery.replies) if delivery.replies else None,
                    delivery.sent_at, delivery.elapsed)

    def fetch(self, after: float) -> list[dict]:
        return self.user.http.get(f"{self.user.outbox_url}/_standin/sent",
                                  params={"phone": self.user.number, "after": after}, timeout=5).json()


class TelegramClient(ChannelClient):
    channel = "telegram"

    def __init__(self, platform: TelegramPlatform) -> None:
        self.user = TelegramUser(platform)
        self.sender_id = str(self.user.id)

    def deliver(self, text: str) -> Sent:
        delivery = self.user.say(text)
        return Sent(delivery.status, None, delivery.sent_at, delivery.elapsed)

    def fetch(self, after: float) -> list[dict]:
        return [m for m in self.user.platform.sent(self.user.id) if m["at"] > after]
