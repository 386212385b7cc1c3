"""The words of every push, per channel, from an outbox row's facts (the payload).

WeChat template fields are at most 20 characters without line breaks (the first and remark lines
are no longer shown, so everything that matters sits in keyword fields); SMS is kept near one
70-character message with the gateway's signature; e-mail has a plain and an HTML part;
Telegram and Weibo get a few short lines.
"""
from __future__ import annotations

import html
from datetime import date, datetime
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import quote

WECHAT_FIELD_MAX = 20
REPORT_KINDS = {"facility": "设施报修", "violation": "违法举报", "misconduct": "执法投诉"}
REPORT_STATUSES = {"accepted": "已采纳", "rejected": "未采纳", "fixed": "已修复", "dispatched": "已派单处理"}
# One template per kind of notice, as chosen in the WeChat admin console.
TEMPLATE_KINDS = {"violation": "violation", "violation_owner": "violation", "inspection_due": "inspection",
                  "licence_expiring": "licence", "points_high": "points", "report_decided": "report"}
SMS_OPT_OUT = "回TD退订"
# Sent on WeChat as customer-service text (inside the 48-hour window), never as a template:
# a staff member's own words, and appointment changes (no template chosen for them).
CUSTOM_TEXT_KINDS = ("staff_reply", "appointment_changed")
APPOINTMENT_KINDS = {"accident": "事故", "violation": "违法"}
STAFF_REPLY_SMS_MAX = 300


class UnknownEvent(ValueError):
    pass


def fit(value: Any, limit: int = WECHAT_FIELD_MAX) -> str:
    """A WeChat template field: one line, at most `limit` characters (cut with …)."""
    text = " ".join(str(value if value is not None else "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _when(iso: Optional[str]) -> str:
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(iso)


def _day(iso: Optional[str]) -> str:
    if not iso:
        return ""
    try:
        d = date.fromisoformat(str(iso)[:10])
    except ValueError:
        return str(iso)
    return f"{d.year}年{d.month}月{d.day}日"


def _short_when(iso: Optional[str]) -> str:
    try:
        return datetime.fromisoformat(str(iso)).strftime("%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso or "")


def _fine_points(p: Mapping[str, Any]) -> str:
    return f"罚款{p.get('fine', 0)}元，记{p.get('points', 0)}分"


def _report(p: Mapping[str, Any]) -> Tuple[str, str]:
    return REPORT_KINDS.get(str(p.get("kind")), "举报"), REPORT_STATUSES.get(str(p.get("status")), str(p.get("status")))


def lines(kind: str, p: Mapping[str, Any]) -> Tuple[str, list]:
    """A title and the lines of a notice, the common ground of the text channels."""
    if kind in ("violation", "violation_owner"):
        title = "交通违法提醒"
        body = [f"您的车辆{p.get('plate')}有一条新的交通违法记录：",
                f"时间：{_when(p.get('occurred_at'))}", f"地点：{p.get('place')}",
                f"行为：{p.get('behaviour')}", f"处罚：{_fine_points(p)}",
                f"采集机关：{p.get('authority')}", f"违法编号：{p.get('record_no')}",
                "请在30日内处理，可通过交管12123或到任一处理点办理。"]
    elif kind == "inspection_due":
        title = "车辆检验提醒"
        body = [f"您的车辆{p.get('plate')}检验有效期至{_day(p.get('due_on'))}，",
                "请在到期前3个月内处理完违法和事故后申领检验标志，逾期未检最高可罚200元。"]
    elif kind == "licence_expiring":
        title = "驾驶证换证提醒"
        body = [f"您的驾驶证{p.get('licence_no_masked')}将于{_day(p.get('expires_on'))}到期，",
                "请在到期前90日内携带身份证明和体检证明到任一车管所或通过交管12123申请换证。"]
    elif kind == "points_high":
        title = "记分提醒"
        body = [f"您的驾驶证{p.get('licence_no_masked')}本记分周期已记{p.get('points')}分，"
                f"周期至{_day(p.get('cycle_end'))}结束。",
                "满12分将被扣留驾驶证并参加学习和考试，请谨慎驾驶；可了解学法减分。"]
    elif kind == "report_decided":
        what, status = _report(p)
        title = "举报处理结果"
        body = [f"您的{what}（编号{p.get('report_no')}）处理结果：{status}。"]
        if p.get("status") == "rejected" and p.get("reason"):
            body.append(f"原因：{p.get('reason')}")
        body.append("感谢您对道路交通安全的支持。")
    elif kind == "appointment_changed":
        title = "远程处理预约"
        body = [_appointment(p), "请按时在线办理，如需调整请回复本账号。"]
    elif kind == "staff_reply":
        title = "人工客服回复"
        body = [str(p.get("text") or "")]
    else:
        raise UnknownEvent(kind)
    return title, body


def _appointment(p: Mapping[str, Any]) -> str:
    what = APPOINTMENT_KINDS.get(str(p.get("kind")), "")
    change = "已调整为" if p.get("change") == "moved" else "已确认，时间为"
    return f"您的{what}远程处理预约（编号{p.get('appointment_no')}）{change}{_when(p.get('starts_at'))}。"


def custom_text(kind: str, p: Mapping[str, Any]) -> str:
    """WeChat customer-service text: a staff reply as written, other kinds as title and lines."""
    if kind == "staff_reply":
        return str(p.get("text") or "")
    return plain_text(kind, p)


def details_url(base: str, event_key: str) -> str:
    return f"{base.rstrip('/')}/{quote(event_key, safe='')}"


def wechat_template(kind: str, p: Mapping[str, Any], template_ids: Mapping[str, str], url: str) -> Dict[str, Any]:
    """template_id, data (every value one line of at most 20 characters) and the details url."""
    if kind in ("violation", "violation_owner"):
        fields = {"car_number1": p.get("plate"), "time2": _when(p.get("occurred_at")), "thing3": p.get("place"),
                  "thing4": p.get("behaviour"), "amount5": f"罚款{p.get('fine', 0)}元 记{p.get('points', 0)}分"}
    elif kind == "inspection_due":
        fields = {"car_number1": p.get("plate"), "date2": _day(p.get("due_on")), "thing3": "请按时申领检验标志"}
    elif kind == "licence_expiring":
        fields = {"character_string1": p.get("licence_no_masked"), "date2": _day(p.get("expires_on")),
                  "thing3": "请在到期前90日内换证"}
    elif kind == "points_high":
        fields = {"character_string1": p.get("licence_no_masked"), "number2": f"{p.get('points')}分",
                  "date3": _day(p.get("cycle_end")), "thing4": "满12分将扣留驾驶证"}
    elif kind == "report_decided":
        what, status = _report(p)
        fields = {"character_string1": p.get("report_no"), "thing2": what, "phrase3": status}
        if p.get("status") == "rejected" and p.get("reason"):
            fields["thing4"] = p.get("reason")
    else:
        raise UnknownEvent(kind)
    return {"template_id": template_ids[TEMPLATE_KINDS[kind]],
            "data": {name: {"value": fit(value)} for name, value in fields.items()}, "url": url}


def sms_text(kind: str, p: Mapping[str, Any]) -> str:
    """One notification SMS (no marketing), near 70 characters with the signature where possible."""
    if kind in ("violation", "violation_owner"):
        place = fit(p.get("place"), 14)
        text = (f"您的车辆{p.get('plate')}于{_short_when(p.get('occurred_at'))}在{place}"
                f"{fit(p.get('behaviour'), 12)}，{_fine_points(p)}，请及时处理。")
    elif kind == "inspection_due":
        text = f"您的车辆{p.get('plate')}检验有效期至{_day(p.get('due_on'))}，请按时申领检验标志。"
    elif kind == "licence_expiring":
        text = f"您的驾驶证{p.get('licence_no_masked')}将于{_day(p.get('expires_on'))}到期，请在到期前90日内换证。"
    elif kind == "points_high":
        text = f"您的驾驶证本周期已记{p.get('points')}分，满12分将扣留驾驶证，请谨慎驾驶。"
    elif kind == "report_decided":
        what, status = _report(p)
        text = f"您的{what}（{p.get('report_no')}）{status}。"
        if p.get("status") == "rejected" and p.get("reason"):
            text += f"原因：{fit(p.get('reason'), 20)}。"
    elif kind == "appointment_changed":
        text = _appointment(p)
    elif kind == "staff_reply":  # a conversation, not a notice: longer, the gateway splits it
        return f"交警人工客服：{fit(p.get('text'), STAFF_REPLY_SMS_MAX)}"
    else:
        raise UnknownEvent(kind)
    return f"{text}{SMS_OPT_OUT}"


def plain_text(kind: str, p: Mapping[str, Any], url: Optional[str] = None) -> str:
    """Telegram, Weibo: a title and short lines."""
    title, body = lines(kind, p)
    if kind == "staff_reply":  # the staff member's words, as in a chat
        return "\n".join(body)
    parts = [f"【{title}】", *body]
    if url and kind not in CUSTOM_TEXT_KINDS:
        parts.append(f"详情：{url}")
    return "\n".join(parts)


def email(kind: str, p: Mapping[str, Any], url: Optional[str] = None) -> Tuple[str, str, str]:
    """subject, plain text, HTML."""
    title, body = lines(kind, p)
    subject = f"【交警提醒】{title}"
    plain = "\n".join(["您好：", "", *body, *( ["", f"详情：{url}"] if url else []), "",
                       "本邮件由系统自动发送，请勿直接回复。"])
    items = "".join(f"<p>{html.escape(str(line))}</p>" for line in body)
    link = f'<p><a href="{html.escape(url)}">查看详情</a></p>' if url else ""
    page = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"</head><body><h2>{html.escape(title)}</h2><p>您好：</p>{items}{link}"
            f"<p><small>本邮件由系统自动发送，请勿直接回复。</small></p></body></html>")
    return subject, plain, page
