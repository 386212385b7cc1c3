"""Alert subscriptions: which channel alerts go to, and unsubscribing from any channel."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import (channel_of, entity_values, first, latest_intent, latest_text, normalised_phone,
                            person_of)
from actions.records import queries
from actions.runtime import database

CHANNEL_NAMES = {"wechat": "微信", "sms": "短信", "weibo": "微博私信", "telegram": "Telegram", "email": "电子邮件"}
# Said in words rather than recognised as an entity.
CHANNEL_WORDS = {"微信": "wechat", "短信": "sms", "手机": "sms", "微博": "weibo", "telegram": "telegram",
                 "电报": "telegram", "邮件": "email", "邮箱": "email", "email": "email", "e-mail": "email"}
# Asked for but not offered: the answer names the channels there are.
UNSUPPORTED_WORDS = ("qq", "钉钉", "抖音", "飞书", "支付宝", "whatsapp", "facebook", "微信群", "快手")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
RESET = [SlotSet("alert_channel", None), SlotSet("alert_address", None)]


class ValidateSubscribeForm(FormValidationAction):
    """The channel, then where on it: a phone for SMS, an address for e-mail, nothing for here.

    Both are required slots of the domain's form, so that Rasa itself asks for the address again
    after a question in the middle (a custom required_slots is not consulted then)."""

    def name(self) -> Text:
        return "validate_subscribe_form"

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
        if tracker.get_slot("requested_slot") == "alert_channel":
            named = next((w for w in UNSUPPORTED_WORDS if w in text), None)
            if named:
                return {"alert_channel": "unsupported:" + latest_text(tracker)[text.index(named):][:len(named)]}
        return {}

    async def extract_alert_address(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                    domain: DomainDict) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "alert_address":
            return {}
        text = latest_text(tracker)
        if tracker.get_slot("alert_channel") == "email":
            match = EMAIL.search(text)
            return {"alert_address": match.group() if match else text[:80]} if "@" in text else {}
        return {"alert_address": normalised_phone(text) or text[:20]} if re.search(r"\d", text) else {}

    async def validate_alert_channel(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                     domain: DomainDict) -> Dict[Text, Any]:
        current = channel_of(tracker)
        channel = current if first(value) == "here" else first(value)
        if channel == current:
            # Over SMS itself the sender's number is the one to text; elsewhere the identity is the address.
            return {"alert_channel": channel, "alert_address": tracker.sender_id}
        if channel in ("sms", "email"):
            # Only an address in this very message: one from an earlier message (a scammer's, in a
            # report) is not where alerts go.
            given = entity_values(tracker, "phone" if channel == "sms" else "email")
            if channel == "sms":
                address = normalised_phone(given[0]) if given else None
            else:
                address = given[0] if given and EMAIL.fullmatch(given[0]) else None
            return {"alert_channel": channel, "alert_address": address}
        if channel in CHANNEL_NAMES:
            dispatcher.utter_message(text=replies.subscribe_there(CHANNEL_NAMES[channel]))
        elif (channel or "").startswith("unsupported:"):
            dispatcher.utter_message(text=replies.channel_not_offered(channel.partition(":")[2]))
        return {"alert_channel": None}

    async def validate_alert_address(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                     domain: DomainDict) -> Dict[Text, Any]:
        address = first(value) or ""
        channel = tracker.get_slot("alert_channel")
        if channel == "email":
            if not EMAIL.fullmatch(address) or len(address) > 254:
                dispatcher.utter_message(text="邮箱地址格式不对，请重新输入，例如 name@example.com。")
                return {"alert_address": None}
            return {"alert_address": address}
        if channel == "sms":
            phone = normalised_phone(address)
            if phone is None:
                dispatcher.utter_message(text="手机号应为11位数字（如 13900001234），请重新输入。")
            return {"alert_address": phone}
        return {"alert_address": address or None}


class ActionAskAlertAddress(Action):
    """The address question depends on the channel chosen: a phone number or an e-mail address."""

    def name(self) -> Text:
        return "action_ask_alert_address"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        if tracker.get_slot("alert_channel") == "email":
            dispatcher.utter_message(text="请提供接收提醒的邮箱地址。")
        else:
            dispatcher.utter_message(text="请提供接收短信的手机号（11位）。")
        return []


class ActionSubscribe(Action):
    def name(self) -> Text:
        return "action_subscribe"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        channel, address = tracker.get_slot("alert_channel"), tracker.get_slot("alert_address")
        if channel not in CHANNEL_NAMES or not address:
            return RESET
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            if channel == "sms":
                person.phone, person.sms_consent = address, True
                await queries.mark_identity_blocked(session, "sms", address, blocked=False)
            if channel == "email":
                person.email = address
            await queries.subscribe(session, person.id, channel)
            vehicles = await queries.bound_vehicles(session, person.id)
        shown = address if channel in ("sms", "email") else None
        dispatcher.utter_message(text=replies.subscribed(CHANNEL_NAMES[channel], channel, shown, bool(vehicles)))
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
