"""Answering later what cannot be answered now.

When something the assistant needs is down (the action server, PostgreSQL, Redis), Rasa ends the
turn before saving anything (scripts/rasa_server.py). The user is told at once that the message was
received; the message goes to Rasa again with backoff until it is answered, and the answer goes out
through the channel's send API. Any other failure gets the plain apology and is not retried.

Held messages live in this process: a Rasa server killed while holding one loses it (logged).
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence

from rasa.core.channels.channel import UserMessage

from channels.base import Background, ChannelCollector, Conversations

logger = logging.getLogger(__name__)

HELD = "系统暂时繁忙，您的消息已收到，恢复后会马上回复您，请不要重复发送。"
# About seven minutes in all; JJ_REDELIVERY_DELAYS="1,2,5" overrides (seconds, comma-separated).
DELAYS = (3, 5, 10, 20, 30, 60, 60, 60, 60, 120)

# Names, not classes: the exceptions come from SQLAlchemy, psycopg2, asyncpg, redis, aiohttp and
# Rasa, and a channel should not import them all to recognise an outage.
OUTAGES = {"ActionServerUnavailable", "TrackerStoreUnavailable", "OperationalError", "InterfaceError", "DisconnectionError",
           "ConnectionError", "ConnectionRefusedError", "TimeoutError", "LockError",
           "CannotConnectNowError", "ConnectionDoesNotExistError", "PostgresConnectionError"}


def is_outage(exc: Optional[BaseException]) -> bool:
    """True when the failure is something the assistant needs being down, not a bug."""
    for _ in range(6):  # the chain is short; never loop on a cycle
        if exc is None:
            return False
        if OUTAGES & {cls.__name__ for cls in type(exc).__mro__}:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def delays_from_env() -> Sequence[float]:
    raw = os.environ.get("JJ_REDELIVERY_DELAYS", "")
    try:
        values = tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError:
        logger.error("JJ_REDELIVERY_DELAYS=%r is not a list of seconds; using the default", raw)
        return DELAYS
    return values or DELAYS


class Redelivery:
    def __init__(self, channel: str, conversations: Conversations, background: Background,
                 send: Callable[[str, str], Awaitable[Any]]) -> None:
        self.channel, self.conversations, self.background, self.send = channel, conversations, background, send
        self.delays = delays_from_env()

    async def apology(self, user: str, text: str, exc: BaseException,
                      on_new_message: Callable[[UserMessage], Awaitable[Any]],
                      metadata: Optional[Dict[str, Any]] = None) -> str:
        """What to tell the user now about a turn that failed with `exc`."""
        if not is_outage(exc):
            logger.error("%s: handling a message from %s failed", self.channel, user, exc_info=exc)
            return await self.conversations.busy(user)
        logger.warning("%s: message from %s held until the assistant recovers: %s", self.channel, user,
                       exc.__class__.__name__)
        self.background.spawn(self._retry(user, text, on_new_message, dict(metadata or {})))
        return await self.conversations.render(user, HELD)

    async def _retry(self, user: str, text: str, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                     metadata: Dict[str, Any]) -> None:
        for attempt, delay in enumerate(self.delays, 1):
            await asyncio.sleep(delay)
            collector = ChannelCollector(self.channel)
            try:
                await on_new_message(UserMessage(text, collector, user, input_channel=self.channel,
                                                 metadata={**metadata, "redelivery": attempt}))
            except Exception as exc:
                if is_outage(exc):
                    continue
                logger.error("%s: held message from %s failed on redelivery", self.channel, user, exc_info=exc)
                return
            answer = await self.conversations.outgoing(user, collector.messages)
            if answer:
                try:
                    await self.send(user, answer)
                except Exception:
                    logger.exception("%s: answer to the held message of %s could not be sent", self.channel, user)
                    return
            logger.info("%s: held message from %s answered after %d attempts", self.channel, user, attempt)
            return
        logger.error("%s: held message from %s dropped: the assistant did not recover in time", self.channel, user)
