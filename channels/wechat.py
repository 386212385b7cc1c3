"""WeChat official account: a Rasa input channel on wechatpy.

credentials.yml:

    channels.wechat.WeChatInput:
      token: ...             # 3-32 letters/digits, as set in the WeChat admin console
      app_id: ...
      app_secret: ...
      encoding_aes_key: ...  # 43 characters; required unless mode is plain
      mode: safe             # plain | compatible | safe
      api_base_url: https://api.weixin.qq.com
      reply_budget: 4.0      # seconds to answer passively before falling back to customer service
      max_body_bytes: 65536
      max_clock_skew: 300    # seconds a signed timestamp may be off
      dedup: memory          # or redis://... to share retries across processes
      token_store: memory    # or redis://... to share one access token across processes

WeChat waits 5 s for an answer, then retries (three times in all). Within the budget the answer
goes back passively in the HTTP response; later than that the response is `success` and the answer
follows through the customer-service message API.
"""
from __future__ import annotations

from functools import cached_property

import asyncio
import hashlib
import json
import logging
import re
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

import requests
from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from wechatpy import parse_message
from wechatpy.client import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException, WeChatClientException
from wechatpy.replies import TextReply

from channels import base
from channels.base import (Background, ChannelCollector, ChannelConfigError, Conversations, Credentials, Outcome,
                           TextOutput, reply_within)
from channels.body import read_body
from channels.checks import same
from channels.dedup import DedupStore, dedup_store
from channels.redelivery import Redelivery

logger = logging.getLogger(__name__)

MODES = ("plain", "compatible", "safe")
TOKEN_ERRORS = (40001, 40014, 42001)
# A passive reply or a customer-service text may carry at most 2048 bytes.
MAX_TEXT_BYTES = 2000
MENU_KEY = re.compile(r"[a-z][a-z_]{1,40}")
UNSUPPORTED = "暂不支持这类消息，请用文字、语音、图片或位置描述您的问题。"
# WeChat never sends a DTD: external entities (XXE) and entity bombs are refused unparsed.
DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class WeChatConfigError(ChannelConfigError):
    pass


@dataclass(frozen=True)
class WeChatConfig:
    token: str
    app_id: str
    app_secret: str
    encoding_aes_key: Optional[str]
    mode: str = "safe"
    api_base_url: str = "https://api.weixin.qq.com"
    reply_budget: float = 4.0
    max_body_bytes: int = 65536
    max_clock_skew: int = 300
    dedup: str = "memory"
    token_store: str = "memory"
    memory: str = "memory"  # numbered choices and script; defaults to the dedup store

    @classmethod
    def from_credentials(cls, creds: Optional[Dict[Text, Any]]) -> "WeChatConfig":
        c = Credentials("credentials.yml channels.wechat.WeChatInput", creds, WeChatConfigError)
        token = c.need("token")
        if not re.fullmatch(r"[A-Za-z0-9]{3,32}", token):
            c.fail("token", "must be 3-32 letters or digits")
        mode = c.choice("mode", MODES, "safe")
        aes_key = c.text("encoding_aes_key")
        if mode != "plain" and (aes_key is None or not re.fullmatch(r"[A-Za-z0-9]{43}", aes_key)):
            c.fail("encoding_aes_key", f"must be 43 letters or digits in {mode} mode")
        return cls(
            token=token, app_id=c.need("app_id"), app_secret=c.need("app_secret"),
            encoding_aes_key=aes_key, mode=mode, api_base_url=c.url("api_base_url", "https://api.weixin.qq.com"),
            reply_budget=c.number("reply_budget", 4.0, 0.0, 4.8),
            max_body_bytes=c.integer("max_body_bytes", 65536, 1024, 10 * 1024 * 1024),
            max_clock_skew=c.integer("max_clock_skew", 300, 1, 86400),
            dedup=c.store("dedup"), token_store=c.store("token_store"),
            memory=c.store("memory", c.store("dedup")),
        )


class GuardedWeChatClient(WeChatClient):
    """wechatpy's client against a configurable API base, retrying a stale token once only.

    wechatpy refetches the token and retries on 40001/40014/42001 without a bound; a server that
    keeps answering 40001 would loop forever. The token lives in a storage shared by every
    process (redis) or by this process (memory), never in a per-client cache.
    """

    def __init__(self, config: WeChatConfig, session: Any = None) -> None:
        super().__init__(config.app_id, config.app_secret, session=session, timeout=5)
        self.API_BASE_URL = f"{config.api_base_url}/cgi-bin/"
        self._token_url = f"{config.api_base_url}/cgi-bin/token"
        self._depth = threading.local()

    def fetch_access_token(self) -> dict:
        res = self._http.get(self._token_url, timeout=self.timeout, params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
        try:
            res.raise_for_status()
            result = res.json()
        except (requests.RequestException, ValueError) as exc:
            raise WeChatClientException(None, f"token endpoint: {exc}", client=self) from None
        if result.get("errcode"):
            raise WeChatClientException(result["errcode"], result.get("errmsg"), client=self)
        expires_in = int(result.get("expires_in", 7200))
        self.session.set(self.access_token_key, result["access_token"], expires_in)
        self.expires_at = int(time.time()) + expires_in
        return result

    def _handle_result(self, res, method=None, url=None, result_processor=None, **kwargs):
        depth = getattr(self._depth, "value", 0)
        if depth >= 1:
            result = self._decode_result(res) if not isinstance(res, dict) else res
            if isinstance(result, dict) and int(result.get("errcode", 0) or 0) in TOKEN_ERRORS:
                raise WeChatClientException(result["errcode"], result.get("errmsg"), client=self)
        self._depth.value = depth + 1
        try:
            return super()._handle_result(res, method, url, result_processor, **kwargs)
        finally:
            self._depth.value = depth


def make_client(config: WeChatConfig) -> GuardedWeChatClient:
    session = None
    if config.token_store != "memory":
        import redis
        from wechatpy.session.redisstorage import RedisStorage

        session = RedisStorage(redis.Redis.from_url(config.token_store), prefix="jj:wechat")
    return GuardedWeChatClient(config, session=session)


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> List[str]:
    """Cut a text into pieces of at most `limit` UTF-8 bytes, at line breaks where possible."""
    return base.split_text(text, limit)


class WeChatOutput(TextOutput):
    """Sends through the customer-service message API (allowed 48 h after the user's last action)."""

    def __init__(self, client: GuardedWeChatClient) -> None:
        self.client = client

    @classmethod
    def name(cls) -> Text:
        return "wechat"

    async def send_text(self, openid: str, text: str) -> None:
        loop = asyncio.get_running_loop()
        for piece in split_text(text):
            # wechatpy is synchronous (requests): keep it off the event loop.
            await loop.run_in_executor(None, self.client.message.send_text, openid, piece)



def dedup_key(msg: Any) -> str:
    if getattr(msg, "id", None):
        return f"wechat:msg:{msg.id}"
    created = int(msg.create_time.timestamp()) if hasattr(msg.create_time, "timestamp") else msg.create_time
    # A retry repeats the whole event; two different taps in the same second are two events.
    return f"wechat:event:{msg.source}:{created}:{getattr(msg, 'event', '')}:{getattr(msg, 'key', '') or ''}"


class WeChatInput(InputChannel):
    @classmethod
    def name(cls) -> Text:
        return "wechat"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(WeChatConfig.from_credentials(credentials))

    def __init__(self, config: WeChatConfig) -> None:
        self.config = config
        self.crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.app_id) \
            if config.encoding_aes_key else None
        self._client: Optional[GuardedWeChatClient] = None
        self.conversations = Conversations("wechat", config.memory)
        self.background = Background()
        self.redelivery = Redelivery("wechat", self.conversations, self.background, self._send)

    @property
    def client(self) -> GuardedWeChatClient:
        if self._client is None:
            self._client = make_client(self.config)
        return self._client

    @cached_property  # made on first use, never at start-up
    def dedup(self) -> DedupStore:
        return dedup_store(self.config.dedup, ttl=60)

    def get_output_channel(self) -> Optional[OutputChannel]:
        return WeChatOutput(self.client)

    # -- request checks --------------------------------------------------------------------

    def _signed(self, args: Dict[str, str]) -> bool:
        # wechatpy's check_signature compares with != and raises on odd input.
        if not same(args.get("signature"), sha1_signature(self.config.token, args.get("timestamp") or "",
                                                          args.get("nonce") or "")):
            return False
        try:
            skew = abs(time.time() - int(args.get("timestamp", "0")))
        except ValueError:
            return False
        return skew <= self.config.max_clock_skew

    def _decode_body(self, request: Request, args: Dict[str, str]) -> Optional[str]:
        """The plaintext XML, or None if an encrypted body fails its check (raises on bad XML)."""
        body = refuse_dtd(request.body.decode("utf-8"))
        encrypted = args.get("encrypt_type") == "aes"
        if self.config.mode == "safe" and not encrypted:
            return None
        if encrypted:
            if self.crypto is None:
                return None
            try:
                return self.crypto.decrypt_message(body, args.get("msg_signature", ""),
                                                   args.get("timestamp", ""), args.get("nonce", ""))
            except (InvalidSignatureException, InvalidAppIdException, UnicodeDecodeError, ValueError,
                    struct.error, IndexError):
                # Signed but not sealed with our key and app id: not from WeChat. Under another key the
                # padding byte is random; now and then wechatpy fails on the length field
                # (struct.error) or an empty block (IndexError) rather than on the app id.
                return None
        return body

    def _reply(self, msg: Any, text: str, args: Dict[str, str]) -> HTTPResponse:
        xml = TextReply(content=text, message=msg).render()
        if args.get("encrypt_type") == "aes" and self.crypto is not None:
            xml = self.crypto.encrypt_message(xml, args.get("nonce", ""), args.get("timestamp"))
        return response.text(xml, content_type="application/xml")

    # -- turning WeChat messages into user messages -----------------------------------------

    async def _user_text(self, msg: Any) -> Optional[str]:
        """What Rasa gets: typed text (never an intent payload), or the channel's own payloads for
        follows, photos, videos and locations."""
        kind = msg.type
        if kind == "text":
            return await self.conversations.incoming(msg.source, msg.content or "")
        if kind == "voice":
            text = getattr(msg, "recognition", None) or None
            return await self.conversations.incoming(msg.source, text) if text else None
        if kind == "image":
            return "/inform" + json.dumps({"photo": msg.image or f"wechat-media:image:{msg.media_id}"})
        if kind in ("video", "shortvideo"):
            return "/inform" + json.dumps({"photo": f"wechat-media:video:{msg.media_id}"})
        if kind == "location":
            return "/inform" + json.dumps({"location": msg.label or f"{msg.location_x},{msg.location_y}",
                                           "latitude": str(msg.location_x), "longitude": str(msg.location_y)},
                                          ensure_ascii=False)
        if kind == "event" and msg.event in ("subscribe", "subscribe_scan"):
            return "/greet"
        if kind == "event" and msg.event == "unsubscribe":
            # The user unfollowed: stop WeChat alerts (nothing can be sent to them any more).
            return '/unsubscribe_alerts{"channel": "wechat"}'
        if kind == "event" and msg.event == "click":
            # Keys come from our own menu (channels/menus/wechat_menu.json), in a signed request.
            key = getattr(msg, "key", "") or ""
            return f"/{key}" if MENU_KEY.fullmatch(key) else None
        return None

    async def _deliver_later(self, outcome: Outcome, openid: str, collector: CollectingOutputChannel,
                             said: str, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                             metadata: Dict[str, Any]) -> None:
        try:
            if outcome is not None:
                raise outcome
            text = await self.conversations.outgoing(openid, collector.messages)
        except Exception as exc:
            text = await self.redelivery.apology(openid, said, exc, on_new_message, metadata)
        if text:
            await self._send(openid, text)

    async def _send(self, openid: str, text: str) -> None:
        try:
            await WeChatOutput(self.client).send_text(openid, text)
            logger.info("wechat: slow answer to %s sent through customer service", openid)
        except WeChatClientException as exc:
            logger.error("wechat: customer-service send to %s failed: %s %s", openid, exc.errcode, exc.errmsg)
        except requests.RequestException as exc:
            logger.error("wechat: customer-service send to %s failed: %s", openid, exc)

    async def _handle(self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]]
                      ) -> HTTPResponse:
        started = time.monotonic()
        args = {k: request.args.get(k) for k in request.args}
        if not await read_body(request, self.config.max_body_bytes):
            logger.warning("wechat: body over %d bytes refused", self.config.max_body_bytes)
            return response.text("payload too large", status=413)
        if not self._signed(args):
            logger.warning("wechat: bad signature or stale timestamp from %s", request.ip)
            return response.text("forbidden", status=403)
        try:
            xml = self._decode_body(request, args)
            if xml is None:
                logger.warning("wechat: encrypted body failed its check from %s", request.ip)
                return response.text("forbidden", status=403)
            msg = parse_message(refuse_dtd(xml))  # the decrypted XML too
            if msg is None or not getattr(msg, "source", None):
                raise ValueError("no message")
        except Exception as exc:  # malformed XML, bad base64, wrong padding, missing fields
            logger.warning("wechat: malformed body refused: %s", exc.__class__.__name__)
            return response.text("bad request", status=400)

        # WeChat retries only when it got no answer within 5 s, and a live server always answers
        # within the budget: a retry that finds the claim still pending after that took over from a
        # server that died mid-message.
        key = dedup_key(msg)
        if not await self.dedup.claim(key, stale_after=self.config.reply_budget + 0.5):
            logger.info("wechat: retry of %s ignored", key)
            return response.text("success")
        try:
            return await self._answer(request, msg, args, started, on_new_message)
        finally:
            await self.dedup.done(key)

    async def _answer(self, request: Request, msg: Any, args: Dict[str, str], started: float,
                      on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Optional[HTTPResponse]:
        text = await self._user_text(msg)
        if text is None:
            if msg.type in ("link", "file"):
                return self._reply(msg, UNSUPPORTED, args)
            return response.text("success")

        metadata = {"wechat_msg_type": msg.type, "wechat_event": getattr(msg, "event", None)}
        collector = ChannelCollector(self.name())
        message = UserMessage(text, collector, msg.source, input_channel=self.name(), metadata=metadata)

        async def reply(outcome: Outcome) -> HTTPResponse:
            if outcome is not None:
                return self._reply(msg, await self.redelivery.apology(msg.source, text, outcome, on_new_message,
                                                                      metadata), args)
            pieces = split_text(await self.conversations.outgoing(msg.source, collector.messages))
            if not pieces:
                return response.text("success")
            if len(pieces) > 1:
                self.background.spawn(WeChatOutput(self.client).send_text(msg.source, "\n".join(pieces[1:])))
            return self._reply(msg, pieces[0], args)

        return await reply_within(
            request, self.config.reply_budget - (time.monotonic() - started), on_new_message, message, reply,
            lambda outcome: self._deliver_later(outcome, msg.source, collector, text, on_new_message, metadata),
            lambda: response.text("success"), self.background)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint(f"wechat_webhook_{id(self):x}", __name__)

        @bp.route("/", methods=["GET"], ignore_body=True)
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/webhook", methods=["GET"], ignore_body=True)
        async def verify(request: Request) -> HTTPResponse:
            args = {k: request.args.get(k) for k in request.args}
            if not self._signed(args):
                return response.text("forbidden", status=403)
            return response.text(args.get("echostr", ""))

        @bp.route("/webhook", methods=["POST"], stream=True)  # read against max_body_bytes
        async def receive(request: Request) -> HTTPResponse:
            return await self._handle(request, on_new_message)

        return bp


def refuse_dtd(xml: str) -> str:
    """The XML as is; ValueError if it declares a DTD or entities."""
    if DTD.search(xml):
        raise ValueError("DTDs are not accepted")
    return xml


def sha1_signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the sorted parts, concatenated."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()
