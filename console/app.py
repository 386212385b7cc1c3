"""The console's aiohttp application: database, Rasa client and templates made on startup."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from actions.records.db import Database

from . import auth
from .rasa import RasaClient
from .settings import ConsoleSettings
from .keys import DB, JINJA, RASA, SETTINGS

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATUS_NAMES = {"received": "待审核", "dispatched": "已派单", "accepted": "已采纳", "rejected": "未采纳",
                "fixed": "已修复"}
KIND_NAMES = {"facility": "设施报修", "violation": "违法举报", "misconduct": "执法投诉"}
CHANNEL_NAMES = {"wechat": "微信", "weibo": "微博", "sms": "短信", "telegram": "Telegram", "email": "邮件",
                 "rest": "网页", "console": "控制台"}
HANDOFF_NAMES = {"open": "待接管", "taken": "人工处理中", "closed": "已结束"}


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    env: jinja2.Environment = request.app[JINJA]
    page = env.get_template(template).render(staff=request.get("staff"), path=request.path, **context)
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(STATUS_NAMES=STATUS_NAMES, KIND_NAMES=KIND_NAMES, CHANNEL_NAMES=CHANNEL_NAMES,
                       HANDOFF_NAMES=HANDOFF_NAMES)
    env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M") if d else ""
    return env


def make_app(settings: ConsoleSettings) -> web.Application:
    from .routes import admin, appointments, dashboard, handoffs, login, reports

    app = web.Application(middlewares=[auth.headers_middleware, auth.session_middleware],
                          client_max_size=64 * 1024)
    app[SETTINGS] = settings

    async def start(app: web.Application) -> None:
        app[DB] = Database(settings.database_url)
        app[RASA] = RasaClient(settings.rasa_url, settings.rasa_token)
        app[JINJA] = _environment()

    async def stop(app: web.Application) -> None:
        await app[RASA].close()
        await app[DB].dispose()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    for module in (login, reports, handoffs, appointments, dashboard, admin):
        app.router.add_routes(module.routes)
    return app
