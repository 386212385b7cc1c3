"""Outbox rows the console writes besides report decisions: staff replies to a hand-off and
appointment changes. Each channel's rules are checked here, before anything is promised to staff."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.records import outbox, queries
from actions.records.clock import now_local
from actions.records.models import Appointment, AppointmentSlot, ChannelIdentity, Handoff

# WeChat's customer-service messages and Weibo's replies are allowed only within 48 hours of the
# user's last message; Telegram bots may write whenever the user has started the bot; SMS unless 退订.
REPLY_WINDOW = {"wechat": timedelta(hours=48), "weibo": timedelta(hours=48)}
REPLY_CHANNELS = ("wechat", "weibo", "telegram", "sms")
MAX_REPLY = 600
PHONE = re.compile(r"^1[3-9][0-9]{9}$")


class CannotSend(ValueError):
    """Why a message cannot go out on that channel, in Chinese for the staff member."""


async def _identity(session: AsyncSession, channel: str, external_id: str) -> Optional[ChannelIdentity]:
    return (await session.execute(select(ChannelIdentity).where(
        ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id))).scalar_one_or_none()


async def reply_window(session: AsyncSession, channel: str, external_id: str,
                       now: Optional[datetime] = None) -> Optional[str]:
    """None if a message may go to this address now, else the reason it may not."""
    now = now or now_local()
    if channel not in REPLY_CHANNELS:
        return f"渠道 {channel} 不支持人工回复"
    identity = await _identity(session, channel, external_id)
    if channel == "sms":
        if not PHONE.match(external_id) or await queries.sms_opted_out(session, external_id):
            return "该号码已退订短信或不是有效手机号"
        return None
    if identity is None or identity.blocked:
        return "用户已取消关注或屏蔽，无法发送"
    window = REPLY_WINDOW.get(channel)
    if window and identity.last_seen_at < now - window:
        return f"已超过48小时客服消息时限（用户最后发言 {identity.last_seen_at:%Y-%m-%d %H:%M}），请改用电话联系"
    return None


def _row(kind: str, key: str, person_id: int, channel: str, to: str, facts: dict) -> dict:
    now = now_local()
    return dict(event_kind=kind, event_key=key, person_id=person_id, channel=channel,
                payload={**facts, "to": to}, status="pending", attempts=0, next_attempt_at=now, created_at=now)


async def staff_reply(session: AsyncSession, handoff_id: int, text: str) -> str:
    """Queue one staff reply on the user's own channel; returns its event key. The hand-off row is
    locked so two replies at once get different numbers."""
    text = (text or "").strip()
    if not text:
        raise CannotSend("回复内容不能为空")
    if len(text) > MAX_REPLY or "\x00" in text:
        raise CannotSend(f"回复不超过 {MAX_REPLY} 个字")
    handoff = (await session.execute(select(Handoff).where(Handoff.id == handoff_id).with_for_update())
               ).scalar_one_or_none()
    if handoff is None or handoff.status != "taken":
        raise CannotSend("请先接管该对话再回复")
    why = await reply_window(session, handoff.channel, handoff.sender_id)
    if why:
        raise CannotSend(why)
    handoff.replies = (handoff.replies or 0) + 1
    key = f"reply:{handoff.id}:{handoff.replies}"
    await outbox.write_outbox(session, [_row("staff_reply", key, handoff.person_id, handoff.channel,
                                             handoff.sender_id, {"text": text, "handoff_id": handoff.id})])
    return key


async def appointment_address(session: AsyncSession, appointment: Appointment) -> Optional[tuple[str, str]]:
    """Where to tell the person: WeChat or Weibo inside the 48-hour window, Telegram, else an SMS to
    the contact phone the appointment was booked with."""
    rows = (await session.execute(select(ChannelIdentity).where(
        ChannelIdentity.person_id == appointment.person_id, ChannelIdentity.blocked.is_(False),
        ChannelIdentity.channel.in_(("wechat", "telegram", "weibo"))).order_by(
        ChannelIdentity.last_seen_at.desc()))).scalars().all()
    for identity in rows:
        if await reply_window(session, identity.channel, identity.external_id) is None:
            return identity.channel, identity.external_id
    phone = re.sub(r"[\s\-]", "", appointment.contact_phone or "").removeprefix("+86")
    if PHONE.match(phone) and not await queries.sms_opted_out(session, phone):
        return "sms", phone
    return None


async def appointment_changed(session: AsyncSession, appointment: Appointment, slot: AppointmentSlot,
                              change: str) -> Optional[str]:
    """Queue the notice of a confirmed or moved appointment; the channel used, or None."""
    address = await appointment_address(session, appointment)
    if address is None:
        return None
    channel, to = address
    key = f"appointment:{appointment.appointment_no}:{change}:{slot.id}"
    facts = {"appointment_no": appointment.appointment_no, "kind": appointment.kind,
             "starts_at": slot.starts_at.isoformat(), "change": change}
    await outbox.write_outbox(session, [_row("appointment_changed", key, appointment.person_id, channel, to, facts)])
    return channel
