"""Charts as inline SVG, drawn on the server: no scripts, no CDN. Labels are escaped."""
from __future__ import annotations

from html import escape
from typing import Iterable, Optional, Sequence

from markupsafe import Markup

PALETTE = ("#1f5fa8", "#d9822b", "#3a9d5d", "#b8404a", "#7a5ba6", "#5a8f9e")


def _svg(width: int, height: int, body: str, title: str) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
                  f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
                  f'{body}</svg>')


def bars(items: Sequence[tuple[str, float]], title: str, unit: str = "", width: int = 560) -> Markup:
    """Horizontal bars, largest first as given."""
    if not items:
        return Markup('<p class="empty">暂无数据</p>')
    row, label_w = 26, 190
    top = max(v for _, v in items) or 1
    parts = []
    for i, (label, value) in enumerate(items):
        y = i * row + 4
        w = (width - label_w - 70) * value / top
        text = label if len(label) <= 14 else label[:13] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lbl">{escape(text)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 8}" fill="{PALETTE[0]}" rx="2"/>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="val">{_num(value)}{escape(unit)}</text>')
    return _svg(width, len(items) * row + 8, "".join(parts), title)


def stacked_columns(days: Sequence[tuple[str, dict]], keys: Sequence[str], names: dict, title: str,
                    width: int = 720, height: int = 220) -> Markup:
    """One column per day, stacked by key, with a legend."""
    if not days:
        return Markup('<p class="empty">暂无数据</p>')
    left, bottom, legend = 30, 22, 20
    plot_h = height - bottom - legend
    top = max((sum(d.get(k, 0) for k in keys) for _, d in days), default=0) or 1
    step = (width - left) / len(days)
    parts = [f'<line x1="{left}" y1="{legend + plot_h}" x2="{width}" y2="{legend + plot_h}" class="axis"/>',
             f'<text x="{left - 4}" y="{legend + 8}" text-anchor="end" class="val">{top}</text>']
    for i, (day, counts) in enumerate(days):
        x, y = left + i * step + 1, legend + plot_h
        for j, key in enumerate(keys):
            n = counts.get(key, 0)
            if n:
                h = plot_h * n / top
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                             f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(day)} {escape(names.get(key, key))}: {n}</title></rect>')
        if i % max(1, len(days) // 6) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 6}" class="val">{escape(day[5:])}</text>')
    for j, key in enumerate(keys):
        parts.append(f'<rect x="{left + j * 110}" y="2" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/>'
                     f'<text x="{left + j * 110 + 16}" y="12" class="lbl">{escape(names.get(key, key))}</text>')
    return _svg(width, height, "".join(parts), title)


def scatter(points: Iterable[tuple[float, float, str]], keys: Sequence[str], title: str,
            width: int = 420, height: int = 320) -> Markup:
    """Report coordinates on a plain lat/long plane: where reports cluster (a map without tiles)."""
    pts = [(la, lo, k) for la, lo, k in points]
    if not pts:
        return Markup('<p class="empty">暂无带坐标的举报</p>')
    lats, lons = [p[0] for p in pts], [p[1] for p in pts]
    pad = 0.002
    la0, la1, lo0, lo1 = min(lats) - pad, max(lats) + pad, min(lons) - pad, max(lons) + pad
    parts = [f'<rect x="0" y="0" width="{width}" height="{height}" class="map"/>']
    for la, lo, k in pts:
        x = (lo - lo0) / (lo1 - lo0) * (width - 20) + 10
        y = (la1 - la) / (la1 - la0) * (height - 20) + 10
        colour = PALETTE[keys.index(k) % len(PALETTE)] if k in keys else PALETTE[-1]
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" fill-opacity="0.55"/>')
    parts.append(f'<text x="6" y="{height - 6}" class="val">{la0:.3f},{lo0:.3f}</text>'
                 f'<text x="{width - 6}" y="14" text-anchor="end" class="val">{la1:.3f},{lo1:.3f}</text>')
    return _svg(width, height, "".join(parts), title)


def rate_bar(rate: Optional[float], title: str, width: int = 320) -> Markup:
    if rate is None:
        return Markup('<p class="empty">暂无数据</p>')
    w = (width - 60) * rate
    body = (f'<rect x="0" y="4" width="{width - 60}" height="18" class="track" rx="3"/>'
            f'<rect x="0" y="4" width="{w:.1f}" height="18" fill="{PALETTE[2]}" rx="3"/>'
            f'<text x="{width - 54}" y="18" class="val">{rate * 100:.1f}%</text>')
    return _svg(width, 26, body, title)


def _num(value: float) -> str:
    return f"{value:.1f}" if isinstance(value, float) and not value.is_integer() else str(int(value))
