"""What every action needs: who is asking, over which channel, and the latest message's parts."""
from __future__ import annotations

import re
from typing import Any, Optional

from rasa_sdk import Tracker
from sqlalchemy.ext.asyncio import AsyncSession

from actions.records import queries
from actions.records.models import Person

# Intents that mean "the user asked something else", not "the user answered the question".
OTHER_TASKS = {"faq", "help", "cancel", "greet", "goodbye", "thank", "human_handoff", "out_of_scope",
               "feedback_suggestion", "query_violations", "query_points", "bind_vehicle",
               "unbind_vehicle", "list_bindings", "bind_licence", "subscribe_alerts",
               "unsubscribe_alerts", "report_facility", "report_violation", "query_report_status",
               "my_report_stats", "report_misconduct", "book_remote_processing", "link_account"}
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
SURE = 0.7  # below this the reading is a guess: "不知道" reads as an unsure no (about 0.5)


def channel_of(tracker: Tracker) -> str:
    return tracker.get_latest_input_channel() or "unknown"


def first(value: Any) -> Optional[str]:
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else str(value)


def has_entity(tracker: Tracker, name: str) -> bool:
    return any(e.get("entity") == name for e in tracker.latest_message.get("entities", []))


def entity_values(tracker: Tracker, name: str) -> list[str]:
    return [str(e.get("value")) for e in tracker.latest_message.get("entities", []) if e.get("entity") == name]


def latest_text(tracker: Tracker) -> str:
    return (tracker.latest_message.get("text") or "").strip()


def has_words(text: str) -> bool:
    """Letters, characters or digits, not only emoji and punctuation."""
    return bool(re.search(r"[^\W_]", text or ""))


# Words that say nothing about what or where: "就那个嘛", "你懂的", "不知道", "就在这儿".
_FILLER = re.compile(r"你懂的|懂的|不知道|不清楚|说不清|不好说|没什么|不记得|忘了|反正|随便|就是|那个|这个|那些|这些|"
                     r"这里|那里|这儿|那儿|这边|那边|什么|[就在嘛吧呢啊呀哦噢额呃嗯唉哎的吗]|[\W_]")


def vague(text: str) -> bool:
    """Fewer than two characters of content once the filler words are gone."""
    return len(_FILLER.sub("", text or "")) < 2


def latest_intent(tracker: Tracker) -> str:
    return (tracker.latest_message.get("intent") or {}).get("name") or ""


def sure_of_intent(tracker: Tracker) -> bool:
    """Whether the model was sure of the intent it read the latest message as."""
    return ((tracker.latest_message.get("intent") or {}).get("confidence") or 0) >= SURE


def answers_the_question(tracker: Tracker) -> bool:
    """Whether the latest message reads as an answer rather than as a new request."""
    intent = tracker.latest_message.get("intent") or {}
    return not (intent.get("name") in OTHER_TASKS and (intent.get("confidence") or 0) >= 0.6)


def normalised_phone(text: str) -> Optional[str]:
    digits = re.sub(r"[\s\-－·]", "", text or "")
    match = PHONE.search(digits)
    return match.group() if match else None


async def person_of(session: AsyncSession, tracker: Tracker) -> Person:
    return await queries.person_for(session, channel_of(tracker), tracker.sender_id)


class PhoneSlot:
    """Mixed into a form's validation action: a mobile number asked for as `phone`."""

    async def extract_phone(self, dispatcher, tracker: Tracker, domain) -> dict:
        if tracker.get_slot("requested_slot") != "phone" or entity_values(tracker, "phone"):
            return {}
        text = latest_text(tracker)
        return {"phone": normalised_phone(text) or text[:20]} if re.search(r"\d", text) else {}

    async def validate_phone(self, value: Any, dispatcher, tracker: Tracker, domain) -> dict:
        # A number from an earlier message (a scammer's, in a report) is not one to call back: when
        # the form starts, only a number in the message that starts it is taken; else it is asked for.
        if tracker.get_slot("requested_slot") is None and not entity_values(tracker, "phone"):
            return {"phone": None}
        phone = normalised_phone(first(value) or "")
        if phone is None:
            dispatcher.utter_message(text="手机号应为11位数字（如 13900001234），请重新输入。")
        return {"phone": phone}
