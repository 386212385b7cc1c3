"""Inbound latency on every channel, beside Rasa's REST channel in the same run.

    python bench/channel_latency.py [--users 2] [--conversations 12] [--rounds 8] [--think 2] [--postgres URL]
    python bench/channel_latency.py --sequential [--users 10] ...   # one channel at a time instead

Starts the stand-ins of every platform API, the action server and the Rasa server on free loopback
ports (fresh SQLite records unless --postgres). Every channel carries the same 4-message conversation:
REST, WeChat, Weibo, SMS through Twilio, Alibaba Cloud and the generic webhook, and Telegram. By
default each round runs N users per channel on all channels at once, so that whatever else the
machine does in that minute (the server's garbage collection, another process) falls on every channel
alike; --sequential runs the channels one after another instead, as earlier versions did, and its
ratios swing by about ±0.15 between runs for that reason. A message's latency is from sending it to
the moment its whole answer reached the platform: the passive reply's arrival, or the stand-in API's
receipt of the last piece for channels that answer through the platform's API. Signing and
encrypting a message before it is sent, and decrypting or parsing the answer, are the platform's work
and not counted: they run in this process, where every simulated user competes for the interpreter
lock, and counted they added to WeChat's tail most (its platform encrypts and decrypts every
message). Every answer is checked. Prints p50/p99 per channel and its ratio to REST, over the whole
run and as the median of the rounds' ratios.
"""
from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.stack import Stack, StackConfig, prepare_database  # noqa: E402
from scripts.train import train  # noqa: E402
from tests.support.background import free_port  # noqa: E402
from tests.support.channel_clients import (Answer, ChannelClient, SMSClient, TelegramClient,  # noqa: E402
                                           WeChatClient, WeiboClient)
from tests.support.platforms import channel_settings, running_platforms  # noqa: E402
from tests.support.sms_user import AliyunGateway, GenericGateway, TwilioGateway  # noqa: E402
from tests.support.telegram_user import TelegramPlatform  # noqa: E402
from tests.support.wechat_user import WeChatPlatform  # noqa: E402
from tests.support.weibo_user import WeiboPlatform  # noqa: E402

CONVERSATION = [("你好", "查违章"), ("查一下鲁B12345的违章", "后6位"), ("672418", "有 3 条未处理"),
                ("再见", "一路平安")]
CHANNELS = ["rest", "wechat", "weibo", "sms-twilio", "sms-aliyun", "sms-generic", "telegram"]


class RestClient(ChannelClient):
    channel = "rest"

    def __init__(self, url: str) -> None:
        self.url, self.sender_id = url, "rest_bench_" + secrets.token_hex(6)
        self.http = requests.Session()

    def say(self, text: str, timeout: float = 15) -> Answer:
        body = json.dumps({"sender": self.sender_id, "message": text}).encode()
        started = time.perf_counter()
        res = self.http.post(self.url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout)
        elapsed = time.perf_counter() - started  # the exchange alone, as for every other channel
        texts = [m.get("text", "") for m in res.json()] if res.status_code == 200 else []
        return Answer(res.status_code, "\n".join(texts), elapsed)


def makers(rasa_url: str, channels, platforms) -> dict[str, Callable[[], ChannelClient]]:
    hooks, c, p = f"{rasa_url}/webhooks", channels, platforms
    return {
        "rest": lambda: RestClient(f"{hooks}/rest/webhook"),
        "wechat": lambda: WeChatClient(WeChatPlatform(f"{hooks}/wechat/webhook", c.wechat.token, c.wechat.app_id,
                                                      c.wechat.aes_key, "safe"), p.wechat.url),
        "weibo": lambda: WeiboClient(WeiboPlatform(f"{hooks}/weibo/webhook", c.weibo.app_secret,
                                                   p.weibo.account_id), p.weibo_url),
        "sms-twilio": lambda: SMSClient(TwilioGateway(f"{hooks}/sms/twilio", c.sms.twilio_auth_token), p.sms_url),
        "sms-aliyun": lambda: SMSClient(AliyunGateway(f"{hooks}/sms/aliyun/{c.sms.aliyun_path_secret}"), p.sms_url),
        "sms-generic": lambda: SMSClient(GenericGateway(f"{hooks}/sms/generic", c.sms.generic_secret), p.sms_url),
        "telegram": lambda: TelegramClient(TelegramPlatform(f"{hooks}/telegram/webhook", c.telegram.secret_token,
                                                            p.telegram_url, c.telegram.verify)),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def ratio_interval(values: list[float], rest: list[float], q: float, resamples: int = 400,
                   seed: int = 1) -> tuple[float, float]:
    """A 90% bootstrap interval of percentile(values, q) / percentile(rest, q). Messages are resampled
    one by one, though slow ones come in bursts, so the true interval is if anything wider."""
    rng = random.Random(seed)
    ratios = sorted(percentile(rng.choices(values, k=len(values)), q) / percentile(rng.choices(rest, k=len(rest)), q)
                    for _ in range(resamples))
    return ratios[int(0.05 * resamples)], ratios[int(0.95 * resamples) - 1]


def summary(latencies: dict[str, list[float]], by_round: list[dict[str, list[float]]], name: str) -> dict:
    values, rest = latencies[name], latencies["rest"]

    def median_ratio(q: float) -> float:
        return statistics.median(percentile(r[name], q) / percentile(r["rest"], q) for r in by_round)

    return {"messages": len(values), "p50_ms": 1000 * percentile(values, 0.5),
            "p99_ms": 1000 * percentile(values, 0.99), "max_ms": 1000 * max(values),
            "ratio_p50": percentile(values, 0.5) / percentile(rest, 0.5),
            "ratio_p99": percentile(values, 0.99) / percentile(rest, 0.99),
            "round_ratio_p50": median_ratio(0.5), "round_ratio_p99": median_ratio(0.99),
            "ratio_p50_interval": ratio_interval(values, rest, 0.5),
            "ratio_p99_interval": ratio_interval(values, rest, 0.99)}


def run_phase(makes: dict[str, Callable[[], ChannelClient]], users: int, conversations: int, think: float,
              latencies: dict[str, list[float]], wrong: list[str], samples: Optional[list] = None) -> None:
    """`users` simulated people on each channel of `makes`, all at once."""
    lock = threading.Lock()

    def user(name: str) -> None:
        client = makes[name]()
        rng = random.Random(client.sender_id)
        for _ in range(conversations):
            for step, (text, expected) in enumerate(CONVERSATION):
                if think > 0:
                    time.sleep(rng.uniform(0.5 * think, 1.5 * think))
                sent_at = time.time()
                answer = client.say(text)
                with lock:
                    latencies[name].append(answer.elapsed)
                    if samples is not None:
                        samples.append((name, step, round(sent_at, 3), round(answer.elapsed, 4)))
                    if answer.status != 200 or expected not in answer.text:
                        wrong.append(f"{client.channel}: {text!r} -> {answer.status} {answer.text[:80]!r}")

    threads = [threading.Thread(target=user, args=(name,)) for name in makes for _ in range(users)]
    random.shuffle(threads)  # no channel always starts first
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2, help="concurrent users per channel")
    parser.add_argument("--conversations", type=int, default=12, help="per user and round")
    parser.add_argument("--rounds", type=int, default=8,
                        help="each round runs every channel once; p99 needs the default's 768 messages per channel")
    parser.add_argument("--sequential", action="store_true", help="run the channels one after another in each "
                        "round instead of all at once")
    parser.add_argument("--think", type=float, default=2.0, help="mean pause in seconds before each message")
    parser.add_argument("--postgres", help="a PostgreSQL URL for the records instead of SQLite")
    parser.add_argument("--poll", type=float, default=0.25,
                        help="seconds between a client's checks of a stand-in for answers sent through its API")
    parser.add_argument("--model", type=Path, help="a trained model (default: train or reuse scripts/train.py's)")
    args = parser.parse_args()

    # Answers are timed by the stand-in's receipt, not by our checks; checking often only loads the
    # stand-ins, which share this process with the clients, and delays their receipts.
    ChannelClient.poll_interval = args.poll
    tmp = Path(tempfile.mkdtemp(prefix="jj-bench-"))
    url = args.postgres or f"sqlite+aiosqlite:///{tmp / 'records.db'}"
    prepare_database(url)
    rasa_port = free_port()
    latencies = {name: [] for name in CHANNELS}
    by_round: list[dict[str, list[float]]] = []
    wrong: list[str] = []
    samples: list[tuple] = []  # (channel, step of the conversation, sent at, seconds): in the JSON report
    with running_platforms() as platforms:
        channels = channel_settings(platforms, f"http://127.0.0.1:{rasa_port}")
        config = StackConfig(database_url=url, tracker_db=tmp / "tracker.db", channels=channels,
                             model=args.model or train(),
                             rasa_port=rasa_port, actions_port=free_port(), log_dir=tmp / "logs")
        print(f"starting the stack (logs in {tmp / 'logs'})...", file=sys.stderr)
        with Stack(config):
            make = makers(config.rasa_url, channels, platforms)
            # Warm-up: first messages load graphs and open pools.
            run_phase(make, 1, 1, 0, {name: [] for name in CHANNELS}, [])
            for r in range(args.rounds):
                this_round = {name: [] for name in CHANNELS}
                phases = [[name] for name in CHANNELS] if args.sequential else [CHANNELS]
                for names in phases:
                    print(f"round {r + 1}: {', '.join(names)}...", file=sys.stderr)
                    run_phase({name: make[name] for name in names}, args.users, args.conversations, args.think,
                              this_round, wrong, samples)
                by_round.append(this_round)
                for name, values in this_round.items():
                    latencies[name] += values

    rows = {name: summary(latencies, by_round, name) for name in CHANNELS}
    print(f"\n{args.users} users per channel x {args.conversations} conversations x {args.rounds} rounds "
          f"({len(CONVERSATION)} messages each), channels {'one after another' if args.sequential else 'all at once'}, "
          f"think time {args.think:g} s, records on {'PostgreSQL' if args.postgres else 'SQLite'}")
    print(f"{'channel':12} {'messages':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'÷REST p50':>10} {'÷REST p99':>10}"
          f" {'rounds: p50':>12} {'p99':>6} {'90% interval: p50':>18} {'p99':>11}")
    for name, s in rows.items():
        (p50_low, p50_high), (p99_low, p99_high) = s["ratio_p50_interval"], s["ratio_p99_interval"]
        print(f"{name:12} {s['messages']:8d} {s['p50_ms']:8.1f} {s['p99_ms']:8.1f} {s['max_ms']:8.1f} "
              f"{s['ratio_p50']:10.2f} {s['ratio_p99']:10.2f} {s['round_ratio_p50']:12.2f} {s['round_ratio_p99']:6.2f}"
              f" {p50_low:12.2f}-{p50_high:.2f} {p99_low:6.2f}-{p99_high:.2f}")
    print("(÷REST: over the whole run; rounds: the median of the rounds' own ratios; 90% interval: of the "
          "whole run's ratio, by resampling its messages)")
    worst = max(max(s["ratio_p50"], s["ratio_p99"]) for s in rows.values())
    print(f"worst channel/REST ratio {worst:.2f}x (target ≤ 1.15x: {'met' if worst <= 1.15 else 'NOT met'}); "
          f"wrong answers: {len(wrong)}")
    for line in wrong[:10]:
        print("  " + line)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"channel_latency-{int(time.time())}.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "channels": rows, "wrong": wrong,
         "samples": samples}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
