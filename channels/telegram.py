"""Telegram: Rasa's aiogram connector (rasa.core.channels.telegram) with its gaps fixed.

credentials.yml:

    channels.telegram.TelegramInput:
      access_token: ...            # from @BotFather: <bot id>:<secret>
      verify: JiaojingBot          # the bot's username
      webhook_url: https://example.gov.cn/webhooks/telegram/webhook
      secret_token: ...            # 1-256 of A-Z a-z 0-9 _ -, echoed by Telegram in a header
      api_base_url: https://api.telegram.org
      dedup: memory                # or redis://... to share redeliveries across processes
      max_body_bytes: 262144
      set_webhook_on_start: false

What differs from Rasa's connector: every update must carry the secret token (403 otherwise);
no getMe per update (the identity is fetched once, when the webhook is set); the Bot's aiohttp
session is made lazily, one per event loop, so the push dispatcher can send from its own loop;
updates redelivered with the same update_id are handled once; bad bodies get 400/413; typed text
never poses as an intent payload; photos and locations become `/inform` payloads; answers follow
the user's script, are split under 4096 characters, and a 429 is waited out once.
"""
from __future__ import annotations

from functools import cached_property

import asyncio
import hashlib
import json
import logging
import re
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

import aiohttp
from aiogram import Bot, types
from aiogram.bot.api import TelegramAPIServer
from aiogram.utils.exceptions import RetryAfter, TelegramAPIError
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.telegram import TelegramInput as RasaTelegramInput
from rasa.core.channels.telegram import TelegramOutput as RasaTelegramOutput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import base
from channels.base import Background, ChannelConfigError, Conversations, Credentials
from channels.body import read_body
from channels.checks import same
from channels.dedup import DedupStore, dedup_store
from channels.redelivery import Redelivery
from channels.script import guard_payload

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096          # characters (UTF-16 code units) per message
MAX_CALLBACK_DATA = 64   # bytes of callback_data per inline button
MAX_RETRY_AFTER = 60.0   # a longer flood wait is not worth holding a send for
HANDLE_BUDGET = 10.0     # the webhook answers after this even if Rasa is still busy
REQUEST_TIMEOUT = 15.0
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
# Telegram's own commands; everything else starting with "/" is typed text.
COMMANDS = {"start": "/greet", "help": "/help", "cancel": "/cancel"}
COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]+))?(?:\s|$)")
UNSUPPORTED = "暂不支持这类消息，请用文字、图片或位置描述您的问题。"
UNSUPPORTED_KINDS = ("sticker", "voice", "audio", "animation", "video_note", "document", "contact", "poll",
                     "dice", "venue")


class TelegramConfigError(ChannelConfigError):
    pass


@dataclass(frozen=True)
class TelegramConfig:
    access_token: str
    verify: str
    webhook_url: str
    secret_token: str
    api_base_url: str = "https://api.telegram.org"
    dedup: str = "memory"
    memory: str = "memory"  # script of each user; defaults to the dedup store
    max_body_bytes: int = 262144
    set_webhook_on_start: bool = False

    @classmethod
    def from_credentials(cls, creds: Optional[Dict[Text, Any]]) -> "TelegramConfig":
        c = Credentials("credentials.yml channels.telegram.TelegramInput", creds, TelegramConfigError)
        token = c.need("access_token")
        if not re.fullmatch(r"\d{1,20}:[A-Za-z0-9_-]{20,100}", token):
            c.fail("access_token", "must be the token from @BotFather (<bot id>:<secret>)")
        verify = c.need("verify").lstrip("@")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{4,31}", verify) or not verify.lower().endswith("bot"):
            c.fail("verify", "must be the bot's username (5-32 letters, digits or _, ending in 'bot')")
        secret = c.need("secret_token")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            c.fail("secret_token", "must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return cls(
            access_token=token, verify=verify, webhook_url=c.url("webhook_url"), secret_token=secret,
            api_base_url=c.url("api_base_url", "https://api.telegram.org"), dedup=c.store("dedup"),
            memory=c.store("memory", c.store("dedup")),
            max_body_bytes=c.integer("max_body_bytes", 262144, 1024, 10 * 1024 * 1024),
            set_webhook_on_start=c.flag("set_webhook_on_start", False),
        )

    @property
    def bot_id(self) -> str:
        return self.access_token.split(":", 1)[0]


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT) -> List[str]:
    """Pieces of at most `limit` characters as Telegram counts them, cut at line breaks."""
    return base.split_text(text, limit, size=utf16_len)


class TelegramOutput(RasaTelegramOutput):
    """Rasa's Telegram output, usable from any running event loop (one aiohttp session per loop,
    made on first use), answering in the user's script, splitting long texts, waiting out one 429."""

    def __init__(self, config: TelegramConfig, conversations: Optional[Conversations] = None) -> None:
        Bot.__init__(self, config.access_token, server=TelegramAPIServer.from_base(config.api_base_url),
                     timeout=REQUEST_TIMEOUT)
        self.config = config
        self.conversations = conversations
        self._sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = \
            weakref.WeakKeyDictionary()
        self._identity: Optional[types.User] = None
        self._payloads: Dict[str, str] = {}  # short callback_data -> payload too long for a button

    @property
    def session(self) -> aiohttp.ClientSession:
        # aiogram keeps one session bound to the loop that made it; a send from another loop
        # (the push dispatcher's, a test's) would fail. One session per running loop instead.
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = self._sessions[loop] = self.get_new_session()
        return session

    async def close(self) -> None:
        """Close the session of the running loop."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    async def request(self, method: str, data: Optional[Dict] = None, files: Optional[Dict] = None, **kwargs: Any):
        try:
            return await super().request(method, data, files, **kwargs)
        except RetryAfter as exc:
            if exc.timeout > MAX_RETRY_AFTER:
                raise
            logger.warning("telegram: %s rate-limited, retrying once after %ss", method, exc.timeout)
            await asyncio.sleep(exc.timeout)
            return await super().request(method, data, files, **kwargs)

    async def _render(self, recipient_id: Any, text: str) -> str:
        if self.conversations is None:
            return text
        return await self.conversations.render(str(recipient_id), text)

    def callback_data(self, payload: str) -> str:
        """The payload itself, or a short key standing for it when it exceeds Telegram's 64 bytes."""
        if len(payload.encode()) <= MAX_CALLBACK_DATA:
            return payload
        key = "#" + hashlib.sha256(payload.encode()).hexdigest()[:24]
        if len(self._payloads) >= 10_000:
            self._payloads.clear()
        self._payloads[key] = payload
        return key

    def payload_for(self, data: str) -> Optional[str]:
        return self._payloads.get(data) if data.startswith("#") else data

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        # One message per answer (Rasa sent one per paragraph), cut only where Telegram must.
        for piece in split_text(await self._render(recipient_id, text.strip())):
            await self.send_message(recipient_id, piece)

    async def send_text_with_buttons(self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]],
                                     button_type: Optional[Text] = "inline", **kwargs: Any) -> None:
        # Telegram refuses an empty text, even under a keyboard.
        pieces = split_text(await self._render(recipient_id, (text or "").strip() or "请选择："))
        for piece in pieces[:-1]:
            await self.send_message(recipient_id, piece)
        shown = [{**b, "title": await self._render(recipient_id, str(b.get("title", ""))),
                  "payload": self.callback_data(str(b.get("payload") or b.get("title", "")))}
                 for b in buttons if isinstance(b, dict)]
        await super().send_text_with_buttons(recipient_id, pieces[-1], shown, button_type=button_type)

    async def identity(self) -> types.User:
        """The bot's own account, asked for once."""
        if self._identity is None:
            self._identity = await self.get_me()
        return self._identity

    async def set_webhook(self, url: Optional[str] = None, **kwargs: Any) -> bool:
        """setWebhook with the secret token (aiogram 2.15 has no parameter for it), after checking
        once that the token belongs to the configured bot."""
        me = await self.identity()
        if (me.username or "").lower() != self.config.verify.lower():
            raise TelegramConfigError(f"credentials.yml channels.telegram.TelegramInput: 'verify' is "
                                      f"{self.config.verify} but the access_token belongs to @{me.username}")
        return bool(await self.request("setWebhook", {
            "url": url or self.config.webhook_url, "secret_token": self.config.secret_token,
            "allowed_updates": json.dumps(ALLOWED_UPDATES)}))


@dataclass
class Incoming:
    """What one update asks of Rasa: `text` for Rasa, or a `notice` to answer directly."""
    chat_id: str
    kind: str
    text: Optional[str] = None
    notice: Optional[str] = None
    callback_id: Optional[str] = None
    user_id: Optional[int] = None
    typed: bool = False  # text as typed: numbered choices and script are resolved on processing


def _obj(value: Any, what: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value


def _inform(slots: Dict[str, str]) -> str:
    return "/inform" + json.dumps(slots, ensure_ascii=False)


def _media(msg: Dict[str, Any]) -> Optional[tuple]:
    """(kind, file_id) of a photo, an image sent as a file, or a video: evidence for a report."""
    if msg.get("photo"):
        kind, item = "photo", _obj(msg["photo"][-1], "photo size")  # sizes come smallest first
    elif isinstance(msg.get("document"), dict) and str(msg["document"].get("mime_type", "")).startswith("image/"):
        kind, item = "document", msg["document"]
    elif msg.get("video"):
        kind, item = "video", _obj(msg["video"], "video")
    else:
        return None
    if not isinstance(item.get("file_id"), str) or not item["file_id"]:
        raise ValueError(f"{kind} without file_id")
    return kind, item["file_id"]


class TelegramInput(RasaTelegramInput):
    @classmethod
    def name(cls) -> Text:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "TelegramInput":
        return cls(TelegramConfig.from_credentials(credentials))

    def __init__(self, config: TelegramConfig) -> None:
        super().__init__(config.access_token, config.verify, config.webhook_url, debug_mode=False)
        self.config = config
        self.conversations = Conversations("telegram", config.memory)
        self.background = Background()
        self.redelivery = Redelivery("telegram", self.conversations, self.background, self._send)
        self._output: Optional[TelegramOutput] = None

    def get_output_channel(self) -> TelegramOutput:
        # No API call here (Rasa's set the webhook with asyncio.run, which fails in a running loop).
        if self._output is None:
            self._output = TelegramOutput(self.config, self.conversations)
        return self._output

    @cached_property  # made on first use, never at start-up
    def dedup(self) -> DedupStore:
        return dedup_store(self.config.dedup, ttl=24 * 3600)  # Telegram redelivers for hours

    def _secret_ok(self, header: Optional[str]) -> bool:
        return same(header, self.config.secret_token)

    # -- turning updates into user messages --------------------------------------------------

    def _typed(self, chat: str, text: str) -> Optional[str]:
        if not text.strip():
            return None
        command = COMMAND.match(text)
        if command and command[1].lower() in COMMANDS and \
                (not command[2] or command[2].lower() == self.config.verify.lower()):
            return COMMANDS[command[1].lower()]
        return text

    def _pressed(self, query: Dict[str, Any], message: Optional[Dict[str, Any]]) -> str:
        """The payload of the pressed button; data that is not on the message's keyboard is text."""
        data = query.get("data")
        if not isinstance(data, str):
            raise ValueError("callback_query without data")
        markup = (message or {}).get("reply_markup") or {}
        keyboard = {b.get("callback_data"): b.get("text", "") for row in markup.get("inline_keyboard") or []
                    for b in row if isinstance(b, dict)}
        if data not in keyboard:
            return guard_payload(data)
        payload = self.get_output_channel().payload_for(data)
        return payload if payload is not None else guard_payload(str(keyboard[data]))

    def _incoming(self, update: Dict[str, Any]) -> Optional[Incoming]:
        if "callback_query" in update:
            query = _obj(update["callback_query"], "callback_query")
            sender = _obj(query.get("from"), "callback_query.from")
            message = _obj(query["message"], "callback_query.message") if query.get("message") else None
            chat = _obj(message.get("chat"), "message.chat")["id"] if message else sender["id"]
            if not isinstance(query.get("id"), str) or not isinstance(chat, int):
                raise ValueError("callback_query without id or chat")
            return Incoming(str(chat), "callback_query", self._pressed(query, message),
                            callback_id=query["id"], user_id=sender.get("id"))
        key = "message" if "message" in update else "edited_message" if "edited_message" in update else None
        if key is None:
            return None  # channel posts, member changes: nothing to answer
        msg = _obj(update[key], key)
        chat = _obj(msg.get("chat"), f"{key}.chat").get("id")
        if not isinstance(chat, int):
            raise ValueError("chat without id")
        found = Incoming(str(chat), "text", user_id=(msg.get("from") or {}).get("id"))
        if isinstance(msg.get("text"), str):
            found.text = self._typed(found.chat_id, msg["text"])
            found.typed = found.text == msg["text"]
            return found
        media = _media(msg)
        if media is not None:
            found.kind = media[0]
            found.text = _inform({"photo": f"telegram-file:{media[1]}"})
        elif msg.get("location"):
            found.kind = "location"
            where = _obj(msg["location"], "location")
            lat, lon = float(where["latitude"]), float(where["longitude"])
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # also refuses NaN
                raise ValueError("location out of range")
            found.text = _inform({"location": f"{lat},{lon}", "latitude": str(lat), "longitude": str(lon)})
        else:
            found.kind = next((k for k in UNSUPPORTED_KINDS if k in msg), "service")
            # Service messages (pins, members joining) are nobody's question: no answer.
            found.notice = UNSUPPORTED if found.kind != "service" else None
        return found

    async def _process(self, incoming: Incoming, update_id: int,
                       on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        out = self.get_output_channel()
        if incoming.callback_id:
            try:  # the user's client shows a spinner until the query is answered
                await out.answer_callback_query(incoming.callback_id)
            except TelegramAPIError as exc:
                logger.warning("telegram: answerCallbackQuery failed: %s", exc)
        try:
            if incoming.typed and incoming.text is not None:
                incoming.text = await self.conversations.incoming(incoming.chat_id, incoming.text)
            if incoming.text is None:
                if incoming.notice:
                    await out.send_text_message(incoming.chat_id, incoming.notice)
                return
            await on_new_message(UserMessage(
                incoming.text, out, incoming.chat_id, input_channel=self.name(),
                metadata={"telegram_update_id": update_id, "telegram_message_type": incoming.kind,
                          "telegram_user_id": incoming.user_id}))
        except TelegramAPIError as exc:
            logger.error("telegram: sending to chat %s failed: %s", incoming.chat_id, exc)
        except Exception as exc:
            apology = await self.redelivery.apology(incoming.chat_id, incoming.text or "", exc, on_new_message,
                                                    {"telegram_update_id": update_id,
                                                     "telegram_message_type": incoming.kind})
            try:
                await out.send_text_message(incoming.chat_id, apology)
            except Exception as send_exc:
                logger.error("telegram: apology to chat %s failed: %s", incoming.chat_id, send_exc)

    async def _send(self, chat_id: str, text: str) -> None:
        await self.get_output_channel().send_text_message(chat_id, text)

    async def _handle(self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]]
                      ) -> HTTPResponse:
        if not await read_body(request, self.config.max_body_bytes):
            logger.warning("telegram: body over %d bytes refused", self.config.max_body_bytes)
            return response.text("payload too large", status=413)
        if not self._secret_ok(request.headers.get(SECRET_HEADER)):
            logger.warning("telegram: missing or wrong secret token from %s", request.ip)
            return response.text("forbidden", status=403)
        try:
            update = _obj(json.loads(request.body or b""), "update")
            update_id = update.get("update_id")
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                raise ValueError("update_id is not an integer")
            incoming = self._incoming(update)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            logger.warning("telegram: malformed update refused: %s", exc)
            return response.text("bad request", status=400)
        if not await self.dedup.claim(f"telegram:{self.config.bot_id}:{update_id}"):
            logger.info("telegram: redelivery of update %s ignored", update_id)
            return response.text("success")
        if incoming is None or (incoming.text is None and incoming.notice is None and not incoming.callback_id):
            return response.text("success")
        task = self.background.spawn(self._process(incoming, update_id, on_new_message))
        await asyncio.wait({task}, timeout=HANDLE_BUDGET)  # it runs on in the background if slower
        return response.text("success")

    async def _set_webhook(self) -> HTTPResponse:
        try:
            ok = await self.get_output_channel().set_webhook()
        except (TelegramAPIError, TelegramConfigError) as exc:
            logger.error("telegram: setting the webhook failed: %s", exc)
            return response.text(f"webhook not set: {exc}", status=502)
        return response.text("Webhook setup successful" if ok else "Invalid webhook", status=200 if ok else 502)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint(f"telegram_webhook_{id(self):x}", __name__)

        @bp.route("/", methods=["GET"], ignore_body=True)
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/webhook", methods=["POST"], stream=True)  # read against max_body_bytes
        async def receive(request: Request) -> HTTPResponse:
            return await self._handle(request, on_new_message)

        @bp.route("/set_webhook", methods=["POST"], ignore_body=True)
        async def set_webhook(request: Request) -> HTTPResponse:
            # Rasa left this open to anyone; it needs the same secret as the webhook.
            if not self._secret_ok(request.headers.get(SECRET_HEADER)):
                return response.text("forbidden", status=403)
            return await self._set_webhook()

        if self.config.set_webhook_on_start:
            @bp.listener("after_server_start")
            async def register(*_: Any) -> None:
                await self._set_webhook()

        @bp.listener("after_server_stop")
        async def close(*_: Any) -> None:
            await self.get_output_channel().close()

        return bp


