"""Supervisors only: the audit log and the staff accounts."""
from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from actions.records.models import AuditEntry, StaffAccount

from .. import accounts
from ..app import render
from ..audit import record
from ..auth import require_role
from ..keys import DB

routes = web.RouteTableDef()


@routes.get("/audit")
async def audit_log(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    channel = request.query.get("channel", "console")
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(300)
    if channel != "all":
        q = q.where(AuditEntry.channel == channel)
    async with request.app[DB].session() as s:
        entries = (await s.execute(q)).scalars().all()
    return render(request, "audit.html", entries=entries, channel=channel)


@routes.get("/api/audit")
async def audit_json(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    async with request.app[DB].session() as s:
        entries = (await s.execute(select(AuditEntry).where(AuditEntry.channel == "console")
                                   .order_by(AuditEntry.id.desc()).limit(300))).scalars().all()
    return web.json_response([{"at": e.at.isoformat(), "sender_id": e.sender_id, "action": e.action,
                               "subject": e.subject, "detail": e.detail} for e in entries])


@routes.get("/accounts")
async def account_list(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    async with request.app[DB].session() as s:
        rows = (await s.execute(select(StaffAccount).order_by(StaffAccount.username))).scalars().all()
    return render(request, "accounts.html", accounts=rows)


@routes.post("/accounts/{username}/disable")
async def disable(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    staff, username = request["staff"], request.match_info["username"]
    if username == staff.username:
        raise web.HTTPConflict(text="不能停用自己的账号", content_type="text/plain")
    if not await accounts.set_disabled(request.app[DB], username):
        raise web.HTTPNotFound(text="没有这个账号", content_type="text/plain")
    async with request.app[DB].session() as s, s.begin():
        await record(s, staff, "staff_disable_account", username)
    raise web.HTTPSeeOther("/accounts")
