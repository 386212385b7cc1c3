"""民意晴雨表: the dashboard page (charts) and the same figures as JSON."""
from __future__ import annotations

from aiohttp import web

from .. import charts, stats
from ..app import CHANNEL_NAMES, KIND_NAMES, render
from ..keys import DB

routes = web.RouteTableDef()
PERIODS = (7, 30, 90, 365)
TYPE_NAMES = {**KIND_NAMES, "signal": "信号灯", "sign": "交通标志", "marking": "交通标线",
              "guardrail": "护栏", "other": "其他设施"}


def _days(request: web.Request) -> int:
    try:
        days = int(request.query.get("days", "30"))
    except ValueError:
        days = 30
    return days if days in PERIODS else 30


@routes.get("/api/dashboard")
async def figures_json(request: web.Request) -> web.Response:
    async with request.app[DB].session() as s:
        return web.json_response(await stats.figures(s, _days(request)))


@routes.get("/dashboard")
async def dashboard(request: web.Request) -> web.Response:
    async with request.app[DB].session() as s:
        f = await stats.figures(s, _days(request))
    kinds = list(KIND_NAMES)
    svg = {
        "daily": charts.stacked_columns(f["reports_by_day"], kinds, KIND_NAMES, "每日举报量（按类型）"),
        "types": charts.bars([(TYPE_NAMES.get(t, t), n) for t, n in f["reports_by_type"]], "举报细分类型"),
        "hotspots": charts.bars([(p, n) for p, n in f["hotspots"]], "高发地点"),
        "map": charts.scatter(f["points"], kinds, "举报坐标分布"),
        "acceptance": charts.rate_bar(f["acceptance"]["rate"], "采纳率"),
        "codes": charts.bars([(f"{c} {name}", n) for c, name, n in f["top_codes"]], "高频违法代码"),
        "messages": charts.bars([(CHANNEL_NAMES.get(c, c), n) for c, n in
                                sorted(f["messages_by_channel"].items(), key=lambda x: -x[1])], "推送消息量"),
        "delivery": charts.bars([(CHANNEL_NAMES.get(ch, ch), round(v["rate"] * 100, 1)) for ch, v in f["push"].items()
                                 if v["rate"] is not None], "推送送达率", unit="%"),
    }
    return render(request, "dashboard.html", f=f, svg=svg, periods=PERIODS)
