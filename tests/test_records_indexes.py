"""The violation and licence lookups read indexes, not whole tables: the plans of the SQL the
project's own query functions emit (through bench/records_lookup.py's helpers), on SQLite and
PostgreSQL. At a million violations a full scan is the difference between 1 ms and a second."""
import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import text

from actions.records.db import Database, make_sync_engine
from actions.records.demo import FIXTURES, LICENCE_FIXTURES

_spec = importlib.util.spec_from_file_location(
    "records_lookup", Path(__file__).resolve().parents[1] / "bench" / "records_lookup.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

PLATE = FIXTURES[0].plate  # has unprocessed violations in the demo records
LICENCE = LICENCE_FIXTURES[0].licence_no


async def plans(url: str) -> dict[str, dict[str, str]]:
    db = Database(url)
    try:
        # On a few hundred rows PostgreSQL rightly prefers reading a table whole; with sequential
        # scans priced out it still takes one when no index fits, which is what this test is after.
        found = await bench.lookup_plans(db, PLATE, LICENCE, forbid_seqscan=True)
    finally:
        await db.dispose()
    return {name: bench.table_access(plan) for name, (_, plan) in found.items()}


async def test_lookups_read_indexes(seeded_url):
    access = await plans(seeded_url)
    assert access["vehicle_by_plate"]["vehicles"] != "FULL SCAN", access
    assert not access["unprocessed_violations"]["violations"].startswith("FULL SCAN"), access
    assert access["unprocessed_violations"]["violations"] == "ix_violations_vehicle_status", access
    assert not access["licence_by_number"]["licences"].startswith("FULL SCAN"), access


async def test_a_dropped_index_shows_as_a_full_scan(seeded_url):
    """The check above would notice: without its index the violations query scans the table."""
    engine = make_sync_engine(seeded_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_violations_vehicle_status"))
        try:
            access = await plans(seeded_url)
        finally:
            with engine.begin() as conn:
                conn.execute(text("CREATE INDEX ix_violations_vehicle_status ON violations (vehicle_id, status)"))
    finally:
        engine.dispose()
    assert access["unprocessed_violations"]["violations"].startswith("FULL SCAN"), access


@pytest.mark.parametrize("plan, expected", [
    (["SEARCH vehicles USING INDEX sqlite_autoindex_vehicles_1 (plate=?)"],
     {"vehicles": "sqlite_autoindex_vehicles_1"}),
    (["SCAN violations", "SEARCH violation_codes USING INDEX sqlite_autoindex_violation_codes_1 (code=?)"],
     {"violations": "FULL SCAN", "violation_codes": "sqlite_autoindex_violation_codes_1"}),
    (["SCAN violations USING INDEX ix_violations_vehicle_status"],
     {"violations": "FULL SCAN (of index ix_violations_vehicle_status)"}),
    (["Sort  (cost=1..2)", "  ->  Nested Loop", "        ->  Bitmap Heap Scan on violations  (cost=4..8)",
      "              ->  Bitmap Index Scan on ix_violations_vehicle_status  (cost=0..4)",
      "        ->  Index Scan using violation_codes_pkey on violation_codes  (cost=0..1)"],
     {"violations": "ix_violations_vehicle_status", "violation_codes": "violation_codes_pkey"}),
    (["Seq Scan on vehicles  (cost=0.00..9.00 rows=1 width=105)"], {"vehicles": "FULL SCAN"}),
])
def test_table_access_reads_both_plan_dialects(plan, expected):
    assert bench.table_access(plan) == expected
