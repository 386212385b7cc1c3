"""A phone user texting the department, as each kind of SMS gateway delivers the text to our webhook:
Twilio's signed form post, Alibaba Cloud's upstream JSON batch to the secret path, or the generic
HMAC-signed JSON. Answers are read from the TwiML response or from what the stand-in gateways
recorded for the phone (GET /_standin/sent). Knows nothing of the agent behind the webhook.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlencode, urlsplit

import requests
import xmltodict

_sequence = itertools.count(int(time.time() * 1000) % 10**9 * 1000)


def twilio_signature(auth_token: str, url: str, form: dict) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, URL + each key and value, keys sorted))."""
    data = url + "".join(f"{k}{form[k]}" for k in sorted(form))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    status: int
    body: str
    replies: list[str] = field(default_factory=list)  # messages in a TwiML answer
    elapsed: float = 0.0  # the HTTP exchange alone, without signing before it or reading after
    sent_at: float = 0.0  # wall clock when the request went out


@dataclass
class TwilioGateway:
    webhook: str                      # where Twilio posts (may be behind a proxy)
    auth_token: str
    signed_url: Optional[str] = None  # the public URL Twilio signs; defaults to the webhook
    number: str = "+8610690000122"    # the department's number: To


@dataclass
class AliyunGateway:
    webhook: str                      # .../aliyun/<path secret>
    dest_code: str = "1069000012201"


@dataclass
class GenericGateway:
    webhook: str
    secret: str
    number: str = "1069000012202"


def _post(session: requests.Session, url: str, retries: int, **kwargs) -> requests.Response:
    """As the gateways do: a failed or 5xx delivery is delivered again (same message id)."""
    for attempt in range(retries + 1):
        try:
            res = session.post(url, timeout=20, **kwargs)
            if res.status_code < 500 or attempt == retries:
                return res
        except requests.ConnectionError:
            if attempt == retries:
                raise
        time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


class SMSUser:
    """One handset. `phone` is how the gateway presents the sender (e.g. "+8613812345678")."""

    def __init__(self, phone: Optional[str] = None, outbox_url: Optional[str] = None, retries: int = 2) -> None:
        self.phone = phone or f"+861{secrets.choice('3456789')}{secrets.randbelow(10**9):09d}"
        self.outbox_url = outbox_url
        self.retries = retries
        self.http = requests.Session()

    @property
    def number(self) -> str:
        """The 11-digit mainland number."""
        digits = self.phone.replace(" ", "")
        return digits[-11:]

    def via_twilio(self, gw: TwilioGateway, text: str, sid: Optional[str] = None,
                   signature: Optional[str] = None) -> Delivery:
        form = {"MessageSid": sid or "SM" + secrets.token_hex(16), "AccountSid": "AC" + "0" * 32,
                "From": self.phone, "To": gw.number, "Body": text, "NumMedia": "0", "FromCountry": "CN"}
        query = urlsplit(gw.webhook).query
        url = (gw.signed_url or gw.webhook.split("?")[0]) + (f"?{query}" if query else "")
        headers = {"X-Twilio-Signature": signature if signature is not None
                   else twilio_signature(gw.auth_token, url, form)}
        body = urlencode(form).encode()
        sent_at, started = time.time(), time.perf_counter()
        res = _post(self.http, gw.webhook, self.retries, data=body,
                    headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
        elapsed = time.perf_counter() - started
        replies = []
        if res.status_code == 200 and res.text.strip():
            doc = xmltodict.parse(res.text).get("Response") or {}
            messages = doc.get("Message") or []
            replies = [m if isinstance(m, str) else m.get("#text", "")
                       for m in (messages if isinstance(messages, list) else [messages])]
        return Delivery(res.status_code, res.text, replies, elapsed, sent_at)

    def aliyun_item(self, text: str, sequence_id: Optional[int] = None, dest_code: str = "1069000012201") -> dict:
        return {"phone_number": self.number, "content": text, "dest_code": dest_code,
                "send_time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "sequence_id": sequence_id if sequence_id is not None else next(_sequence)}

    def via_aliyun(self, gw: AliyunGateway, text: str, sequence_id: Optional[int] = None) -> Delivery:
        return push_aliyun(gw, [self.aliyun_item(text, sequence_id, gw.dest_code)], self.http, self.retries)

    def via_generic(self, gw: GenericGateway, text: str, msg_id: Optional[str] = None,
                    timestamp: Optional[int] = None, secret: Optional[str] = None) -> Delivery:
        body = json.dumps({"from": self.phone, "to": gw.number, "text": text,
                           "id": msg_id or secrets.token_hex(8)}, ensure_ascii=False).encode()
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        headers = {"Content-Type": "application/json", "X-Timestamp": stamp,
                   "X-Signature": generic_signature(secret or gw.secret, stamp, body)}
        sent_at, started = time.time(), time.perf_counter()
        res = _post(self.http, gw.webhook, self.retries, data=body, headers=headers)
        return Delivery(res.status_code, res.text, [], time.perf_counter() - started, sent_at)

    def received(self, after: float = 0.0) -> list[str]:
        """Texts the gateways sent to this phone, oldest first."""
        res = self.http.get(f"{self.outbox_url}/_standin/sent", params={"phone": self.number, "after": after},
                            timeout=10)
        res.raise_for_status()
        return [m["text"] for m in res.json()]

    def wait_for_texts(self, count: int = 1, after: float = 0.0, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            texts = self.received(after)
            if len(texts) >= count or time.monotonic() > deadline:
                return texts
            time.sleep(0.05)


def push_aliyun(gw: AliyunGateway, items: list[dict], session: Optional[requests.Session] = None,
                retries: int = 2) -> Delivery:
    """One upstream push as Alibaba Cloud sends it: a JSON array, possibly from several phones."""
    body = json.dumps(items, ensure_ascii=False).encode()
    sent_at, started = time.time(), time.perf_counter()
    res = _post(session or requests.Session(), gw.webhook, retries, data=body,
                headers={"Content-Type": "application/json"})
    return Delivery(res.status_code, res.text, [], time.perf_counter() - started, sent_at)
