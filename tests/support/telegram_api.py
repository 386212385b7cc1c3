"""A stand-in for the Telegram Bot API (api.telegram.org) on loopback, speaking its real protocol.

Requests go to /bot<token>/<method> as GET query, JSON, urlencoded or multipart form (aiogram 2
posts forms); answers are {"ok": true, "result": ...} or {"ok": false, "error_code", "description",
"parameters": {"retry_after"}}. Covers getMe, sendMessage, sendPhoto, answerCallbackQuery,
setWebhook, deleteWebhook, getWebhookInfo. It can be told to answer 429 to a method; it counts
calls per method. Inspection and control under /_standin/.

    python -m tests.support.telegram_api --port 8082 --token 123456:ABC... [--username JiaojingTestBot]
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from aiohttp import web

SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass
class Sent:
    message_id: int
    method: str           # sendMessage, sendPhoto
    chat_id: str
    text: str
    reply_markup: Optional[dict]
    at: float = field(default_factory=time.time)

    def buttons(self) -> list[dict]:
        """The inline keyboard's buttons, row by row flattened: [{"text", "callback_data"}]."""
        return [b for row in (self.reply_markup or {}).get("inline_keyboard") or [] for b in row]


class BotAPIError(Exception):
    def __init__(self, code: int, description: str, retry_after: Optional[int] = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class TelegramAPIStandIn:
    def __init__(self, token: str, username: str = "JiaojingTestBot", first_name: str = "交警助手") -> None:
        self.token = token
        self.bot = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": first_name,
                    "username": username, "can_join_groups": False, "can_read_all_group_messages": False,
                    "supports_inline_queries": False}
        self.sent: list[Sent] = []
        self.callback_answers: list[dict] = []
        self.webhook: dict = {}
        self.calls: Counter = Counter()
        self.attempts: list[tuple[str, float]] = []  # (method, time) of every call, refused ones too
        self._limits: dict[str, list] = {}            # method -> [retry_after, times left]
        self._ids = itertools.count(1)
        self.url: Optional[str] = None

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 Too Many Requests."""
        self._limits[method.lower()] = [retry_after, times]

    def messages_to(self, chat_id: Any) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == str(chat_id)]

    # -- the Bot API ------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict:
        params: dict = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return params
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read())
            except ValueError:
                raise BotAPIError(400, "Bad Request: can't parse JSON object") from None
            if not isinstance(body, dict):
                raise BotAPIError(400, "Bad Request: JSON object expected")
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for key, value in (await request.post()).items():
                params[key] = value if isinstance(value, str) else f"upload:{value.filename}"
        return params

    @staticmethod
    def _json_field(params: dict, key: str, what: str) -> Any:
        value = params.get(key)
        if isinstance(value, str):  # form bodies carry nested objects as JSON strings
            try:
                return json.loads(value)
            except ValueError:
                raise BotAPIError(400, f"Bad Request: can't parse {what} JSON object") from None
        return value

    def _message(self, method: str, params: dict, text: str, extra: dict) -> dict:
        chat_id = str(params.get("chat_id") or "")
        if not chat_id:
            raise BotAPIError(400, "Bad Request: chat_id is empty")
        markup = self._json_field(params, "reply_markup", "reply keyboard markup")
        if markup is not None and not isinstance(markup, dict):
            raise BotAPIError(400, "Bad Request: object expected as reply markup")
        for row in (markup or {}).get("inline_keyboard") or []:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise BotAPIError(400, "Bad Request: BUTTON_DATA_INVALID")
        sent = Sent(next(self._ids), method, chat_id, text, markup)
        self.sent.append(sent)
        chat = {"id": int(chat_id), "type": "private"} if re.fullmatch(r"-?\d+", chat_id) else \
            {"id": -1001, "type": "channel", "username": chat_id.lstrip("@")}
        result = {"message_id": sent.message_id, "from": self.bot, "chat": chat, "date": int(sent.at), **extra}
        if markup and "inline_keyboard" in markup:
            result["reply_markup"] = markup
        return result

    def send_message(self, params: dict) -> dict:
        text = str(params.get("text") or "")
        if not text.strip():
            raise BotAPIError(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            raise BotAPIError(400, "Bad Request: message is too long")
        return self._message("sendMessage", params, text, {"text": text})

    def send_photo(self, params: dict) -> dict:
        photo = str(params.get("photo") or "")
        if not photo:
            raise BotAPIError(400, "Bad Request: there is no photo in the request")
        size = {"file_id": f"photo-{len(self.sent) + 1}", "file_unique_id": "u", "width": 320, "height": 240}
        return self._message("sendPhoto", params, photo, {"photo": [size], "caption": params.get("caption")})

    def answer_callback_query(self, params: dict) -> bool:
        if not params.get("callback_query_id"):
            raise BotAPIError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.callback_answers.append({k: v for k, v in params.items()})
        return True

    def set_webhook(self, params: dict) -> bool:
        if "url" not in params:
            raise BotAPIError(400, "Bad Request: parameter \"url\" is required")
        secret = params.get("secret_token")
        if secret is not None and not SECRET.fullmatch(str(secret)):
            raise BotAPIError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = {"url": params["url"], "secret_token": secret,
                        "allowed_updates": self._json_field(params, "allowed_updates", "allowed updates")}
        return True

    def delete_webhook(self, params: dict) -> bool:
        self.webhook = {}
        return True

    def get_webhook_info(self, params: dict) -> dict:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0,
                "allowed_updates": self.webhook.get("allowed_updates") or []}

    async def call(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        handlers = {"getme": lambda p: self.bot, "sendmessage": self.send_message, "sendphoto": self.send_photo,
                    "answercallbackquery": self.answer_callback_query, "setwebhook": self.set_webhook,
                    "deletewebhook": self.delete_webhook, "getwebhookinfo": self.get_webhook_info}
        try:
            if request.match_info["token"] != self.token:
                raise BotAPIError(401, "Unauthorized")
            handler = handlers.get(method.lower())
            if handler is None:
                raise BotAPIError(404, "Not Found")
            self.calls[_canonical(method)] += 1
            self.attempts.append((_canonical(method), time.time()))
            limit = self._limits.get(method.lower())
            if limit and limit[1] > 0:
                limit[1] -= 1
                raise BotAPIError(429, f"Too Many Requests: retry after {limit[0]}", retry_after=limit[0])
            result = handler(await self._params(request))
        except BotAPIError as err:
            body: dict = {"ok": False, "error_code": err.code, "description": err.description}
            if err.retry_after is not None:
                body["parameters"] = {"retry_after": err.retry_after}
            return web.json_response(body, status=err.code)
        return web.json_response({"ok": True, "result": result})

    # -- inspection and control ---------------------------------------------------------------

    async def inspect_sent(self, request: web.Request) -> web.Response:
        chat_id = request.query.get("chat_id")
        after = int(request.query.get("after_id", "0"))
        return web.json_response([asdict(s) for s in self.sent
                                  if (not chat_id or s.chat_id == chat_id) and s.message_id > after])

    async def inspect_calls(self, _: web.Request) -> web.Response:
        return web.json_response({k: v for k, v in self.calls.items() if v})

    async def inspect_webhook(self, _: web.Request) -> web.Response:
        return web.json_response(self.webhook)

    async def inspect_callback_answers(self, _: web.Request) -> web.Response:
        return web.json_response(self.callback_answers)

    async def control_rate_limit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.rate_limit(body["method"], int(body.get("retry_after", 1)), int(body.get("times", 1)))
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self.call)
        app.router.add_get("/_standin/sent", self.inspect_sent)
        app.router.add_get("/_standin/calls", self.inspect_calls)
        app.router.add_get("/_standin/webhook", self.inspect_webhook)
        app.router.add_get("/_standin/callback_answers", self.inspect_callback_answers)
        app.router.add_post("/_standin/rate_limit", self.control_rate_limit)
        return app


_NAMES = {n.lower(): n for n in ("getMe", "sendMessage", "sendPhoto", "answerCallbackQuery", "setWebhook",
                                 "deleteWebhook", "getWebhookInfo")}


def _canonical(method: str) -> str:
    return _NAMES.get(method.lower(), method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--token", required=True)
    parser.add_argument("--username", default="JiaojingTestBot")
    args = parser.parse_args()
    web.run_app(TelegramAPIStandIn(args.token, args.username).app(), host=args.host, port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
