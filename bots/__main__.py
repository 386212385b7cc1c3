"""`python -m bots`: the push dispatcher, the daily reminder scan and the ingest HTTP server in
one process. SIGTERM (or Ctrl-C) stops it cleanly: sends in flight finish and are recorded,
claimed rows not yet sent are released for the next dispatcher."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import timedelta

from actions.records.clock import now_local
from actions.records.db import Database
from bots.config import BotConfigError, BotSettings

logger = logging.getLogger("bots")


def _optional(module: str, name: str):
    """An entry point of a module written alongside this one; None while it does not exist."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    except AttributeError:
        return None


async def reminders(settings: BotSettings, database: Database, stop: asyncio.Event) -> None:
    """Once a day at the reminder time (and at start if it has passed today): due_reminders writes
    the day's reminder rows; its unique keys make a second run, or a second dispatcher, harmless."""
    due_reminders = _optional("actions.records.outbox", "due_reminders")
    if due_reminders is None:
        logger.warning("reminders skipped: actions/records/outbox.py (due_reminders) is not there yet")
        return
    hour, minute = settings.reminder_time
    last = None
    while not stop.is_set():
        now = now_local()
        at = now.replace(hour=hour, minute=minute, second=0)
        if now >= at and last != now.date():
            try:
                async with database.session() as s, s.begin():
                    count = await due_reminders(s, now.date())
                logger.info("reminders for %s: %s", now.date(), count)
                last = now.date()
            except Exception:
                logger.exception("reminder scan failed; retrying in a minute")
        wake = at + timedelta(days=1) if now >= at else at
        try:
            await asyncio.wait_for(stop.wait(), min(60.0, max(1.0, (wake - now_local()).total_seconds())))
        except asyncio.TimeoutError:
            pass


async def ingest_server(settings: BotSettings, database: Database):
    make_ingest_app = _optional("bots.ingest", "make_ingest_app")
    if make_ingest_app is None:
        logger.warning("ingest server skipped: bots/ingest.py (make_ingest_app) is not there yet")
        return None
    if not settings.ingest_token:
        logger.warning("ingest server skipped: JJ_INGEST_TOKEN is not set")
        return None
    from aiohttp import web

    runner = web.AppRunner(make_ingest_app(database, settings.ingest_token), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.ingest_host, settings.ingest_port).start()
    logger.info("ingest API on http://%s:%s", settings.ingest_host, settings.ingest_port)
    return runner


async def main(settings: BotSettings) -> None:
    from bots.senders.factory import make_dispatcher

    database = Database(settings.database_url)
    dispatcher = make_dispatcher(settings, database)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = await ingest_server(settings, database)
    logger.info("dispatcher started: channels %s, lease %ss, batch %s, concurrency %s",
                ", ".join(dispatcher.senders) or "(none)", settings.policy.lease, settings.policy.batch,
                settings.policy.concurrency)
    try:
        await asyncio.gather(dispatcher.run(stop), reminders(settings, database, stop))
    finally:
        if runner is not None:
            await runner.cleanup()
        await dispatcher.close()
        await database.dispose()
        logger.info("dispatcher stopped: %s", dict(dispatcher.stats))


def run() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = BotSettings.from_env()
    except BotConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(run())
