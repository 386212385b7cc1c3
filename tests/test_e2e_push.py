"""The whole service speaking first: a driver binds a car and subscribes in a WeChat conversation (real
Rasa and action servers); the enforcement system posts a new violation to the ingest API of
`python -m bots`; the driver's WeChat receives the template message, once, and nobody else's does."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from actions.records.clock import now_local
from actions.records.db import make_sync_engine
from actions.records.models import OutboxMessage
from tests.support.background import free_port
from tests.support.channel_clients import WeChatClient

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bots(assistant, tmp_path):
    """`python -m bots` on the assistant's records and channel settings, with its ingest API."""
    token, port = secrets.token_hex(16), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JJ_", "WECHAT_", "SMS_", "TELEGRAM_",
                                                                     "WEIBO_", "SMTP_"))}
    env.update(assistant.channels.env())
    env.update({"JJ_DATABASE_URL": assistant.database_url, "JJ_INGEST_TOKEN": token, "JJ_INGEST_PORT": str(port),
                "JJ_PUSH_POLL": "0.2", "JJ_DETAILS_URL": "https://jj.example.gov.cn/notice", "PYTHONPATH": str(ROOT)})
    log = tmp_path / "bots.log"
    proc = subprocess.Popen([sys.executable, "-m", "bots"], cwd=ROOT, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"python -m bots did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield url, token
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def templates_to(assistant, openid: str) -> list:
    return [m for m in assistant.wechat_api.messages_to(openid) if m.kind == "template"]


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    return predicate()


def test_a_new_violation_reaches_the_subscribed_driver_once(assistant, bots):
    ingest, token = bots
    driver, stranger = WeChatClient(assistant.platform, assistant.wechat_api.url), \
        WeChatClient(assistant.platform, assistant.wechat_api.url)
    assert "后6位" in driver.say("绑定车辆鲁BD12345").text
    assert "绑定成功" in driver.say("305517").text
    assert "哪个渠道" in driver.say("订阅提醒").text
    assert "订阅成功" in driver.say("1").text
    stranger.say("订阅提醒")
    assert "订阅成功" in stranger.say("1").text

    record_no = f"3702{secrets.randbelow(10**14):014d}"
    violation = {"record_no": record_no, "plate": "鲁BD12345", "code": "1039", "authority": "青岛市公安局交通警察支队",
                 "place": "香港中路与山东路路口", "occurred_at": (now_local() - timedelta(hours=2)).isoformat(timespec="minutes")}
    assert requests.post(f"{ingest}/ingest/violations", json=[violation], timeout=10).status_code == 401
    res = requests.post(f"{ingest}/ingest/violations", json=[violation], timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200 and res.json()["accepted"] == 1, res.text

    [sent] = wait_for(lambda: templates_to(assistant, driver.sender_id))
    values = {k: v["value"] for k, v in sent.body["data"].items()}
    assert "鲁BD12345" in values.values() and any("香港中路" in v for v in values.values())
    assert all(len(v) <= 20 and "\n" not in v for v in values.values())
    # The same record again changes nothing; the stranger never hears of someone else's car.
    again = requests.post(f"{ingest}/ingest/violations", json=[violation], timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    assert again.json()["unchanged"] == 1
    time.sleep(1.5)
    assert len(templates_to(assistant, driver.sender_id)) == 1
    assert templates_to(assistant, stranger.sender_id) == []
    engine = make_sync_engine(assistant.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(OutboxMessage.channel, OutboxMessage.status)
                                .where(OutboxMessage.event_key == f"violation:{record_no}")).all()
    finally:
        engine.dispose()
    assert ("wechat", "sent") in [tuple(r) for r in rows]
