"""Weibo private messages through channels.weibo.WeiboOutput (the reply API)."""
from __future__ import annotations

import re

from bots import messages
from bots.senders.result import Notification, Outcome, Sender
from channels.weibo import WeiboAPIError, WeiboConfig, WeiboOutput

WEIBO_ID = re.compile(r"\d{1,20}")


class WeiboSender(Sender):
    channel = "weibo"

    def __init__(self, config: WeiboConfig, details_url: str) -> None:
        self.output = WeiboOutput(config)
        self.details_url = details_url

    async def send(self, note: Notification) -> Outcome:
        if not WEIBO_ID.fullmatch(note.to):
            return Outcome.permanent("invalid-address", f"not a Weibo user id: {note.to!r}")
        text = messages.plain_text(note.event_kind, note.payload,
                                   messages.details_url(self.details_url, note.event_key))
        try:
            await self.output.send_text(note.to, text)
        except WeiboAPIError as exc:
            code = str(exc.error_code or f"http-{exc.status}")
            if exc.transient:
                return Outcome.transient(code, str(exc))
            return Outcome.permanent(code, str(exc))
        return Outcome.delivered()

    async def close(self) -> None:
        await self.output.close()
