"""Push fan-out benchmark: one batch of N WeChat notifications (default 100,000) delivered by one
`python -m bots` process to the WeChat API stand-in, beside a naive sequential wechatpy loop.

The outbox rows are inserted directly (one per subscription, as the ingest side writes them), so
the figure is the dispatcher's alone. Prints notifications per second, duplicates and losses
(checked against the stand-in's own record of what it accepted), the dispatcher's peak RSS, and
the naive loop's rate on a sample (the full naive loop would take too long: the sample says so).
Both run against the same stand-in with the same per-request latency (--latency, default 0.03 s:
the real API is tens of milliseconds away; 0 gives the loopback figure, where a sequential loop is
unrealistically fast).

    .venv/bin/python bench/push_fanout.py [--rows 100000] [--postgres postgresql://...] [--latency 0.03]
        [--dispatchers 2]   # the production shape: several dispatchers share the outbox (PostgreSQL)
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402

from actions.records.clock import now_local  # noqa: E402
from actions.records.db import make_sync_engine  # noqa: E402
from actions.records.models import OutboxMessage, Person  # noqa: E402
from tests.support.background import BackgroundServer  # noqa: E402
from tests.support.wechat_api import WeChatAPIStandIn  # noqa: E402
from tests.test_dispatcher import VIOLATION, migrate  # noqa: E402


def database(postgres: str | None, tmp: Path):
    if not postgres:
        return f"sqlite+aiosqlite:///{tmp / 'bench.db'}", lambda: None
    import psycopg2
    from sqlalchemy.engine import make_url

    admin = make_url(postgres)
    name = f"jj_bench_{uuid.uuid4().hex[:8]}"

    def run(sql: str) -> None:
        conn = psycopg2.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                                password=admin.password, dbname=admin.database)
        conn.autocommit = True
        conn.cursor().execute(sql)
        conn.close()

    run(f'CREATE DATABASE "{name}"')
    return str(admin.set(drivername="postgresql+asyncpg", database=name)), \
        lambda: run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(url: str, rows: int) -> list[str]:
    engine = make_sync_engine(url)
    now = now_local()
    openids = [f"o{i:09d}{secrets.token_hex(4)}" for i in range(rows)]
    with engine.begin() as c:
        pid = c.execute(insert(Person).values(created_at=now, sms_consent=False).returning(Person.id)).scalar() \
            if engine.dialect.name == "postgresql" else c.execute(insert(Person).values(created_at=now)).inserted_primary_key[0]
        record = "37020000" + secrets.token_hex(4)
        for start in range(0, rows, 5000):
            c.execute(insert(OutboxMessage), [
                {"event_kind": "violation", "event_key": f"violation:{record}:{i}", "person_id": pid,
                 "channel": "wechat", "payload": {**VIOLATION, "to": openids[i]}, "status": "pending",
                 "attempts": 0, "next_attempt_at": now, "created_at": now}
                for i in range(start, min(rows, start + 5000))])
    engine.dispose()
    return openids


def sent_count(url: str) -> int:
    engine = make_sync_engine(url)
    with engine.connect() as c:
        n = c.execute(select(func.count()).where(OutboxMessage.status == "sent")).scalar()
    engine.dispose()
    return n


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def naive(standin: WeChatAPIStandIn, sample: int, budget: float) -> tuple[int, float]:
    """client.message.send_template for each row, one after another, as a plain script would:
    up to `sample` rows or `budget` seconds, whichever ends first. Returns (rows, rate)."""
    from bots import messages
    from channels.wechat import WeChatConfig, make_client

    client = make_client(WeChatConfig(token="unused", app_id=standin.app_id, app_secret=standin.app_secret,
                                      encoding_aes_key=None, mode="plain", api_base_url=standin.url))
    template = messages.wechat_template("violation", VIOLATION, {"violation": "jj_violation_notice"}, "https://x")
    client.fetch_access_token()  # outside the timing, as the dispatcher's token is
    started = time.perf_counter()
    done = 0
    while done < sample and (done < 50 or time.perf_counter() - started < budget):
        client.message.send_template(f"naive{done:08d}", template["template_id"], template["data"], url=template["url"])
        done += 1
    return done, done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description="push fan-out benchmark")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("JJ_TEST_POSTGRES_URL"),
                        help="admin URL of a PostgreSQL server (default: SQLite)")
    parser.add_argument("--naive", type=int, default=2000, help="most rows for the naive loop's sample")
    parser.add_argument("--naive-seconds", type=float, default=20.0, help="most seconds for the naive loop's sample")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds the stand-in waits before each answer")
    parser.add_argument("--concurrency", default="100", help="JJ_PUSH_CONCURRENCY for the run")
    parser.add_argument("--rate", default="100000", help="JJ_RATE_WECHAT for the run")
    parser.add_argument("--threads", default="64", help="JJ_WECHAT_THREADS for the run (one keep-alive connection each)")
    parser.add_argument("--dispatchers", type=int, default=1, help="dispatcher processes sharing the outbox")
    args = parser.parse_args()
    if args.dispatchers > 1 and not args.postgres:
        parser.error("--dispatchers > 1 needs --postgres: SQLite has no SKIP LOCKED, one dispatcher serves it")

    standin = WeChatAPIStandIn("wx" + secrets.token_hex(8), secrets.token_hex(16), latency=args.latency)
    print(f"WeChat stand-in latency {args.latency * 1000:.0f} ms per request, for the dispatcher and the naive loop alike")
    with tempfile.TemporaryDirectory() as tmp, BackgroundServer(standin.app()) as server:
        standin.url = server.url
        url, drop = database(args.postgres, Path(tmp))
        try:
            migrate(url)
            t0 = time.perf_counter()
            openids = fill(url, args.rows)
            print(f"backend {url.split(':')[0]}: {args.rows} outbox rows inserted in {time.perf_counter() - t0:.1f}s")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("JJ_", "WECHAT_", "SMS_", "TELEGRAM_", "WEIBO_", "SMTP_"))}
            env.update({"JJ_DATABASE_URL": url, "WECHAT_APP_ID": standin.app_id, "WECHAT_APP_SECRET": standin.app_secret,
                        "WECHAT_API_BASE": server.url, "JJ_PUSH_CHANNELS": "wechat", "JJ_RATE_WECHAT": args.rate,
                        "JJ_PUSH_POLL": "0.2", "JJ_WECHAT_THREADS": args.threads,
                        "JJ_PUSH_CONCURRENCY": args.concurrency})
            started = time.perf_counter()
            procs = []
            for i in range(args.dispatchers):
                log = open(Path(tmp) / f"bots-{i}.log", "wb")
                procs.append(subprocess.Popen([sys.executable, "-m", "bots"], cwd=ROOT, stdout=log,
                                              stderr=subprocess.STDOUT,
                                              env={**env, "JJ_INGEST_PORT": str(18190 + i)}))
            try:
                while sent_count(url) < args.rows:
                    for i, proc in enumerate(procs):
                        if proc.poll() is not None:
                            raise SystemExit(f"dispatcher exited: {(Path(tmp) / f'bots-{i}.log').read_text()[-2000:]}")
                    time.sleep(0.5)
                rss = max(peak_rss_mb(p.pid) for p in procs)
                cpu = sum(cpu_seconds(p.pid) for p in procs)
                wall = time.perf_counter() - started
            finally:
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    proc.wait(60)
            stamps = [s.at for s in standin.sent]
            rate = len(stamps) / (max(stamps) - min(stamps))
            counts = Counter(s.touser for s in standin.sent)
            duplicates = sum(n - 1 for n in counts.values() if n > 1)
            losses = sum(1 for o in openids if o not in counts)
            print(f"{args.dispatchers} dispatcher(s): {len(stamps)} accepted by the stand-in at {rate:.0f} notifications/s "
                  f"(first to last accept; {args.rows / wall:.0f}/s from process start to the last row marked sent), "
                  f"duplicates {duplicates}, losses {losses}, peak RSS {rss:.0f} MB (largest process), "
                  f"CPU {cpu:.0f}s in all = {cpu / args.rows * 1000:.2f} ms a notification (start-up included)")
            sample, naive_rate = naive(standin, min(args.naive, args.rows), args.naive_seconds)
            print(f"naive sequential wechatpy loop: {naive_rate:.0f} notifications/s "
                  f"(on a sample of {sample}, not the full {args.rows}: it would take {args.rows / naive_rate:.0f}s)")
            print("load average (1, 5, 15 min): %.2f %.2f %.2f on %d CPUs" % (*os.getloadavg(), os.cpu_count()))
            print(f"speed-up {rate / naive_rate:.1f}x; targets: >= 10x, >= 500/s, < 250 MB, 0 duplicates, 0 losses")
        finally:
            drop()


if __name__ == "__main__":
    main()
