"""A stand-in for the WeChat API (api.weixin.qq.com) on loopback, speaking its real protocol.

Covers what the assistant calls: cgi-bin/token, message/custom/send, message/template/send,
menu/create and menu/get (checked against WeChat's documented limits).
Tokens behave as WeChat's do: a new fetch invalidates the previous token after a grace period.
Inspection endpoints (under /_standin/) let tests and the chat command read what was sent.

    python -m tests.support.wechat_api --port 8081 --app-id ID --app-secret SECRET
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Optional

from aiohttp import web


@dataclass
class Sent:
    kind: str  # custom, template
    touser: str
    body: dict
    at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        return (self.body.get("text") or {}).get("content", "")


class WeChatAPIStandIn:
    def __init__(self, app_id: str, app_secret: str, grace: float = 300.0, latency: float = 0.0) -> None:
        self.app_id = app_id
        self.latency = latency  # seconds added before every API answer (the real API is far away)
        self.app_secret = app_secret
        self.grace = grace
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.token_fetches = 0
        self.sent: list[Sent] = []
        self.blocked: set[str] = set()       # openids outside the 48-hour window / unfollowed
        self.always_invalid_token = False    # every call answers 40001, to test retry bounds
        self.calls = 0
        self.menu: Optional[dict] = None
        self.outage: Optional[tuple[str, float]] = None  # ("5xx" | "timeout", until monotonic)
        self.refused = 0  # API calls answered by the outage

    # -- WeChat endpoints -----------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        if q.get("appid") != self.app_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if q.get("secret") != self.app_secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        self.token_fetches += 1
        now = time.monotonic()
        # Older tokens stay valid for the grace period only.
        self.tokens = {t: min(exp, now + self.grace) for t, exp in self.tokens.items() if exp > now}
        token = secrets.token_urlsafe(48)
        self.tokens[token] = now + 7200
        return web.json_response({"access_token": token, "expires_in": 7200})

    def _token_error(self, request: web.Request) -> Optional[web.Response]:
        self.calls += 1
        token = request.query.get("access_token", "")
        if self.always_invalid_token:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        expiry = self.tokens.get(token)
        if expiry is None:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        if expiry <= time.monotonic():
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        return None

    async def _json(self, request: web.Request) -> Optional[dict]:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None

    async def custom_send(self, request: web.Request) -> web.Response:
        error = self._token_error(request)
        if error is not None:
            return error
        body = await self._json(request)
        if body is None or not body.get("touser") or body.get("msgtype") not in ("text", "image", "news"):
            return web.json_response({"errcode": 44002, "errmsg": "empty post data or bad json"})
        if body["touser"] in self.blocked:
            return web.json_response({"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"})
        content = (body.get("text") or {}).get("content", "")
        if body["msgtype"] == "text" and (not content or len(content.encode()) > 2048):
            return web.json_response({"errcode": 45002, "errmsg": "content size out of limit"})
        self.sent.append(Sent("custom", body["touser"], body))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def template_send(self, request: web.Request) -> web.Response:
        error = self._token_error(request)
        if error is not None:
            return error
        body = await self._json(request)
        if body is None or not body.get("touser") or not body.get("template_id"):
            return web.json_response({"errcode": 40003, "errmsg": "invalid openid or template_id"})
        if body["touser"] in self.blocked:
            return web.json_response({"errcode": 43004, "errmsg": "require subscribe"})
        for name, item in (body.get("data") or {}).items():
            value = str((item or {}).get("value", ""))
            if len(value) > 20 or "\n" in value:
                return web.json_response({"errcode": 47003, "errmsg": f"argument invalid! data.{name}.value"})
        self.sent.append(Sent("template", body["touser"], body))
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": len(self.sent)})

    @staticmethod
    def _menu_error(menu: dict) -> Optional[tuple[int, str]]:
        """WeChat's limits: 1-3 buttons, 1-5 sub-buttons each, names of 16 (top) or 60 bytes,
        click keys of at most 128 bytes, view URLs of at most 1024 bytes."""
        buttons = menu.get("button")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return 40017, "invalid button size"
        for top in buttons:
            if not isinstance(top, dict) or not top.get("name") or len(top["name"].encode()) > 16:
                return 40018, "invalid button name size"
            subs = top.get("sub_button")
            items = subs if subs else [top]
            if subs is not None and not 1 <= len(subs) <= 5:
                return 40023, "invalid sub button size"
            for item in items:
                if item is not top and (not item.get("name") or len(item["name"].encode()) > 60):
                    return 40024, "invalid sub button name size"
                if item.get("type") == "click":
                    if not item.get("key") or len(item["key"].encode()) > 128:
                        return 40019, "invalid button key size"
                elif item.get("type") == "view":
                    if not str(item.get("url", "")).startswith(("http://", "https://")) or len(item["url"]) > 1024:
                        return 40022, "invalid button url size"
                else:
                    return 40016, "invalid button type"
        return None

    async def menu_create(self, request: web.Request) -> web.Response:
        error = self._token_error(request)
        if error is not None:
            return error
        body = await self._json(request)
        problem = (44002, "empty post data") if body is None else self._menu_error(body)
        if problem:
            return web.json_response({"errcode": problem[0], "errmsg": problem[1]})
        self.menu = body
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def menu_get(self, request: web.Request) -> web.Response:
        error = self._token_error(request)
        if error is not None:
            return error
        if self.menu is None:
            return web.json_response({"errcode": 46003, "errmsg": "menu no exist"})
        return web.json_response({"menu": self.menu})

    # -- inspection ------------------------------------------------------------------------

    async def inbox(self, request: web.Request) -> web.Response:
        touser = request.query.get("touser")
        after = float(request.query.get("after", "0"))
        items = [{"kind": s.kind, "touser": s.touser, "text": s.text, "body": s.body, "at": s.at}
                 for s in self.sent if (not touser or s.touser == touser) and s.at > after]
        return web.json_response(items)

    def messages_to(self, openid: str) -> list[Sent]:
        return [s for s in self.sent if s.touser == openid]

    def app(self) -> web.Application:
        @web.middleware
        async def delay(request: web.Request, handler):
            if request.path.startswith("/cgi-bin/"):
                if self.outage and time.monotonic() < self.outage[1]:
                    self.refused += 1
                    if self.outage[0] == "timeout":  # hold the call longer than any client waits
                        await asyncio.sleep(30)
                    return web.Response(status=503, text="service unavailable")
                if self.latency > 0:
                    await asyncio.sleep(self.latency)
            return await handler(request)

        app = web.Application(client_max_size=1024 * 1024, middlewares=[delay])
        app.router.add_get("/cgi-bin/token", self.token)
        app.router.add_post("/cgi-bin/message/custom/send", self.custom_send)
        app.router.add_post("/cgi-bin/message/template/send", self.template_send)
        app.router.add_post("/cgi-bin/menu/create", self.menu_create)
        app.router.add_get("/cgi-bin/menu/get", self.menu_get)
        app.router.add_get("/_standin/inbox", self.inbox)
        app.router.add_post("/_standin/outage", self.start_outage)
        return app

    async def start_outage(self, request: web.Request) -> web.Response:
        """Every API call fails for a while: {"mode": "5xx" | "timeout", "seconds": 60}."""
        body = await request.json()
        if body.get("mode") not in ("5xx", "timeout"):
            return web.json_response({"error": "mode must be 5xx or timeout"}, status=400)
        self.outage = (body["mode"], time.monotonic() + float(body.get("seconds", 60)))
        return web.json_response({"ok": True, "refused_so_far": self.refused})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--app-secret", required=True)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every API answer")
    args = parser.parse_args()
    web.run_app(WeChatAPIStandIn(args.app_id, args.app_secret, latency=args.latency).app(), host=args.host, port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
