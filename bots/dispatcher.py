"""The outbox dispatcher: claim due rows, send them concurrently, record each outcome.

Claiming. Several dispatchers share the table. On PostgreSQL one statement takes a batch:
UPDATE … SET claimed_until = now + lease WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED), so two
dispatchers never claim the same row and neither waits for the other. On SQLite the same UPDATE …
RETURNING is atomic because SQLite runs one writer at a time. Claims are committed before any send.
A dispatcher killed mid-batch leaves its claims to expire: after `lease` seconds the rows are due
again and another dispatcher (or this one, restarted) sends them.

Exactly once, and where it can still break. Rows the platform accepted are marked sent together:
one UPDATE … WHERE id IN (…) per group, written at most `settle_window` (25 ms) after the first
accept of the group, one group at a time (group commit; each send's task waits for its group's
commit, so `dispatch_channel` still returns with every row recorded). If the process dies between
the platform's accept and that commit — up to the window plus the commit, or a send's timeout when
the accept is lost on the way back — the rows of that group are sent again after the lease:
at-least-once, with duplicates only inside that window. Per-row commits made the window a few
milliseconds and one row wide; grouping makes it tens of milliseconds and up to rate × window rows
wide (about 25 at 1,000/s), in exchange for one commit per group instead of one per row. SIGTERM
is not such a death: the pending group is written before the process exits. Failures, retries,
holds and fallbacks are rare and keep their own transaction per row.
The lease must outlast the slowest send and its recording, or a second dispatcher would claim a
row still being sent: the deadline is taken before the claim (so it is never later than the
row's claimed_until), no send is started with less than `send_timeout` + `settle_window` of it
left (the row is released instead), and every client has its own timeout below `send_timeout`.
Pipelining: `run` claims the next batch while the current one is still sending (two batches at
most per channel, sharing one concurrency limit), and sizes a batch so both start within half
a lease at the channel's rate. Idempotency keys narrow the window further where a platform has
them: e-mail carries a Message-ID per outbox row, so mail systems can drop the re-sent copy;
WeChat, Weibo, Telegram and the SMS gateways take none.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from sqlalchemy import DateTime, bindparam, select, text, update

from actions.records import queries
from actions.records.clock import now_local
from actions.records.db import Database
from actions.records.models import ChannelIdentity, OutboxMessage, Person, Subscription
from bots.ratelimit import TokenBucket
from bots.senders.result import DELIVERED, TRANSIENT, Notification, Outcome, Sender

logger = logging.getLogger(__name__)

# Which subscription's quiet hours govern an event.
ALERT_KINDS = {"violation": "violation", "violation_owner": "violation", "inspection_due": "inspection",
               "licence_expiring": "licence", "points_high": "licence", "report_decided": "report"}

_CLAIM = """
UPDATE outbox SET claimed_until = :until
WHERE id IN (
    SELECT id FROM outbox
    WHERE status = 'pending' AND channel = :channel AND next_attempt_at <= :now
      AND (claimed_until IS NULL OR claimed_until < :now)
    ORDER BY next_attempt_at, id
    LIMIT :limit{lock}
)
RETURNING id, event_kind, event_key, person_id, channel, payload, attempts
"""


@dataclass(frozen=True)
class Policy:
    lease: float = 60.0          # seconds a claim lasts
    max_attempts: int = 8        # transient failures before giving up
    batch: int = 500             # rows claimed at once per channel
    concurrency: int = 100       # sends in flight per channel
    backoff_base: float = 5.0
    backoff_max: float = 3600.0
    poll: float = 1.0            # idle wait between claims
    send_timeout: float = 20.0   # longest a send may take; below the lease
    settle_window: float = 0.025  # delivered rows are marked sent together, this long after the first
    settle_max: int = 500        # rows per mark-sent statement

    def backoff(self, attempts: int, retry_after: Optional[float] = None) -> float:
        """Exponential, capped, with jitter (half to full) so retries of one burst spread out."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts - 1))
        delay *= 0.5 + random.random() / 2
        return max(delay, retry_after or 0.0)


def quiet_until(now: datetime, start: Optional[str], end: Optional[str]) -> Optional[datetime]:
    """When the quiet window [start, end) containing `now` ends, or None outside it. Windows may
    span midnight (22:00-08:00)."""
    if not start or not end or start == end:
        return None
    try:
        sh, sm = map(int, start.split(":"))
        eh, em = map(int, end.split(":"))
    except ValueError:
        return None
    s, e = now.replace(hour=sh, minute=sm, second=0), now.replace(hour=eh, minute=em, second=0)
    if s < e:
        return e if s <= now < e else None
    if now >= s:
        return e + timedelta(days=1)
    return e if now < e else None


class Dispatcher:
    def __init__(self, database: Database, senders: Mapping[str, Sender], policy: Policy = Policy(),
                 limits: Optional[Mapping[str, TokenBucket]] = None,
                 clock: Callable[[], datetime] = now_local) -> None:
        self.database, self.senders, self.policy = database, dict(senders), policy
        self.limits = dict(limits or {})
        self.clock = clock
        self.stats: Counter = Counter()
        self._stopping = False
        # Group commit of delivered (and released) rows: see the module's docstring.
        self._group: List[Tuple[str, int, int]] = []   # (kind, id, attempts after this send)
        self._group_done: Optional[asyncio.Future] = None
        self._writer: Optional[asyncio.Task] = None

    # -- claiming ------------------------------------------------------------------------------

    async def claim(self, channel: str, limit: int) -> List[Notification]:
        now = self.clock()
        lock = " FOR UPDATE SKIP LOCKED" if self.database.dialect == "postgresql" else ""
        # Typed binds: SQLite compares datetimes as text, in SQLAlchemy's stored format.
        stmt = text(_CLAIM.format(lock=lock)).bindparams(
            bindparam("now", type_=DateTime()), bindparam("until", type_=DateTime())).columns(
            OutboxMessage.id, OutboxMessage.event_kind, OutboxMessage.event_key, OutboxMessage.person_id,
            OutboxMessage.channel, OutboxMessage.payload, OutboxMessage.attempts)
        async with self.database.session() as s, s.begin():
            rows = (await s.execute(stmt, {"until": now + timedelta(seconds=self.policy.lease), "now": now,
                                           "channel": channel, "limit": limit})).all()
        return [Notification(r.id, r.event_kind, r.event_key, r.person_id, r.channel, dict(r.payload or {}),
                             r.attempts) for r in sorted(rows, key=lambda r: r.id)]

    def _claim_size(self, channel: str) -> int:
        # `run` keeps up to two batches in flight: both together are no more than the rate limit
        # lets out in half a lease, so every claimed row starts in time.
        bucket = self.limits.get(channel)
        if bucket is None:
            return self.policy.batch
        return max(1, min(self.policy.batch, int(bucket.rate * self.policy.lease / 4)))

    # -- one round -----------------------------------------------------------------------------

    async def dispatch_channel(self, channel: str, semaphore: Optional[asyncio.Semaphore] = None) -> int:
        """Claim one batch of this channel's due rows and settle every one. Returns how many."""
        started = await self._start_batch(channel, semaphore or asyncio.Semaphore(self.policy.concurrency))
        if started is None:
            return 0
        n, sends = started
        await sends
        return n

    async def _start_batch(self, channel: str, semaphore: asyncio.Semaphore):
        """Claim and screen one batch; None if nothing was due, else (rows claimed, a future that
        ends when every row of the batch is settled and recorded)."""
        # Taken before the claim, so never later than the claimed_until the database records.
        deadline = time.monotonic() + self.policy.lease
        notes = await self.claim(channel, self._claim_size(channel))
        if not notes:
            return None
        ready = await self._screen(channel, notes)
        return len(notes), asyncio.gather(*(self._send_one(n, deadline, semaphore) for n in ready))

    async def dispatch_once(self) -> int:
        counts = await asyncio.gather(*(self.dispatch_channel(c) for c in self.senders))
        return sum(counts)

    async def _screen(self, channel: str, notes: List[Notification]) -> List[Notification]:
        """Settle rows that must not go out now: to a blocked or opted-out identity (permanent,
        falling back for WeChat), or SMS inside the person's quiet hours (held until it ends)."""
        now = self.clock()
        async with self.database.session() as s:
            blocked = set((await s.execute(select(ChannelIdentity.external_id).where(
                ChannelIdentity.channel == channel, ChannelIdentity.blocked.is_(True),
                ChannelIdentity.external_id.in_({n.to for n in notes})))).scalars())
            quiet: Dict[int, List[Tuple[str, str, str, str]]] = {}
            if channel == "sms":
                rows = await s.execute(select(Subscription.person_id, Subscription.alert_kind, Subscription.channel,
                                              Subscription.quiet_start, Subscription.quiet_end).where(
                    Subscription.person_id.in_({n.person_id for n in notes}),
                    Subscription.quiet_start.is_not(None), Subscription.quiet_end.is_not(None)))
                for r in rows:
                    quiet.setdefault(r.person_id, []).append((r.alert_kind, r.channel, r.quiet_start, r.quiet_end))
        ready = []
        for note in notes:
            if note.to in blocked:
                reason = "unsubscribed (SMS opt-out)" if channel == "sms" else "recipient blocked us"
                await self._settle(note, Outcome.permanent("blocked", reason, blocked=True))
                continue
            until = self._quiet_end(now, note, quiet.get(note.person_id, []))
            if until is not None:
                await self._hold(note, until)
                continue
            ready.append(note)
        return ready

    @staticmethod
    def _quiet_end(now: datetime, note: Notification, windows) -> Optional[datetime]:
        kind = ALERT_KINDS.get(note.event_kind)
        # The SMS subscription's window for this alert, else another of the person's windows for
        # it, else any window the person set (a fallback or owner SMS has no subscription).
        ranked = sorted(windows, key=lambda w: (w[0] != kind, w[1] != "sms"))
        return quiet_until(now, ranked[0][2], ranked[0][3]) if ranked else None

    async def _send_one(self, note: Notification, deadline: float, semaphore: asyncio.Semaphore) -> None:
        async with semaphore:
            bucket = self.limits.get(note.channel)
            if bucket is not None:
                await bucket.acquire()
            # The send and the recording of its outcome must both end inside the lease.
            if self._stopping or deadline - time.monotonic() < self.policy.send_timeout + self.policy.settle_window:
                outcome = None
            else:
                try:
                    outcome = await asyncio.wait_for(self.senders[note.channel].send(note), self.policy.send_timeout)
                except asyncio.TimeoutError:
                    outcome = Outcome.transient("timeout", f"no answer within {self.policy.send_timeout}s")
                except Exception as exc:  # a bug or an unexpected library error: keep the row, retry later
                    logger.exception("push %s: sender raised", note.id)
                    outcome = Outcome.transient("error", f"{exc.__class__.__name__}: {exc}")
        # Recorded outside the concurrency limit: the next send need not wait for this commit.
        if outcome is None:
            await self._release(note)  # not sent: let any dispatcher take it at once
        else:
            await self._settle(note, outcome)

    # -- recording outcomes --------------------------------------------------------------------

    async def _settle(self, note: Notification, outcome: Outcome) -> None:
        if outcome.kind == DELIVERED:
            await self._grouped("sent", note.id, note.attempts + 1)
            self.stats[DELIVERED] += 1
            return
        now = self.clock()
        where = OutboxMessage.id == note.id
        attempts = note.attempts + 1
        if outcome.kind == TRANSIENT and attempts < self.policy.max_attempts:
            delay = self.policy.backoff(attempts, outcome.retry_after)
            values = dict(attempts=attempts, claimed_until=None, last_error=outcome.error[:1000],
                          next_attempt_at=now + timedelta(seconds=max(1, round(delay))))
        else:
            error = outcome.error if outcome.kind != TRANSIENT else f"gave up after {attempts} attempts: {outcome.error}"
            values = dict(status="failed", attempts=attempts, claimed_until=None, last_error=error[:1000])
        if not (outcome.blocked and note.channel == "wechat"):
            # The common case on a bare connection: one short transaction, no ORM session.
            async with self.database.engine.begin() as conn:
                await conn.execute(update(OutboxMessage.__table__).where(where).values(**values))
        else:
            async with self.database.session() as s, s.begin():
                await s.execute(update(OutboxMessage).where(where).values(**values)
                                .execution_options(synchronize_session=False))
                await queries.mark_identity_blocked(s, "wechat", note.to)
                await self._fall_back_to_sms(s, note, now)
        self.stats[outcome.kind] += 1
        if outcome.kind != DELIVERED:
            logger.info("push %s (%s %s): %s %s", note.id, note.channel, note.event_key, outcome.kind, outcome.error)

    async def _fall_back_to_sms(self, s, note: Notification, now: datetime) -> None:
        """The same event by SMS, if the person gave a number, consented and has not opted out.
        The outbox's unique key makes a second fallback for the same event a no-op."""
        person = await s.get(Person, note.person_id)
        if person is None or not person.phone or not person.sms_consent:
            return
        if await queries.sms_opted_out(s, person.phone):
            return
        payload = {**note.payload, "to": person.phone}
        await s.execute(_insert_ignore(self.database.dialect).values(
            event_kind=note.event_kind, event_key=note.event_key, person_id=note.person_id, channel="sms",
            payload=payload, status="pending", attempts=0, next_attempt_at=now, created_at=now))
        self.stats["fallback"] += 1

    async def _hold(self, note: Notification, until: datetime) -> None:
        async with self.database.session() as s, s.begin():
            await s.execute(update(OutboxMessage).where(OutboxMessage.id == note.id).values(
                next_attempt_at=until, claimed_until=None, last_error=f"quiet hours until {until:%H:%M}")
                .execution_options(synchronize_session=False))
        self.stats["held"] += 1

    async def _release(self, note: Notification) -> None:
        await self._grouped("release", note.id, note.attempts)
        self.stats["released"] += 1

    # -- group commit ----------------------------------------------------------------------------

    async def _grouped(self, kind: str, row_id: int, attempts: int) -> None:
        """Add a row to the group being gathered and wait until the group is committed."""
        if self._group_done is None:
            self._group_done = asyncio.get_running_loop().create_future()
        done = self._group_done
        self._group.append((kind, row_id, attempts))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_groups())
        await asyncio.shield(done)

    async def _write_groups(self) -> None:
        """One group at a time: wait `settle_window` for the group to fill, write it, repeat while
        rows arrived meanwhile. A failed write is retried twice (the rows stay claimed meanwhile;
        if it still fails they are sent again after the lease)."""
        while self._group:
            await asyncio.sleep(self.policy.settle_window)
            group, done = self._group, self._group_done
            self._group, self._group_done = [], None
            for attempt in range(3):
                try:
                    await self._write_group(group)
                except Exception as exc:
                    if attempt == 2:
                        logger.exception("push: recording %s outcomes failed", len(group))
                        if not done.done():
                            done.set_exception(exc)
                        break
                    await asyncio.sleep(0.2 * (attempt + 1))
                else:
                    if not done.done():
                        done.set_result(None)
                    break

    async def _write_group(self, group: List[Tuple[str, int, int]]) -> None:
        table = OutboxMessage.__table__
        now = self.clock()
        sent: Dict[int, List[int]] = {}
        released: List[int] = []
        for kind, row_id, attempts in group:
            if kind == "sent":
                sent.setdefault(attempts, []).append(row_id)
            else:
                released.append(row_id)
        step = max(1, self.policy.settle_max)
        async with self.database.engine.begin() as conn:
            for attempts, ids in sent.items():
                for i in range(0, len(ids), step):
                    await conn.execute(update(table).where(table.c.id.in_(ids[i:i + step])).values(
                        status="sent", sent_at=now, attempts=attempts, claimed_until=None, last_error=None))
            for i in range(0, len(released), step):
                await conn.execute(update(table).where(table.c.id.in_(released[i:i + step])).values(
                    claimed_until=None))

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """One loop per channel, so a slow or rate-limited channel never holds up the others.
        When `stop` is set, sends in flight finish and unstarted claims are released."""
        async def channel_loop(channel: str) -> None:
            # The next batch is claimed while the current one is still sending: at most two in
            # flight, sharing one concurrency limit, so the sends never wait for a claim.
            semaphore = asyncio.Semaphore(self.policy.concurrency)
            batches: set = set()
            try:
                while not stop.is_set():
                    if len(batches) >= 2:
                        _, batches = await asyncio.wait(batches, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    try:
                        started = await self._start_batch(channel, semaphore)
                    except Exception:
                        logger.exception("push: %s claim failed", channel)
                        started = None
                    if started is not None:
                        batches.add(asyncio.ensure_future(self._logged(channel, started[1])))
                        continue
                    # Nothing due: wait for the poll interval (or a batch ending, or the stop).
                    waiter = asyncio.ensure_future(stop.wait())
                    try:
                        done, _ = await asyncio.wait({waiter, *batches}, timeout=self.policy.poll,
                                                     return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    batches -= done
            finally:
                if batches:
                    await asyncio.gather(*batches, return_exceptions=True)

        async def watch() -> None:
            await stop.wait()
            self._stopping = True

        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.gather(*(channel_loop(c) for c in self.senders))
        finally:
            watcher.cancel()

    @staticmethod
    async def _logged(channel: str, sends) -> None:
        try:
            await sends
        except Exception:
            logger.exception("push: %s round failed", channel)

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            await self._writer
        for sender in self.senders.values():
            await sender.close()


def _insert_ignore(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(OutboxMessage).on_conflict_do_nothing(index_elements=["event_key", "person_id", "channel"])
