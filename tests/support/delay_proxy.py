"""An HTTP proxy on loopback that can hold requests back: put it between two of our processes
to make one of them slow on demand (as a loaded database or a busy action server would be).
"""
from __future__ import annotations

import asyncio

from aiohttp import ClientSession, ClientTimeout, web


class DelayProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.delay = 0.0
        self.forwarded = 0
        self._session: ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=60))
        if self.delay:
            await asyncio.sleep(self.delay)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.target + request.path_qs, data=body,
                                         headers=headers) as res:
            payload = await res.read()
            self.forwarded += 1
            return web.Response(body=payload, status=res.status,
                                content_type=res.content_type or "application/json")

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.on_cleanup.append(self._close)
        return app
