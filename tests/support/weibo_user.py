"""A Weibo user sending private messages to the account, as the Weibo fans-service platform delivers
them: JSON pushes signed in the query string (sha1 of the sorted app secret, timestamp, nonce).
Used by the channel tests, the end-to-end tests and the benchmarks; independent of any agent.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import unquote, urlencode

import requests

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def weibo_time(epoch: float) -> str:
    """Weibo's created_at, e.g. "Mon Jul 16 18:09:20 +0800 2012" (locale-independent)."""
    t = time.gmtime(epoch + 8 * 3600)
    return (f"{DAYS[t.tm_wday]} {MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0800 {t.tm_year}")


@dataclass
class Reply:
    status: int
    body: str
    text: Optional[str]   # the passive reply's text, or None for an empty 200 (or an error)
    elapsed: float        # the HTTP exchange alone, without signing before it or reading after
    doc: Optional[dict] = None  # the passive reply's JSON, `data` still encoded
    sent_at: float = 0.0  # wall clock when the request went out

    @property
    def answered(self) -> bool:
        return self.text is not None


@dataclass
class WeiboPlatform:
    """What Weibo knows of the account: its webhook, app secret and uid."""
    webhook: str
    app_secret: str
    account_id: int = 5_000_000_001

    def signed_url(self, timestamp: Optional[int] = None, **extra: str) -> str:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = secrets.token_hex(5)
        query = {"signature": signature(self.app_secret, ts, nonce), "timestamp": ts, "nonce": nonce, **extra}
        return f"{self.webhook}?{urlencode(query)}"

    def verify_url(self, echostr: str = "echo123", timestamp: Optional[int] = None) -> requests.Response:
        return requests.get(self.signed_url(timestamp, echostr=echostr), timeout=10)

    def read_reply(self, body: str, user_id: Optional[int] = None) -> tuple[Optional[str], Optional[dict]]:
        """The text of a passive reply (None for an empty body). Raises AssertionError when the reply
        is not what Weibo accepts."""
        if not body.strip():
            return None, None
        doc = json.loads(body)
        assert doc.get("result") is True and doc.get("type") == "text", doc
        assert doc.get("sender_id") == self.account_id, doc
        if user_id is not None:
            assert doc.get("receiver_id") == user_id, doc
        return json.loads(unquote(doc["data"]))["text"], doc


class WeiboUser:
    """One user writing to the account. Weibo stamps pushes to the second; this user's clock moves
    on by at least a second per message, so two messages are never taken for a retry."""

    def __init__(self, platform: WeiboPlatform, user_id: Optional[int] = None) -> None:
        self.platform = platform
        self.user_id = user_id or 1_000_000_000 + secrets.randbelow(8_999_999_999)
        self.http = requests.Session()
        self._clock = 0

    def next_created_at(self) -> str:
        self._clock = max(int(time.time()), self._clock + 1)
        return weibo_time(self._clock)

    def push_doc(self, kind: str, text: str = "", data: Optional[dict] = None,
                 created_at: Optional[str] = None) -> dict:
        return {"type": kind, "receiver_id": self.platform.account_id, "sender_id": self.user_id,
                "created_at": created_at or self.next_created_at(), "text": text, "data": data or {}}

    def post(self, doc: Any, timeout: float = 15, timestamp: Optional[int] = None) -> Reply:
        """Post a push (a dict, or raw bytes/str as is) signed as Weibo signs it."""
        body = doc if isinstance(doc, (bytes, str)) else json.dumps(doc, ensure_ascii=False)
        body = body.encode() if isinstance(body, str) else body
        url = self.platform.signed_url(timestamp)
        sent_at, started = time.time(), time.perf_counter()
        res = self.http.post(url, data=body,
                             headers={"Content-Type": "application/json"}, timeout=timeout)
        elapsed = time.perf_counter() - started
        text, parsed = self.platform.read_reply(res.text, self.user_id) if res.status_code == 200 else (None, None)
        return Reply(res.status_code, res.text, text, elapsed, parsed, sent_at)

    def say(self, text: str, created_at: Optional[str] = None) -> Reply:
        return self.post(self.push_doc("text", text, created_at=created_at))

    def position(self, latitude: str, longitude: str, label: Optional[str] = None) -> Reply:
        data = {"latitude": latitude, "longitude": longitude}
        if label:
            data["label"] = label
        return self.post(self.push_doc("position", "我在这里", data))

    def image(self, tovfid: int, vfid: Optional[int] = None) -> Reply:
        return self.post(self.push_doc("image", "分享图片", {"vfid": vfid or tovfid - 10, "tovfid": tovfid}))

    def voice(self, recognition: Optional[str] = None, tovfid: int = 821804469) -> Reply:
        data: dict = {"vfid": tovfid - 10, "tovfid": tovfid}
        if recognition:
            data["recognition"] = recognition
        return self.post(self.push_doc("voice", "发送了一段语音", data))

    def event(self, subtype: str, key: Optional[str] = None) -> Reply:
        data: dict = {"subtype": subtype}
        if key is not None:
            data["key"] = key
        return self.post(self.push_doc("event", "", data))

