"""A stand-in for the Weibo fans-service reply API (m.api.weibo.com) on loopback, speaking its real
protocol: POST 2/messages/reply.json with form fields access_token, type, data (URL-encoded JSON),
receiver_id; errors as Weibo's JSON {"error", "error_code", "request"}.
Inspection endpoints (under /_standin/) let tests and the chat command read what was sent and
make the next calls fail.

    python -m tests.support.weibo_api --port 8082 --access-token TOKEN
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote

from aiohttp import web

REPLY_PATH = "/2/messages/reply.json"
INVALID_TOKEN = 21332
BAD_PARAMETER = 10017
MAX_TEXT_CHARS = 300


@dataclass
class Sent:
    receiver_id: str
    type: str
    data: dict
    at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        return str(self.data.get("text", ""))


@dataclass
class Failure:
    status: int
    error_code: Optional[int]
    count: int


class WeiboAPIStandIn:
    def __init__(self, access_token: str, account_id: int = 5_000_000_001) -> None:
        self.access_token = access_token
        self.account_id = account_id
        self.sent: list[Sent] = []
        self.calls = 0
        self._failures: list[Failure] = []
        self._ids = itertools.count(4_100_000_000_000_000)

    def fail_next(self, status: int = 500, error_code: Optional[int] = None, count: int = 1) -> None:
        """The next `count` calls answer HTTP `status`, with Weibo's error JSON if `error_code`."""
        self._failures.append(Failure(status, error_code, count))

    def _error(self, status: int, code: int, message: str) -> web.Response:
        return web.json_response({"error": message, "error_code": code, "request": REPLY_PATH}, status=status)

    # -- Weibo endpoint ---------------------------------------------------------------------

    async def reply(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self._failures:
            failure = self._failures[0]
            failure.count -= 1
            if failure.count <= 0:
                self._failures.pop(0)
            if failure.error_code is None:
                return web.Response(status=failure.status, text="<html>server error</html>",
                                    content_type="text/html")
            return self._error(failure.status, failure.error_code, "stand-in failure")
        form = await request.post()
        token = form.get("access_token") or request.query.get("access_token")
        if token != self.access_token:
            return self._error(403, INVALID_TOKEN, "invalid_access_token")
        receiver, kind = str(form.get("receiver_id") or ""), form.get("type")
        if not receiver.isdigit():
            return self._error(400, BAD_PARAMETER, "parameter (receiver_id)'s value invalid")
        if kind not in ("text", "articles", "position"):
            return self._error(400, BAD_PARAMETER, "parameter (type)'s value invalid")
        try:
            data = json.loads(unquote(str(form.get("data") or "")))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return self._error(400, BAD_PARAMETER, "parameter (data)'s value invalid")
        text = data.get("text")
        if kind == "text" and (not isinstance(text, str) or not text or len(text) >= MAX_TEXT_CHARS):
            return self._error(400, BAD_PARAMETER, "parameter (data)'s value invalid: text length")
        self.sent.append(Sent(receiver, kind, data))
        message_id = next(self._ids)
        return web.json_response({
            "id": message_id, "idstr": str(message_id), "type": kind,
            "created_at": time.strftime("%a %b %d %H:%M:%S +0800 %Y", time.gmtime(time.time() + 8 * 3600)),
            "text": text or "", "sender_id": self.account_id, "recipient_id": int(receiver)})

    # -- inspection ------------------------------------------------------------------------

    async def inbox(self, request: web.Request) -> web.Response:
        receiver = request.query.get("receiver_id")
        after = float(request.query.get("after", "0"))
        return web.json_response([
            {"receiver_id": s.receiver_id, "type": s.type, "text": s.text, "data": s.data, "at": s.at}
            for s in self.sent if (not receiver or s.receiver_id == receiver) and s.at > after])

    async def fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_next(int(body.get("status", 500)), body.get("error_code"), int(body.get("count", 1)))
        return web.json_response({"ok": True})

    def messages_to(self, receiver_id) -> list[Sent]:
        return [s for s in self.sent if s.receiver_id == str(receiver_id)]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post(REPLY_PATH, self.reply)
        app.router.add_get("/_standin/inbox", self.inbox)
        app.router.add_post("/_standin/fail", self.fail)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--access-token", required=True)
    parser.add_argument("--account-id", type=int, default=5_000_000_001)
    args = parser.parse_args()
    web.run_app(WeiboAPIStandIn(args.access_token, args.account_id).app(), host=args.host, port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
