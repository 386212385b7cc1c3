"""The violation query: a form that asks for a plate and its proof, then discloses and audits."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.records import queries
from actions.records.plates import PROVINCES, in_jurisdiction, normalise_proof, parse_plate
from actions.runtime import database, settings

LOCKED, BOUND, VERIFIED = "locked", "bound", "verified"
_PROOF_TOKEN = re.compile(rf"(?<![A-Za-z0-9{PROVINCES}])[A-Za-z0-9]{{4,17}}(?![A-Za-z0-9])")
_PLATE_LIKE = re.compile(rf"[{PROVINCES}][A-Za-z][A-Za-z0-9]{{1,8}}")


def _channel(tracker: Tracker) -> str:
    return tracker.get_latest_input_channel() or "unknown"


def _first(value: Any) -> Optional[str]:
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else str(value)


def _has_entity(tracker: Tracker, name: str) -> bool:
    return any(e.get("entity") == name for e in tracker.latest_message.get("entities", []))


class ValidateQueryViolationsForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_query_violations_form"

    async def required_slots(self, domain_slots: List[Text], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: DomainDict) -> List[Text]:
        status = tracker.get_slot("proof_status")
        if status == LOCKED:
            return []
        if status == BOUND:
            return ["plate"]
        return domain_slots

    async def extract_plate(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                            domain: DomainDict) -> Dict[Text, Any]:
        """Something plate-like that the entity extractor refused: it gets its own answer."""
        if _has_entity(tracker, "plate"):
            return {}
        text = tracker.latest_message.get("text") or ""
        match = _PLATE_LIKE.search(text)
        if match is None and tracker.get_slot("requested_slot") == "plate":
            match = _PROOF_TOKEN.search(text)
        return {"plate": match.group()} if match else {}

    async def extract_vin_suffix(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                 domain: DomainDict) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "vin_suffix" or _has_entity(tracker, "plate"):
            return {}
        if _has_entity(tracker, "vin_suffix"):
            return {}
        text = tracker.latest_message.get("text") or ""
        match = _PROOF_TOKEN.search(text)
        if match:
            return {"vin_suffix": match.group()}
        if re.search(r"\d", text):  # digits, but not a plausible suffix: say what is expected
            return {"vin_suffix": text.strip()[:20]}
        return {}

    async def validate_plate(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> Dict[Text, Any]:
        raw = _first(value) or ""
        cfg = settings()
        plate = parse_plate(raw)
        if plate is None:
            dispatcher.utter_message(text=replies.malformed_plate(raw))
            return {"plate": None}
        if not in_jurisdiction(plate, cfg.jurisdiction):
            dispatcher.utter_message(text=replies.outside_jurisdiction(plate.number, cfg.city))
            return {"plate": None}
        db = database()
        async with db.session() as session, session.begin():
            vehicle = await queries.vehicle_by_plate(session, plate.number)
            if vehicle is None:
                dispatcher.utter_message(text=replies.unknown_plate(plate.number, cfg.city))
                return {"plate": None}
            person = await queries.person_for(session, _channel(tracker), tracker.sender_id)
            if await queries.is_bound(session, person.id, vehicle.id):
                return {"plate": plate.number, "proof_status": BOUND}
            if await queries.proof_locked_until(session, person.id, plate.number, cfg.proof):
                return {"plate": plate.number, "proof_status": LOCKED}
        return {"plate": plate.number, "proof_status": None}

    async def validate_vin_suffix(self, value: Any, dispatcher: CollectingDispatcher,
                                  tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        cfg = settings()
        proof = normalise_proof(_first(value) or "")
        if not re.fullmatch(rf"[A-Z0-9]{{{cfg.proof_length}}}", proof):
            dispatcher.utter_message(text=replies.malformed_proof(cfg.proof_length))
            return {"vin_suffix": None}
        plate = tracker.get_slot("plate")
        db = database()
        async with db.session() as session, session.begin():
            vehicle = await queries.vehicle_by_plate(session, plate) if plate else None
            if vehicle is None:
                return {"vin_suffix": None, "plate": None}
            person = await queries.person_for(session, _channel(tracker), tracker.sender_id)
            if await queries.proof_locked_until(session, person.id, plate, cfg.proof):
                return {"proof_status": LOCKED}
            ok = queries.proof_matches(vehicle, proof, cfg.proof_length)
            await queries.record_proof_attempt(session, person.id, "vehicle", plate, ok)
            if ok:
                return {"vin_suffix": proof, "proof_status": VERIFIED}
            if await queries.proof_locked_until(session, person.id, plate, cfg.proof):
                return {"vin_suffix": None, "proof_status": LOCKED}
            left = await queries.failures_left(session, person.id, cfg.proof)
        dispatcher.utter_message(text=replies.wrong_proof(left, cfg.proof_length))
        return {"vin_suffix": None}


class ActionShowViolations(Action):
    """Submits the query form: checks the proof once more, discloses, audits, forgets the proof."""

    def name(self) -> Text:
        return "action_show_violations"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        cfg = settings()
        plate = tracker.get_slot("plate")
        status = tracker.get_slot("proof_status")
        proof = tracker.get_slot("vin_suffix")
        reset = [SlotSet("plate", None), SlotSet("vin_suffix", None), SlotSet("proof_status", None)]
        if not plate:
            return reset
        channel = _channel(tracker)
        async with database().session() as session, session.begin():
            person = await queries.person_for(session, channel, tracker.sender_id)
            if status == LOCKED:
                until = await queries.proof_locked_until(session, person.id, plate, cfg.proof)
                if until is not None:
                    dispatcher.utter_message(text=replies.locked_out(until))
                    return reset
            vehicle = await queries.vehicle_by_plate(session, plate)
            allowed = vehicle is not None and (
                await queries.is_bound(session, person.id, vehicle.id)
                or (status == VERIFIED and queries.proof_matches(vehicle, proof, cfg.proof_length)))
            if not allowed:
                dispatcher.utter_message(response="utter_default")
                return reset
            rows = await queries.unprocessed_violations(session, vehicle.id)
            await queries.audit(session, person_id=person.id, channel=channel,
                                sender_id=tracker.sender_id, action="disclose_violations",
                                subject=plate, detail={"records": [r.record_no for r in rows],
                                                       "proof": "binding" if status == BOUND
                                                       else "vin_suffix"})
        dispatcher.utter_message(text=replies.violations_list(plate, vehicle.owner_name, rows,
                                                              cfg.max_listed))
        return reset
