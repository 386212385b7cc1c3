"""What every channel connector shares: reading its credentials with errors that name the key,
numbered choices in place of buttons, splitting long answers, and answering inside a time budget.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Sequence, Text

from rasa.core.channels.channel import CollectingOutputChannel, OutputChannel, UserMessage
from sanic.request import Request
from sanic.response import HTTPResponse

from channels.memory import MemoryStore, UserMemory, memory_store
from channels.script import guard_payload, script_of, to_traditional

logger = logging.getLogger(__name__)

BUSY = "系统繁忙，请稍后再试。"
STORE_SCHEMES = ("redis://", "rediss://", "unix://")


class ChannelConfigError(ValueError):
    """A channel's credentials are wrong; the message names the channel and the key."""


class Credentials:
    """One channel's entry in credentials.yml, read with errors that say which key is wrong."""

    def __init__(self, where: str, creds: Optional[Dict[Text, Any]], error: type = ChannelConfigError) -> None:
        self.where, self.values, self.error = where, dict(creds or {}), error

    def fail(self, key: str, problem: str) -> None:
        raise self.error(f"{self.where}: '{key}' {problem}")

    def text(self, key: str, default: Optional[str] = None) -> Optional[str]:
        value = self.values.get(key)
        value = "" if value is None else str(value).strip()
        return value or default

    def need(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            self.fail(key, "is required")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        raw = self.values.get(key, default)
        try:
            value = float(raw if raw not in (None, "") else default)
        except (TypeError, ValueError):
            self.fail(key, f"must be a number, got {raw!r}")
        if not low <= value <= high:
            self.fail(key, f"must be between {low} and {high}, got {value}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        return int(self.number(key, default, low, high))

    def choice(self, key: str, options: Sequence[str], default: str) -> str:
        value = self.text(key, default)
        if value not in options:
            self.fail(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def url(self, key: str, default: Optional[str] = None) -> str:
        value = (self.text(key, default) or "").rstrip("/")
        if not value.startswith(("http://", "https://")):
            self.fail(key, f"must be an http(s) URL, got {value!r}")
        return value

    def store(self, key: str, default: str = "memory") -> str:
        """'memory' (this process) or a Redis URL (shared by every process)."""
        value = self.text(key, default)
        if value != "memory" and not value.startswith(STORE_SCHEMES):
            self.fail(key, "must be 'memory' or a redis:// URL")
        return value

    def flag(self, key: str, default: bool) -> bool:
        raw = self.text(key)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        self.fail(key, f"must be true or false, got {raw!r}")


def render_messages(messages: Iterable[Dict[str, Any]]) -> str:
    """Rasa's bot messages as one plain text: buttons become numbered choices."""
    parts = []
    for msg in messages:
        lines = [msg["text"]] if msg.get("text") else []
        for i, button in enumerate(msg.get("buttons") or [], start=1):
            lines.append(f"回复 {i}：{button.get('title', '')}")
        if msg.get("image"):
            lines.append(msg["image"])
        if lines:
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def split_text(text: str, limit: int, size: Callable[[str], int] = lambda s: len(s.encode())) -> List[str]:
    """Cut a text into pieces of at most `limit` (UTF-8 bytes unless `size` says otherwise), at
    line breaks where possible."""
    pieces, current = [], ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if size(candidate) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        while size(line) > limit:
            cut = max(1, len(line) * limit // max(size(line), 1))
            while cut > 1 and size(line[:cut]) > limit:
                cut -= 1
            pieces.append(line[:cut])
            line = line[cut:]
        current = line
    if current:
        pieces.append(current)
    return pieces


class TextOutput(OutputChannel):
    """An output channel that can only send text: buttons become numbered choices, images their URL.
    Subclasses define `send_text(recipient, text)`."""

    async def send_text(self, recipient_id: Text, text: Text) -> Any:
        raise NotImplementedError

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self.send_text(recipient_id, text)

    async def send_text_with_buttons(self, recipient_id: Text, text: Text,
                                     buttons: List[Dict[Text, Any]], **kwargs: Any) -> None:
        await self.send_text(recipient_id, render_messages([{"text": text, "buttons": buttons}]))

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        await self.send_text(recipient_id, image)


def offered_choices(messages: List[Dict[str, Any]]) -> List[str]:
    return [b.get("payload") or b.get("title", "") for m in messages for b in m.get("buttons") or []]


def chosen(choices: List[str], text: str) -> Optional[str]:
    """The payload a typed number stands for, if it is one of the choices offered."""
    text = text.strip()
    if choices and text.isdigit() and 1 <= int(text) <= len(choices):
        return choices[int(text) - 1]
    return None


class Conversations:
    """Per-user memory a text channel keeps: the script the user writes in and the numbered
    choices last offered (channels/memory.py: this process or Redis). Typed text never poses as
    an intent payload."""

    def __init__(self, channel: str, store: str = "memory") -> None:
        self.channel, self.spec = channel, store
        self._store: Optional[MemoryStore] = None

    @property
    def store(self) -> MemoryStore:
        if self._store is None:  # made on first use, inside the server's event loop
            self._store = memory_store(self.spec)
        return self._store

    def _key(self, user: str) -> str:
        return f"{self.channel}:{user}"

    async def observe(self, user: str, text: str) -> UserMemory:
        """Note the script of this text (when it has one) and return what is remembered."""
        memory = await self.store.load(self._key(user))
        script = script_of(text)
        if script is not None and script != memory.script:
            memory.script = script
            await self.store.save(self._key(user), memory)
        return memory

    async def incoming(self, user: str, text: str) -> str:
        memory = await self.observe(user, text)
        payload = chosen(memory.choices, text)
        return payload if payload is not None else guard_payload(text)

    async def outgoing(self, user: str, messages: List[Dict[str, Any]]) -> str:
        memory = await self.store.load(self._key(user))
        choices = offered_choices(messages)
        if choices != memory.choices:
            memory.choices = choices
            await self.store.save(self._key(user), memory)
        return self._in_script(memory, render_messages(messages))

    async def render(self, user: str, text: str) -> str:
        return self._in_script(await self.store.load(self._key(user)), text)

    async def busy(self, user: str) -> str:
        return await self.render(user, BUSY)

    @staticmethod
    def _in_script(memory: UserMemory, text: str) -> str:
        return to_traditional(text) if memory.script == "traditional" else text


class Background:
    """Tasks that outlive the request that started them, kept referenced until done."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.adopt(task)
        return task

    def adopt(self, task: asyncio.Future) -> None:
        """Keep a running task referenced until it is done."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class ChannelCollector(CollectingOutputChannel):
    """Collects answers under the channel's own name, so Rasa picks that channel's response
    variations (`channel: sms` in domain.yml) instead of the generic ones."""

    def __init__(self, channel: str) -> None:
        super().__init__()
        self._channel = channel

    def name(self) -> Text:  # type: ignore[override]
        return self._channel


Outcome = Optional[BaseException]  # how the turn ended: None, or what it raised


async def reply_within(request: Request, budget: float, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                       message: UserMessage, reply: Callable[[Outcome], Awaitable[HTTPResponse]],
                       later: Callable[[Outcome], Awaitable[Any]], early: Callable[[], HTTPResponse],
                       background: Background) -> Optional[HTTPResponse]:
    """Answer a platform's push in its HTTP response if the turn ends within `budget` seconds.

    The turn runs in a task of its own (a slow one outlives the request) and that task writes the
    response itself the moment the turn ends: a handler waiting for it would need another wake-up,
    and on a busy server every wake-up waits behind other people's turns. When the budget runs out
    first, or the platform hangs up, the handler answers `early()` (or nothing) and the turn's
    answer goes to `later` instead (the platform's send API). Returns `early()` or None (answered).
    """
    answered: list[str] = []  # who answers the request: "turn" or "handler", whoever is first

    async def turn() -> None:
        try:
            await on_new_message(message)
            outcome: Outcome = None
        except Exception as exc:
            outcome = exc
        if answered:
            await later(outcome)
            return
        answered.append("turn")
        written = await request.respond(await reply(outcome))
        await written.send(end_stream=True)

    def hand_over() -> bool:
        """The handler takes the request if the turn has not: the turn then answers `later`."""
        if answered:
            return False
        answered.append("handler")
        background.adopt(task)
        return True

    task = asyncio.ensure_future(turn())
    # Whatever it raises is re-raised below while the handler waits; once the handler has answered
    # (or was cancelled with its connection), `later` logs its own failures.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    try:
        done, _ = await asyncio.wait({task}, timeout=max(budget, 0))
    except asyncio.CancelledError:  # the platform hung up: the answer goes through its API instead
        hand_over()
        raise
    if not done and hand_over():
        return early()
    await task  # done, or writing its response now; raises what building the reply raised
    return None
