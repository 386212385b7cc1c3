"""Weibo fans service (微博粉丝服务平台) private messages: a Rasa input channel.

credentials.yml:

    channels.weibo.WeiboInput:
      app_secret: ...        # signs the URL verification and every push
      access_token: ...      # the fans-service token for the reply API
      api_base_url: https://m.api.weibo.com
      reply_budget: 4.0      # seconds to answer passively before falling back to the reply API
      max_body_bytes: 65536
      max_clock_skew: 300    # seconds a signed timestamp may be off
      dedup: memory          # or redis://... to share retries across processes

Weibo waits 5 s for an answer, then retries the same push. Pushes carry no message id, so a retry
is recognised by sender, created_at, type and content. Within the budget the answer goes back
passively in the HTTP response; later, or longer than one passive reply may be, the response is
empty and the answer follows through the reply API (2/messages/reply.json).
"""
from __future__ import annotations

from functools import cached_property

import asyncio
import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text, Tuple
from urllib.parse import quote, unquote

import aiohttp
from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import base
from channels.base import (Background, ChannelCollector, ChannelConfigError, Conversations, Credentials, Outcome,
                           TextOutput, reply_within)
from channels.body import read_body
from channels.checks import same
from channels.dedup import DedupStore, dedup_store
from channels.redelivery import Redelivery

logger = logging.getLogger(__name__)

# Weibo takes texts under 300 characters, passively and through the reply API alike.
MAX_TEXT_CHARS = 299
PLEASE_TYPE = "暂时听不清这段语音，请用文字告诉我您的问题。"
PLEASE_WRITE = "请用文字描述您的问题。"
GREET_EVENTS = ("follow", "subscribe")
WEIBO_ID = re.compile(r"\d{1,20}")


class WeiboConfigError(ChannelConfigError):
    pass


class WeiboAPIError(Exception):
    """The reply API refused or could not be reached. `transient` says whether a retry may help."""

    def __init__(self, message: str, status: Optional[int] = None, error_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.status, self.error_code = status, error_code

    @property
    def transient(self) -> bool:
        return self.error_code is None and (self.status is None or self.status >= 500 or self.status == 429)


@dataclass(frozen=True)
class WeiboConfig:
    app_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    api_base_url: str = "https://m.api.weibo.com"
    reply_budget: float = 4.0
    max_body_bytes: int = 65536
    max_clock_skew: int = 300
    dedup: str = "memory"
    memory: str = "memory"  # numbered choices and script; defaults to the dedup store

    @classmethod
    def from_credentials(cls, creds: Optional[Dict[Text, Any]]) -> "WeiboConfig":
        c = Credentials("credentials.yml channels.weibo.WeiboInput", creds, WeiboConfigError)
        return cls(
            app_secret=c.need("app_secret"), access_token=c.need("access_token"),
            api_base_url=c.url("api_base_url", "https://m.api.weibo.com"),
            reply_budget=c.number("reply_budget", 4.0, 0.0, 4.8),
            max_body_bytes=c.integer("max_body_bytes", 65536, 1024, 10 * 1024 * 1024),
            max_clock_skew=c.integer("max_clock_skew", 300, 1, 86400),
            dedup=c.store("dedup"), memory=c.store("memory", c.store("dedup")),
        )


def sha1_signature(*parts: str) -> str:
    """Weibo's signature, as WeChat's: SHA-1 of the sorted parts, concatenated."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def encode_data(payload: Dict[str, Any]) -> str:
    """The `data` field of replies: URL-encoded UTF-8 JSON."""
    return quote(json.dumps(payload, ensure_ascii=False), safe="")


def decode_data(data: str) -> Dict[str, Any]:
    return json.loads(unquote(data))


def split_text(text: str, limit: int = MAX_TEXT_CHARS) -> List[str]:
    """Cut a text into pieces of at most `limit` characters, at line breaks where possible."""
    return base.split_text(text, limit, size=len)


class WeiboOutput(TextOutput):
    """Sends through the reply API (allowed 48 h after the user's last message). Works from any
    running event loop: the channel's server and the push dispatcher each get their own session."""

    def __init__(self, config: WeiboConfig) -> None:
        self.config = config
        self._session: Optional[aiohttp.ClientSession] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @classmethod
    def name(cls) -> Text:
        return "weibo"

    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        # A session is bound to the loop it was made in; never made at import or construction.
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None

    async def reply(self, receiver_id: str, text: str) -> Dict[str, Any]:
        """One text (under 300 characters) to one user; raises WeiboAPIError."""
        form = {"access_token": self.config.access_token, "type": "text",
                "data": encode_data({"text": text}), "receiver_id": str(receiver_id)}
        try:
            async with self._http().post(f"{self.config.api_base_url}/2/messages/reply.json", data=form) as res:
                status, body = res.status, await res.text()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise WeiboAPIError(f"reply API unreachable: {exc!r}") from None
        try:
            result = json.loads(body)
        except ValueError:
            result = None
        if isinstance(result, dict) and result.get("error_code"):
            code = result["error_code"]
            raise WeiboAPIError(f"reply API error {code}: {result.get('error')}", status,
                                int(code) if str(code).isdigit() else None)
        if status >= 400 or not isinstance(result, dict):
            raise WeiboAPIError(f"reply API answered HTTP {status}", status)
        return result

    async def send_text(self, receiver_id: str, text: str) -> None:
        for piece in split_text(text):
            await self.reply(receiver_id, piece)



@dataclass(frozen=True)
class Push:
    """One JSON push from Weibo. Ids keep the JSON type Weibo used, for the passive reply."""
    type: str
    sender: Any
    receiver: Any
    created_at: str
    text: str
    data: Dict[str, Any]

    @property
    def user(self) -> str:
        return str(self.sender)

    @property
    def dedup_key(self) -> str:
        # No message id: a retry is the same push again, so its content is part of the key too.
        content = json.dumps([self.text, self.data], sort_keys=True, ensure_ascii=False, default=str)
        digest = hashlib.sha1(content.encode()).hexdigest()[:16]
        return f"weibo:{self.receiver}:{self.sender}:{self.created_at}:{self.type}:{digest}"


def parse_push(body: bytes) -> Push:
    """The push in a request body; ValueError (or TypeError) when it is not one."""
    doc = json.loads(body.decode("utf-8"))
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    for key in ("sender_id", "receiver_id"):
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not WEIBO_ID.fullmatch(str(value)):
            raise ValueError(f"bad {key}")
    kind, created, text = doc.get("type"), doc.get("created_at"), doc.get("text") or ""
    if not isinstance(kind, str) or not kind:
        raise ValueError("no type")
    if isinstance(created, bool) or not isinstance(created, (int, str)) or not str(created).strip():
        raise ValueError("no created_at")
    data = doc.get("data") or {}
    if not isinstance(text, str) or not isinstance(data, dict):
        raise ValueError("bad text or data")
    return Push(kind, doc["sender_id"], doc["receiver_id"], str(created), text, data)


def _coordinate(value: Any, bound: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("bad coordinate")
    number = float(value)
    if not math.isfinite(number) or abs(number) > bound:
        raise ValueError("coordinate out of range")
    return str(value).strip()


def channel_payload(push: Push) -> Optional[str]:
    """The payload for a position, image or event push (None: nothing to process). Raises
    ValueError when the push lacks what its type needs."""
    data = push.data
    if push.type == "position":
        lat, lon = _coordinate(data.get("latitude"), 90), _coordinate(data.get("longitude"), 180)
        label = data.get("label") or data.get("address")
        label = label.strip() if isinstance(label, str) and label.strip() else f"{lat},{lon}"
        # The same shape as a WeChat location, so forms fill the location slot either way.
        return "/inform" + json.dumps({"location": label, "latitude": lat, "longitude": lon}, ensure_ascii=False)
    if push.type == "image":
        media = data.get("tovfid") or data.get("vfid") or data.get("url")
        if isinstance(media, bool) or not isinstance(media, (int, str)) or not str(media).strip():
            raise ValueError("image without a file id")
        return "/inform" + json.dumps({"photo": f"weibo-media:image:{media}"}, ensure_ascii=False)
    if push.type == "event":
        subtype = data.get("subtype")
        if subtype in GREET_EVENTS:
            return "/greet"
        key = data.get("key")
        if subtype == "click" and isinstance(key, str) and key.strip():
            # Menu keys are ours: "/intent" keys are payloads, others are the text they stand for.
            return key.strip()
    return None


class WeiboInput(InputChannel):
    @classmethod
    def name(cls) -> Text:
        return "weibo"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(WeiboConfig.from_credentials(credentials))

    def __init__(self, config: WeiboConfig) -> None:
        self.config = config
        self.output = WeiboOutput(config)  # makes no session until its first send
        self.conversations = Conversations("weibo", config.memory)
        self.background = Background()
        self.redelivery = Redelivery("weibo", self.conversations, self.background, self._send_logged)

    @cached_property  # made on first use, never at start-up
    def dedup(self) -> DedupStore:
        return dedup_store(self.config.dedup, ttl=60)

    def get_output_channel(self) -> Optional[OutputChannel]:
        return self.output

    # -- request checks --------------------------------------------------------------------

    def _signed(self, args: Dict[str, str]) -> bool:
        timestamp, nonce = args.get("timestamp") or "", args.get("nonce") or ""
        expected = sha1_signature(self.config.app_secret, timestamp, nonce)
        if not same(args.get("signature"), expected):
            return False
        try:
            return abs(time.time() - int(timestamp)) <= self.config.max_clock_skew
        except ValueError:
            return False

    async def _first_delivery(self, push: Push) -> bool:
        try:
            return await self.dedup.claim(push.dedup_key)
        except Exception as exc:  # the shared store is down: answering twice beats not answering
            logger.error("weibo: dedup store failed, processing anyway: %s", exc)
            return True

    # -- answering -------------------------------------------------------------------------

    @staticmethod
    def _reply(push: Push, text: str) -> HTTPResponse:
        return response.json({"result": True, "sender_id": push.receiver, "receiver_id": push.sender,
                              "type": "text", "data": encode_data({"text": text})})

    async def _typed(self, push: Push) -> Tuple[Optional[str], Optional[str]]:
        """(text for Rasa, passive answer without Rasa) for text and voice pushes."""
        heard = push.text if push.type == "text" else push.data.get("recognition")
        if not isinstance(heard, str) or not heard.strip():
            return None, await self.conversations.render(push.user, PLEASE_WRITE if push.type == "text"
                                                         else PLEASE_TYPE)
        return await self.conversations.incoming(push.user, heard), None

    async def _send_logged(self, user: str, text: str) -> None:
        try:
            await self.output.send_text(user, text)
            logger.info("weibo: answer to %s sent through the reply API", user)
        except WeiboAPIError as exc:
            logger.error("weibo: reply API send to %s failed: %s", user, exc)
        except Exception:
            logger.exception("weibo: reply API send to %s failed", user)

    async def _deliver_later(self, outcome: Outcome, user: str, collector: CollectingOutputChannel,
                             said: str, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                             metadata: Dict[str, Any]) -> None:
        try:
            if outcome is not None:
                raise outcome
            text = await self.conversations.outgoing(user, collector.messages)
        except Exception as exc:
            text = await self.redelivery.apology(user, said, exc, on_new_message, metadata)
        if text:
            await self._send_logged(user, text)

    async def _handle(self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]]
                      ) -> HTTPResponse:
        started = time.monotonic()
        args = {k: request.args.get(k) for k in request.args}
        if not await read_body(request, self.config.max_body_bytes):
            logger.warning("weibo: body over %d bytes refused", self.config.max_body_bytes)
            return response.text("payload too large", status=413)
        if not self._signed(args):
            logger.warning("weibo: bad signature or stale timestamp from %s", request.ip)
            return response.text("forbidden", status=403)
        try:
            push = parse_push(request.body or b"")
            payload = None if push.type in ("text", "voice") else channel_payload(push)
        except Exception as exc:  # not JSON, not UTF-8, fields missing or of the wrong kind
            logger.warning("weibo: malformed push refused: %s", exc.__class__.__name__)
            return response.text("bad request", status=400)

        if not await self._first_delivery(push):
            logger.info("weibo: retry of %s ignored", push.dedup_key)
            return response.text("")
        text, direct = await self._typed(push) if push.type in ("text", "voice") else (payload, None)
        if direct is not None:
            return self._reply(push, direct)
        if text is None:
            return response.text("")

        metadata = {"weibo_msg_type": push.type}
        collector = ChannelCollector(self.name())
        message = UserMessage(text, collector, push.user, input_channel=self.name(), metadata=metadata)

        async def reply(outcome: Outcome) -> HTTPResponse:
            if outcome is not None:
                return self._reply(push, await self.redelivery.apology(push.user, text, outcome, on_new_message,
                                                                       metadata))
            answer = await self.conversations.outgoing(push.user, collector.messages)
            if not answer:
                return response.text("")
            if len(answer) > MAX_TEXT_CHARS:
                # One passive reply cannot carry it: all pieces go through the API, in order.
                self.background.spawn(self._send_logged(push.user, answer))
                return response.text("")
            return self._reply(push, answer)

        return await reply_within(
            request, self.config.reply_budget - (time.monotonic() - started), on_new_message, message, reply,
            lambda outcome: self._deliver_later(outcome, push.user, collector, text, on_new_message, metadata),
            lambda: response.text(""), self.background)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint(f"weibo_webhook_{id(self):x}", __name__)

        @bp.route("/", methods=["GET"], ignore_body=True)
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/webhook", methods=["GET"], ignore_body=True)
        async def verify(request: Request) -> HTTPResponse:
            args = {k: request.args.get(k) for k in request.args}
            if not self._signed(args):
                return response.text("forbidden", status=403)
            return response.text(args.get("echostr") or "")

        @bp.route("/webhook", methods=["POST"], stream=True)  # read against max_body_bytes
        async def receive(request: Request) -> HTTPResponse:
            return await self._handle(request, on_new_message)

        @bp.listener("after_server_stop")
        async def close_session(*_: Any) -> None:
            await self.output.close()

        return bp
