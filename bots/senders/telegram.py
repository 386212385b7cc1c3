"""Telegram through channels.telegram.TelegramOutput; a 429 becomes a transient outcome whose
delay is Telegram's retry_after, instead of a wait that would hold a send slot."""
from __future__ import annotations

import asyncio
import re
from typing import Any, Dict, Optional

import aiohttp
from aiogram.bot.base import BaseBot
from aiogram.utils import exceptions as tg

from bots import messages
from bots.senders.result import Notification, Outcome, Sender
from channels.telegram import TelegramConfig, TelegramOutput

CHAT_ID = re.compile(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")


class PushTelegramOutput(TelegramOutput):
    async def request(self, method: str, data: Optional[Dict] = None, files: Optional[Dict] = None, **kwargs: Any):
        return await BaseBot.request(self, method, data, files, **kwargs)  # no in-place 429 wait


class TelegramSender(Sender):
    channel = "telegram"

    def __init__(self, config: TelegramConfig, details_url: str) -> None:
        self.output = PushTelegramOutput(config)
        self.details_url = details_url

    def text(self, note: Notification) -> str:
        return messages.plain_text(note.event_kind, note.payload,
                                   messages.details_url(self.details_url, note.event_key))

    async def send(self, note: Notification) -> Outcome:
        if not CHAT_ID.fullmatch(note.to):
            return Outcome.permanent("invalid-address", f"not a Telegram chat id: {note.to!r}")
        try:
            await self.output.send_message(note.to, self.text(note))
        except tg.RetryAfter as exc:
            return Outcome.transient("429", str(exc), float(exc.timeout))
        except tg.Unauthorized as exc:  # bot blocked, user deactivated, never started the bot
            return Outcome.permanent("403", str(exc), blocked=True)
        except tg.BadRequest as exc:    # chat not found, text refused
            return Outcome.permanent("400", str(exc))
        except (tg.TelegramAPIError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return Outcome.transient("network", f"{exc.__class__.__name__}: {exc}")
        return Outcome.delivered()

    async def close(self) -> None:
        await self.output.close()
