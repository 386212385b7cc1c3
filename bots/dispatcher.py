"""The outbox dispatcher: claim due rows, send them concurrently, record each outcome.

Claiming. Several dispatchers share the table. On PostgreSQL one statement takes a batch:
UPDATE … SET claimed_until = now + lease WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED), so two
dispatchers never claim the same row and neither waits for the other. On SQLite the same UPDATE …
RETURNING is atomic because SQLite runs one writer at a time. Claims are committed before any send.
A dispatcher killed mid-batch leaves its claims to expire: after `lease` seconds the rows are due
again and another dispatcher (or this one, restarted) sends them.

Exactly once, and where it can still break. A row is marked sent in its own short transaction
right after the platform accepted it. If the process dies in the window between the platform's
accept and that commit (milliseconds, or a send's timeout when the accept is lost on the way
back), the row is sent again after the lease: at-least-once, with a duplicate only inside that
window. The lease must outlast the slowest send, or a second dispatcher would claim a row still
being sent: no send is started with less than `send_timeout` of its lease left (the row is
released instead), and every client has its own timeout below that. Idempotency keys narrow the
window further where a platform has them: e-mail carries a Message-ID per outbox row, so mail
systems can drop the re-sent copy; WeChat, Weibo, Telegram and the SMS gateways take none.
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
        # No more than the rate limit lets out in half a lease, so every claimed row starts in time.
        bucket = self.limits.get(channel)
        if bucket is None:
            return self.policy.batch
        return max(1, min(self.policy.batch, int(bucket.rate * self.policy.lease / 2)))

    # -- one round -----------------------------------------------------------------------------

    async def dispatch_channel(self, channel: str) -> int:
        """Claim one batch of this channel's due rows and settle every one. Returns how many."""
        notes = await self.claim(channel, self._claim_size(channel))
        if not notes:
            return 0
        deadline = time.monotonic() + self.policy.lease
        ready = await self._screen(channel, notes)
        semaphore = asyncio.Semaphore(self.policy.concurrency)
        await asyncio.gather(*(self._send_one(n, deadline, semaphore) for n in ready))
        return len(notes)

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
            if self._stopping or deadline - time.monotonic() < self.policy.send_timeout:
                await self._release(note)  # not sent: let any dispatcher take it at once
                return
            try:
                outcome = await asyncio.wait_for(self.senders[note.channel].send(note), self.policy.send_timeout)
            except asyncio.TimeoutError:
                outcome = Outcome.transient("timeout", f"no answer within {self.policy.send_timeout}s")
            except Exception as exc:  # a bug or an unexpected library error: keep the row, retry later
                logger.exception("push %s: sender raised", note.id)
                outcome = Outcome.transient("error", f"{exc.__class__.__name__}: {exc}")
            await self._settle(note, outcome)

    # -- recording outcomes --------------------------------------------------------------------

    async def _settle(self, note: Notification, outcome: Outcome) -> None:
        now = self.clock()
        where = OutboxMessage.id == note.id
        attempts = note.attempts + 1
        if outcome.kind == DELIVERED:
            values = dict(status="sent", sent_at=now, attempts=attempts, claimed_until=None, last_error=None)
        elif outcome.kind == TRANSIENT and attempts < self.policy.max_attempts:
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
        async with self.database.session() as s, s.begin():
            await s.execute(update(OutboxMessage).where(OutboxMessage.id == note.id).values(claimed_until=None)
                            .execution_options(synchronize_session=False))
        self.stats["released"] += 1

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """One loop per channel, so a slow or rate-limited channel never holds up the others.
        When `stop` is set, sends in flight finish and unstarted claims are released."""
        async def channel_loop(channel: str) -> None:
            while not stop.is_set():
                try:
                    n = await self.dispatch_channel(channel)
                except Exception:
                    logger.exception("push: %s round failed", channel)
                    n = 0
                if n == 0:
                    try:
                        await asyncio.wait_for(stop.wait(), self.policy.poll)
                    except asyncio.TimeoutError:
                        pass

        async def watch() -> None:
            await stop.wait()
            self._stopping = True

        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.gather(*(channel_loop(c) for c in self.senders))
        finally:
            watcher.cancel()

    async def close(self) -> None:
        for sender in self.senders.values():
            await sender.close()


def _insert_ignore(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(OutboxMessage).on_conflict_do_nothing(index_elements=["event_key", "person_id", "channel"])
