"""Shared fixtures: database backends (SQLite always, PostgreSQL when reachable), the stand-in
WeChat API, and the whole stack (action server + Rasa server) started on loopback."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.background import BackgroundServer, free_port

POSTGRES_URL = os.environ.get("JJ_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("JJ_TEST_REDIS_URL")
REQUIRED = os.environ.get("JJ_REQUIRE_SERVICES") == "1"
BACKENDS = ["sqlite", "postgres"]


def need_service(url: str | None, what: str) -> str:
    if url:
        return url
    if REQUIRED:
        pytest.fail(f"{what} is required here (CI) but not configured")
    pytest.skip(f"{what} not reachable: set JJ_TEST_{what.upper()}_URL")


def fresh_database(backend: str, tmp: Path):
    """A URL to an empty database of that backend, and a function that removes it."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'records.db'}", lambda: None
    admin_url = need_service(POSTGRES_URL, "postgres")
    import psycopg2
    from sqlalchemy.engine import make_url

    name = f"jj_test_{uuid.uuid4().hex[:10]}"
    admin = make_url(admin_url)
    dsn = dict(host=admin.host, port=admin.port or 5432, user=admin.username, dbname=admin.database,
               password=admin.password)

    def run(sql: str) -> None:
        conn = psycopg2.connect(**{k: v for k, v in dsn.items() if v is not None})
        conn.autocommit = True
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    run(f'CREATE DATABASE "{name}"')
    url = str(admin.set(drivername="postgresql+asyncpg", database=name))
    return url, lambda: run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def seeded_url(backend, tmp_path_factory) -> str:
    """A migrated database with a small set of demo records."""
    from scripts.stack import prepare_database

    url, drop = fresh_database(backend, tmp_path_factory.mktemp(f"db-{backend}"))
    prepare_database(url, vehicles=400)
    yield url
    drop()


@pytest.fixture(scope="session")
def wechat_api():
    from tests.support.wechat_api import WeChatAPIStandIn

    standin = WeChatAPIStandIn("wx_test_app_id_01", "test-app-secret-0123456789abcdef")
    with BackgroundServer(standin.app()) as server:
        standin.url = server.url
        yield standin


def test_model(train) -> Path:
    """JJ_TEST_MODEL names a trained model to use as is (quick runs while the data changes);
    otherwise the model of the current inputs, trained if need be."""
    chosen = os.environ.get("JJ_TEST_MODEL")
    return Path(chosen) if chosen else train(quiet=True)


@pytest.fixture(scope="session")
def platforms(wechat_api):
    """Stand-ins of every platform API the assistant calls."""
    from tests.support.platforms import running_platforms

    with running_platforms(wechat_api) as running:
        yield running


@dataclass
class Assistant:
    backend: str
    database_url: str
    webhook: str
    rasa_url: str
    platform: object
    proxy: object
    wechat_api: object
    stack: object
    settings: object
    channels: object
    platforms: object


@pytest.fixture(scope="session")
def assistant(backend, tmp_path_factory, platforms):
    """The real Rasa server and action server on loopback, on this module's database backend."""
    from scripts.stack import Stack, StackConfig, prepare_database
    from scripts.train import train
    from tests.support.delay_proxy import DelayProxy
    from tests.support.platforms import channel_settings
    from tests.support.wechat_user import WeChatPlatform

    tmp = tmp_path_factory.mktemp(f"stack-{backend}")
    url, drop = fresh_database(backend, tmp)
    prepare_database(url, vehicles=500)
    rasa_port, actions_port = free_port(), free_port()
    channels = channel_settings(platforms, f"http://127.0.0.1:{rasa_port}", reply_budget=2.5)
    settings = channels.wechat
    proxy = DelayProxy(f"http://127.0.0.1:{actions_port}")
    with BackgroundServer(proxy.app()) as proxy_server:
        config = StackConfig(database_url=url, tracker_db=tmp / "tracker.db", channels=channels,
                             model=test_model(train), rasa_port=rasa_port, actions_port=actions_port,
                             action_endpoint=f"{proxy_server.url}/webhook", log_dir=tmp / "logs",
                             extra_env={"JJ_PROOF_MAX_FAILURES": "3"})
        with Stack(config) as stack:
            yield Assistant(backend, url, config.webhook, config.rasa_url,
                            WeChatPlatform(config.webhook, settings.token, settings.app_id,
                                           settings.aes_key, "safe"),
                            proxy, platforms.wechat, stack, settings, channels, platforms)
    drop()
