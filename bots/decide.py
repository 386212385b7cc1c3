"""Decide a 随手拍 report from the command line, and tell the reporter (through the outbox).

    python -m bots.decide R202605010001 accepted
    python -m bots.decide R202605010001 rejected --reason unclear_plate
    python -m bots.decide R202605010001 rejected --reason "视频不足 5 秒"
    python -m bots.decide --reasons

The database is JJ_DATABASE_URL. Exit status: 0 decided (or already decided so), 1 the decision was
refused (unknown report, missing reason, ...), 2 usage or configuration error.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.exc import DBAPIError

from actions.records import outbox
from actions.records.db import Database, DatabaseConfigError, database_url


async def _decide(report_no: str, status: str, reason: str | None) -> outbox.Decision:
    database = Database(database_url())
    try:
        async with database.session() as session, session.begin():
            return await outbox.decide_report(session, report_no, status, reason)
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bots.decide", description="Decide a report.")
    parser.add_argument("report_no", nargs="?", help="the report number, e.g. R202605010001")
    parser.add_argument("status", nargs="?", choices=outbox.DECISIONS)
    parser.add_argument("--reason", help="for rejected: a reason key (see --reasons) or free text")
    parser.add_argument("--reasons", action="store_true", help="list the known rejection reasons")
    args = parser.parse_args(argv)
    if args.reasons:
        for key, text in outbox.REJECT_REASONS.items():
            print(f"{key:24} {text}")
        return 0
    if not args.report_no or not args.status:
        parser.print_usage(sys.stderr)
        print("error: a report number and a status are required", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_decide(args.report_no, args.status, args.reason))
    except outbox.DecisionError as refused:
        print(f"refused [{refused.error}] {refused.message}", file=sys.stderr)
        return 1
    except DatabaseConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DBAPIError, OSError) as exc:
        print(f"error: the database of JJ_DATABASE_URL is not reachable or not migrated "
              f"({exc.__class__.__name__})", file=sys.stderr)
        return 2
    what = "decided" if result.changed else "unchanged (already decided so)"
    print(f"{result.report_no} {result.status}: {what}; notifications {result.notifications}"
          + (f"; reason: {result.reason}" if result.reason else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
