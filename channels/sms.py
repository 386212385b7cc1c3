"""SMS: a Rasa input channel for three kinds of gateway webhook, replying through a gateway sender.

credentials.yml:

    channels.sms.SMSInput:
      gateway: aliyun              # aliyun | twilio: which outbound sender replies (required)
      # Twilio (its keys are required when gateway is twilio or twilio_auth_token is set)
      twilio_account_sid: AC...    # AC + 32 hex
      twilio_auth_token: ...       # also turns on POST /twilio and its signature check
      twilio_from: "+8610690000122"
      twilio_api_base: https://api.twilio.com
      public_url: https://jj.example.gov.cn   # what Twilio sees in front of /webhooks/sms/twilio
      # Alibaba Cloud (its keys are required when gateway is aliyun)
      aliyun_access_key_id: ...
      aliyun_access_key_secret: ...
      aliyun_sign_name: 青岛交警
      aliyun_template_code: SMS_123456789     # a notice template "${content}"
      aliyun_endpoint: https://dysmsapi.aliyuncs.com
      aliyun_path_secret: ...      # >= 16 URL-safe characters; turns on POST /aliyun/<secret>
      # generic JSON webhook
      generic_secret: ...          # >= 16 characters; turns on POST /generic
      signature_text: 【青岛交警】
      max_chars: 500               # 70..500 characters per message, signature included
      reply_budget: 5.0            # seconds Twilio's request may wait for a TwiML answer (< 15)
      max_body_bytes: 16384
      max_clock_skew: 300          # seconds a generic webhook's X-Timestamp may be off
      dedup: memory                # or redis://... to share retries across processes

Routes (under /webhooks/sms):
- POST /twilio: form post signed with X-Twilio-Signature = base64(HMAC-SHA1(auth token, public_url +
  request path + query + each key and value, keys sorted)). The URL is rebuilt from public_url, so the
  check holds behind a proxy or load balancer that terminates TLS. Missing signature 401, wrong 403.
  Answered with TwiML when ready inside the budget, else <Response/> and the answer goes out
  through the sender. Retries are recognised by MessageSid.
- POST /aliyun/<aliyun_path_secret>: Alibaba Cloud upstream pushes, a JSON array of
  {phone_number, content, send_time, dest_code, sequence_id}. Alibaba does not sign them, so the
  path carries the secret. Answered {"code": 0, "msg": "成功"} at once; replies go through the sender.
- POST /generic: JSON {from, to, text, id}, headers X-Timestamp (Unix seconds) and X-Signature =
  hex(HMAC-SHA256(generic_secret, X-Timestamp + "." + raw body)); missing headers 401, a wrong
  signature or a timestamp more than max_clock_skew away 403. Answered {"ok": true} at once;
  replies go through the sender (a forwarding gateway cannot be relied on to read a response body).

Billing: one SMS carries 70 characters (UCS-2, the signature included); a longer text is sent as a
long SMS, cut by the network into parts of 67 characters, each billed as one SMS, up to 500 characters
in all. Characters outside the BMP (emoji) count twice.

Keywords are mapped before NLU: 退订 / TD / T / STOP / UNSUBSCRIBE -> /unsubscribe_alerts{"channel": "sms"},
订阅 / START / SUBSCRIBE -> /subscribe_alerts{"channel": "sms"}. Senders are the phone as 11 digits.
Bad input is a 4xx and nothing reaches Rasa: a non-mainland or malformed number, empty text, a
malformed body (a batch with one bad item is refused whole), an oversized body (413).
"""
from __future__ import annotations

from functools import cached_property

import hashlib
import hmac
import json
import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text
from urllib.parse import parse_qs

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
from channels.sms_senders import AliyunSender, SendResult, SMSSender, TwilioSender

logger = logging.getLogger(__name__)

GATEWAYS = ("aliyun", "twilio")
UNSUBSCRIBE = '/unsubscribe_alerts{"channel": "sms"}'
SUBSCRIBE = '/subscribe_alerts{"channel": "sms"}'
KEYWORDS = {**{k: UNSUBSCRIBE for k in ("退订", "退訂", "TD", "T", "STOP", "UNSUBSCRIBE")},
            **{k: SUBSCRIBE for k in ("订阅", "訂閱", "START", "SUBSCRIBE")}}
MOBILE = re.compile(r"1[3-9]\d{9}")
SINGLE_CHARS, PART_CHARS = 70, 67
DEDUP_TTL = 24 * 3600  # gateways re-deliver for hours when we are down


class SMSConfigError(ChannelConfigError):
    pass


def normalise_phone(raw: Any) -> Optional[str]:
    """A mainland mobile number as 11 digits ("+86 138-1234-5678" -> "13812345678"), else None."""
    digits = re.sub(r"[\s\-()]", "", str(raw or ""))
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix):]
            break
    return digits if MOBILE.fullmatch(digits) else None


def keyword_payload(text: str) -> Optional[str]:
    """The payload for an SMS keyword (退订 / TD / STOP, 订阅 / START), any case and width."""
    return KEYWORDS.get(unicodedata.normalize("NFKC", text).strip().upper())


def sms_length(text: str) -> int:
    """Characters as an SMS counts them (UCS-2 code units)."""
    return len(text.encode("utf-16-le")) // 2


def sms_parts(text: str) -> int:
    """How many SMS a text is billed as."""
    n = sms_length(text)
    return 1 if n <= SINGLE_CHARS else -(-n // PART_CHARS)


def squeeze(text: str) -> str:
    """Runs of spaces become one space and blank lines disappear: every character is paid for."""
    lines = (re.sub(r"[ \t\u3000]+", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class SMSConfig:
    gateway: str
    twilio_account_sid: Optional[str] = None
    twilio_auth_token: Optional[str] = None
    twilio_from: Optional[str] = None
    twilio_api_base: str = "https://api.twilio.com"
    aliyun_access_key_id: Optional[str] = None
    aliyun_access_key_secret: Optional[str] = None
    aliyun_sign_name: Optional[str] = None
    aliyun_template_code: Optional[str] = None
    aliyun_endpoint: str = "https://dysmsapi.aliyuncs.com"
    aliyun_path_secret: Optional[str] = None
    generic_secret: Optional[str] = None
    public_url: Optional[str] = None
    signature_text: str = "【青岛交警】"
    max_chars: int = 500
    reply_budget: float = 5.0
    max_body_bytes: int = 16384
    max_clock_skew: int = 300
    dedup: str = "memory"
    memory: str = "memory"  # numbered choices and script; defaults to the dedup store

    @classmethod
    def from_credentials(cls, creds: Optional[Dict[Text, Any]]) -> "SMSConfig":
        c = Credentials("credentials.yml channels.sms.SMSInput", creds, SMSConfigError)
        gateway = c.choice("gateway", GATEWAYS, c.need("gateway"))
        values: Dict[str, Any] = {"gateway": gateway}
        if gateway == "twilio" or c.text("twilio_auth_token"):
            values.update(twilio_account_sid=c.need("twilio_account_sid"),
                          twilio_auth_token=c.need("twilio_auth_token"), twilio_from=c.need("twilio_from"),
                          twilio_api_base=c.url("twilio_api_base", "https://api.twilio.com"),
                          public_url=c.url("public_url"))
            if not re.fullmatch(r"AC[0-9a-fA-F]{32}", values["twilio_account_sid"]):
                c.fail("twilio_account_sid", "must be AC followed by 32 hex digits")
            if not re.fullmatch(r"\+[1-9]\d{6,14}|MG[0-9a-fA-F]{32}", values["twilio_from"]):
                c.fail("twilio_from", "must be an E.164 number (+86...) or a messaging service SID")
        if gateway == "aliyun":
            values.update(aliyun_access_key_id=c.need("aliyun_access_key_id"),
                          aliyun_access_key_secret=c.need("aliyun_access_key_secret"),
                          aliyun_sign_name=c.need("aliyun_sign_name"),
                          aliyun_template_code=c.need("aliyun_template_code"),
                          aliyun_endpoint=c.url("aliyun_endpoint", "https://dysmsapi.aliyuncs.com"))
            if not re.fullmatch(r"SMS_\d+", values["aliyun_template_code"]):
                c.fail("aliyun_template_code", "must look like SMS_123456789")
        for key, pattern in (("aliyun_path_secret", r"[A-Za-z0-9_\-]{16,128}"), ("generic_secret", r".{16,}")):
            if c.text(key) is not None and not re.fullmatch(pattern, c.text(key)):
                c.fail(key, "must be at least 16 characters" + (" (letters, digits, - and _)"
                                                                if key == "aliyun_path_secret" else ""))
            values[key] = c.text(key)
        if not (values.get("twilio_auth_token") or values["aliyun_path_secret"] or values["generic_secret"]):
            c.fail("aliyun_path_secret", "(or twilio_auth_token or generic_secret) is required: "
                                         "no inbound gateway is configured")
        max_chars = c.integer("max_chars", 500, SINGLE_CHARS, 500)
        signature = c.text("signature_text", "【青岛交警】")
        if sms_length(signature) > 20:
            c.fail("signature_text", "must be at most 20 characters")
        return cls(**values, signature_text=signature, max_chars=max_chars,
                   reply_budget=c.number("reply_budget", 5.0, 0.0, 14.0),
                   max_body_bytes=c.integer("max_body_bytes", 16384, 1024, 1024 * 1024),
                   max_clock_skew=c.integer("max_clock_skew", 300, 1, 86400), dedup=c.store("dedup"),
                   memory=c.store("memory", c.store("dedup")))


def make_sender(config: SMSConfig) -> SMSSender:
    if config.gateway == "twilio":
        return TwilioSender(config.twilio_account_sid, config.twilio_auth_token, config.twilio_from,
                            config.twilio_api_base)
    return AliyunSender(config.aliyun_access_key_id, config.aliyun_access_key_secret, config.aliyun_sign_name,
                        config.aliyun_template_code, config.aliyun_endpoint)


class SMSFormat:
    """Turns an answer into SMS messages of at most `max_chars` characters, signature counted."""

    def __init__(self, signature: str = "【青岛交警】", max_chars: int = 500) -> None:
        self.signature, self.max_chars = signature, max_chars

    def pieces(self, text: str, with_signature: bool = True) -> List[str]:
        room = self.max_chars - sms_length(self.signature)
        parts = base.split_text(squeeze(text), room, size=sms_length)
        return [self.signature + p if with_signature else p for p in parts]


class SMSOutput(TextOutput):
    """Sends through the configured gateway; failures are logged with the gateway's code."""

    def __init__(self, sender: SMSSender, fmt: SMSFormat) -> None:
        self.sender, self.fmt = sender, fmt

    @classmethod
    def name(cls) -> Text:
        return "sms"

    async def send_text(self, phone: str, text: str) -> List[SendResult]:
        results = []
        for piece in self.fmt.pieces(text, with_signature=not self.sender.adds_signature):
            result = await self.sender.send(phone, piece)
            results.append(result)
            if not result.delivered:
                logger.error("sms: %s send to %s failed (%s): %s %s", result.gateway, phone, result.outcome,
                             result.code, result.message)
                break
        return results



class BadRequest(Exception):
    """The body is not what the gateway sends: 400, nothing processed."""


def _twiml(pieces: List[str]) -> HTTPResponse:
    from twilio.twiml.messaging_response import MessagingResponse

    twiml = MessagingResponse()
    for piece in pieces:
        twiml.message(piece)
    return response.text(str(twiml), content_type="application/xml")


class _Form(dict):
    """Form fields as lists, in the shape twilio's RequestValidator reads (getlist)."""

    def getlist(self, key: str) -> List[str]:
        return self[key]


class SMSInput(InputChannel):
    @classmethod
    def name(cls) -> Text:
        return "sms"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(SMSConfig.from_credentials(credentials))

    def __init__(self, config: SMSConfig, sender: Optional[SMSSender] = None) -> None:
        self.config = config
        self.fmt = SMSFormat(config.signature_text, config.max_chars)
        self._sender = sender
        self.conversations = Conversations("sms", config.memory)
        self.background = Background()
        self.redelivery = Redelivery("sms", self.conversations, self.background, self._send)

    @property
    def sender(self) -> SMSSender:
        if self._sender is None:
            self._sender = make_sender(self.config)
        return self._sender

    @cached_property  # made on first use, never at start-up
    def dedup(self) -> DedupStore:
        return dedup_store(self.config.dedup, ttl=DEDUP_TTL)

    def get_output_channel(self) -> Optional[OutputChannel]:
        return SMSOutput(self.sender, self.fmt)

    # -- shared by every gateway ----------------------------------------------------------------

    async def _user_text(self, phone: str, text: str) -> str:
        """Keywords first (before NLU), then numbered choices; typed text never poses as a payload."""
        await self.conversations.observe(phone, text)
        return keyword_payload(text) or await self.conversations.incoming(phone, text.strip())

    async def _answer(self, phone: str, outcome: Outcome, collector: CollectingOutputChannel, said: str,
                      on_new_message: Callable[[UserMessage], Awaitable[Any]], metadata: Dict[str, Any]) -> str:
        if outcome is not None:
            return await self.redelivery.apology(phone, said, outcome, on_new_message, metadata)
        return await self.conversations.outgoing(phone, collector.messages)

    async def _send(self, phone: str, text: str) -> None:
        await SMSOutput(self.sender, self.fmt).send_text(phone, text)

    async def _reply_later(self, phone: str, outcome: Outcome, collector: CollectingOutputChannel, said: str,
                           on_new_message: Callable[[UserMessage], Awaitable[Any]], metadata: Dict[str, Any]) -> None:
        text = await self._answer(phone, outcome, collector, said, on_new_message, metadata)
        if text:
            await self._send(phone, text)

    async def _converse(self, phone: str, text: str, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                        gateway: str) -> None:
        """One text answered through the gateway's API. Rasa runs in this task, not a task of its own:
        on a busy server every extra wake-up waits behind other people's turns."""
        said, metadata = await self._user_text(phone, text), {"sms_gateway": gateway}
        collector = ChannelCollector(self.name())
        try:
            await on_new_message(UserMessage(said, collector, phone, input_channel=self.name(), metadata=metadata))
        except Exception as exc:
            answer = await self.redelivery.apology(phone, said, exc, on_new_message, metadata)
        else:
            answer = await self.conversations.outgoing(phone, collector.messages)
        if answer:
            await self._send(phone, answer)

    async def _too_big(self, request: Request) -> bool:
        """Reads the body (streaming routes); True if it is over max_body_bytes."""
        if not await read_body(request, self.config.max_body_bytes):
            logger.warning("sms: body over %d bytes refused", self.config.max_body_bytes)
            return True
        return False

    # -- Twilio -----------------------------------------------------------------------------------

    def _twilio_form(self, request: Request) -> _Form:
        """The form fields, if the signature over them is Twilio's; raises PermissionError if not."""
        from twilio.request_validator import RequestValidator

        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            raise PermissionError(401)
        try:
            form = _Form(parse_qs(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
                         if request.body else {})
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("form") from None
        url = self.config.public_url + request.path + (f"?{request.query_string}" if request.query_string else "")
        if not RequestValidator(self.config.twilio_auth_token).validate(url, form, signature):
            raise PermissionError(403)
        return form

    async def _twilio(self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]]
                      ) -> HTTPResponse:
        started = time.monotonic()
        if await self._too_big(request):
            return response.text("payload too large", status=413)
        try:
            form = self._twilio_form(request)
            field = {k: (v[0] if len(v) == 1 else None) for k, v in form.items()}
            phone, text, sid = normalise_phone(field.get("From")), field.get("Body") or "", field.get("MessageSid")
            if not sid or not re.fullmatch(r"[SM]M[0-9a-fA-F]{32}", sid):
                raise BadRequest("MessageSid")
            if phone is None:
                raise BadRequest("From")
            if not text.strip():
                raise BadRequest("Body")
        except PermissionError as exc:
            logger.warning("sms: twilio signature %s from %s", "missing" if exc.args[0] == 401 else "wrong",
                           request.ip)
            return response.text("unauthorized" if exc.args[0] == 401 else "forbidden", status=exc.args[0])
        except BadRequest as exc:
            logger.warning("sms: twilio post refused: bad %s", exc)
            return response.text(f"bad request: {exc}", status=400)
        if not await self.dedup.claim(f"sms:twilio:{sid}"):
            logger.info("sms: retry of twilio %s ignored", sid)
            return _twiml([])
        said, metadata = await self._user_text(phone, text), {"sms_gateway": "twilio"}
        collector = ChannelCollector(self.name())
        message = UserMessage(said, collector, phone, input_channel=self.name(), metadata=metadata)

        async def reply(outcome: Outcome) -> HTTPResponse:
            return _twiml(self.fmt.pieces(await self._answer(phone, outcome, collector, said, on_new_message,
                                                             metadata)))

        return await reply_within(
            request, self.config.reply_budget - (time.monotonic() - started), on_new_message, message, reply,
            lambda outcome: self._reply_later(phone, outcome, collector, said, on_new_message, metadata),
            lambda: _twiml([]), self.background)

    # -- Alibaba Cloud ----------------------------------------------------------------------------

    @staticmethod
    def _aliyun_items(body: bytes) -> List[Dict[str, str]]:
        try:
            items = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("json") from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list) or not items:
            raise BadRequest("not a batch")
        checked = []
        for item in items:
            if not isinstance(item, dict) or item.get("sequence_id") in (None, ""):
                raise BadRequest("sequence_id")
            phone = normalise_phone(item.get("phone_number"))
            if phone is None:
                raise BadRequest("phone_number")
            if not isinstance(item.get("content"), str):
                raise BadRequest("content")
            checked.append({"phone": phone, "content": item["content"], "id": str(item["sequence_id"]),
                            "send_time": str(item.get("send_time", ""))})
        return checked

    async def _aliyun_batch(self, phone: str, items: List[Dict[str, str]],
                            on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        for item in items:  # one person's texts, in the order they were sent
            try:
                await self._converse(phone, item["content"], on_new_message, "aliyun")
            except Exception:
                logger.exception("sms: aliyun message %s from %s failed", item["id"], phone)

    async def _aliyun(self, request: Request, secret: str,
                      on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> HTTPResponse:
        expected = self.config.aliyun_path_secret
        if not expected or not same(secret, expected):
            logger.warning("sms: aliyun push with a wrong path secret from %s", request.ip)
            return response.json({"code": 403, "msg": "forbidden"}, status=403)
        if await self._too_big(request):
            return response.json({"code": 413, "msg": "payload too large"}, status=413)
        try:
            items = self._aliyun_items(request.body or b"")
        except BadRequest as exc:
            logger.warning("sms: aliyun push refused: bad %s", exc)
            return response.json({"code": 400, "msg": f"bad request: {exc}"}, status=400)
        by_phone: Dict[str, List[Dict[str, str]]] = {}
        for item in sorted(items, key=lambda i: (i["send_time"], i["id"])):
            if not item["content"].strip():
                continue  # a blank text: nothing to answer
            if await self.dedup.claim(f"sms:aliyun:{item['id']}"):
                by_phone.setdefault(item["phone"], []).append(item)
            else:
                logger.info("sms: retry of aliyun %s ignored", item["id"])
        for phone, queued in by_phone.items():
            self.background.spawn(self._aliyun_batch(phone, queued, on_new_message))
        return response.json({"code": 0, "msg": "成功"})

    # -- generic HMAC webhook -------------------------------------------------------------------

    def _generic_signed(self, request: Request) -> Optional[int]:
        """None if signed by us within the skew, else the status to answer (401 missing, 403 wrong)."""
        stamp, signature = request.headers.get("X-Timestamp"), request.headers.get("X-Signature")
        if not stamp or not signature:
            return 401
        expected = hmac.new(self.config.generic_secret.encode(),
                            stamp.encode("utf-8", "surrogateescape") + b"." + (request.body or b""),
                            hashlib.sha256).hexdigest()
        if not same(signature.strip().lower(), expected):
            return 403
        try:
            fresh = abs(time.time() - int(stamp)) <= self.config.max_clock_skew
        except ValueError:
            return 403
        return None if fresh else 403

    async def _generic(self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]]
                       ) -> HTTPResponse:
        if await self._too_big(request):
            return response.json({"ok": False, "error": "payload too large"}, status=413)
        refused = self._generic_signed(request)
        if refused:
            logger.warning("sms: generic webhook signature %s from %s", "missing" if refused == 401 else "wrong",
                           request.ip)
            return response.json({"ok": False, "error": "unauthorized" if refused == 401 else "forbidden"},
                                 status=refused)
        try:
            body = json.loads(request.body)
            if not isinstance(body, dict):
                raise BadRequest("not an object")
            phone, text, msg_id = normalise_phone(body.get("from")), body.get("text"), body.get("id")
            if phone is None:
                raise BadRequest("from")
            if not isinstance(text, str) or not text.strip():
                raise BadRequest("text")
            if not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool) or str(msg_id) == "":
                raise BadRequest("id")
        except (UnicodeDecodeError, ValueError):
            return response.json({"ok": False, "error": "bad request: json"}, status=400)
        except BadRequest as exc:
            logger.warning("sms: generic webhook refused: bad %s", exc)
            return response.json({"ok": False, "error": f"bad request: {exc}"}, status=400)
        if not await self.dedup.claim(f"sms:generic:{msg_id}"):
            logger.info("sms: retry of generic %s ignored", msg_id)
            return response.json({"ok": True, "duplicate": True})
        self.background.spawn(self._converse(phone, text, on_new_message, "generic"))
        return response.json({"ok": True})

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint(f"sms_webhook_{id(self):x}", __name__)

        @bp.route("/", methods=["GET"], ignore_body=True)
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        # Streaming routes: each body is read against max_body_bytes, never more.
        @bp.route("/twilio", methods=["POST"], stream=True)
        async def twilio(request: Request) -> HTTPResponse:
            if not self.config.twilio_auth_token:
                return response.text("not found", status=404)
            return await self._twilio(request, on_new_message)

        @bp.route("/aliyun/<secret>", methods=["POST"], stream=True)
        async def aliyun(request: Request, secret: str) -> HTTPResponse:
            return await self._aliyun(request, secret, on_new_message)

        @bp.route("/generic", methods=["POST"], stream=True)
        async def generic(request: Request) -> HTTPResponse:
            if not self.config.generic_secret:
                return response.text("not found", status=404)
            return await self._generic(request, on_new_message)

        return bp
