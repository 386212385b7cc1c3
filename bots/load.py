"""Load records from files into the records database, with their notifications.

    python -m bots.load violations FILE.csv|FILE.jsonl   new violation records
    python -m bots.load status FILE.csv|FILE.jsonl       processed / paid
    python -m bots.load reminders [--today YYYY-MM-DD]   inspection, licence and points reminders due

The database is JJ_DATABASE_URL (as the action server). CSV: a header row with the field names
(record_no, plate, occurred_at, place, code, fine, points, authority, description / record_no, status,
decision_no, processed_at, paid_at, late_fee); empty cells count as absent. One transaction per file.
Exit status: 0 every row accepted (or unchanged), 1 some rows rejected, 2 usage or configuration error.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from datetime import date
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from actions.records import outbox
from actions.records.db import Database, DatabaseConfigError, database_url

from .ingest import BadBody, parse_json_lines

USAGE_ERROR = 2


class UsageError(Exception):
    pass


def read_rows(path: Path) -> list:
    """Rows of a CSV file (by its header) or of a JSON lines file (.jsonl, .ndjson, .json array)."""
    try:
        data = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"文件不存在: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"无法读取 {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(data))
        if not reader.fieldnames or "record_no" not in reader.fieldnames:
            raise UsageError(f"{path}: CSV 第一行应为字段名，且包含 record_no")
        return [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()
                 if k and v not in (None, "")} for row in reader]
    if suffix in (".jsonl", ".ndjson", ".json"):
        try:
            stripped = data.lstrip()
            if suffix == ".json" and stripped.startswith("["):
                rows = json.loads(stripped)
            else:
                rows = parse_json_lines(data)
        except BadBody as bad:
            raise UsageError(f"{path}: {bad.message}") from None
        except ValueError:
            raise UsageError(f"{path}: 不是合法的 JSON") from None
        return rows
    raise UsageError(f"{path}: 只支持 .csv、.jsonl、.ndjson 或 .json 文件")


def print_result(result: outbox.IngestResult, out=sys.stdout) -> None:
    print(f"accepted {result.accepted}, unchanged {result.unchanged}, rejected {len(result.rejected)}, "
          f"notifications {result.notifications}", file=out)
    for e in result.rejected:
        print(f"  row {e.row} ({e.record_no or '-'}): {e.field or '-'} [{e.error}] {e.message}", file=out)


async def _run(args: argparse.Namespace, rows: list) -> int:
    database = Database(database_url())
    try:
        async with database.session() as session, session.begin():
            if args.command == "reminders":
                counts = await outbox.due_reminders(session, args.today)
                print(", ".join(f"{kind} {n}" for kind, n in counts.items()))
                return 0
            work = outbox.record_violations if args.command == "violations" else outbox.change_violation_status
            result = await work(session, rows)
        print_result(result)
        return 1 if result.rejected else 0
    finally:
        await database.dispose()


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("日期格式应为 YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bots.load", description="Load records from files.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what in (("violations", "new violation records"), ("status", "processed / paid changes")):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("file", help="a .csv (header row) or .jsonl file")
    reminders = commands.add_parser("reminders", help="write the reminders due today")
    reminders.add_argument("--today", type=_day, default=None, help="as if today were this date")
    args = parser.parse_args(argv)  # exits 2 on a usage error
    try:
        # A bad file is refused before the database is touched.
        rows = read_rows(Path(args.file)) if args.command != "reminders" else []
        return asyncio.run(_run(args, rows))
    except (UsageError, DatabaseConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except (DBAPIError, OSError) as exc:
        # The URL may hold a password: name the variable, not its value.
        print(f"error: the database of JJ_DATABASE_URL is not reachable or not migrated "
              f"({exc.__class__.__name__})", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
