"""Outbound SMS through a gateway, behind one async interface the channel and the push dispatcher share.

    result = await sender.send("13812345678", "【青岛交警】您的车辆有一条新的违法记录……")
    if result.transient: retry after result.retry_after (or a backoff of your own)
    if result.permanent: give up on this number (bad number, blacklisted, unsubscribed)

AliyunSender speaks the Dysmsapi SendSms RPC API with the documented HMAC-SHA1 v1 signature over
aiohttp. The official alibabacloud_dysmsapi20170525 SDK resolves beside Rasa's pins only with a
release candidate of alibabacloud-tea-openapi plus eight more packages, and signs with the v3 scheme
unless told otherwise; the v1 algorithm is twenty lines. TwilioSender uses the official twilio SDK
(already in the lock through Rasa) with its aiohttp client, pointed at a configurable API base.
Clients and sessions are made on the first send, inside the running event loop.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Optional
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)

DELIVERED, TRANSIENT, PERMANENT = "delivered", "transient", "permanent"


@dataclass(frozen=True)
class SendResult:
    """What became of one send: delivered (accepted by the gateway), transient (retry later,
    after `retry_after` seconds when the gateway says) or permanent (do not retry)."""
    outcome: str
    gateway: str
    code: Optional[str] = None
    message: str = ""
    retry_after: Optional[float] = None
    message_id: Optional[str] = None

    @property
    def delivered(self) -> bool:
        return self.outcome == DELIVERED

    @property
    def transient(self) -> bool:
        return self.outcome == TRANSIENT

    @property
    def permanent(self) -> bool:
        return self.outcome == PERMANENT


class SMSSender:
    name = "sms"
    # True when the gateway puts the signature (【…】) in front of the text itself.
    adds_signature = False

    async def send(self, phone: str, text: str) -> SendResult:
        raise NotImplementedError

    async def close(self) -> None:
        pass


# -- Alibaba Cloud ------------------------------------------------------------------------------

def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba Cloud's RPC signature wants it: only A-Z a-z 0-9 - _ . ~ kept."""
    return quote(str(value), safe="-_.~")


def rpc_signature(params: Dict[str, str], secret: str, method: str = "POST") -> str:
    """Alibaba Cloud RPC signature v1.0 (HMAC-SHA1) of the request parameters."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# Codes worth retrying; every other error code is permanent (bad number, template, blacklist, keys).
ALIYUN_TRANSIENT = {
    "isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "isv.OUT_OF_SERVICE", "isv.AMOUNT_NOT_ENOUGH",
    "isv.DATA_NOT_EXIST", "Throttling", "Throttling.User", "Throttling.Api", "SignatureNonceUsed",
    "ServiceUnavailable", "InternalError",
}
# isv.BUSINESS_LIMIT_CONTROL says which window it hit: "触发分钟级流控Permits:1".
LIMIT_WINDOWS = {"分钟": 60.0, "小时": 3600.0, "天": 86400.0, "日": 86400.0}


def _aliyun_retry_after(code: str, message: str) -> Optional[float]:
    if code in ("isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL"):
        for word, seconds in LIMIT_WINDOWS.items():
            if word in message:
                return seconds
    return None


class AliyunSender(SMSSender):
    """Dysmsapi SendSms. The text goes in as one template variable (`template_param`, default
    `content`) of a notice template such as "${content}"; Alibaba prepends 【SignName】 itself."""
    name = "aliyun"
    adds_signature = True

    def __init__(self, access_key_id: str, access_key_secret: str, sign_name: str, template_code: str,
                 endpoint: str = "https://dysmsapi.aliyuncs.com", template_param: str = "content",
                 region: str = "cn-hangzhou", timeout: float = 10.0) -> None:
        self.access_key_id, self.access_key_secret = access_key_id, access_key_secret
        self.sign_name, self.template_code, self.template_param = sign_name, template_code, template_param
        self.endpoint, self.region, self.timeout = endpoint.rstrip("/") + "/", region, timeout
        self._session: Optional[aiohttp.ClientSession] = None

    def signed_params(self, phone: str, text: str) -> Dict[str, str]:
        params = {
            "AccessKeyId": self.access_key_id, "Action": "SendSms", "Format": "JSON",
            "RegionId": self.region, "SignatureMethod": "HMAC-SHA1", "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0", "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25", "PhoneNumbers": phone, "SignName": self.sign_name,
            "TemplateCode": self.template_code,
            "TemplateParam": json.dumps({self.template_param: text}, ensure_ascii=False),
        }
        params["Signature"] = rpc_signature(params, self.access_key_secret, "POST")
        return params

    async def send(self, phone: str, text: str) -> SendResult:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(self.endpoint, data=self.signed_params(phone, text)) as res:
                status = res.status
                try:
                    body = await res.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return SendResult(TRANSIENT, self.name, "network", f"{exc.__class__.__name__}: {exc}")
        if not isinstance(body, dict):
            outcome = TRANSIENT if status >= 500 or status == 429 else PERMANENT
            return SendResult(outcome, self.name, f"http-{status}", "response is not JSON")
        code, message = str(body.get("Code", f"http-{status}")), str(body.get("Message", ""))
        if code == "OK" and status == 200:
            return SendResult(DELIVERED, self.name, code, message, message_id=body.get("BizId"))
        transient = code in ALIYUN_TRANSIENT or code.startswith("isp.") or status >= 500
        return SendResult(TRANSIENT if transient else PERMANENT, self.name, code, message,
                          retry_after=_aliyun_retry_after(code, message))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- Twilio ---------------------------------------------------------------------------------------

# Twilio errors worth retrying: rate limits, its own outages, queue overflow. Everything else
# (21211 invalid number, 21610 recipient said STOP, 21408 region off, 20003 auth) is permanent.
TWILIO_TRANSIENT_CODES = {20429, 20500, 20503, 30001, 30008}


class TwilioSender(SMSSender):
    """POST /2010-04-01/Accounts/{sid}/Messages.json with basic auth, through the twilio SDK."""
    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str, from_: str,
                 api_base: str = "https://api.twilio.com", timeout: float = 10.0) -> None:
        self.account_sid, self.auth_token, self.from_ = account_sid, auth_token, from_
        self.api_base, self.timeout = api_base.rstrip("/"), timeout
        self._client: Any = None
        self._http: Any = None

    def _make_client(self) -> Any:
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        self._http = AsyncTwilioHttpClient(timeout=self.timeout)  # its aiohttp session needs a loop
        client = Client(self.account_sid, self.auth_token, http_client=self._http)
        client.api.base_url = self.api_base  # the SDK's only knob for a non-Twilio host
        return client

    async def send(self, phone: str, text: str) -> SendResult:
        from twilio.base.exceptions import TwilioRestException

        if self._client is None:
            self._client = self._make_client()
        to = phone if phone.startswith("+") else f"+86{phone}"
        try:
            message = await self._client.messages.create_async(to=to, from_=self.from_, body=text)
        except TwilioRestException as exc:
            code = exc.code if exc.code is not None else exc.status
            transient = exc.status == 429 or exc.status >= 500 or code in TWILIO_TRANSIENT_CODES
            outcome = TRANSIENT if transient else PERMANENT
            return SendResult(outcome, self.name, str(code), str(exc.msg))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return SendResult(TRANSIENT, self.name, "network", f"{exc.__class__.__name__}: {exc}")
        return SendResult(DELIVERED, self.name, message.status, message_id=message.sid)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = self._client = None

