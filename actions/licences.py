"""Licences: proved with the licence number plus the 12-digit 档案编号; binding and points."""
from __future__ import annotations

import re
from datetime import date
from typing import Any, Dict, List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import channel_of, first, has_entity, latest_text, person_of
from actions.records import queries
from actions.records.plates import is_valid_id_number, to_halfwidth
from actions.runtime import database, settings
from actions.vehicle_proof import BOUND, LOCKED, VERIFIED

RESET = [SlotSet("licence_no", None), SlotSet("file_no", None), SlotSet("proof_status", None)]
LICENCE_LIKE = re.compile(r"(?<![0-9A-Za-z])\d{15,19}[Xx]?(?![0-9A-Za-z])")
DIGITS = re.compile(r"(?<![0-9A-Za-z])\d{6,16}(?![0-9A-Za-z])")


def normalise_licence(raw: str) -> str:
    return re.sub(r"[\s\-·]", "", to_halfwidth(raw or "")).upper()


class LicenceProofForm:
    """Mixed into a FormValidationAction, like VehicleProofForm."""

    skip_proof_when_bound = True

    async def required_slots(self, domain_slots: List[Text], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: DomainDict) -> List[Text]:
        status = tracker.get_slot("proof_status")
        if status == LOCKED:
            return []
        if status == BOUND:
            return ["licence_no"] if self.skip_proof_when_bound else []
        return domain_slots

    async def extract_licence_no(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                 domain: DomainDict) -> Dict[Text, Any]:
        if has_entity(tracker, "licence_no") or tracker.get_slot("licence_no"):
            return {}
        requested = tracker.get_slot("requested_slot")
        match = LICENCE_LIKE.search(normalise_licence(latest_text(tracker)))
        if match and requested in (None, "licence_no"):
            return {"licence_no": match.group()}
        if requested is None and self.skip_proof_when_bound:
            async with database().session() as session, session.begin():
                person = await person_of(session, tracker)
                bound = await queries.bound_licences(session, person.id)
            if len(bound) == 1:
                return {"licence_no": bound[0].licence_no}
        return {}

    async def extract_file_no(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                              domain: DomainDict) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "file_no" or has_entity(tracker, "file_no"):
            return {}
        match = DIGITS.search(normalise_licence(latest_text(tracker)))
        return {"file_no": match.group()} if match else {}

    async def validate_licence_no(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: DomainDict) -> Dict[Text, Any]:
        number = normalise_licence(first(value) or "")
        if not is_valid_id_number(number):
            dispatcher.utter_message(text=replies.malformed_licence())
            return {"licence_no": None}
        cfg = settings()
        async with database().session() as session, session.begin():
            licence = await queries.licence_by_number(session, number)
            if licence is None:
                dispatcher.utter_message(text=replies.unknown_licence(cfg.city))
                return {"licence_no": None}
            person = await person_of(session, tracker)
            if any(lic.id == licence.id for lic in await queries.bound_licences(session, person.id)):
                return {"licence_no": number, "proof_status": BOUND}
            if await queries.proof_locked_until(session, person.id, number, cfg.proof):
                return {"licence_no": number, "proof_status": LOCKED}
        return {"licence_no": number, "proof_status": None}

    async def validate_file_no(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                               domain: DomainDict) -> Dict[Text, Any]:
        file_no = normalise_licence(first(value) or "")
        if not re.fullmatch(r"\d{12}", file_no):
            dispatcher.utter_message(text=replies.malformed_file_no())
            return {"file_no": None}
        cfg = settings()
        number = tracker.get_slot("licence_no")
        async with database().session() as session, session.begin():
            licence = await queries.licence_by_number(session, number) if number else None
            if licence is None:
                return {"file_no": None, "licence_no": None}
            person = await person_of(session, tracker)
            if await queries.proof_locked_until(session, person.id, number, cfg.proof):
                return {"proof_status": LOCKED}
            ok = licence.file_no == file_no
            await queries.record_proof_attempt(session, person.id, "licence", number, ok)
            if ok:
                return {"file_no": file_no, "proof_status": VERIFIED}
            if await queries.proof_locked_until(session, person.id, number, cfg.proof):
                return {"file_no": None, "proof_status": LOCKED}
            left = await queries.failures_left(session, person.id, cfg.proof)
        dispatcher.utter_message(text=replies.wrong_file_no(left))
        return {"file_no": None}


class ValidateQueryPointsForm(LicenceProofForm, FormValidationAction):
    def name(self) -> Text:
        return "validate_query_points_form"


class ValidateBindLicenceForm(LicenceProofForm, FormValidationAction):
    skip_proof_when_bound = False

    def name(self) -> Text:
        return "validate_bind_licence_form"


async def _proved_licence(session, tracker: Tracker, dispatcher: CollectingDispatcher):
    """The licence the form proved (or the person has bound), else None after saying why."""
    cfg = settings()
    number, status, file_no = (tracker.get_slot(s) for s in ("licence_no", "proof_status", "file_no"))
    person = await person_of(session, tracker)
    if status == LOCKED and number:
        until = await queries.proof_locked_until(session, person.id, number, cfg.proof)
        if until is not None:
            dispatcher.utter_message(text=replies.locked_out(until))
            return person, None
    licence = await queries.licence_by_number(session, number) if number else None
    if licence is None:
        return person, None
    bound = any(lic.id == licence.id for lic in await queries.bound_licences(session, person.id))
    if bound or (status == VERIFIED and licence.file_no == file_no):
        return person, licence
    dispatcher.utter_message(response="utter_default")
    return person, None


class ActionShowPoints(Action):
    def name(self) -> Text:
        return "action_show_points"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        async with database().session() as session, session.begin():
            person, licence = await _proved_licence(session, tracker, dispatcher)
            if licence is None:
                return RESET
            await queries.audit(session, person_id=person.id, channel=channel_of(tracker),
                                sender_id=tracker.sender_id, action="disclose_points",
                                subject=licence.licence_no,
                                detail={"points": licence.points,
                                        "proof": "binding" if tracker.get_slot("proof_status") == BOUND
                                        else "file_no"})
        dispatcher.utter_message(text=replies.points_summary(licence, date.today()))
        return RESET


class ActionBindLicence(Action):
    def name(self) -> Text:
        return "action_bind_licence"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        if tracker.get_slot("proof_status") == BOUND:
            dispatcher.utter_message(text=replies.licence_already_bound())
            return RESET
        async with database().session() as session, session.begin():
            person, licence = await _proved_licence(session, tracker, dispatcher)
            if licence is None:
                return RESET
            await queries.bind_licence(session, person.id, licence.id)
            await queries.audit(session, person_id=person.id, channel=channel_of(tracker),
                                sender_id=tracker.sender_id, action="bind_licence",
                                subject=licence.licence_no, detail={"proof": "file_no"})
        dispatcher.utter_message(text=replies.licence_bound())
        return RESET
