"""Database engines, created on demand (never at import) from a URL.

One URL names the records database for both drivers: sqlite+aiosqlite:///... or
postgresql+asyncpg://... The synchronous twin (for migrations and bulk seeding) is derived from it.
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import sessionmaker

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'records.db'}"
URL_ENV = "JJ_DATABASE_URL"

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg2"}


class DatabaseConfigError(ValueError):
    pass


def database_url(env: dict | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(URL_ENV) or DEFAULT_URL


def _with_driver(url: str, drivers: dict) -> str:
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise DatabaseConfigError(f"{URL_ENV}: not a database URL ({exc.__class__.__name__})") from None
    backend = parsed.get_backend_name()
    if backend not in drivers:
        raise DatabaseConfigError(f"{URL_ENV}: unsupported database '{backend}' (use sqlite or postgresql)")
    return str(parsed.set(drivername=drivers[backend]))


def async_url(url: str) -> str:
    return _with_driver(url, _ASYNC_DRIVERS)


def sync_url(url: str) -> str:
    return _with_driver(url, _SYNC_DRIVERS)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the action server read while the dispatcher writes; busy_timeout waits out locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def make_sync_engine(url: str | None = None) -> Engine:
    url = sync_url(url or database_url())
    _ensure_sqlite_dir(url)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_async_engine(url: str | None = None, **kwargs) -> AsyncEngine:
    url = async_url(url or database_url())
    _ensure_sqlite_dir(url)
    if url.startswith("postgresql"):
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 10)
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, future=True, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """An async engine and its session factory; dispose() when done."""

    def __init__(self, url: str | None = None, **engine_kwargs) -> None:
        self.engine = make_async_engine(url, **engine_kwargs)
        self.session = sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def dispose(self) -> None:
        await self.engine.dispose()
