"""The review queue: a report's evidence, its reporter's record, duplicates nearby, and the decision."""
from __future__ import annotations

import math
from datetime import timedelta

from aiohttp import web
from sqlalchemy import func, select

from actions.records import outbox, queries
from actions.records.models import Report, ReportMedia

from ..app import render
from ..audit import record
from ..keys import DB

routes = web.RouteTableDef()
QUEUE = ("received", "dispatched")   # still waiting for staff
NEARBY_METRES = 300
NEARBY_DAYS = 7
ACTIONS = {"accepted": "staff_accept_report", "rejected": "staff_reject_report",
           "dispatched": "staff_dispatch_report", "fixed": "staff_fix_report"}


def _metres(a: Report, b: Report) -> float | None:
    try:
        la1, lo1, la2, lo2 = map(float, (a.latitude, a.longitude, b.latitude, b.longitude))
    except (TypeError, ValueError):
        return None
    # Equirectangular: exact enough for a few hundred metres.
    x = math.radians(lo2 - lo1) * math.cos(math.radians((la1 + la2) / 2))
    return 6_371_000 * math.hypot(x, math.radians(la2 - la1))


@routes.get("/reports")
async def queue(request: web.Request) -> web.Response:
    status = request.query.get("status", "queue")
    async with request.app[DB].session() as s:
        q = select(Report).order_by(Report.created_at, Report.id).limit(200)
        q = q.where(Report.status.in_(QUEUE)) if status == "queue" else q.where(Report.status == status)
        reports = (await s.execute(q)).scalars().all()
        counts = dict((await s.execute(select(Report.status, func.count()).group_by(Report.status))).all())
    return render(request, "reports.html", reports=reports, counts=counts)


async def _load(s, report_no: str):
    report = (await s.execute(select(Report).where(Report.report_no == report_no))).scalar_one_or_none()
    if report is None:
        raise web.HTTPNotFound(text="没有这个举报", content_type="text/plain")
    media = (await s.execute(select(ReportMedia).where(ReportMedia.report_id == report.id)
                             .order_by(ReportMedia.id))).scalars().all()
    history = await queries.report_stats(s, report.person_id)
    window = timedelta(days=NEARBY_DAYS)
    candidates = (await s.execute(select(Report).where(
        Report.kind == report.kind, Report.id != report.id, Report.created_at >= report.created_at - window,
        Report.created_at <= report.created_at + window).limit(500))).scalars().all()
    nearby = []
    for other in candidates:
        metres = _metres(report, other)
        same_place = report.location and other.location == report.location
        same_plate = report.plate and other.plate == report.plate
        if (metres is not None and metres <= NEARBY_METRES) or same_place or same_plate:
            nearby.append((other, metres))
    return report, media, history, nearby


@routes.get("/reports/{report_no}")
async def detail(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    async with request.app[DB].session() as s:
        report, media, history, nearby = await _load(s, request.match_info["report_no"])
    return render(request, "report.html", status=status, report=report, media=media, history=history,
                  nearby=nearby, reasons=outbox.REJECT_REASONS, error=error,
                  done=request.query.get("done", ""))


@routes.post("/reports/{report_no}/decide")
async def decide(request: web.Request) -> web.Response:
    form = await request.post()
    report_no, staff = request.match_info["report_no"], request["staff"]
    status = str(form.get("status", ""))
    # Free text wins over the list: staff chose to write their own reason.
    reason = str(form.get("reason_text", "")).strip() or str(form.get("reason", "")).strip() or None
    try:
        async with request.app[DB].session() as s, s.begin():
            decision = await outbox.decide_report(s, report_no, status, reason)
            if decision.changed:
                person_id = (await s.execute(select(Report.person_id).where(Report.report_no == report_no))).scalar()
                await record(s, staff, ACTIONS[status], report_no, person_id, status=status,
                             reason=decision.reason, notifications=decision.notifications)
    except outbox.DecisionError as exc:
        return await detail(request, error=exc.message, status=409 if exc.error != "unknown_report" else 404)
    raise web.HTTPSeeOther(f"/reports/{report_no}?done={status}")
