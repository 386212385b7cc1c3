"""A simple async token bucket: `rate` sends a second on average, bursts of up to `burst`."""
from __future__ import annotations

import asyncio
import time
from typing import Optional


class TokenBucket:
    def __init__(self, rate: float, burst: Optional[float] = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock: Optional[asyncio.Lock] = None  # made in the running loop, on first use

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        """Wait for one token. Waiters are served in turn (the lock), so none starves."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1.0

    def wait_estimate(self, queued: int) -> float:
        """Seconds until `queued` more sends could start: to size a batch within its lease."""
        return max(0.0, queued - self._tokens) / self.rate
