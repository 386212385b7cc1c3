"""Inbound latency and throughput: N concurrent WeChat users against the running stack, beside
the same conversation sent through Rasa's own REST channel in the same run.

    python bench/wechat_latency.py [--users 20] [--conversations 5] [--rounds 2] [--postgres URL]

Starts its own action server and Rasa server (and the stand-in WeChat API) on free loopback ports,
on a fresh SQLite database unless --postgres is given. Prints p50/p99 latency per message, messages
per second, the WeChat/REST ratio, passive replies past the budget, and peak resident memory.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.stack import ChannelSettings, Stack, StackConfig, WeChatSettings, prepare_database  # noqa: E402
from scripts.train import train  # noqa: E402
from tests.support.background import BackgroundServer, free_port  # noqa: E402
from tests.support.wechat_api import WeChatAPIStandIn  # noqa: E402
from tests.support.wechat_user import WeChatPlatform, next_msg_id, text_xml  # noqa: E402

# One driver's conversation: greet, ask, prove, leave. Each reply is checked, not just timed.
CONVERSATION = [
    ("你好", "交警助手"),
    ("查一下鲁B12345的违章", "后6位"),
    ("672418", "有 3 条未处理"),
    ("再见", "一路平安"),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Results:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.wrong = 0
        self.past_budget = 0
        self.elapsed = 0.0

    def summary(self) -> dict:
        lat = self.latencies
        return {"channel": self.name, "messages": len(lat), "p50_ms": 1000 * percentile(lat, 0.50),
                "p99_ms": 1000 * percentile(lat, 0.99), "max_ms": 1000 * max(lat),
                "msgs_per_s": len(lat) / self.elapsed, "wrong_replies": self.wrong,
                "past_budget": self.past_budget}


BUDGET = 4.0  # the passive-reply budget the stack runs with
THINK = 0.0  # mean seconds a user pauses before each message (0: back to back)


async def think(rng: random.Random) -> None:
    if THINK > 0:
        await asyncio.sleep(rng.uniform(0.5 * THINK, 1.5 * THINK))


async def wechat_user(session: aiohttp.ClientSession, platform: WeChatPlatform, conversations: int,
                      results: Results) -> None:
    openid = "o_bench_" + secrets.token_hex(8)
    rng = random.Random(openid)
    for _ in range(conversations):
        for text, expected in CONVERSATION:
            await think(rng)
            url, body, query = platform.sign(text_xml(platform.account, openid, text, next_msg_id()))
            started = time.perf_counter()
            async with session.post(url, data=body) as res:
                payload = await res.text()
            elapsed = time.perf_counter() - started
            results.latencies.append(elapsed)
            reply = platform.read_reply(payload, query) if res.status == 200 else None
            results.past_budget += reply is not None and elapsed > BUDGET
            if reply is None:
                results.past_budget += payload.strip() == "success"
                results.wrong += 1
            elif expected not in reply:
                results.wrong += 1


async def rest_user(session: aiohttp.ClientSession, url: str, conversations: int, results: Results) -> None:
    sender = "rest_bench_" + secrets.token_hex(8)
    rng = random.Random(sender)
    for _ in range(conversations):
        for text, expected in CONVERSATION:
            await think(rng)
            started = time.perf_counter()
            async with session.post(url, json={"sender": sender, "message": text}) as res:
                payload = await res.json()
            results.latencies.append(time.perf_counter() - started)
            if expected not in "\n".join(m.get("text", "") for m in payload):
                results.wrong += 1


async def run_phase(name: str, users: int, conversations: int, make_user) -> Results:
    results = Results(name)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                     connector=aiohttp.TCPConnector(limit=users * 2)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(make_user(session, results) for _ in range(users)))
        results.elapsed = time.perf_counter() - started
    return results


class MemorySampler:
    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self, proc: psutil.Process) -> int:
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                try:
                    self.peak[name] = max(self.peak[name], self._rss(proc))
                except psutil.Error:
                    pass
            self._stop.wait(0.2)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--conversations", type=int, default=5, help="per user and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating REST and WeChat phases")
    parser.add_argument("--postgres", help="a PostgreSQL URL for the records instead of SQLite")
    parser.add_argument("--budget", type=float, default=4.0, help="the WeChat passive-reply budget (s)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean pause in seconds before each message (0: back to back, a saturation test)")
    args = parser.parse_args()
    global THINK, BUDGET
    THINK, BUDGET = args.think, args.budget

    tmp = Path(tempfile.mkdtemp(prefix="jj-bench-"))
    url = args.postgres or f"sqlite+aiosqlite:///{tmp / 'records.db'}"
    prepare_database(url)
    standin = WeChatAPIStandIn("wx_bench_app", "bench-secret-0123456789abcdef")
    with BackgroundServer(standin.app()) as api:
        settings = WeChatSettings.generate(app_id=standin.app_id, app_secret=standin.app_secret,
                                           api_base=api.url, reply_budget=args.budget)
        config = StackConfig(database_url=url, tracker_db=tmp / "tracker.db", channels=ChannelSettings(settings),
                             model=train(), rasa_port=free_port(), actions_port=free_port(),
                             log_dir=tmp / "logs")
        print(f"starting the stack (logs in {tmp / 'logs'})...", file=sys.stderr)
        with Stack(config) as stack:
            platform = WeChatPlatform(config.webhook, settings.token, settings.app_id, settings.aes_key, "safe")
            rest_url = f"{config.rasa_url}/webhooks/rest/webhook"
            pids = {"rasa": stack.processes[1].pid, "actions": stack.processes[0].pid}

            async def measure() -> tuple[Results, Results]:
                # Warm-up: first messages load graphs and fill pools.
                await run_phase("warm-up", 4, 1, lambda s, r: rest_user(s, rest_url, 1, r))
                await run_phase("warm-up", 4, 1, lambda s, r: wechat_user(s, platform, 1, r))
                rest, wechat = Results("rest"), Results("wechat")
                for _ in range(args.rounds):
                    for total, make in ((rest, lambda s, r: rest_user(s, rest_url, args.conversations, r)),
                                        (wechat, lambda s, r: wechat_user(s, platform, args.conversations, r))):
                        phase = await run_phase(total.name, args.users, args.conversations, make)
                        total.latencies += phase.latencies
                        total.wrong += phase.wrong
                        total.past_budget += phase.past_budget
                        total.elapsed += phase.elapsed
                return rest, wechat

            with MemorySampler(pids) as memory:
                rest, wechat = asyncio.run(measure())

    r, w = rest.summary(), wechat.summary()
    report = {
        "users": args.users, "conversations_per_user_round": args.conversations, "rounds": args.rounds,
        "database": "postgresql" if args.postgres else "sqlite", "think_s": args.think, "rest": r, "wechat": w,
        "ratio_p50": w["p50_ms"] / r["p50_ms"], "ratio_p99": w["p99_ms"] / r["p99_ms"],
        "peak_rss_mb": {k: v / 2**20 for k, v in memory.peak.items()},
    }
    print(f"\n{args.users} concurrent users x {args.conversations} conversations x {args.rounds} rounds "
          f"({len(CONVERSATION)} messages each), think time {args.think:g} s, records on {report['database']}")
    print(f"{'channel':8} {'messages':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'msg/s':>7} "
          f"{'wrong':>6} {'past budget':>11}")
    for s in (r, w):
        print(f"{s['channel']:8} {s['messages']:8d} {s['p50_ms']:8.1f} {s['p99_ms']:8.1f} {s['max_ms']:8.1f} "
              f"{s['msgs_per_s']:7.1f} {s['wrong_replies']:6d} {s['past_budget']:11d}")
    print(f"WeChat / REST: p50 {report['ratio_p50']:.3f}x, p99 {report['ratio_p99']:.3f}x")
    print(f"peak RSS: Rasa server {report['peak_rss_mb']['rasa']:.0f} MB, "
          f"action server {report['peak_rss_mb']['actions']:.0f} MB")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"wechat_latency-{int(time.time())}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
