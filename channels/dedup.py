"""De-duplication of webhook retries: the first delivery of a key wins, across processes.

`memory` serves one process; `redis://...` serves several (SET NX EX is atomic).
"""
from __future__ import annotations

import logging
import time
from typing import Protocol

logger = logging.getLogger(__name__)


class DedupStore(Protocol):
    async def claim(self, key: str) -> bool:
        """True the first time a key is seen within the TTL, False for its retries."""


class MemoryDedup:
    def __init__(self, ttl: float = 60.0, max_keys: int = 100_000) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self._seen: dict[str, float] = {}

    async def claim(self, key: str) -> bool:
        now = time.monotonic()
        if len(self._seen) >= self.max_keys:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + self.ttl
        return True


class RedisDedup:
    def __init__(self, url: str, ttl: float = 60.0, prefix: str = "jj:dedup:") -> None:
        import redis.asyncio as redis  # the client is made here, not at import

        self._redis = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.ttl = int(max(ttl, 1))
        self.prefix = prefix

    async def claim(self, key: str) -> bool:
        try:
            return bool(await self._redis.set(self.prefix + key, b"1", nx=True, ex=self.ttl))
        except Exception as exc:  # Redis down: answering a retry twice beats not answering at all
            logger.error("dedup store unavailable, processing %s anyway: %s", key, exc)
            return True


def dedup_store(spec: str, ttl: float = 60.0) -> DedupStore:
    if spec in ("", "memory"):
        return MemoryDedup(ttl)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisDedup(spec, ttl)
    raise ValueError(f"dedup: expected 'memory' or a redis:// URL, got {spec!r}")
