"""WeChat's access token, shared by every process and refreshed by one at a time.

Fetching a new token invalidates the old one after about five minutes, so processes must not each
fetch their own. The token lives in the service_tokens table (or Redis when configured). A
process that finds it missing or expired takes a lease (`refreshing_until`) and fetches; the lease
is left in place for `cooldown` seconds after the fetch, so however often the platform rejects
tokens, all processes together fetch at most one per cooldown: a token error cannot loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import timedelta
from typing import Awaitable, Callable, Optional, Tuple

from sqlalchemy import or_, select, update

from actions.records.clock import now_local
from actions.records.db import Database
from actions.records.models import ServiceToken

logger = logging.getLogger(__name__)

Fetch = Callable[[], Awaitable[Tuple[str, int]]]  # -> (token, expires_in seconds)
EARLY = 120  # refresh this many seconds before the platform's expiry


class TokenUnavailable(Exception):
    pass


class _Cached:
    def __init__(self) -> None:
        self.value: Optional[str] = None
        self.until = 0.0
        # Tokens the platform rejected. Until the shared store records a rejection, another send in
        # this process may read the rejected token back from it; it must not use it again.
        self._rejected: deque = deque(maxlen=8)

    def get(self) -> Optional[str]:
        return self.value if self.value and self.until > time.monotonic() else None

    def put(self, value: str, seconds: float) -> None:
        self.value, self.until = value, time.monotonic() + max(0.0, seconds)

    def drop(self, value: str) -> None:
        if value not in self._rejected:
            self._rejected.append(value)
        if self.value == value:
            self.value = None

    def rejected(self, value: str) -> bool:
        return value in self._rejected


class DatabaseTokenStore:
    def __init__(self, database: Database, name: str, fetch: Fetch, cooldown: float = 30.0,
                 wait: float = 5.0) -> None:
        self.database, self.name, self.fetch = database, name, fetch
        self.cooldown, self.wait = cooldown, wait
        self._cache = _Cached()
        self._lock: Optional[asyncio.Lock] = None
        self.fetches = 0  # by this process

    async def get(self) -> str:
        value = self._cache.get()
        if value:
            return value
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one reader/refresher per process; the others wait for its answer
            value = self._cache.get()
            return value or await self._load()

    async def _load(self) -> str:
        deadline = time.monotonic() + self.wait
        while True:
            now = now_local()
            async with self.database.session() as s:
                row = (await s.execute(select(ServiceToken.value, ServiceToken.expires_at)
                                       .where(ServiceToken.name == self.name))).first()
            if (row is not None and row.value and not self._cache.rejected(row.value) and row.expires_at
                    and row.expires_at > now + timedelta(seconds=EARLY)):
                self._cache.put(row.value, (row.expires_at - now).total_seconds() - EARLY)
                return row.value
            if await self._take_lease(now, exists=row is not None):
                return await self._refresh()
            if time.monotonic() >= deadline:
                raise TokenUnavailable("another process holds the refresh lease")
            await asyncio.sleep(0.2)

    async def _take_lease(self, now, exists: bool) -> bool:
        until = now + timedelta(seconds=self.cooldown)
        async with self.database.session() as s, s.begin():
            if not exists:
                await s.execute(_insert_ignore(self.database.dialect, self.name))
            fresh = now + timedelta(seconds=EARLY)
            result = await s.execute(update(ServiceToken).where(
                ServiceToken.name == self.name,
                or_(ServiceToken.refreshing_until.is_(None), ServiceToken.refreshing_until <= now),
                or_(ServiceToken.value.is_(None), ServiceToken.expires_at.is_(None), ServiceToken.expires_at <= fresh),
            ).values(refreshing_until=until).execution_options(synchronize_session=False))
            return result.rowcount == 1

    async def _refresh(self) -> str:
        self.fetches += 1
        try:
            value, expires_in = await self.fetch()
        except Exception as exc:
            # The lease stays until the cooldown ends: nobody hammers a failing token endpoint.
            raise TokenUnavailable(f"token fetch failed: {exc}") from None
        now = now_local()
        async with self.database.session() as s, s.begin():
            await s.execute(update(ServiceToken).where(ServiceToken.name == self.name).values(
                value=value, expires_at=now + timedelta(seconds=expires_in)))
        self._cache.put(value, expires_in - EARLY)
        logger.info("wechat: fetched a new access token (valid %ss)", expires_in)
        return value

    async def invalidate(self, value: str) -> None:
        """The platform rejected `value`: mark it expired, unless someone already replaced it."""
        self._cache.drop(value)
        async with self.database.session() as s, s.begin():
            await s.execute(update(ServiceToken).where(ServiceToken.name == self.name, ServiceToken.value == value)
                            .values(expires_at=now_local()).execution_options(synchronize_session=False))


def _insert_ignore(dialect: str, name: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(ServiceToken).values(name=name).on_conflict_do_nothing(index_elements=["name"])


_INVALIDATE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RedisTokenStore:
    """The same protocol on Redis: the token under a key with its TTL, the lease a SET NX PX key."""

    def __init__(self, url: str, name: str, fetch: Fetch, cooldown: float = 30.0, wait: float = 5.0) -> None:
        self.url, self.fetch, self.cooldown, self.wait = url, fetch, cooldown, wait
        self.key, self.lease_key = f"jj:token:{name}", f"jj:token:{name}:refreshing"
        self._redis = None
        self._cache = _Cached()
        self._lock: Optional[asyncio.Lock] = None
        self.fetches = 0

    def _client(self):
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.url, decode_responses=True)
        return self._redis

    async def get(self) -> str:
        value = self._cache.get()
        if value:
            return value
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            value = self._cache.get()
            if value:
                return value
            r = self._client()
            deadline = time.monotonic() + self.wait
            while True:
                value, ttl = await r.get(self.key), await r.pttl(self.key)
                if value and ttl > EARLY * 1000 and not self._cache.rejected(value):
                    self._cache.put(value, ttl / 1000 - EARLY)
                    return value
                if await r.set(self.lease_key, "1", nx=True, px=int(self.cooldown * 1000)):
                    self.fetches += 1
                    try:
                        value, expires_in = await self.fetch()
                    except Exception as exc:
                        raise TokenUnavailable(f"token fetch failed: {exc}") from None
                    await r.set(self.key, value, px=int(expires_in * 1000))
                    self._cache.put(value, expires_in - EARLY)
                    return value
                if time.monotonic() >= deadline:
                    raise TokenUnavailable("another process holds the refresh lease")
                await asyncio.sleep(0.2)

    async def invalidate(self, value: str) -> None:
        self._cache.drop(value)
        await self._client().eval(_INVALIDATE, 1, self.key, value)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.close()
            self._redis = None
