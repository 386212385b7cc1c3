"""The ingest API over real HTTP on loopback, and the load / decide commands, on each backend."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from actions.records import queries
from actions.records.db import Database
from actions.records.models import OutboxMessage, Report, Violation
from bots.ingest import IngestConfigError, IngestSettings, make_ingest_app
from tests.support.background import free_port
from tests.test_outbox_fanout import follow, make_person, make_vehicle, tag, violation_row

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "ingest-test-token-0123456789"


@pytest.fixture
async def db(seeded_url):
    database = Database(seeded_url)
    yield database
    await database.dispose()


@pytest.fixture
async def api(db):
    """The ingest app on a real port (a small body limit, so that 413 is cheap to provoke)."""
    runner = web.AppRunner(make_ingest_app(db, TOKEN, max_body=64 * 1024), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        yield http
    await runner.cleanup()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def stored(db, record_no: str) -> bool:
    async with db.session() as s:
        return (await s.execute(select(Violation.id).where(Violation.record_no == record_no))).first() is not None


async def outbox_count(db, record_no: str) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.event_key == f"violation:{record_no}"))).scalar_one()


async def bound_car(db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        car = await make_vehicle(s)
        fan = await make_person(s, "wechat", f"o-http-{t}")
        await follow(s, fan, car, ["wechat"])
    return car


# -- the token -------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer ingest-test-token-0123456780"},
                                     {"Authorization": f"bearer {TOKEN}x"}, {"Authorization": TOKEN},
                                     {"Authorization": "Bearer 令牌"}])
async def test_without_the_right_token_nothing_is_written(api, db, request, headers):
    car = await bound_car(db, request)
    row = violation_row(car.plate)
    for path, body in [("/ingest/violations", [row]),
                       ("/ingest/violation-status", [{"record_no": row["record_no"], "status": "paid"}]),
                       ("/reports/R209901010001/decision", {"status": "accepted"})]:
        async with api.post(path, json=body, headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthorized"
    assert not await stored(db, row["record_no"])


async def test_health_needs_no_token_and_says_nothing_else(api):
    async with api.get("/health") as resp:
        assert resp.status == 200 and await resp.json() == {"status": "ok"}


# -- bad bodies --------------------------------------------------------------------------------------

async def test_malformed_bodies_are_400_and_write_nothing(api, db, request):
    car = await bound_car(db, request)
    row = violation_row(car.plate)
    good = json.dumps(row, ensure_ascii=False)
    cases = [
        ("application/json", good[:-1].encode()),                      # cut short
        ("application/json", good.encode()),                           # an object, not an array
        ("application/json", b"\xff\xfe[]"),                           # not UTF-8
        ("application/x-ndjson", f"{good}\n{{\"record_no\": \n".encode()),
    ]
    for content_type, body in cases:
        async with api.post("/ingest/violations", data=body, headers={**AUTH, "Content-Type": content_type}) as resp:
            assert resp.status == 400, body
            answer = await resp.json()
            assert answer["error"] in ("malformed_json", "not_an_array") and answer["message"]
    async with api.post("/ingest/violations", data=f"{good}\n{{\"x\n".encode(),
                        headers={**AUTH, "Content-Type": "application/x-ndjson"}) as resp:
        assert (await resp.json())["line"] == 2
    assert not await stored(db, row["record_no"])


async def test_an_oversized_body_is_413_with_or_without_a_length(api, db, request):
    car = await bound_car(db, request)
    rows = [violation_row(car.plate, description="长" * 2000) for _ in range(20)]  # ~ 130 KB
    body = json.dumps(rows, ensure_ascii=False).encode()
    async with api.post("/ingest/violations", data=body, headers={**AUTH, "Content-Type": "application/json"}) as resp:
        assert resp.status == 413

    async def chunked():
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    async with api.post("/ingest/violations", data=chunked(),
                        headers={**AUTH, "Content-Type": "application/json"}) as resp:
        assert resp.status == 413
    assert not await stored(db, rows[0]["record_no"])


# -- batches -------------------------------------------------------------------------------------------

async def test_a_mixed_batch_keeps_the_good_rows(api, db, request):
    car = await bound_car(db, request)
    good, bad = violation_row(car.plate, "1116"), violation_row("鲁B0000Z")
    nul = [violation_row(car.plate, place="市南\x00区"), violation_row("鲁B\x0012345")]
    async with api.post("/ingest/violations", json=[good, bad, *nul], headers=AUTH) as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert (answer["accepted"], answer["unchanged"], answer["notifications"]) == (1, 0, 1)
    assert answer["rejected"][0] == {"row": 2, "record_no": bad["record_no"], "field": "plate",
                                     "error": "unknown_plate", "message": "号牌不在本市机动车记录中"}
    assert [(e["row"], e["error"]) for e in answer["rejected"][1:]] == [(3, "bad_text"), (4, "bad_text")]
    assert await stored(db, good["record_no"]) and not await stored(db, bad["record_no"])
    assert await outbox_count(db, good["record_no"]) == 1
    async with api.post("/ingest/violations", json=[good], headers=AUTH) as resp:  # sent again
        assert await resp.json() == {"accepted": 0, "unchanged": 1, "rejected": [], "notifications": 0}
    assert await outbox_count(db, good["record_no"]) == 1


async def test_json_lines_and_status_changes(api, db, request):
    car = await bound_car(db, request)
    rows = [violation_row(car.plate, "1039"), violation_row(car.plate, "1625")]
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n"
    async with api.post("/ingest/violations", data=body.encode(),
                        headers={**AUTH, "Content-Type": "application/x-ndjson; charset=utf-8"}) as resp:
        answer = await resp.json()
    assert (resp.status, answer["accepted"], answer["notifications"]) == (200, 2, 3)  # 2 fan + 1 owner
    change = [{"record_no": rows[0]["record_no"], "status": "paid", "decision_no": "3702001111111111",
               "paid_at": rows[0]["occurred_at"]},
              {"record_no": rows[1]["record_no"], "status": "paid"}]
    async with api.post("/ingest/violation-status", json=change, headers=AUTH) as resp:
        answer = await resp.json()
    assert (resp.status, answer["accepted"]) == (200, 1)
    assert [(e["row"], e["field"], e["error"]) for e in answer["rejected"]] == [(2, "paid_at", "missing")]
    async with db.session() as s:
        status = (await s.execute(select(Violation.status).where(Violation.record_no == rows[0]["record_no"]))).scalar()
    assert status == "paid"


async def test_report_decisions_over_http(api, db, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        reporter = await make_person(s, "wechat", f"o-http-rep-{t}")
        report = await queries.create_report(s, person_id=reporter.id, channel="wechat", kind="violation",
                                             photos=[], plate="鲁B12345", location="市南区", description="违停")
    path = f"/reports/{report.report_no}/decision"
    async with api.post(path, json={"status": "rejected"}, headers=AUTH) as resp:
        assert (resp.status, (await resp.json())["error"]) == (422, "missing_reason")
    async with api.post(path, data=b"{status", headers={**AUTH, "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    for unknown in ("R209901010001", "R2099%00", "x" * 300):
        async with api.post(f"/reports/{unknown}/decision", json={"status": "accepted"}, headers=AUTH) as resp:
            assert resp.status == 404
    async with api.post(path, json={"status": "rejected", "reason": "a\x00b"}, headers=AUTH) as resp:
        assert (resp.status, (await resp.json())["error"]) == (422, "bad_reason")
    async with api.post(path, json={"status": "rejected", "reason": "duplicate"}, headers=AUTH) as resp:
        answer = await resp.json()
    assert (resp.status, answer) == (200, {"report_no": report.report_no, "status": "rejected",
                                           "reason": "重复举报，相同线索已在处理", "changed": True, "notifications": 1})
    async with api.post(path, json={"status": "rejected", "reason": "duplicate"}, headers=AUTH) as resp:
        assert (await resp.json())["changed"] is False
    async with db.session() as s:
        assert (await s.get(Report, report.id)).status == "rejected"


# -- settings ----------------------------------------------------------------------------------------------

def test_settings_name_the_bad_variable():
    with pytest.raises(IngestConfigError, match="JJ_INGEST_TOKEN"):
        IngestSettings.from_env({})
    with pytest.raises(IngestConfigError, match="JJ_INGEST_TOKEN"):
        IngestSettings.from_env({"JJ_INGEST_TOKEN": "short"})
    with pytest.raises(IngestConfigError, match="JJ_INGEST_MAX_BODY"):
        IngestSettings.from_env({"JJ_INGEST_TOKEN": TOKEN, "JJ_INGEST_MAX_BODY": "5MB"})
    settings = IngestSettings.from_env({"JJ_INGEST_TOKEN": TOKEN, "JJ_INGEST_MAX_BODY": "1048576"})
    assert (settings.token, settings.max_body) == (TOKEN, 1048576)
    assert IngestSettings.from_env({"JJ_INGEST_TOKEN": TOKEN}).max_body == 5 * 1024 * 1024
    with pytest.raises(IngestConfigError, match="JJ_INGEST_TOKEN"):
        make_ingest_app(None, "too-short")


async def test_the_app_takes_its_body_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("JJ_INGEST_MAX_BODY", "lots")
    with pytest.raises(IngestConfigError, match="JJ_INGEST_MAX_BODY"):
        make_ingest_app(None, TOKEN)
    monkeypatch.setenv("JJ_INGEST_MAX_BODY", "2048")
    runner = web.AppRunner(make_ingest_app(None, TOKEN), access_log=None)  # refused before any database use
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/ingest/violations", data=b"[" + b" " * 2100 + b"]",
                                 headers={**AUTH, "Content-Type": "application/json"}) as resp:
                assert resp.status == 413
    finally:
        await runner.cleanup()


# -- the commands ------------------------------------------------------------------------------------------

def run(args: list[str], url: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "JJ_DATABASE_URL": url, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


async def test_load_a_csv_and_a_jsonl_file(db, seeded_url, request, tmp_path):
    car = await bound_car(db, request)
    a, b = violation_row(car.plate, "1039"), violation_row(car.plate, "1116", fine=100)
    csv_file = tmp_path / "violations.csv"
    header = "record_no,plate,occurred_at,place,code,fine,points,authority\n"
    csv_file.write_text(header + "".join(
        f"{r['record_no']},{r['plate']},{r['occurred_at']},{r['place']},{r['code']},{r.get('fine', '')},,"
        f"{r['authority']}\n" for r in (a, b)), encoding="utf-8")
    first = run(["bots.load", "violations", str(csv_file)], seeded_url)
    again = run(["bots.load", "violations", str(csv_file)], seeded_url)
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert "accepted 2, unchanged 0, rejected 0, notifications 2" in first.stdout
    assert "accepted 0, unchanged 2, rejected 0, notifications 0" in again.stdout

    c, bad = violation_row(car.plate, "1039"), violation_row(car.plate, "9999")
    jsonl = tmp_path / "violations.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (c, bad)), encoding="utf-8")
    mixed = run(["bots.load", "violations", str(jsonl)], seeded_url)
    assert mixed.returncode == 1, mixed.stderr
    assert "accepted 1, unchanged 0, rejected 1" in mixed.stdout
    assert f"row 2 ({bad['record_no']}): code [unknown_code]" in mixed.stdout
    assert await stored(db, c["record_no"]) and not await stored(db, bad["record_no"])

    status = tmp_path / "status.csv"
    status.write_text(f"record_no,status,decision_no,paid_at\n{a['record_no']},paid,3702002222222222,"
                      f"{a['occurred_at']}\n", encoding="utf-8")
    paid = run(["bots.load", "status", str(status)], seeded_url)
    assert paid.returncode == 0 and "accepted 1" in paid.stdout, paid.stderr


def test_load_usage_and_configuration_errors(tmp_path):
    seeded_url = f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"  # refused before the database is opened
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"record_no": "1"}\n{oops\n', encoding="utf-8")
    assert run(["bots.load"], seeded_url).returncode == 2
    assert run(["bots.load", "violations", str(tmp_path / "missing.csv")], seeded_url).returncode == 2
    bad_file = run(["bots.load", "violations", str(broken)], seeded_url)
    assert bad_file.returncode == 2 and "第 2 行" in bad_file.stderr
    (tmp_path / "ok.csv").write_text("record_no,plate\n", encoding="utf-8")
    wrong_db = run(["bots.load", "violations", str(tmp_path / "ok.csv")], "mysql://nowhere/db")
    assert wrong_db.returncode == 2 and "JJ_DATABASE_URL" in wrong_db.stderr


async def test_decide_from_the_command_line(db, seeded_url, request):
    t = tag(request)
    async with db.session() as s, s.begin():
        reporter = await make_person(s, "weibo", f"wb-cli-{t}")
        report = await queries.create_report(s, person_id=reporter.id, channel="weibo", kind="violation",
                                             photos=[], plate="鲁B12345", location="市北区", description="压线")
    refused = run(["bots.decide", report.report_no, "rejected"], seeded_url)
    decided = run(["bots.decide", report.report_no, "rejected", "--reason", "unclear_plate"], seeded_url)
    again = run(["bots.decide", report.report_no, "rejected", "--reason", "unclear_plate"], seeded_url)
    unknown = run(["bots.decide", "R209901010001", "accepted"], seeded_url)
    usage = run(["bots.decide", report.report_no, "maybe"], seeded_url)
    assert (refused.returncode, decided.returncode, again.returncode, unknown.returncode, usage.returncode) == \
        (1, 0, 0, 1, 2), decided.stderr
    assert "missing_reason" in refused.stderr and "unknown_report" in unknown.stderr
    assert "notifications 1" in decided.stdout and "号牌不清晰" in decided.stdout
    assert "unchanged" in again.stdout
    async with db.session() as s:
        stored_report = await s.get(Report, report.id)
        rows = (await s.execute(select(OutboxMessage.channel, OutboxMessage.payload).where(
            OutboxMessage.event_key == f"report:{report.report_no}:rejected"))).all()
    assert (stored_report.status, stored_report.reject_reason) == ("rejected", "号牌不清晰，无法辨认")
    assert [(ch, p["to"]) for ch, p in rows] == [("weibo", f"wb-cli-{t}")]


def test_nothing_is_created_at_import(tmp_path):
    target = tmp_path / "not-yet" / "records.db"
    probe = run(["bots.load", "--help"], f"sqlite+aiosqlite:///{target}")
    imported = subprocess.run([sys.executable, "-c", "import bots.ingest, bots.load, bots.decide"], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT),
                                   "JJ_DATABASE_URL": f"sqlite+aiosqlite:///{target}"}, capture_output=True)
    assert probe.returncode == 0 and imported.returncode == 0
    assert not target.parent.exists()


async def test_odd_values_are_row_errors_never_a_server_error(api, db, request):
    car = await bound_car(db, request)
    odd = [violation_row(car.plate, record_no="3702\x00"), violation_row(car.plate, code={"x": 1}),
           violation_row(car.plate, occurred_at=12345), violation_row(car.plate, fine=True),
           violation_row([car.plate]), violation_row(car.plate, description=["a"]), None, [], 7]
    for path in ("/ingest/violations", "/ingest/violation-status"):
        async with api.post(path, json=odd, headers=AUTH) as resp:
            answer = await resp.json()
        assert resp.status == 200 and answer["accepted"] == 0
        assert [e["row"] for e in answer["rejected"]] == list(range(1, len(odd) + 1))
