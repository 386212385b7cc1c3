"""Sign-in, sessions, CSRF and roles.

A session is a random token in an HttpOnly, SameSite=Strict cookie; the database keeps only its
SHA-256, the account and a CSRF token, and the session ends at `expires_at` (absolute, not
sliding). Every unsafe request must carry the session's CSRF token (form field `_csrf` or header
X-CSRF-Token). The sign-in form, before any session exists, uses a double-submit cookie.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from aiohttp import web
from sqlalchemy import delete, select

from actions.records.clock import now_local
from actions.records.models import StaffAccount, StaffSession

from . import passwords
from .keys import DB

COOKIE = "jj_console_session"
LOGIN_COOKIE = "jj_console_login"
PUBLIC = {("GET", "/login"), ("POST", "/login")}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ROLES = ("reviewer", "supervisor")


@dataclass(frozen=True)
class Staff:
    account_id: int
    username: str
    role: str
    csrf: str
    session_id: int

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def sign_in(db, username: str, password: str, minutes: int) -> Optional[str]:
    """A new session's token, or None for a wrong name or password or a disabled account."""
    async with db.session() as s, s.begin():
        account = (await s.execute(select(StaffAccount).where(StaffAccount.username == username))
                   ).scalar_one_or_none()
        ok = passwords.verify(account.password_hash if account else None, password)
        if not ok or account is None or account.disabled:
            return None
        if passwords.needs_rehash(account.password_hash):
            account.password_hash = passwords.hash_password(password)
        now = now_local()
        await s.execute(delete(StaffSession).where(StaffSession.expires_at < now))  # tidy up
        token = secrets.token_urlsafe(32)
        s.add(StaffSession(token_hash=token_hash(token), account_id=account.id,
                           csrf_token=secrets.token_urlsafe(32), expires_at=now + timedelta(minutes=minutes),
                           created_at=now))
        return token


async def current_staff(db, token: Optional[str]) -> Optional[Staff]:
    if not token or len(token) > 100:
        return None
    async with db.session() as s:
        row = (await s.execute(
            select(StaffSession.id, StaffSession.csrf_token, StaffAccount.id, StaffAccount.username,
                   StaffAccount.role)
            .join(StaffAccount, StaffAccount.id == StaffSession.account_id)
            .where(StaffSession.token_hash == token_hash(token), StaffSession.expires_at > now_local(),
                   StaffAccount.disabled.is_(False)))).first()
    if row is None:
        return None
    session_id, csrf, account_id, username, role = row
    return Staff(account_id, username, role, csrf, session_id)


async def sign_out(db, staff: Staff) -> None:
    async with db.session() as s, s.begin():
        await s.execute(delete(StaffSession).where(StaffSession.id == staff.session_id))


def same(a: Optional[str], b: Optional[str]) -> bool:
    # As bytes: compare_digest refuses non-ASCII text with a TypeError (a 500, not a refusal).
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    if is_api(request):
        return web.json_response({"error": message}, status=status)
    return web.Response(status=status, text=message, content_type="text/plain", charset="utf-8")


@web.middleware
async def session_middleware(request: web.Request, handler):
    if (request.method, request.path) in PUBLIC:
        return await handler(request)
    staff = await current_staff(request.app[DB], request.cookies.get(COOKIE))
    if staff is None:
        if is_api(request) or request.method not in SAFE_METHODS:
            return refuse(request, 401, "未登录或登录已过期")
        raise web.HTTPSeeOther("/login")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            sent = (await request.post()).get("_csrf")
        if not same(sent, staff.csrf):
            return refuse(request, 403, "CSRF 校验失败，请刷新页面后重试")
    request["staff"] = staff
    return await handler(request)


@web.middleware
async def headers_middleware(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        if response.status >= 400:  # errors of our own go through as they are
            raise
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    # No scripts at all; photos may come from the platforms' media hosts.
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https: http:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    if isinstance(response, web.HTTPException):
        raise response
    return response


def require_role(request: web.Request, role: str) -> None:
    """Supervisors may do everything a reviewer may; only they may do supervisor things."""
    staff: Staff = request["staff"]
    if role == "supervisor" and not staff.is_supervisor:
        raise web.HTTPForbidden(text="需要督察（supervisor）权限", content_type="text/plain")
