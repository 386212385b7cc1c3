"""Talking to people: staff hand-off, feedback, and cancelling whatever is under way."""
from __future__ import annotations

from typing import List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import channel_of, latest_text, person_of
from actions.records import queries
from actions.runtime import database

# Every slot a form fills: cancelling forgets them all.
FORM_SLOTS = ("plate", "vin_suffix", "proof_status", "licence_no", "file_no", "alert_channel", "alert_address", "phone",
              "facility_type", "location", "latitude", "longitude", "description", "photo", "photos",
              "photos_done", "violation_type", "report_time", "appointment_kind", "appointment_slot",
              "offered_slots")


class ActionHumanHandoff(Action):
    def name(self) -> Text:
        return "action_human_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            await queries.open_handoff(session, person.id, channel_of(tracker), tracker.sender_id,
                                       latest_text(tracker))
        dispatcher.utter_message(
            text="已为您转接人工客服，您的对话已标记给值班民警。工作日9:00-17:00一般30分钟内回复，"
                 "其他时间顺延至下一个工作日。紧急情况请直接拨打122或110。")
        return []


class ActionStoreFeedback(Action):
    def name(self) -> Text:
        return "action_store_feedback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            await queries.store_feedback(session, person.id, channel_of(tracker), latest_text(tracker))
        dispatcher.utter_message(text="感谢您的意见和建议，已记录并转交相关部门，我们会认真研究改进。")
        return []


class ActionCancel(Action):
    def name(self) -> Text:
        return "action_cancel"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        dispatcher.utter_message(text="好的，已取消。还有什么可以帮您？发送“帮助”可查看我能做什么。")
        return [ActiveLoop(None), SlotSet("requested_slot", None)] + [SlotSet(s, None) for s in FORM_SLOTS]


class ActionForgetForms(Action):
    """Ends whatever form is under way without a word (after a goodbye or a hand-off)."""

    def name(self) -> Text:
        return "action_forget_forms"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        return [ActiveLoop(None), SlotSet("requested_slot", None)] + [SlotSet(s, None) for s in FORM_SLOTS]
