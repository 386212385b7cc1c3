"""Rasa's HTTP API, for hand-offs: the transcript (GET tracker), pause and resume (tracker events)."""
from __future__ import annotations

from typing import Optional
from urllib.parse import quote

from aiohttp import ClientError, ClientSession, ClientTimeout


class RasaUnavailable(RuntimeError):
    pass


class RasaClient:
    def __init__(self, url: Optional[str], token: Optional[str]) -> None:
        self.url, self.token = url, token
        self._http: Optional[ClientSession] = None

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def _endpoint(self, sender: str, tail: str) -> str:
        return f"{self.url}/conversations/{quote(sender, safe='')}/{tail}"

    async def _request(self, method: str, url: str, **kwargs) -> dict:
        if not self.url:
            raise RasaUnavailable("未配置 RASA_URL")
        if self._http is None:
            self._http = ClientSession(timeout=ClientTimeout(total=10))
        params = {"token": self.token} if self.token else {}
        try:
            async with self._http.request(method, url, params=params, **kwargs) as res:
                if res.status >= 300:
                    raise RasaUnavailable(f"Rasa 返回 HTTP {res.status}")
                return await res.json(content_type=None)
        except (ClientError, TimeoutError) as exc:
            raise RasaUnavailable(f"无法连接 Rasa：{exc.__class__.__name__}") from None

    async def transcript(self, sender: str) -> list[dict]:
        """The user's and the assistant's messages, oldest first."""
        tracker = await self._request("GET", self._endpoint(sender, "tracker"))
        out = []
        for e in tracker.get("events") or []:
            if e.get("event") in ("user", "bot") and e.get("text"):
                out.append({"who": e["event"], "text": e["text"], "at": e.get("timestamp")})
            elif e.get("event") in ("pause", "resume"):
                out.append({"who": "system", "text": "人工接管" if e["event"] == "pause" else "交还助手",
                            "at": e.get("timestamp")})
        return out

    async def event(self, sender: str, name: str) -> None:
        await self._request("POST", self._endpoint(sender, "tracker/events"), json={"event": name})

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
