"""A WeChat user, as the WeChat platform delivers them: signed (and in AES modes encrypted) XML
posted to the account's webhook. Used by the tests, the benchmarks and the chat command.
"""
from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlencode

import requests
import xmltodict
from wechatpy.crypto import WeChatCrypto

_msg_ids = itertools.count(int(time.time() * 1000) % 10**12 * 1000)


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


@dataclass
class Reply:
    status: int
    body: str
    text: Optional[str]   # the reply's text content, decrypted, or None for `success`/empty
    elapsed: float        # the HTTP exchange alone: signing before it and decrypting after are ours
    sent_at: float = 0.0  # wall clock when the request went out

    @property
    def answered(self) -> bool:
        return self.text is not None


@dataclass
class WeChatPlatform:
    """What WeChat knows of an official account: its webhook, token, AES key and mode."""
    webhook: str
    token: str
    app_id: str
    aes_key: Optional[str] = None
    mode: str = "safe"  # plain | compatible | safe
    account: str = "gh_jiaojing0001"

    def crypto(self) -> WeChatCrypto:
        return WeChatCrypto(self.token, self.aes_key, self.app_id)

    def sign(self, body_xml: str, timestamp: Optional[int] = None) -> tuple[str, bytes, dict]:
        """The URL, body and query WeChat would send for this plaintext message."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = secrets.token_hex(5)
        query = {"signature": signature(self.token, ts, nonce), "timestamp": ts, "nonce": nonce,
                 "openid": "unused"}
        body = body_xml
        if self.mode in ("compatible", "safe"):
            sealed = xmltodict.parse(self.crypto().encrypt_message(body_xml, nonce, ts))["xml"]
            query.update(encrypt_type="aes", msg_signature=sealed["MsgSignature"])
            inner = xmltodict.parse(body_xml)["xml"]
            if self.mode == "safe":
                body = (f"<xml><ToUserName><![CDATA[{inner['ToUserName']}]]></ToUserName>"
                        f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>")
            else:
                body = body_xml.replace("</xml>", f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>")
        return f"{self.webhook}?{urlencode(query)}", body.encode(), query

    def read_reply(self, body: str, query: dict) -> Optional[str]:
        body = body.strip()
        if body in ("", "success"):
            return None
        doc = xmltodict.parse(body)["xml"]
        if "Encrypt" in doc:
            inner = self.crypto().decrypt_message(body, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
            doc = xmltodict.parse(inner)["xml"]
        return doc.get("Content")

    def verify_url(self, echostr: str = "echo123") -> requests.Response:
        ts = str(int(time.time()))
        nonce = secrets.token_hex(5)
        return requests.get(self.webhook, params={"signature": signature(self.token, ts, nonce),
                                                  "timestamp": ts, "nonce": nonce, "echostr": echostr},
                            timeout=10)


def text_xml(account: str, openid: str, content: str, msg_id: int, created: Optional[int] = None) -> str:
    created = created or int(time.time())
    return (f"<xml><ToUserName><![CDATA[{account}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{created}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
            f"<MsgId>{msg_id}</MsgId></xml>")


def event_xml(account: str, openid: str, event: str, created: Optional[int] = None, key: Optional[str] = None) -> str:
    created = created or int(time.time())
    extra = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    return (f"<xml><ToUserName><![CDATA[{account}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{created}</CreateTime>"
            f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{extra}</xml>")


class WeChatUser:
    """One follower of the account, sending messages the way WeChat delivers them."""

    def __init__(self, platform: WeChatPlatform, openid: Optional[str] = None) -> None:
        self.platform = platform
        self.openid = openid or "o" + secrets.token_urlsafe(20)
        self.http = requests.Session()

    def post_xml(self, xml: str, timeout: float = 15) -> Reply:
        url, body, query = self.platform.sign(xml)
        sent_at, started = time.time(), time.perf_counter()
        res = self.http.post(url, data=body, headers={"Content-Type": "text/xml"}, timeout=timeout)
        elapsed = time.perf_counter() - started
        text = self.platform.read_reply(res.text, query) if res.status_code == 200 else None
        return Reply(res.status_code, res.text, text, elapsed, sent_at)

    def say(self, content: str, msg_id: Optional[int] = None) -> Reply:
        return self.post_xml(text_xml(self.platform.account, self.openid, content,
                                      msg_id if msg_id is not None else next(_msg_ids)))

    def event(self, event: str, key: Optional[str] = None) -> Reply:
        return self.post_xml(event_xml(self.platform.account, self.openid, event, key=key))

    def click(self, key: str) -> Reply:
        """A tap on a menu item of type click."""
        return self.event("CLICK", key)


def next_msg_id() -> int:
    return next(_msg_ids)
