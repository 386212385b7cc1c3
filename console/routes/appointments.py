"""Remote-processing appointments: a week of slots as a calendar; confirm or move (pushed)."""
from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import select, update

from actions.records.clock import now_local
from actions.records.models import Appointment, AppointmentSlot

from .. import push
from ..app import render
from ..audit import record
from ..keys import DB

routes = web.RouteTableDef()
DAYS = 7


@routes.get("/appointments")
async def calendar(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    start = datetime.combine(now_local().date(), datetime.min.time())
    async with request.app[DB].session() as s:
        slots = (await s.execute(select(AppointmentSlot).where(
            AppointmentSlot.starts_at >= start, AppointmentSlot.starts_at < start + timedelta(days=DAYS + 7))
            .order_by(AppointmentSlot.starts_at, AppointmentSlot.kind))).scalars().all()
        rows = (await s.execute(select(Appointment, AppointmentSlot).join(
            AppointmentSlot, AppointmentSlot.id == Appointment.slot_id).where(
            AppointmentSlot.starts_at >= start, Appointment.status.in_(("booked", "confirmed")))
            .order_by(AppointmentSlot.starts_at, Appointment.id))).all()
    days = sorted({sl.starts_at.date() for sl in slots})[:DAYS]
    times = sorted({sl.starts_at.strftime("%H:%M") for sl in slots})
    grid = {(sl.starts_at.date(), sl.starts_at.strftime("%H:%M"), sl.kind): sl for sl in slots}
    by_slot: dict[int, list] = {}
    for a, sl in rows:
        by_slot.setdefault(sl.id, []).append(a)
    free = [sl for sl in slots if sl.booked < sl.capacity and sl.starts_at > now_local()]
    return render(request, "appointments.html", status=status, days=days, times=times, grid=grid,
                  by_slot=by_slot, rows=rows, free=free, error=error, done=request.query.get("done", ""))


async def _appointment(s, number: str) -> Appointment:
    a = (await s.execute(select(Appointment).where(Appointment.appointment_no == number).with_for_update())
         ).scalar_one_or_none()
    if a is None:
        raise web.HTTPNotFound(text="没有这个预约", content_type="text/plain")
    return a


@routes.post("/appointments/{number}/confirm")
async def confirm(request: web.Request) -> web.Response:
    staff = request["staff"]
    async with request.app[DB].session() as s, s.begin():
        a = await _appointment(s, request.match_info["number"])
        if a.status != "booked":
            return await calendar(request, error="该预约已确认或已取消", status=409)
        slot = await s.get(AppointmentSlot, a.slot_id)
        a.status = "confirmed"
        channel = await push.appointment_changed(s, a, slot, "confirmed")
        await record(s, staff, "staff_confirm_appointment", a.appointment_no, a.person_id, notified=channel)
    raise web.HTTPSeeOther("/appointments?done=confirmed")


@routes.post("/appointments/{number}/move")
async def move(request: web.Request) -> web.Response:
    staff, form = request["staff"], await request.post()
    try:
        slot_id = int(form.get("slot_id", ""))
    except ValueError:
        return await calendar(request, error="请选择新的时段", status=400)
    async with request.app[DB].session() as s, s.begin():
        a = await _appointment(s, request.match_info["number"])
        if a.status not in ("booked", "confirmed") or a.slot_id == slot_id:
            return await calendar(request, error="该预约不能改到这个时段", status=409)
        # Take a place in the new slot atomically, then give the old one back.
        taken = await s.execute(update(AppointmentSlot).where(
            AppointmentSlot.id == slot_id, AppointmentSlot.kind == a.kind, AppointmentSlot.starts_at > now_local(),
            AppointmentSlot.booked < AppointmentSlot.capacity).values(booked=AppointmentSlot.booked + 1))
        if taken.rowcount != 1:
            return await calendar(request, error="该时段已满或不可预约", status=409)
        await s.execute(update(AppointmentSlot).where(AppointmentSlot.id == a.slot_id, AppointmentSlot.booked > 0)
                        .values(booked=AppointmentSlot.booked - 1))
        old = a.slot_id
        a.slot_id, a.status = slot_id, "confirmed"
        slot = await s.get(AppointmentSlot, slot_id)
        channel = await push.appointment_changed(s, a, slot, "moved")
        await record(s, staff, "staff_move_appointment", a.appointment_no, a.person_id, from_slot=old,
                     to_slot=slot_id, notified=channel)
    raise web.HTTPSeeOther("/appointments?done=moved")
