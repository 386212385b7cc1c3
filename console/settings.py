"""The console's settings from the environment, validated; an error names the bad variable."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlparse

from actions.records.db import DatabaseConfigError, async_url, database_url


class ConsoleConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ConsoleSettings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8095
    session_minutes: int = 480
    rasa_url: Optional[str] = None
    rasa_token: Optional[str] = None
    secure_cookie: bool = False   # set behind TLS: the session cookie then never travels in clear

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "ConsoleSettings":
        env = os.environ if env is None else env
        url = database_url(dict(env))
        try:
            async_url(url)
        except DatabaseConfigError as exc:
            raise ConsoleConfigError(str(exc)) from None
        rasa_url = (env.get("RASA_URL") or "").strip().rstrip("/") or None
        if rasa_url:
            parsed = urlparse(rasa_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ConsoleConfigError("RASA_URL: not an http(s) URL")
        secure = (env.get("JJ_CONSOLE_SECURE_COOKIE") or "false").strip().lower()
        if secure not in ("true", "false", "1", "0"):
            raise ConsoleConfigError("JJ_CONSOLE_SECURE_COOKIE: use true or false")
        return cls(database_url=url, host=(env.get("JJ_CONSOLE_HOST") or "127.0.0.1").strip(),
                   port=_integer(env, "JJ_CONSOLE_PORT", 8095, 1, 65535),
                   session_minutes=_integer(env, "JJ_CONSOLE_SESSION_MINUTES", 480, 5, 7 * 24 * 60),
                   rasa_url=rasa_url, rasa_token=(env.get("RASA_API_TOKEN") or "").strip() or None,
                   secure_cookie=secure in ("true", "1"))


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConsoleConfigError(f"{name}: not an integer: {raw!r}") from None
    if not low <= value <= high:
        raise ConsoleConfigError(f"{name}: must be between {low} and {high}, not {value}")
    return value
