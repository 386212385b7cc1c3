"""What became of one send, the same for every channel."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

DELIVERED, TRANSIENT, PERMANENT = "delivered", "transient", "permanent"


@dataclass(frozen=True)
class Notification:
    """One claimed outbox row, detached from its session."""
    id: int
    event_kind: str
    event_key: str
    person_id: int
    channel: str
    payload: Dict[str, Any] = field(hash=False)
    attempts: int = 0

    @property
    def to(self) -> str:
        return str(self.payload.get("to") or "")


@dataclass(frozen=True)
class Outcome:
    """delivered (the platform accepted it), transient (retry later, after `retry_after` seconds when
    the platform said so) or permanent (never retry). `blocked`: the recipient blocked or unfollowed
    us on this channel, so the dispatcher may fall back to another one."""
    kind: str
    code: Optional[str] = None
    message: str = ""
    retry_after: Optional[float] = None
    blocked: bool = False

    @classmethod
    def delivered(cls, code: Optional[str] = None) -> "Outcome":
        return cls(DELIVERED, code)

    @classmethod
    def transient(cls, code: Optional[str], message: str = "", retry_after: Optional[float] = None) -> "Outcome":
        return cls(TRANSIENT, code, message, retry_after)

    @classmethod
    def permanent(cls, code: Optional[str], message: str = "", blocked: bool = False) -> "Outcome":
        return cls(PERMANENT, code, message, blocked=blocked)

    @property
    def error(self) -> str:
        return f"{self.code}: {self.message}" if self.message else str(self.code)


class Sender:
    """One channel's sender. `send` never raises for a platform's answer: it returns an Outcome."""
    channel = ""

    async def send(self, note: Notification) -> Outcome:
        raise NotImplementedError

    async def close(self) -> None:
        pass
