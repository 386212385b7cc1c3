"""The hand-off inbox: read the transcript, take the conversation (Rasa pauses), reply on the
user's own channel through the outbox, close it (Rasa resumes)."""
from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from actions.records.clock import now_local
from actions.records.models import Handoff, OutboxMessage

from .. import push
from ..app import render
from ..audit import record
from ..rasa import RasaUnavailable
from ..keys import DB, RASA

routes = web.RouteTableDef()


@routes.get("/handoffs")
async def inbox(request: web.Request) -> web.Response:
    async with request.app[DB].session() as s:
        active = (await s.execute(select(Handoff).where(Handoff.status.in_(("open", "taken")))
                                  .order_by(Handoff.created_at, Handoff.id))).scalars().all()
        closed = (await s.execute(select(Handoff).where(Handoff.status == "closed")
                                  .order_by(Handoff.closed_at.desc(), Handoff.id.desc()).limit(20))).scalars().all()
    return render(request, "handoffs.html", active=active, closed=closed)


async def _handoff(s, request: web.Request, lock: bool = False) -> Handoff:
    try:
        handoff_id = int(request.match_info["handoff_id"])
    except ValueError:
        raise web.HTTPNotFound(text="没有这个转人工对话", content_type="text/plain") from None
    q = select(Handoff).where(Handoff.id == handoff_id)
    handoff = (await s.execute(q.with_for_update() if lock else q)).scalar_one_or_none()
    if handoff is None:
        raise web.HTTPNotFound(text="没有这个转人工对话", content_type="text/plain")
    return handoff


@routes.get("/handoffs/{handoff_id}")
async def conversation(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    async with request.app[DB].session() as s:
        handoff = await _handoff(s, request)
        replies = (await s.execute(select(OutboxMessage).where(
            OutboxMessage.event_kind == "staff_reply", OutboxMessage.event_key.like(f"reply:{handoff.id}:%"))
            .order_by(OutboxMessage.id))).scalars().all()
        window = await push.reply_window(s, handoff.channel, handoff.sender_id)
    transcript, transcript_error = [], ""
    try:
        transcript = await request.app[RASA].transcript(handoff.sender_id)
    except RasaUnavailable as exc:
        transcript_error = str(exc)
    return render(request, "handoff.html", status=status, handoff=handoff, replies=replies, window=window,
                  transcript=transcript, transcript_error=transcript_error, error=error)


@routes.post("/handoffs/{handoff_id}/take")
async def take(request: web.Request) -> web.Response:
    staff, db = request["staff"], request.app[DB]
    async with db.session() as s, s.begin():
        handoff = await _handoff(s, request, lock=True)
        if handoff.status != "open":
            return await conversation(request, error="该对话已被接管或已结束", status=409)
        try:  # pause first: the assistant must stop answering before staff start
            await request.app[RASA].event(handoff.sender_id, "pause")
        except RasaUnavailable as exc:
            return await conversation(request, error=f"无法暂停助手：{exc}", status=502)
        handoff.status, handoff.taken_by, handoff.taken_at = "taken", staff.username, now_local()
        await record(s, staff, "staff_take_handoff", str(handoff.id), handoff.person_id,
                     channel=handoff.channel, sender=handoff.sender_id)
    raise web.HTTPSeeOther(f"/handoffs/{handoff.id}")


@routes.post("/handoffs/{handoff_id}/reply")
async def reply(request: web.Request) -> web.Response:
    staff, form = request["staff"], await request.post()
    try:
        async with request.app[DB].session() as s, s.begin():
            handoff = await _handoff(s, request)
            key = await push.staff_reply(s, handoff.id, str(form.get("text", "")))
            await record(s, staff, "staff_reply_handoff", str(handoff.id), handoff.person_id,
                         channel=handoff.channel, event_key=key)
    except push.CannotSend as exc:
        return await conversation(request, error=str(exc), status=409)
    raise web.HTTPSeeOther(f"/handoffs/{handoff.id}")


@routes.post("/handoffs/{handoff_id}/close")
async def close(request: web.Request) -> web.Response:
    staff, db = request["staff"], request.app[DB]
    async with db.session() as s, s.begin():
        handoff = await _handoff(s, request, lock=True)
        if handoff.status == "closed":
            raise web.HTTPSeeOther(f"/handoffs/{handoff.id}")
        if handoff.status == "taken":
            try:
                await request.app[RASA].event(handoff.sender_id, "resume")
            except RasaUnavailable as exc:
                return await conversation(request, error=f"无法恢复助手：{exc}", status=502)
        handoff.status, handoff.closed_at = "closed", now_local()
        await record(s, staff, "staff_close_handoff", str(handoff.id), handoff.person_id, channel=handoff.channel)
    raise web.HTTPSeeOther(f"/handoffs/{handoff.id}")
