"""Sign in and out."""
from __future__ import annotations

import secrets

from aiohttp import web

from actions.records import queries

from .. import auth
from ..app import render
from ..audit import record
from ..keys import DB, SETTINGS

routes = web.RouteTableDef()


def _login_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    # Keep a token the browser already holds: a second GET (the favicon's redirect, another tab)
    # must not invalidate the form already shown.
    held = request.cookies.get(auth.LOGIN_COOKIE, "")
    token = held if 20 <= len(held) <= 64 else secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, csrf=token, error=error)
    response.set_cookie(auth.LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/login",
                        secure=request.app[SETTINGS].secure_cookie, max_age=3600)
    return response


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    if not auth.same(form.get("_csrf"), request.cookies.get(auth.LOGIN_COOKIE)):
        return auth.refuse(request, 403, "CSRF 校验失败，请刷新页面后重试")
    username, password = str(form.get("username", "")).strip()[:64], str(form.get("password", ""))
    settings, db = request.app[SETTINGS], request.app[DB]
    token = await auth.sign_in(db, username, password, settings.session_minutes)
    async with db.session() as s, s.begin():
        await queries.audit(s, person_id=None, channel="console", sender_id=username or "-",
                            action="staff_login" if token else "staff_login_failed", subject=username[:32] or "-",
                            detail={"remote": request.remote})
    if token is None:
        return _login_page(request, "用户名或密码错误，或账号已停用", status=401)
    response = web.HTTPSeeOther("/reports")
    response.set_cookie(auth.COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=settings.secure_cookie, max_age=settings.session_minutes * 60)
    response.del_cookie(auth.LOGIN_COOKIE, path="/login")
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    staff = request["staff"]
    db = request.app[DB]
    async with db.session() as s, s.begin():
        await record(s, staff, "staff_logout", staff.username)
    await auth.sign_out(db, staff)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(auth.COOKIE, path="/")
    raise response


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/reports")
