"""What a text channel remembers about each user between messages: the script they write in and the
numbered choices last offered.

`memory` keeps it in this process (one Rasa server). A Redis URL shares it between processes, so
consecutive messages of one user may land on different Rasa servers behind a load balancer.
A memory that cannot be reached is treated as empty: the user still gets an answer.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Protocol

logger = logging.getLogger(__name__)

TTL = 7 * 24 * 3600  # a week: long enough for "1" after a pause, short enough to forget


@dataclass
class UserMemory:
    script: Optional[str] = None  # 'traditional' or 'simplified'
    choices: List[str] = field(default_factory=list)

    def dumps(self) -> str:
        return json.dumps({"s": self.script, "c": self.choices}, ensure_ascii=False)

    @classmethod
    def loads(cls, raw: bytes | str) -> "UserMemory":
        data = json.loads(raw)
        return cls(script=data.get("s"), choices=list(data.get("c") or []))


class MemoryStore(Protocol):
    async def load(self, key: str) -> UserMemory: ...

    async def save(self, key: str, memory: UserMemory) -> None: ...


class ProcessMemory:
    def __init__(self, max_users: int = 100_000) -> None:
        self._users: Dict[str, str] = {}
        self.max_users = max_users

    async def load(self, key: str) -> UserMemory:
        raw = self._users.get(key)
        return UserMemory.loads(raw) if raw else UserMemory()

    async def save(self, key: str, memory: UserMemory) -> None:
        if len(self._users) >= self.max_users and key not in self._users:
            self._users.clear()
        self._users[key] = memory.dumps()


class RedisMemory:
    def __init__(self, url: str, prefix: str = "jj:conv:", timeout: float = 1.0) -> None:
        import redis.asyncio as redis  # the client is made here, not at import

        # A short timeout: a Redis outage costs the user their numbered choices, not their answer.
        self._redis = redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.prefix = prefix

    async def load(self, key: str) -> UserMemory:
        try:
            raw = await self._redis.get(self.prefix + key)
            return UserMemory.loads(raw) if raw else UserMemory()
        except Exception as exc:  # Redis down or a value we cannot read: start afresh
            logger.warning("conversation memory unavailable, reading nothing: %s", exc)
            return UserMemory()

    async def save(self, key: str, memory: UserMemory) -> None:
        try:
            await self._redis.set(self.prefix + key, memory.dumps(), ex=TTL)
        except Exception as exc:
            logger.warning("conversation memory unavailable, not saved: %s", exc)


def memory_store(spec: str) -> MemoryStore:
    if spec in ("", "memory"):
        return ProcessMemory()
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisMemory(spec)
    raise ValueError(f"memory: expected 'memory' or a redis:// URL, got {spec!r}")
