"""The ingest API: the department's systems post new violations, status changes and report
decisions; each request is one transaction with the notifications it causes (the outbox).

    POST /ingest/violations            JSON array, or JSON lines (Content-Type application/x-ndjson)
    POST /ingest/violation-status      the same, rows {record_no, status, decision_no, processed_at, paid_at}
    POST /reports/{report_no}/decision {"status": accepted|rejected|fixed, "reason": key or text}
    GET  /health                       no token: says only whether the database answers

Every other route needs `Authorization: Bearer <token>`; without it: 401 and nothing read or written.
Answers: a batch -> 200 {"accepted", "unchanged", "rejected": [row errors], "notifications"}, also
when rows were rejected (the row errors say which; a client checks `rejected`). Malformed JSON -> 400,
a body over the limit -> 413, a decision that cannot be made -> 422 (unknown report -> 404), the
database unreachable -> 503.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from actions.records import outbox
from actions.records.db import Database

log = logging.getLogger(__name__)

TOKEN_ENV = "JJ_INGEST_TOKEN"
MAX_BODY_ENV = "JJ_INGEST_MAX_BODY"
DEFAULT_MAX_BODY = 5 * 1024 * 1024
MIN_TOKEN = 16
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-seq")


class IngestConfigError(ValueError):
    pass


@dataclass(frozen=True)
class IngestSettings:
    token: str
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or len(self.token.strip()) < MIN_TOKEN:
            raise IngestConfigError(f"{TOKEN_ENV}: must be set to a secret of at least {MIN_TOKEN} characters")
        if not isinstance(self.max_body, int) or self.max_body < 1024:
            raise IngestConfigError(f"{MAX_BODY_ENV}: must be a number of bytes, at least 1024")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "IngestSettings":
        env = os.environ if env is None else env
        return cls(token=env.get(TOKEN_ENV, ""), max_body=max_body_from_env(env))


def max_body_from_env(env: Optional[Mapping[str, str]] = None) -> int:
    env = os.environ if env is None else env
    raw = env.get(MAX_BODY_ENV, "").strip()
    if raw and not raw.isdigit():
        raise IngestConfigError(f"{MAX_BODY_ENV}: must be a number of bytes, got {raw!r}")
    return int(raw) if raw else DEFAULT_MAX_BODY


class BadBody(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(error)
        self.status, self.error, self.message, self.extra = status, error, message, extra

    def response(self) -> web.Response:
        return _json({"error": self.error, "message": self.message, **self.extra}, self.status)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def parse_json_lines(data: str) -> list:
    """One JSON value per non-blank line; raises BadBody naming the first bad line."""
    rows = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise BadBody(400, "malformed_json", f"第 {number} 行不是合法的 JSON", line=number) from None
    return rows


def parse_rows(data: bytes, content_type: str) -> list:
    """A batch: a JSON array, or JSON lines when the content type says so."""
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadBody(400, "malformed_json", "请求体不是 UTF-8 编码") from None
    if content_type in NDJSON_TYPES:
        return parse_json_lines(decoded)
    try:
        rows = json.loads(decoded)
    except ValueError:
        raise BadBody(400, "malformed_json", "请求体不是合法的 JSON") from None
    if not isinstance(rows, list):
        raise BadBody(400, "not_an_array", "请求体应为 JSON 数组（或用 application/x-ndjson 按行提交）")
    return rows


async def _read_body(request: web.Request, limit: int) -> bytes:
    # Counted here rather than by aiohttp's client_max_size: a parent app mounting this one sets that.
    if request.content_length is not None and request.content_length > limit:
        raise BadBody(413, "too_large", f"请求体超过 {limit} 字节", limit=limit)
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise BadBody(413, "too_large", f"请求体超过 {limit} 字节", limit=limit)
    return bytes(body)


def make_ingest_app(database: Database, token: str, *, max_body: Optional[int] = None) -> web.Application:
    """The ingest API on an existing Database (the caller disposes of it). The body limit, unless
    given, is JJ_INGEST_MAX_BODY (bytes, 5 MB by default). Raises IngestConfigError naming the key."""
    if max_body is None:
        max_body = max_body_from_env()
    settings = IngestSettings(token=token, max_body=max_body)
    expected = f"Bearer {settings.token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler):
        if request.path != "/health":
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                return _json({"error": "unauthorized", "message": "缺少或错误的访问令牌"}, 401)
        try:
            return await handler(request)
        except BadBody as bad:
            return bad.response()
        except (OperationalError, DBAPIError, OSError):
            log.exception("ingest: database error")
            return _json({"error": "database_unavailable", "message": "数据库暂不可用，请稍后重试"}, 503)

    async def batch(request: web.Request, work) -> web.Response:
        rows = parse_rows(await _read_body(request, settings.max_body), request.content_type)
        async with database.session() as session, session.begin():
            result = await work(session, rows)
        log.info("ingest %s: %d accepted, %d unchanged, %d rejected, %d notifications", request.path,
                 result.accepted, result.unchanged, len(result.rejected), result.notifications)
        return _json(result.as_dict())

    async def violations(request: web.Request) -> web.Response:
        return await batch(request, outbox.record_violations)

    async def violation_status(request: web.Request) -> web.Response:
        return await batch(request, outbox.change_violation_status)

    async def decision(request: web.Request) -> web.Response:
        data = await _read_body(request, settings.max_body)
        try:
            body = json.loads(data.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            raise BadBody(400, "malformed_json", "请求体不是合法的 JSON") from None
        if not isinstance(body, dict):
            raise BadBody(400, "not_an_object", "请求体应为 JSON 对象 {\"status\": …, \"reason\": …}")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadBody(422, "bad_reason", "理由应为文字")
        status = body.get("status")
        try:
            async with database.session() as session, session.begin():
                result = await outbox.decide_report(session, request.match_info["report_no"],
                                                    status if isinstance(status, str) else "", reason)
        except outbox.DecisionError as refused:
            code = 404 if refused.error == "unknown_report" else 422
            return _json({"error": refused.error, "message": refused.message}, code)
        return _json({"report_no": result.report_no, "status": result.status, "reason": result.reason,
                      "changed": result.changed, "notifications": result.notifications})

    async def health(request: web.Request) -> web.Response:
        async with database.session() as session:
            await session.execute(text("SELECT 1"))
        return _json({"status": "ok"})

    app = web.Application(middlewares=[guard], client_max_size=settings.max_body + 1)
    app.router.add_post("/ingest/violations", violations)
    app.router.add_post("/ingest/violation-status", violation_status)
    app.router.add_post("/reports/{report_no}/decision", decision)
    app.router.add_get("/health", health)
    return app
