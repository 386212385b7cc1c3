"""Remote-processing appointments: an accident or a violation handled by video."""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Dict, List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from actions import replies
from actions.common import PhoneSlot, entity_values, first, latest_intent, latest_text, person_of, sure_of_intent
from actions.records import queries
from actions.records.clock import now_local
from actions.records.models import AppointmentSlot
from actions.runtime import database
from actions.slotchoice import WEEKDAYS, SlotWish, position, wish

KINDS = {"accident": "交通事故", "violation": "交通违法"}
RESET = [SlotSet(s, None) for s in ("appointment_kind", "appointment_slot", "offered_slots", "phone")]


def slot_title(slot: AppointmentSlot) -> str:
    return f"{slot.starts_at:%m月%d日}（周{WEEKDAYS[slot.starts_at.weekday()]}）{slot.starts_at:%H:%M}-{slot.ends_at:%H:%M}"


def kind_of(tracker: Tracker) -> str:
    return tracker.get_slot("appointment_kind") or "violation"


def said_wish(tracker: Tracker) -> SlotWish:
    """The day or time the latest reply names. A day alone in a reply the model is sure is about
    something else is not a wish: "今天天气怎么样" names today but asks about the weather, while
    "明天下午行吗" or "挑个靠后的" still choose, whatever the model read them as."""
    when = wish(latest_text(tracker), now_local())
    if when.day and not (when.hours or when.at or when.later) \
            and latest_intent(tracker) == "out_of_scope" and sure_of_intent(tracker):
        return SlotWish()
    return when


async def wish_of(session: AsyncSession, tracker: Tracker) -> SlotWish:
    """When the latest reply wants the appointment; "later" is read against the slots just offered."""
    when = said_wish(tracker)
    if not when.later:
        return when
    ids = [int(i) for i in tracker.get_slot("offered_slots") or [] if str(i).isdigit()]
    starts = (await session.execute(select(AppointmentSlot.starts_at).where(AppointmentSlot.id.in_(ids)))
              ).scalars().all() if ids else []
    return when.later_than(list(starts)) if starts else replace(when, later=False)


class ValidateBookRemoteProcessingForm(PhoneSlot, FormValidationAction):
    def name(self) -> Text:
        return "validate_book_remote_processing_form"

    @staticmethod
    def understands(tracker: Tracker) -> bool:
        """A day, a time or "later" for the slot: the question comes again with the slots that fit."""
        return tracker.get_slot("requested_slot") == "appointment_slot" and bool(said_wish(tracker))

    async def extract_appointment_kind(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                       domain: DomainDict) -> Dict[Text, Any]:
        if entity_values(tracker, "appointment_kind"):
            return {}
        text = latest_text(tracker)
        if "事故" in text or "剐蹭" in text or "碰" in text:
            return {"appointment_kind": "accident"}
        if re.search(r"违法|违章|罚单|处罚", text):
            return {"appointment_kind": "violation"}
        if tracker.get_slot("requested_slot") == "appointment_kind" and text in ("1", "2"):
            return {"appointment_kind": "accident" if text == "1" else "violation"}
        return {}

    async def extract_appointment_slot(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                       domain: DomainDict) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "appointment_slot" or entity_values(tracker, "appointment_slot"):
            return {}
        offered = tracker.get_slot("offered_slots") or []
        text = latest_text(tracker)
        async with database().session() as session:
            when = await wish_of(session, tracker)
            # A day or a time in words: that slot if it is open; else the ask shows what that day has.
            matching = await queries.open_slots(session, kind_of(tracker), limit=100, matching=when.matches) \
                if when else []
        if when:
            place = position(text, len(matching)) if not when.at else 0
            if matching and place is not None and place < len(matching):
                chosen = str(matching[place].id)
                return {"appointment_slot": chosen, "offered_slots": [chosen]}
            return {"appointment_slot": None}
        place = position(text, len(offered))
        if place is not None:
            return {"appointment_slot": offered[place] if place < len(offered) else "invalid"}
        return {"appointment_slot": "invalid"} if text.isdigit() else {}

    async def validate_appointment_kind(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                        domain: DomainDict) -> Dict[Text, Any]:
        kind = first(value)
        return {"appointment_kind": kind if kind in KINDS else None}

    async def validate_appointment_slot(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                        domain: DomainDict) -> Dict[Text, Any]:
        chosen = first(value)
        if chosen is None:
            return {"appointment_slot": None}  # a day without a time: the ask shows that day's slots
        offered = tracker.get_slot("offered_slots") or []
        if chosen not in offered:
            dispatcher.utter_message(text=f"请回复列表中的序号（1-{len(offered)}）选择时段，也可以说“最早的”或“明天下午”。"
                                     if offered else "请重新选择时段。")
            return {"appointment_slot": None}
        return {"appointment_slot": chosen}


class ActionAskAppointmentSlot(Action):
    """Offers the next open slots of the chosen kind as numbered choices."""

    def name(self) -> Text:
        return "action_ask_appointment_slot"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        kind = kind_of(tracker)
        # Asked again after a reply that named a day or a time: show what that day has; after "later",
        # the next ones. Not when the form starts: "今天上午出了事故" says when the accident was.
        intro = f"请选择{KINDS[kind]}远程视频处理的时段："
        async with database().session() as session, session.begin():
            await queries.ensure_slots(session)
            when = await wish_of(session, tracker) if tracker.get_slot("requested_slot") else SlotWish()
            slots = await queries.open_slots(session, kind, matching=when.loosened().matches) if when else []
            if slots and when.after:
                intro = f"更晚一些的{when.loosened().describe()}{KINDS[kind]}远程视频处理时段如下，请选择："
            elif slots:
                intro = (f"{when.describe()}没有空余名额，" if when.at else "") + \
                    f"{when.loosened().describe()}可约的{KINDS[kind]}远程视频处理时段如下，请选择："
            elif when.later:
                intro = "之后没有更多可约的时段了（可约未来7天）。最近可约的时段如下，请选择："
                slots = await queries.open_slots(session, kind)
            else:
                if when:
                    intro = (f"{when.describe()}没有可约的时段（远程处理只在工作日9:00-11:30、14:00-17:00办理，"
                             f"可约未来7天）。最近可约的时段如下，请选择：")
                slots = await queries.open_slots(session, kind)
        if not slots:
            dispatcher.utter_message(text="未来7天的远程处理名额已约满，请稍后再试，或拨打122咨询。")
            return [SlotSet("offered_slots", [])]
        dispatcher.utter_message(
            text=intro,
            buttons=[{"title": slot_title(s), "payload": f'/inform{{"appointment_slot": "{s.id}"}}'} for s in slots])
        return [SlotSet("offered_slots", [str(s.id) for s in slots])]


class ActionBookAppointment(Action):
    def name(self) -> Text:
        return "action_book_appointment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        kind, slot_id, phone = (tracker.get_slot(s) for s in ("appointment_kind", "appointment_slot", "phone"))
        if not (kind and slot_id and phone):
            return RESET
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            appointment = await queries.book(session, person_id=person.id, slot_id=int(slot_id), kind=kind,
                                             phone=phone)
            slot = await session.get(AppointmentSlot, int(slot_id))
        if appointment is None:
            dispatcher.utter_message(text="抱歉，这个时段刚刚约满了，请重新发送“预约远程处理”选择其他时段。")
            return RESET
        dispatcher.utter_message(text=replies.appointment_booked(appointment.appointment_no, KINDS[kind],
                                                                 slot_title(slot), phone))
        return RESET
