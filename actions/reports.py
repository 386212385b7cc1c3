"""Reports from the public: broken facilities, violations (随手拍), misconduct; their status and
the reporter's statistics."""
from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Text

import yaml

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import (answers_the_question, channel_of, entity_values, first, has_words, latest_intent,
                            latest_text, person_of, vague)
from actions.records import queries
from actions.records.clock import now_local
from actions.records.plates import parse_plate
from actions.runtime import database
from actions.timeparse import parse_when

MAX_PHOTOS = 5
FACILITY_TYPES = ("signal", "sign", "marking", "guardrail", "other")
VIOLATION_TYPES = ("illegal_parking", "red_light", "wrong_way", "emergency_lane", "not_yielding", "queue_jumping",
                   "phone_use", "solid_line", "bus_lane", "honking", "no_seatbelt", "other")
DONE_WORDS = re.compile(r"^(好了|好|没有|没了|没有了|无|完成|完了|就这些|发完了|跳过|不用|不用了|不发了|ok|OK|done|no)[。.!！]?$")
REPORT_SLOTS = ("facility_type", "location", "latitude", "longitude", "description", "photo", "photos",
                "photos_done", "violation_type", "report_time", "plate", "requested_slot")
RESET = [SlotSet(name, None) for name in REPORT_SLOTS]
MAX_AGE = timedelta(days=7)


@lru_cache(maxsize=1)
def kind_words() -> tuple[tuple[str, str], ...]:
    """(words, kind) pairs of the training data's synonyms, longest words first."""
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "nlu" / "lookups.yml").read_text("utf-8"))
    pairs = [(line.strip()[2:].strip(), item["synonym"]) for item in data.get("nlu", []) if "synonym" in item
             for line in item["examples"].splitlines() if line.strip().startswith("- ")]
    return tuple(sorted(pairs, key=lambda pair: -len(pair[0])))


def kind_or_own_words(tracker: Tracker, slot: str, value: Any, kinds: tuple) -> Dict[Text, Any]:
    """The first named kind among the model's values (it may tag a stray word beside it); else
    "other", with the reporter's own words kept as the description."""
    values = value if isinstance(value, list) else [value]
    # The model may tag a longer span than a synonym ("占了应急车道"): the synonym inside it names the kind.
    named = [v if v in kinds else next((k for w, k in kind_words() if w in str(v)), None) for v in values]
    named = [v for v in named if v in kinds and v != "other"]
    return {slot: named[0]} if named else {slot: "other", **in_own_words(tracker)}


def typed_answer(tracker: Tracker, slot: str, entity: str, limit: int) -> Dict[Text, Any]:
    """The reply's own text for the slot being asked for, when the model found no entity for it."""
    if entity_values(tracker, entity) or tracker.get_slot("requested_slot") != slot:
        return {}
    text = latest_text(tracker)
    return {slot: text[:limit]} if has_words(text) and answers_this_report(tracker) else {}


def answers_this_report(tracker: Tracker) -> bool:
    """"路灯不亮" reads as report_facility; inside that report's own form it is the answer."""
    own_task = latest_intent(tracker) == (tracker.active_loop_name or "").removesuffix("_form")
    return own_task or answers_the_question(tracker)


def in_own_words(tracker: Tracker) -> Dict[Text, Any]:
    """A kind filed as "other" keeps the reporter's words (超速, 路面有个大坑...) as the description,
    so staff can tell what it was; a button's payload is not words."""
    text = latest_text(tracker)
    said = tracker.get_slot("description")
    if not text or text.startswith("/") or (said and text in said):
        return {"description": said}
    return {"description": f"{said}；{text}"[:1000] if said else text[:1000]}


class ReportForm:
    """Mixed into the three report forms' FormValidationActions: free-text answers, locations
    and photos."""

    photos_required = False
    description_example = "例如：红灯不亮、标志牌被树枝遮挡。"

    async def extract_location(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                               domain: DomainDict) -> Dict[Text, Any]:
        return typed_answer(tracker, "location", "location", 200)

    async def extract_description(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: DomainDict) -> Dict[Text, Any]:
        requested = tracker.get_slot("requested_slot")
        text = latest_text(tracker)
        if requested is None and latest_intent(tracker).startswith("report_") and len(text) >= 8:
            return {"description": text[:1000]}  # the report itself says what is wrong
        if requested == "description" and text and answers_this_report(tracker):
            return {"description": text[:1000]}
        return {}

    async def required_slots(self, domain_slots: List[Text], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: DomainDict) -> List[Text]:
        # rasa_sdk returns only required slots: "photos" is listed last so that the photos
        # gathered on the way survive. It starts as [] and so is never asked for.
        return domain_slots + ["photos"] if "photos_done" in domain_slots else domain_slots

    async def extract_photos(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> Dict[Text, Any]:
        """Photos and videos, whenever they arrive, join the report (at most MAX_PHOTOS)."""
        photos = list(tracker.get_slot("photos") or [])
        new = [p for p in entity_values(tracker, "photo") if p not in photos]
        if not new:
            return {"photos": photos}
        photos = (photos + new)[:MAX_PHOTOS]
        if len(photos) >= MAX_PHOTOS:
            return {"photos": photos, "photos_done": True}
        if tracker.get_slot("requested_slot") == "photos_done":
            dispatcher.utter_message(text=f"已收到 {len(photos)} 张。")
        return {"photos": photos}

    async def extract_photos_done(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: DomainDict) -> Dict[Text, Any]:
        """"好了", "没有" and the like end the photos."""
        if tracker.get_slot("requested_slot") != "photos_done" or entity_values(tracker, "photo"):
            return {}
        if latest_intent(tracker) in ("affirm", "deny") or DONE_WORDS.match(latest_text(tracker)):
            return {"photos_done": True}
        return {}

    async def validate_photos_done(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                   domain: DomainDict) -> Dict[Text, Any]:
        if self.photos_required and not tracker.get_slot("photos"):
            dispatcher.utter_message(text=replies.evidence_rules())
            return {"photos_done": None}
        return {"photos_done": bool(value)}

    async def validate_location(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                domain: DomainDict) -> Dict[Text, Any]:
        location = (first(value) or "").strip()
        if len(location) < 2 or not re.search(r"[\u4e00-\u9fffA-Za-z]", location) or vague(location):
            dispatcher.utter_message(text="请说明具体位置，例如“香港中路与山东路路口”，或直接发送微信位置。")
            return {"location": None}
        return {"location": location[:200]}

    async def validate_description(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                   domain: DomainDict) -> Dict[Text, Any]:
        text = (first(value) or "").strip()
        if len(text) < 2 or not has_words(text):
            dispatcher.utter_message(text="请用文字简单描述一下情况。")
            return {"description": None}
        if vague(text):
            dispatcher.utter_message(text="请说得具体一些。" + self.description_example)
            return {"description": None}
        return {"description": text[:1000]}


class ValidateReportFacilityForm(ReportForm, FormValidationAction):
    def name(self) -> Text:
        return "validate_report_facility_form"

    async def extract_facility_type(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                    domain: DomainDict) -> Dict[Text, Any]:
        # A reply the model found no kind in is still an answer: asking again would never end.
        return typed_answer(tracker, "facility_type", "facility_type", 200)

    async def validate_facility_type(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                     domain: DomainDict) -> Dict[Text, Any]:
        return kind_or_own_words(tracker, "facility_type", value, FACILITY_TYPES)


class ValidateReportViolationForm(ReportForm, FormValidationAction):
    photos_required = True

    def name(self) -> Text:
        return "validate_report_violation_form"

    async def extract_violation_type(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                     domain: DomainDict) -> Dict[Text, Any]:
        # A reply the model found no kind in is still an answer: asking again would never end.
        return typed_answer(tracker, "violation_type", "violation_type", 200)

    async def validate_violation_type(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                      domain: DomainDict) -> Dict[Text, Any]:
        return kind_or_own_words(tracker, "violation_type", value, VIOLATION_TYPES)

    async def extract_report_time(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: DomainDict) -> Dict[Text, Any]:
        return typed_answer(tracker, "report_time", "time", 60)

    async def extract_plate(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                            domain: DomainDict) -> Dict[Text, Any]:
        if entity_values(tracker, "plate") or tracker.get_slot("requested_slot") != "plate":
            return {}
        text = latest_text(tracker)
        if re.search(r"看不清|不清楚|没看到|不知道", text):
            return {"plate": "unknown"}
        return {"plate": text[:20]} if text and answers_the_question(tracker) else {}

    async def validate_plate(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> Dict[Text, Any]:
        raw = first(value) or ""
        if raw == "unknown":
            dispatcher.utter_message(text="号牌不清晰的举报通常无法受理，请尽量提供能看清号牌的照片或视频。")
            return {"plate": None}
        plate = parse_plate(raw)
        if plate is None:
            dispatcher.utter_message(text=replies.malformed_plate(raw))
            return {"plate": None}
        return {"plate": plate.number}

    async def validate_report_time(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                   domain: DomainDict) -> Dict[Text, Any]:
        now = now_local()
        when = parse_when(first(value) or "", now)
        if when is None:
            dispatcher.utter_message(text="没能识别时间，请说明大概的日期和时间，例如“今天上午8点”或“11月20日14:30”。")
            return {"report_time": None}
        if when > now + timedelta(minutes=5):
            dispatcher.utter_message(text="违法行为发生的时间不能晚于现在，请重新输入。")
            return {"report_time": None}
        if now - when > MAX_AGE:
            dispatcher.utter_message(text="超过7天的违法行为一般不再受理举报，请及时举报。")
            return {"report_time": None}
        return {"report_time": when.strftime("%Y-%m-%d %H:%M")}


class ValidateReportMisconductForm(ReportForm, FormValidationAction):
    description_example = "什么人、在哪里、怎么收费或承诺了什么，知道多少说多少。"

    def name(self) -> Text:
        return "validate_report_misconduct_form"


class SubmitReport:
    """Mixed into the three submit actions; `kind` says which report it files."""

    kind = ""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        slot = tracker.get_slot
        fields: Dict[str, Any] = {"location": slot("location"), "latitude": slot("latitude"),
                                  "longitude": slot("longitude"), "description": slot("description")}
        if self.kind == "facility":
            fields["facility_type"] = slot("facility_type") or "other"
        if self.kind == "violation":
            fields.update(plate=slot("plate"), violation_type=slot("violation_type") or "other")
            when = slot("report_time")
            fields["occurred_at"] = parse_when(when, now_local()) if when else None
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            report = await queries.create_report(session, person_id=person.id, channel=channel_of(tracker),
                                                 kind=self.kind, photos=list(slot("photos") or []),
                                                 **{k: v for k, v in fields.items() if v is not None})
        dispatcher.utter_message(text=replies.report_received(self.kind, report.report_no,
                                                              len(slot("photos") or [])))
        return RESET


class ActionSubmitFacilityReport(SubmitReport, Action):
    kind = "facility"

    def name(self) -> Text:
        return "action_submit_facility_report"


class ActionSubmitViolationReport(SubmitReport, Action):
    kind = "violation"

    def name(self) -> Text:
        return "action_submit_violation_report"


class ActionSubmitMisconductReport(SubmitReport, Action):
    kind = "misconduct"

    def name(self) -> Text:
        return "action_submit_misconduct_report"


class ActionReportStatus(Action):
    def name(self) -> Text:
        return "action_report_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        numbers = [re.sub(r"\s", "", v).upper() for v in entity_values(tracker, "report_no")]
        if not numbers:
            match = re.search(r"R\s*\d{4}\s*\d{4}\s*\d{4}", latest_text(tracker).upper())
            numbers = [re.sub(r"\s", "", match.group())] if match else []
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            if numbers:
                report: Optional[Any] = await queries.report_for(session, person.id, numbers[0])
                if report is None:
                    # Someone else's report, or none: the same answer either way.
                    dispatcher.utter_message(text=replies.report_not_found(numbers[0]))
                    return []
                reports = [report]
            else:
                reports = await queries.recent_reports(session, person.id)
        dispatcher.utter_message(text=replies.report_statuses(reports))
        return []


class ActionReportStats(Action):
    def name(self) -> Text:
        return "action_report_stats"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            stats = await queries.report_stats(session, person.id)
        dispatcher.utter_message(text=replies.report_stats(stats))
        return []
