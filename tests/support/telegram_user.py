"""A Telegram user, as the Telegram platform delivers them: Update JSON posted to the bot's webhook
with the secret-token header, redelivered with the same update_id when Telegram retries. Answers are
read back from the stand-in Bot API (tests/support/telegram_api.py) over HTTP, so this works against
any bot behind the webhook, the real Rasa server included.
"""
from __future__ import annotations

import itertools
import json
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any, Optional

import requests

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_update_ids = itertools.count(random.randrange(10**8, 9 * 10**8))
_message_ids = itertools.count(1)
_KEEP = object()


@dataclass
class Delivery:
    status: int
    body: str
    update: dict
    elapsed: float        # the HTTP exchange alone
    sent_at: float = 0.0  # wall clock when the request went out

    @property
    def update_id(self) -> int:
        return self.update["update_id"]


@dataclass
class TelegramPlatform:
    """What Telegram knows of a bot: its webhook, secret token, and (here) the API it calls."""
    webhook: str
    secret_token: Optional[str]
    api_url: str            # the stand-in Bot API, where the bot's answers are read back
    bot_username: str = "JiaojingTestBot"

    def deliver(self, update: dict, secret: Any = _KEEP, timeout: float = 30) -> Delivery:
        """POST one update as Telegram does; `secret=None` leaves the header out."""
        secret = self.secret_token if secret is _KEEP else secret
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        body = json.dumps(update).encode()
        sent_at, started = time.time(), time.perf_counter()
        res = requests.post(self.webhook, data=body, headers=headers, timeout=timeout)
        return Delivery(res.status_code, res.text, update, time.perf_counter() - started, sent_at)

    def sent(self, chat_id: Any = None, after_id: int = 0) -> list[dict]:
        params = {"after_id": after_id, **({"chat_id": str(chat_id)} if chat_id is not None else {})}
        return requests.get(f"{self.api_url}/_standin/sent", params=params, timeout=10).json()

    def calls(self) -> dict:
        return requests.get(f"{self.api_url}/_standin/calls", timeout=10).json()


def next_update_id() -> int:
    return next(_update_ids)


class TelegramUser:
    """One person in a private chat with the bot (chat id = user id, as Telegram does it)."""

    def __init__(self, platform: TelegramPlatform, user_id: Optional[int] = None, first_name: str = "测试",
                 language_code: str = "zh-hans") -> None:
        self.platform = platform
        self.id = user_id or random.randrange(10**8, 10**10)
        self.profile = {"id": self.id, "is_bot": False, "first_name": first_name, "language_code": language_code}
        self.seen = 0  # highest message_id already read

    @property
    def chat(self) -> dict:
        return {"id": self.id, "type": "private", "first_name": self.profile["first_name"]}

    def message_update(self, update_id: Optional[int] = None, **content: Any) -> dict:
        message = {"message_id": next(_message_ids), "from": self.profile, "chat": self.chat,
                   "date": int(time.time()), **content}
        return {"update_id": update_id or next_update_id(), "message": message}

    def send(self, update: dict, **kwargs: Any) -> Delivery:
        return self.platform.deliver(update, **kwargs)

    def say(self, text: str, update_id: Optional[int] = None, **kwargs: Any) -> Delivery:
        content: dict = {"text": text}
        if text.startswith("/") and len(text) > 1:
            length = len(text.split()[0])
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self.send(self.message_update(update_id, **content), **kwargs)

    def send_photo(self, file_id: Optional[str] = None, caption: Optional[str] = None) -> Delivery:
        file_id = file_id or "AgACAgUAAxkBAAI" + secrets.token_urlsafe(24)
        sizes = [{"file_id": f"{file_id}-{w}", "file_unique_id": f"u{w}", "width": w, "height": w * 3 // 4,
                  "file_size": w * 40} for w in (90, 320, 1280)]
        sizes[-1]["file_id"] = file_id  # the largest size carries the id asked for
        content: dict = {"photo": sizes}
        if caption:
            content["caption"] = caption
        return self.send(self.message_update(**content))

    def send_location(self, latitude: float, longitude: float) -> Delivery:
        return self.send(self.message_update(location={"latitude": latitude, "longitude": longitude}))

    def send_sticker(self) -> Delivery:
        return self.send(self.message_update(sticker={
            "file_id": "CAACAgIAAxkBAAI" + secrets.token_urlsafe(16), "file_unique_id": "s1", "width": 512,
            "height": 512, "is_animated": False, "emoji": "👍"}))

    def press(self, sent: dict, title: Optional[str] = None, data: Optional[str] = None) -> Delivery:
        """Tap an inline button (by title) of a message the bot sent; `data` forces the callback data."""
        buttons = [b for row in (sent.get("reply_markup") or {}).get("inline_keyboard") or [] for b in row]
        if data is None:
            data = next(b["callback_data"] for b in buttons if title is None or b["text"] == title)
        bot = {"id": 1, "is_bot": True, "first_name": "交警助手", "username": self.platform.bot_username}
        message = {"message_id": sent["message_id"], "from": bot, "chat": self.chat,
                   "date": int(sent.get("at", time.time())), "text": sent["text"]}
        if sent.get("reply_markup"):
            message["reply_markup"] = sent["reply_markup"]
        query = {"id": str(random.randrange(10**17, 10**18)), "from": self.profile, "message": message,
                 "chat_instance": str(-random.randrange(10**17, 10**18)), "data": data}
        return self.send({"update_id": next_update_id(), "callback_query": query})

    def redeliver(self, delivery: Delivery) -> Delivery:
        """Telegram's retry: the very same update again."""
        return self.send(delivery.update)

    # -- reading the bot's answers --------------------------------------------------------------

    def answers(self) -> list[dict]:
        """Messages the bot sent to this chat since the last call."""
        new = self.platform.sent(self.id, after_id=self.seen)
        if new:
            self.seen = max(m["message_id"] for m in new)
        return new

    def wait_answers(self, count: int = 1, timeout: float = 10.0, settle: float = 0.3) -> list[dict]:
        """At least `count` new answers (or what came within `timeout`), plus any arriving within `settle`."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got += self.answers()
            if len(got) >= count:
                break
            time.sleep(0.05)
        time.sleep(settle)
        return got + self.answers()

    def ask(self, text: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Say something and return the texts of the answers."""
        self.answers()  # forget anything older
        delivery = self.say(text)
        if delivery.status != 200:
            raise AssertionError(f"webhook answered {delivery.status}: {delivery.body}")
        return [m["text"] for m in self.wait_answers(count, timeout)]
