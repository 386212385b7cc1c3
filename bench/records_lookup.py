"""Records lookups at city scale: the violation and licence-points queries on 1,000,000 violations.

    .venv/bin/python bench/records_lookup.py [--violations 1000000] [--vehicles 300000]
        [--licences 200000] [--lookups 3000] [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--rebuild]
    make bench-records ARGS="--postgres postgresql://postgres@127.0.0.1:5432/test"

Builds once, then reuses: a records database migrated with the project's Alembic migrations and
filled with fictional violations spread over vehicles with a skewed count (70% have 0-3, about 1%
have dozens), and licences with points. SQLite is cached as var/bench/records_<size>.db;
with --postgres, the database jj_bench_records_<size> on that server is kept as well. Either is
rebuilt when its row counts differ from the ones asked for (or with --rebuild); migrations added
since are applied on reuse.

Then it times thousands of lookups of random known and unknown plates and licence numbers through
the project's own async queries (actions/records/queries.py) on the project's Database, as the
actions call them, and prints p50/p95/p99/max in ms per query kind and backend (target: p99 under
5 ms), with the query plan of the SQL those functions emit and the index each table is read by.
"SELECT 1 (floor)" is the bare round trip: when its tail is long, the machine is busy, not the query.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import random
import re
import sys
import time
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from actions import replies  # noqa: E402
from actions.records import queries  # noqa: E402
from actions.records.db import Database, make_sync_engine  # noqa: E402
from actions.records.demo import CATEGORY_WEIGHTS, Generator, load_codes  # noqa: E402
from actions.records.models import Licence, Vehicle, Violation, ViolationCode  # noqa: E402

CACHE = ROOT / "var" / "bench"
TARGET_P99_MS = 5.0
SEED = 20240601
CHUNK = 50_000
# Tables big enough that reading them whole is a bug; violation_codes (62 rows) may be scanned.
BIG_TABLES = ("vehicles", "violations", "licences")


def size_label(n: int) -> str:
    for unit, name in ((1_000_000, "m"), (1_000, "k")):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{name}"
    return str(n)


# -- building ----------------------------------------------------------------------------------

def migrate(url: str) -> None:
    """Upgrade to head, as scripts/stack.py prepare_database does (without its demo records)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "actions" / "records" / "migrations"))
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, "head")


def row_counts(url: str) -> dict[str, int] | None:
    """Rows per big table, or None when the database is not (fully) migrated."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return {model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar_one()
                    for model in (Vehicle, Licence, Violation)}
    except Exception:
        return None
    finally:
        engine.dispose()


def generate(violations: int, vehicles: int, licences: int, today: date
             ) -> Iterator[tuple[type, list[dict]]]:
    """(model, rows) chunks; the same arguments and day give the same rows on every backend."""
    gen = Generator(SEED, today)
    rng = gen.rng
    codes = load_codes()
    yield ViolationCode, codes

    for start in range(0, licences, CHUNK):
        rows = [gen.licence() for _ in range(min(CHUNK, licences - start))]
        for i, row in enumerate(rows, start=start + 1):
            row["id"] = i
        yield Licence, rows

    for start in range(0, vehicles, CHUNK):
        rows = [gen.vehicle() for _ in range(min(CHUNK, vehicles - start))]
        for i, row in enumerate(rows, start=start + 1):
            row["id"] = i
        yield Vehicle, rows

    # Lognormal weights: ~70% of vehicles get 0-3 violations, about 1% dozens, the worst ~200.
    weights = itertools.accumulate(rng.lognormvariate(0, 1.1) for _ in range(vehicles))
    owners = rng.choices(range(1, vehicles + 1), cum_weights=list(weights), k=violations)
    # Codes as often as demo.py makes them: by category, shared evenly within one.
    per_category = Counter(c["category"] for c in codes)
    code_cum = list(itertools.accumulate(CATEGORY_WEIGHTS.get(c["category"], 1) / per_category[c["category"]]
                                         for c in codes))
    for start in range(0, violations, CHUNK):
        rows = []
        # Recorded in no particular vehicle order, so one vehicle's rows lie on scattered pages.
        for record_no, vehicle_id in enumerate(owners[start:start + CHUNK], start=start + 1):
            code = rng.choices(codes, cum_weights=code_cum)[0]
            row = gen.violation(vehicle_id, code, None, record_no)
            row["id"] = record_no
            row["licence_id"] = rng.randint(1, licences) if row["status"] != "unprocessed" and licences else None
            rows.append(row)
        yield Violation, rows


def _copy_text(value) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def load(url: str, chunks: Iterable[tuple[type, list[dict]]]) -> dict[str, int]:
    """Bulk insert: COPY on PostgreSQL, executemany in big transactions on SQLite."""
    engine = make_sync_engine(url)
    counts: dict[str, int] = {}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # Safe to lose on a crash: the row-count check rebuilds a half-loaded file.
            cur.execute("PRAGMA synchronous=OFF")
        for model, rows in chunks:
            table = model.__table__
            columns = [c.name for c in table.columns]
            if sqlite:
                # Each column's own bind processor: dates stored exactly as the ORM stores them.
                procs = [c.type.dialect_impl(engine.dialect).bind_processor(engine.dialect) for c in table.columns]
                values = [tuple(p(row.get(name)) if p else row.get(name) for name, p in zip(columns, procs))
                          for row in rows]
                cur.executemany(f"INSERT INTO {table.name} ({', '.join(columns)}) "
                                f"VALUES ({', '.join('?' * len(columns))})", values)
            else:
                buf = io.StringIO()
                for row in rows:
                    buf.write("\t".join(_copy_text(row.get(name)) for name in columns) + "\n")
                buf.seek(0)
                cur.copy_expert(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN", buf)
            raw.commit()
            counts[table.name] = counts.get(table.name, 0) + len(rows)
            print(f"  {table.name}: {counts[table.name]:,}", end="\r", flush=True)
        if sqlite:
            cur.execute("PRAGMA synchronous=FULL")
        else:
            # Explicit ids leave the sequences behind; ANALYZE gives the planner what autovacuum would.
            for name in ("vehicles", "licences", "violations"):
                cur.execute(f"SELECT setval('{name}_id_seq', (SELECT coalesce(max(id), 1) FROM {name}))")
            raw.commit()
            raw.dbapi_connection.autocommit = True  # VACUUM cannot run in a transaction
            cur.execute("VACUUM ANALYZE")
        cur.close()
    finally:
        raw.close()
        engine.dispose()
    print()
    return counts


def _pg_admin(admin_url: str):
    import psycopg2

    admin = make_url(admin_url)
    conn = psycopg2.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                            password=admin.password, dbname=admin.database)
    conn.autocommit = True
    return conn


def prepare(backend: str, args) -> str:
    """The URL of a built records database of the asked size; built now if need be."""
    label = size_label(args.violations)
    wanted = {"vehicles": args.vehicles, "licences": args.licences, "violations": args.violations}
    if backend == "sqlite":
        path = CACHE / f"records_{label}.db"
        url = f"sqlite+aiosqlite:///{path}"
        stale = args.rebuild or not path.exists() or row_counts(url) != wanted
        if stale:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        name = f"jj_bench_records_{label}"
        url = str(make_url(args.postgres).set(drivername="postgresql+asyncpg", database=name))
        conn = _pg_admin(args.postgres)
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            exists = cur.fetchone() is not None
            stale = args.rebuild or not exists or row_counts(url) != wanted
            if stale:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
    started = time.perf_counter()
    migrate(url)  # on reuse: applies any migration added since the build
    if stale:
        print(f"{backend}: building {args.violations:,} violations, {args.vehicles:,} vehicles, "
              f"{args.licences:,} licences")
        load(url, generate(args.violations, args.vehicles, args.licences, date.today()))
        print(f"{backend}: built in {time.perf_counter() - started:.0f} s")
    else:
        print(f"{backend}: reusing the built database ({label}); migrations checked in "
              f"{time.perf_counter() - started:.1f} s")
    return url


# -- query plans -------------------------------------------------------------------------------

async def emitted_sql(db: Database, call: Callable[..., Awaitable]) -> list[tuple[str, object]]:
    """The SELECT statements (with parameters) the call sends to the database."""
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.session() as session, session.begin():
            await call(session)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    return seen


async def explain(conn, statement: str, parameters) -> list[str]:
    """The plan, one line per node: EXPLAIN QUERY PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PG."""
    if conn.dialect.name == "sqlite":
        rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
        depth: dict[int, int] = {0: 0}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, 0) + 1
            lines.append("  " * (depth[node] - 1) + detail)
        return lines
    rows = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)).all()
    return [r[0] for r in rows]


_SQLITE_ACCESS = re.compile(r"^\s*(SEARCH|SCAN) (\w+)(?: AS \w+)?(?: USING (?:COVERING )?INDEX (\w+)"
                            r"| USING (INTEGER PRIMARY KEY))?")
_PG_INDEX = re.compile(r"Index (?:Only )?Scan(?: Backward)? using (\w+) on (\w+)")
_PG_BITMAP_HEAP = re.compile(r"Bitmap Heap Scan on (\w+)")
_PG_BITMAP_INDEX = re.compile(r"Bitmap Index Scan on (\w+)")
_PG_SEQ = re.compile(r"Seq Scan on (\w+)")


def table_access(plan: list[str]) -> dict[str, str]:
    """How each table is read: an index's name, or "FULL SCAN"."""
    access: dict[str, str] = {}
    heap = None
    for line in plan:
        if m := _SQLITE_ACCESS.match(line):
            kind, table, index, rowid = m.groups()
            if kind == "SEARCH" and (index or rowid):
                access[table] = index or "rowid"
            else:  # SCAN, even "SCAN t USING INDEX i", reads the whole table or index
                access[table] = "FULL SCAN" + (f" (of index {index})" if index else "")
        elif m := _PG_INDEX.search(line):
            access[m.group(2)] = m.group(1)
        elif m := _PG_BITMAP_HEAP.search(line):
            heap = m.group(1)
        elif (m := _PG_BITMAP_INDEX.search(line)) and heap:
            access[heap] = m.group(1)
        elif m := _PG_SEQ.search(line):
            access[m.group(1)] = "FULL SCAN"
    return access


async def lookup_plans(db: Database, plate: str, licence_no: str,
                       forbid_seqscan: bool = False) -> dict[str, tuple[str, list[str]]]:
    """The plan of each statement the violation and points lookups emit, by query function.

    forbid_seqscan (PostgreSQL): on a small table reading it whole is cheapest, so a test asks
    whether an index exists at all; a sequential scan is still chosen when none does."""
    vehicle_id = None

    async def by_plate(session):
        nonlocal vehicle_id
        vehicle = await queries.vehicle_by_plate(session, plate)
        vehicle_id = vehicle.id if vehicle else -1

    calls = {
        "vehicle_by_plate": by_plate,
        "unprocessed_violations": lambda s: queries.unprocessed_violations(s, vehicle_id),
        "licence_by_number": lambda s: queries.licence_by_number(s, licence_no),
    }
    plans = {}
    for name, call in calls.items():
        statements = await emitted_sql(db, call)
        async with db.engine.connect() as conn:
            if forbid_seqscan and conn.dialect.name == "postgresql":
                await conn.exec_driver_sql("SET enable_seqscan = off")
            for i, (statement, parameters) in enumerate(statements):
                plans[name if i == 0 else f"{name} #{i + 1}"] = (statement, await explain(conn, statement, parameters))
    return plans


# -- timing ------------------------------------------------------------------------------------

def samples(url: str, lookups: int) -> dict[str, list[str]]:
    """Random known plates and licence numbers, and as many valid ones that are not on record."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            plates = set(conn.execute(select(Vehicle.plate)).scalars())
            licence_nos = set(conn.execute(select(Licence.licence_no)).scalars())
            # The plans are shown for the worst case: the vehicle with the most unprocessed records.
            unprocessed = func.count(Violation.id).label("unprocessed")
            heaviest = conn.execute(
                select(Vehicle.plate, unprocessed).join(Violation, Violation.vehicle_id == Vehicle.id)
                .where(Violation.status == "unprocessed").group_by(Vehicle.plate)
                .order_by(unprocessed.desc()).limit(1)).first()
    finally:
        engine.dispose()
    rng = random.Random(SEED + 1)
    gen = Generator(SEED + 2, date.today())
    gen.used_plates, gen.used_licences = set(plates), set(licence_nos)  # so new ones are unknown
    return {
        "heaviest": [heaviest.plate, str(heaviest.unprocessed)] if heaviest else [rng.choice(sorted(plates)), "0"],
        "plates": rng.choices(sorted(plates), k=lookups),
        "unknown_plates": [gen.plate() for _ in range(lookups)],
        "licences": rng.choices(sorted(licence_nos), k=lookups),
        "unknown_licences": [gen.licence()["licence_no"] for _ in range(lookups)],
    }


KINDS = ("vehicle_by_plate, known", "vehicle_by_plate, unknown", "unprocessed_violations",
         "violations, whole session", "licence points, known", "licence_by_number, unknown",
         "SELECT 1 (floor)")


async def measure(db: Database, picks: dict[str, list[str]], warmup: int = 200) -> tuple[dict, dict]:
    """Milliseconds per lookup kind, and the unprocessed rows returned per known plate."""
    timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
    returned: list[int] = []
    today = date.today()

    async def timed(kind: str, awaitable):
        started = time.perf_counter()
        result = await awaitable
        timings[kind].append((time.perf_counter() - started) * 1000)
        return result

    async def violations(plate: str):
        # As ActionShowViolations does: one session and transaction for the plate and its records.
        async with db.session() as session, session.begin():
            # Connect (a new connection per session on SQLite: NullPool) and BEGIN before the
            # per-query clocks start; the whole-session figure includes them.
            await session.connection()
            vehicle = await timed("vehicle_by_plate, known", queries.vehicle_by_plate(session, plate))
            return await timed("unprocessed_violations", queries.unprocessed_violations(session, vehicle.id))

    async def points(session, licence_no: str) -> str:
        licence = await queries.licence_by_number(session, licence_no)
        return replies.points_summary(licence, today)  # what action_show_points answers from the row

    async def other_lookups(i: int) -> None:
        async with db.session() as session, session.begin():
            await session.connection()
            # The round trip with no work in it: a tail here is the machine's, not the query's.
            await timed("SELECT 1 (floor)", session.execute(text("SELECT 1")))
            missing = await timed("vehicle_by_plate, unknown",
                                  queries.vehicle_by_plate(session, picks["unknown_plates"][i]))
            await timed("licence points, known", points(session, picks["licences"][i]))
            unknown = await timed("licence_by_number, unknown",
                                  queries.licence_by_number(session, picks["unknown_licences"][i]))
        assert missing is None and unknown is None

    for i, plate in enumerate(picks["plates"]):
        if i == warmup:
            for values in timings.values():
                values.clear()
            returned.clear()
        rows = await timed("violations, whole session", violations(plate))
        returned.append(len(rows))
        await other_lookups(i)
    return timings, {"mean": sum(returned) / len(returned), "max": max(returned)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- main --------------------------------------------------------------------------------------

async def run_backend(backend: str, url: str, lookups: int, show_sql: bool) -> list[str]:
    """Print plans and timings for one backend; returns the warnings."""
    picks = samples(url, lookups + 200)
    warnings = []
    db = Database(url)
    try:
        plate, unprocessed = picks["heaviest"]
        print(f"\n[{backend}] plans for {plate} ({unprocessed} unprocessed violations, the most of any vehicle)")
        plans = await lookup_plans(db, plate, picks["licences"][0])
        for name, (statement, plan) in plans.items():
            access = table_access(plan)
            print(f"\n[{backend}] {name}: " + ", ".join(
                f"{t} by {how}" + ("" if t in BIG_TABLES else " (small reference table)") for t, how in access.items()))
            if show_sql:
                print("  " + " ".join(statement.split()))
            for line in plan:
                print("    " + line)
            warnings += [f"{backend}: {name} reads {t} whole" for t, how in access.items()
                         if t in BIG_TABLES and how.startswith("FULL SCAN")]
        load_before = os.getloadavg()[0]
        timings, returned = await measure(db, picks)
        load_after = os.getloadavg()[0]
    finally:
        await db.dispose()
    print(f"\n[{backend}] {len(timings[KINDS[0]]):,} lookups per kind, ms "
          f"(unprocessed rows per known plate: mean {returned['mean']:.2f}, max {returned['max']}; "
          f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs)")
    print(f"  {'query':<28} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}")
    for kind, values in timings.items():
        p50, p95, p99 = (percentile(values, q) for q in (0.50, 0.95, 0.99))
        print(f"  {kind:<28} {p50:7.2f} {p95:7.2f} {p99:7.2f} {max(values):7.2f}")
        if p99 > TARGET_P99_MS and kind not in ("violations, whole session", "SELECT 1 (floor)"):
            warnings.append(f"{backend}: {kind} p99 {p99:.2f} ms is over {TARGET_P99_MS} ms")
    return warnings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--violations", type=int, default=1_000_000)
    parser.add_argument("--vehicles", type=int, help="default: 3 in 10 of --violations")
    parser.add_argument("--licences", type=int, help="default: 2 in 10 of --violations")
    parser.add_argument("--lookups", type=int, default=3000, help="timed lookups per query kind")
    parser.add_argument("--postgres", default=os.environ.get("JJ_TEST_POSTGRES_URL"),
                        help="a PostgreSQL server URL (its database is the admin one; default $JJ_TEST_POSTGRES_URL)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--rebuild", action="store_true", help="build anew even if a cached database fits")
    parser.add_argument("--sql", action="store_true", help="print each statement beside its plan")
    args = parser.parse_args()
    args.vehicles = args.vehicles or max(args.violations * 3 // 10, 1)
    args.licences = args.licences or max(args.violations * 2 // 10, 1)
    if args.vehicles < 1 or args.violations < 1 or args.licences < 1:
        parser.error("sizes must be positive")
    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgres"] if args.postgres else [])
    if not backends:
        parser.error("--no-sqlite needs --postgres")
    warnings = []
    for backend in backends:
        url = prepare(backend, args)
        warnings += asyncio.run(run_backend(backend, url, args.lookups, args.sql))
    print()
    for warning in warnings:
        print("WARNING: " + warning)
    if not warnings:
        print(f"every lookup reads an index; every p99 is under {TARGET_P99_MS} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
