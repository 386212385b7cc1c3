"""Inbound load: how many messages a second the assistant sustains with p99 under 1 s.

    python bench/inbound_load.py [--steps 5,10,20,40,80] [--duration 60] [--think 2] [--profile]
    python bench/inbound_load.py --target http://127.0.0.1:8080 --env var/prod.env [--profile-pid PID ...]
    make bench-load ARGS="--steps 5,10,20,40 --duration 30"

By default starts the one-process stack itself, as `make run` does but on free loopback ports: a
fresh SQLite records database under var/bench/ (migrated, demo records), the platform API stand-ins,
the action server and the Rasa server. With --target it drives a deployment that is already running
(its base URL in front of /webhooks/, and its channel secrets and platform API URLs in an env file of
var/dev.env's KEY=VALUE format) instead.

Then runs locust headless (bench/locustfile.py: people on WeChat, Weibo and the three SMS gateways,
a mix of greetings, common questions, violation queries with proof, a broken-signal report and
unsubscribing, think time between messages) in steps of increasing users, each for --duration
seconds after its users have started. For each step prints messages/s, p50/p95/p99 latency (until the
whole answer reached the platform), failures (no answer, the busy text, a wrong answer, HTTP errors)
and the CPU each process used; then the sustained throughput: the highest step whose p99 is under
1 s with under 1% failures. --profile samples the Rasa server and the action server with py-spy
during the top step (the thread holding the GIL, 100 times a second) and prints how often the GIL
was held and the 15 functions with the most own time in each. The load generator
shares the machine's cores with the servers, so its CPU is printed too, and so is everything else's
("other": the machine's busy time less the watched processes'). Results also go to
bench/results/inbound_load-<time>.json; locust's CSVs and the logs stay in the run's folder.
"""
from __future__ import annotations

import argparse
import collections
import csv
import ipaddress
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.settings import ChannelSettings  # noqa: E402
from scripts.stack import Process, Stack, StackConfig, prepare_database, standins, start_ready  # noqa: E402
from tests.support.background import free_port  # noqa: E402

LOCUSTFILE = ROOT / "bench" / "locustfile.py"
PY_SPY = Path(sys.executable).parent / "py-spy"
SPY_RATE = 100  # samples a second
PHASE_PACKAGES = ("rasa/", "rasa_sdk/", "actions/", "channels/", "nlu/")
P99_LIMIT_MS, FAILURE_LIMIT = 1000.0, 0.01


def read_env_file(path: Path) -> dict:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


def loopback_only(url: str) -> None:
    """This benchmark floods what it targets: only this machine is allowed."""
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"--target must be on loopback (127.0.0.0/8, localhost or [::1]), got {host!r}")


# -- vehicles to query ---------------------------------------------------------------------------

def pick_vehicles(records_url: Optional[str], count: int = 200, seed: int = 7) -> list[dict]:
    """Vehicles and their proofs (last 6 of the VIN or of the engine number), so that different people
    query different vehicles: from the records database when given, else from the demo generator
    (the same seed gives the same vehicles as any database seeded by actions/records/demo.py)."""
    from actions.records import demo

    if records_url:
        from sqlalchemy import select

        from actions.records.db import make_sync_engine
        from actions.records.models import Vehicle

        engine = make_sync_engine(records_url)
        try:
            with engine.connect() as conn:
                rows = [tuple(r) for r in conn.execute(select(Vehicle.plate, Vehicle.vin, Vehicle.engine_no))]
        finally:
            engine.dispose()
    else:
        built = demo.build(20221001, 3000, len(demo.LICENCE_FIXTURES), demo.now_local().date(), demo.load_codes())
        rows = [(v["plate"], v["vin"], v["engine_no"]) for v in built["vehicles"]]
    fixtures = {f.plate for f in demo.FIXTURES}
    rest = [r for r in rows if r[0] not in fixtures]
    chosen = [r for r in rows if r[0] in fixtures] + random.Random(seed).sample(rest, min(count, len(rest)))
    return [{"plate": plate, "proofs": [vin[-6:], engine[-6:]]} for plate, vin, engine in chosen]


# -- one locust run ------------------------------------------------------------------------------

def run_step(host: str, users: int, duration: int, spawn_rate: float, think: float, env_file: Path,
             vehicles: Path, out: Path, watch: dict[str, list[int]], profile: dict[str, int]) -> dict:
    """Run locust for `duration` seconds after its users have started; its figures, the CPU each
    watched process used meanwhile and, for the processes in `profile`, their top functions."""
    ramp = math.ceil(users / spawn_rate)
    prefix = out / f"step-{users:04d}"
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
           "-r", f"{spawn_rate:g}", "-t", f"{duration + ramp}s", "--host", host, "--csv", str(prefix),
           "--reset-stats", "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "0",
           "--env-file", str(env_file), "--vehicles", str(vehicles), "--think", f"{think:g}",
           "--wrong-log", f"{prefix}-wrong.json"]
    with open(f"{prefix}.log", "wb") as log:
        locust = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        procs = {name: [psutil.Process(pid) for pid in pids] for name, pids in {**watch, "locust": [locust.pid]}.items()}
        # CPU is counted once every user has started, like locust's figures (--reset-stats);
        # about 2 s go to locust's own start.
        time.sleep(ramp + 2)
        before = {name: _cpu(ps) for name, ps in procs.items()}
        machine_before = psutil.cpu_times()
        started = time.monotonic()
        # Only the thread holding the GIL is sampled: without pausing the process (--nonblocking)
        # py-spy cannot tell a thread waiting in the event loop's epoll from a busy one, and the
        # GIL is what a one-process Python server runs out of. C code that lets the GIL go
        # (TensorFlow kernels, SQLite) is not in these samples; the CPU figures include it.
        spy_seconds = max(5, duration - 4)
        spies = [(name, path, subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(spy_seconds), "--rate", str(SPY_RATE),
             "--format", "raw", "--nolineno", "--nonblocking", "--gil", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            for name, pid in profile.items() for path in [out / f"profile-{name}-{users}.txt"]]
        time.sleep(max(1, duration - 2))
        wall = time.monotonic() - started
        cpu = {name: round(100 * (_cpu(ps) - before[name]) / wall, 1) for name, ps in procs.items()}
        # Whatever else ran on the machine meanwhile (other work on shared cores skews the figures).
        machine = psutil.cpu_times()
        busy = sum(getattr(machine, f) - getattr(machine_before, f) for f in ("user", "system", "nice", "irq",
                                                                              "softirq", "steal"))
        cpu["other"] = round(max(0.0, 100 * busy / wall - sum(cpu.values())), 1)
        locust.wait(duration + 120)
    except BaseException:
        locust.kill()
        raise
    if locust.returncode not in (0, 1):  # 1: some requests failed, which the figures show
        raise RuntimeError(f"locust exited with {locust.returncode}:\n{Path(f'{prefix}.log').read_text()[-3000:]}")
    figures = read_stats(prefix, users)
    figures["cpu_percent"] = cpu
    figures["profile"] = {}
    for name, path, spy in spies:
        _, err = spy.communicate(timeout=60)
        figures["profile"][name] = (top_functions(path, SPY_RATE * spy_seconds) if path.exists()
                                    else {"error": err.decode()[-500:]})
    return figures


def _cpu(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def read_stats(prefix: Path, users: int) -> dict:
    """Locust's aggregated row, per-channel counts and the commonest failures."""
    with open(f"{prefix}_stats.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    count, failed = int(total["Request Count"]), int(total["Failure Count"])
    channels: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        if r["Name"] != "Aggregated":
            channels[r["Type"]][0] += int(r["Request Count"])
            channels[r["Type"]][1] += int(r["Failure Count"])
    with open(f"{prefix}_failures.csv", newline="") as fh:
        failures = sorted(csv.DictReader(fh), key=lambda r: -int(r["Occurrences"]))

    def ms(key: str) -> float:
        return float(total[key]) if total[key] not in ("", "N/A") else float("nan")

    return {"users": users, "messages": count, "failures": failed, "failure_rate": failed / count if count else 1.0,
            "msgs_per_s": float(total["Requests/s"]), "p50_ms": ms("50%"), "p95_ms": ms("95%"), "p99_ms": ms("99%"),
            "max_ms": ms("Max Response Time"), "channels": dict(channels),
            "top_failures": [f"{r['Method']} {r['Name']}: {r['Error']} x{r['Occurrences']}" for r in failures[:5]],
            "wrong": json.loads(Path(f"{prefix}-wrong.json").read_text())[:5]
            if Path(f"{prefix}-wrong.json").exists() else []}


def top_functions(raw: Path, instants: int, top: int = 15) -> dict:
    """Own time per function from py-spy's raw output (collapsed stacks: "outer;...;leaf count"), as
    shares of the GIL-holding samples; and how often the GIL was held at all (of `instants`)."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        own[frames[-1]] += int(n)
        for frame in set(frames):
            inclusive[frame] += int(n)
        total += int(n)
    share = lambda n: round(100 * n / total, 1)  # noqa: E731
    # Inclusive time of the project's and Rasa's own functions says which phase costs most (NLU,
    # tracker store, policies); entry points on nearly every stack say nothing and are left out.
    phases = [(f, share(n)) for f, n in inclusive.most_common()
              if n < 0.8 * total and f.rpartition(" (")[2].startswith(PHASE_PACKAGES)][:15]
    return {"samples": total, "gil_held": round(100 * total / instants, 1),
            "top": [(f, share(n)) for f, n in own.most_common(top)], "inclusive": phases}


def sustained(steps: list[dict]) -> Optional[dict]:
    good = [s for s in steps if s["p99_ms"] < P99_LIMIT_MS and s["failure_rate"] < FAILURE_LIMIT]
    return max(good, key=lambda s: s["msgs_per_s"]) if good else None


# -- the stack -----------------------------------------------------------------------------------

def start_stack(run_dir: Path, model: Path, log) -> tuple[list[Process], Stack, ChannelSettings, str]:
    """Stand-ins, action server and Rasa server on free loopback ports, fresh records in run_dir."""
    url = f"sqlite+aiosqlite:///{run_dir / 'records.db'}"
    log("records: migrating and adding the demo records...")
    prepare_database(url)
    rasa_port = free_port()
    rasa_url = f"http://127.0.0.1:{rasa_port}"
    local = [f"http://127.0.0.1:{free_port()}" for _ in range(4)]
    channels = ChannelSettings.generate(*local, rasa_url)
    config = StackConfig(database_url=url, tracker_db=run_dir / "tracker.db", channels=channels, model=model,
                         rasa_port=rasa_port, actions_port=free_port(), log_dir=run_dir / "logs")
    helpers = standins(channels, config.env(), config.log_dir)
    stack = Stack(config)
    try:
        start_ready(helpers)
        log(f"starting the action server and the Rasa server (logs in {config.log_dir})...")
        stack.start()
    except BaseException:
        stack.stop()
        for proc in helpers:
            proc.stop()
        raise
    return helpers, stack, channels, url


def print_report(steps: list[dict], args, where: str) -> None:
    print(f"\ninbound load on {where}: {args.duration} s per step after ramp-up, think time {args.think:g} s "
          f"(mix: greetings, FAQ, violation queries with proof, signal reports, unsubscribe; "
          f"WeChat 5 : Weibo 2 : SMS Twilio/Aliyun/generic 1 each)")
    names = list(steps[0]["cpu_percent"]) if steps else []
    print(f"{'users':>5} {'msgs':>6} {'msgs/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'failed':>9} " + " ".join(f"{'CPU% ' + n:>14}" for n in names))
    for s in steps:
        print(f"{s['users']:5d} {s['messages']:6d} {s['msgs_per_s']:7.2f} {s['p50_ms']:7.0f} {s['p95_ms']:7.0f} "
              f"{s['p99_ms']:7.0f} {s['max_ms']:7.0f} {s['failures']:4d} {100 * s['failure_rate']:3.1f}% "
              + " ".join(f"{s['cpu_percent'].get(n, float('nan')):14.0f}" for n in names))
        for line in s["top_failures"]:
            print(f"      failures: {line}")
    if steps:
        top = steps[-1]
        print(f"      by channel at {top['users']} users: " + ", ".join(
            f"{name} {n} ({failed} failed)" for name, (n, failed) in sorted(top["channels"].items())))
    best = sustained(steps)
    if best:
        print(f"\nsustained throughput: {best['msgs_per_s']:.2f} messages/s ({best['users']} users; "
              f"p99 {best['p99_ms']:.0f} ms < {P99_LIMIT_MS:.0f} ms, failures {100 * best['failure_rate']:.2f}% < 1%)")
    else:
        print(f"\nsustained throughput: no step had p99 < {P99_LIMIT_MS:.0f} ms with < 1% failures")
    for s in steps:
        for name, prof in s["profile"].items():
            if "error" in prof:
                print(f"\npy-spy on {name} failed: {prof['error']}")
                continue
            print(f"\n{name} at {s['users']} users: GIL held {prof['gil_held']:.0f}% of the time; own time of the "
                  f"top functions, share of the {prof['samples']} GIL-holding samples:")
            for frame, pct in prof["top"]:
                print(f"  {pct:5.1f}%  {frame}")
            print("  inclusive time (with callees) of Rasa's and the project's functions, the largest under 80%:")
            for frame, pct in prof["inclusive"]:
                print(f"  {pct:5.1f}%  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="5,10,20,40,80", help="users per step, comma-separated, increasing")
    parser.add_argument("--duration", type=int, default=60, help="seconds per step, after its users have started")
    parser.add_argument("--spawn-rate", type=float, default=0, help="users started per second (default users/5)")
    parser.add_argument("--think", type=float, default=2.0, help="mean pause in seconds before each message")
    parser.add_argument("--warmup", type=int, default=15, help="seconds of 5 users before the steps (not reported)")
    parser.add_argument("--profile", action="store_true", help="py-spy on the servers during the top step")
    parser.add_argument("--target", help="base URL of a running deployment (loopback) instead of our own stack")
    parser.add_argument("--env", type=Path, help="with --target: its channel secrets, KEY=VALUE as var/dev.env")
    parser.add_argument("--records", help="records database to pick vehicles from (default: ours, or with "
                                          "--target JJ_DATABASE_URL from --env, else the demo generator)")
    parser.add_argument("--profile-pid", type=int, action="append", default=[],
                        help="with --target and --profile: a server process to sample (repeatable)")
    parser.add_argument("--model", type=Path, help="a trained model (default: train or reuse scripts/train.py's)")
    args = parser.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    if args.target and not args.env:
        parser.error("--target needs --env FILE (the deployment's channel secrets)")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    run_dir = ROOT / "var" / "bench" / time.strftime("load-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    helpers: list[Process] = []
    stack: Optional[Stack] = None
    results: list[dict] = []
    try:
        if args.target:
            loopback_only(args.target)
            host, env_file = args.target.rstrip("/"), args.env
            records = args.records or read_env_file(env_file).get("JJ_DATABASE_URL")
            watch = {f"pid {pid}": [pid] for pid in args.profile_pid}
            where = args.target
        else:
            from scripts.train import train

            helpers, stack, channels, records = start_stack(run_dir, args.model or train(), log)
            host, env_file = stack.config.rasa_url, run_dir / "load.env"
            env_file.write_text("".join(f"{k}={v}\n" for k, v in channels.env().items()))
            env_file.chmod(0o600)
            records = args.records or records
            watch = {"rasa": [stack.processes[1].pid], "actions": [stack.processes[0].pid],
                     "stand-ins": [p.pid for p in helpers]}
            where = f"one process each (Rasa server, action server; SQLite records) at {host}"
        vehicles = run_dir / "vehicles.json"
        vehicles.write_text(json.dumps(pick_vehicles(records), ensure_ascii=False))
        rate = lambda users: args.spawn_rate or max(1.0, users / 5)  # noqa: E731
        if args.warmup > 0:  # the first messages load graphs and open pools
            log(f"warm-up: 5 users for {args.warmup} s...")
            (run_dir / "warmup").mkdir()
            warm = run_step(host, 5, args.warmup, 5, args.think, env_file, vehicles, run_dir / "warmup", watch, {})
            if warm["messages"] == 0 or warm["failure_rate"] > 0.5:
                log(f"warm-up failed: {warm['failures']} of {warm['messages']} messages: {warm['top_failures']}")
                for w in warm["wrong"]:
                    log(f"  {w}")
                return 1
        for i, users in enumerate(steps):
            log(f"step {i + 1}/{len(steps)}: {users} users for {args.duration} s...")
            servers = {name: pids[0] for name, pids in watch.items() if name != "stand-ins"}
            profile = servers if args.profile and i == len(steps) - 1 else {}
            results.append(run_step(host, users, args.duration, rate(users), args.think, env_file, vehicles,
                                    run_dir, watch, profile))
    finally:
        if stack is not None:
            stack.stop()
        for proc in helpers:
            proc.stop()
    print_report(results, args, where)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"inbound_load-{int(time.time())}.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "where": where, "steps": results,
         "sustained": sustained(results)}, indent=2, ensure_ascii=False))
    print(f"\nlocust CSVs and logs: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
