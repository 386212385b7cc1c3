"""A stand-in for the WeChat API (api.weixin.qq.com) on loopback, speaking its real protocol.

Covers what the assistant calls: cgi-bin/token, message/custom/send, message/template/send.
Tokens behave as WeChat's do: a new fetch invalidates the previous token after a grace period.
Inspection endpoints (under /_standin/) let tests and the chat command read what was sent.

    python -m tests.support.wechat_api --port 8081 --app-id ID --app-secret SECRET
"""
from __future__ import annotations

import argparse
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
    def __init__(self, app_id: str, app_secret: str, grace: float = 300.0) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.grace = grace
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.token_fetches = 0
        self.sent: list[Sent] = []
        self.blocked: set[str] = set()       # openids outside the 48-hour window / unfollowed
        self.always_invalid_token = False    # every call answers 40001, to test retry bounds
        self.calls = 0

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
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/cgi-bin/token", self.token)
        app.router.add_post("/cgi-bin/message/custom/send", self.custom_send)
        app.router.add_post("/cgi-bin/message/template/send", self.template_send)
        app.router.add_get("/_standin/inbox", self.inbox)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--app-secret", required=True)
    args = parser.parse_args()
    web.run_app(WeChatAPIStandIn(args.app_id, args.app_secret).app(), host=args.host, port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
