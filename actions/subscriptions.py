"""Alert subscriptions: which channel alerts go to, and unsubscribing from any channel."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import PhoneSlot, channel_of, entity_values, first, latest_intent, latest_text, person_of
from actions.records import queries
from actions.runtime import database

CHANNEL_NAMES = {"wechat": "微信", "sms": "短信", "weibo": "微博私信", "telegram": "Telegram", "email": "电子邮件"}
# Said in words rather than recognised as an entity.
CHANNEL_WORDS = {"微信": "wechat", "短信": "sms", "手机": "sms", "微博": "weibo", "telegram": "telegram",
                 "电报": "telegram", "邮件": "email", "邮箱": "email", "email": "email", "e-mail": "email"}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
RESET = [SlotSet("alert_channel", None), SlotSet("phone", None), SlotSet("email", None)]


class ValidateSubscribeForm(PhoneSlot, FormValidationAction):
    def name(self) -> Text:
        return "validate_subscribe_form"

    async def required_slots(self, domain_slots: List[Text], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: DomainDict) -> List[Text]:
        channel = tracker.get_slot("alert_channel")
        if channel == "sms" and channel_of(tracker) != "sms":
            return ["alert_channel", "phone"]
        if channel == "email":
            return ["alert_channel", "email"]
        return ["alert_channel"]

    async def extract_alert_channel(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                    domain: DomainDict) -> Dict[Text, Any]:
        values = entity_values(tracker, "channel")
        if values:
            return {"alert_channel": values[0]}
        if tracker.get_slot("requested_slot") != "alert_channel" and not latest_intent(tracker) == "subscribe_alerts":
            return {}
        text = latest_text(tracker).lower()
        for word, channel in CHANNEL_WORDS.items():
            if word in text:
                return {"alert_channel": channel}
        if tracker.get_slot("requested_slot") == "alert_channel" and text in ("1", "2", "3"):
            return {"alert_channel": {"1": channel_of(tracker), "2": "sms", "3": "email"}[text]}
        return {}

    async def extract_email(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                            domain: DomainDict) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "email":
            return {}
        text = latest_text(tracker)
        match = EMAIL.search(text)
        return {"email": match.group() if match else text[:80]} if "@" in text else {}

    async def validate_alert_channel(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                     domain: DomainDict) -> Dict[Text, Any]:
        current = channel_of(tracker)
        channel = current if first(value) == "here" else first(value)
        if channel in ("sms", "email") or channel == current:
            # An address from an earlier message (a scammer's, in a report) is not where alerts go.
            contact = {"sms": "phone", "email": "email"}.get(channel)
            stale = {contact: None} if contact and not entity_values(tracker, contact) else {}
            return {"alert_channel": channel, **stale}
        if channel in CHANNEL_NAMES:
            dispatcher.utter_message(text=replies.subscribe_there(CHANNEL_NAMES[channel]))
        return {"alert_channel": None}

    async def validate_email(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> Dict[Text, Any]:
        email = first(value) or ""
        if not EMAIL.fullmatch(email) or len(email) > 254:
            dispatcher.utter_message(text="邮箱地址格式不对，请重新输入，例如 name@example.com。")
            return {"email": None}
        return {"email": email}


class ActionSubscribe(Action):
    def name(self) -> Text:
        return "action_subscribe"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        channel = tracker.get_slot("alert_channel")
        if channel not in CHANNEL_NAMES:
            return RESET
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            if channel == "sms":
                # Over SMS itself the sender's number is the one to text.
                phone = tracker.sender_id if channel_of(tracker) == "sms" else tracker.get_slot("phone")
                person.phone, person.sms_consent = phone, True
                await queries.mark_identity_blocked(session, "sms", phone, blocked=False)
            if channel == "email":
                person.email = tracker.get_slot("email")
            await queries.subscribe(session, person.id, channel)
            vehicles = await queries.bound_vehicles(session, person.id)
            address = person.phone if channel == "sms" else person.email if channel == "email" else None
        dispatcher.utter_message(text=replies.subscribed(CHANNEL_NAMES[channel], channel, address, bool(vehicles)))
        return RESET


class ActionUnsubscribe(Action):
    def name(self) -> Text:
        return "action_unsubscribe"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        named = [c for c in entity_values(tracker, "channel") if c in CHANNEL_NAMES]
        text = latest_text(tracker)
        named = named or [c for word, c in CHANNEL_WORDS.items() if word in text.lower()]
        everything = "全部" in text or "所有" in text
        channel = None if everything else (named[0] if named else channel_of(tracker))
        left = (tracker.latest_message.get("metadata") or {}).get("wechat_event") == "unsubscribe"
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            stopped = await queries.unsubscribe(session, person.id, channel)
            if left:
                # Unfollowed: nothing can reach them here; the push side falls back to SMS.
                await queries.mark_identity_blocked(session, channel_of(tracker), tracker.sender_id)
                return RESET
            if channel in (None, "sms"):
                # 退订 also withdraws consent to any SMS, not only the subscribed alerts.
                person.sms_consent = False
                if channel_of(tracker) == "sms":
                    await queries.mark_identity_blocked(session, "sms", tracker.sender_id)
        if channel == "sms" and stopped == 0:
            dispatcher.utter_message(text=replies.sms_opted_out())
        else:
            dispatcher.utter_message(text=replies.unsubscribed(stopped, CHANNEL_NAMES.get(channel or "", "")))
        return RESET
