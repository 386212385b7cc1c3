"""De-duplication of webhook retries: the first delivery of a key wins, across processes.

`memory` serves one process; `redis://...` serves several (atomic in Redis).

A claim is pending until the handler marks it done. A platform that retries only when it got no
answer in time (WeChat: after 5 s) can pass `stale_after`: a retry that finds the claim still pending
after that long means the server that claimed it died mid-message, and the retry takes it over.
"""
from __future__ import annotations

import logging
import time
from typing import Optional, Protocol

logger = logging.getLogger(__name__)


class DedupStore(Protocol):
    async def claim(self, key: str, stale_after: Optional[float] = None) -> bool:
        """True the first time a key is seen within the TTL (or when its pending claim is older than
        `stale_after` seconds), False for its retries."""

    async def done(self, key: str) -> None:
        """The claimed delivery was answered: its retries are ignored from now on."""


class MemoryDedup:
    def __init__(self, ttl: float = 60.0, max_keys: int = 100_000) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self._seen: dict[str, tuple[float, Optional[float]]] = {}  # key -> (expires, claimed at | None when done)

    async def claim(self, key: str, stale_after: Optional[float] = None) -> bool:
        now = time.monotonic()
        if len(self._seen) >= self.max_keys:
            self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
        expires, claimed = self._seen.get(key, (0.0, None))
        if expires > now and (stale_after is None or claimed is None or now - claimed <= stale_after):
            return False
        self._seen[key] = (now + self.ttl, now)
        return True

    async def done(self, key: str) -> None:
        if key in self._seen:
            self._seen[key] = (self._seen[key][0], None)


# Pending claims hold "p:<unix time>", answered ones "d". One script: read, decide and write at once.
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v and (string.sub(v, 1, 2) ~= 'p:' or tonumber(string.sub(v, 3)) >= tonumber(ARGV[2])) then
  return 0
end
redis.call('SET', KEYS[1], 'p:' .. ARGV[1], 'EX', ARGV[3])
return 1
"""


class RedisDedup:
    def __init__(self, url: str, ttl: float = 60.0, prefix: str = "jj:dedup:") -> None:
        import redis.asyncio as redis  # the client is made here, not at import

        self._redis = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.ttl = int(max(ttl, 1))
        self.prefix = prefix
        self._claim = self._redis.register_script(_CLAIM)

    async def claim(self, key: str, stale_after: Optional[float] = None) -> bool:
        now = time.time()
        oldest_live = now - stale_after if stale_after is not None else 0  # 0: never stale
        try:
            return bool(await self._claim(keys=[self.prefix + key], args=[repr(now), repr(oldest_live), self.ttl]))
        except Exception as exc:  # Redis down: answering a retry twice beats not answering at all
            logger.error("dedup store unavailable, processing %s anyway: %s", key, exc)
            return True

    async def done(self, key: str) -> None:
        try:
            await self._redis.set(self.prefix + key, b"d", xx=True, keepttl=True)
        except Exception as exc:
            logger.error("dedup store unavailable, %s not marked answered: %s", key, exc)


def dedup_store(spec: str, ttl: float = 60.0) -> DedupStore:
    if spec in ("", "memory"):
        return MemoryDedup(ttl)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisDedup(spec, ttl)
    raise ValueError(f"dedup: expected 'memory' or a redis:// URL, got {spec!r}")
