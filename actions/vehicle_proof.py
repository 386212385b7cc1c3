"""A form that needs a vehicle proved: a plate, then the last characters of its VIN or engine
number. Shared by the violation query and vehicle binding."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Text

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import first, has_entity, latest_text, person_of
from actions.records import queries
from actions.records.plates import PROVINCES, in_jurisdiction, normalise_proof, parse_plate
from actions.runtime import database, settings

LOCKED, BOUND, VERIFIED, LIMIT = "locked", "bound", "verified", "limit"
PROOF_TOKEN = re.compile(rf"(?<![A-Za-z0-9{PROVINCES}])[A-Za-z0-9]{{4,17}}(?![A-Za-z0-9])")
PLATE_LIKE = re.compile(rf"[{PROVINCES}][A-Za-z][A-Za-z0-9]{{1,8}}")


class VehicleProofForm:
    """Mixed into a FormValidationAction (first, so that its methods win): the subclass names
    the form and says what a bound vehicle means for it. Not an Action itself, so rasa_sdk does
    not try to register it."""

    skip_proof_when_bound = True

    async def required_slots(self, domain_slots: List[Text], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: DomainDict) -> List[Text]:
        status = tracker.get_slot("proof_status")
        if status in (LOCKED, LIMIT):
            return []
        if status == BOUND:
            return ["plate"] if self.skip_proof_when_bound else []
        return domain_slots

    async def extract_plate(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                            domain: DomainDict) -> Dict[Text, Any]:
        """Something plate-like that the entity extractor refused, so that it gets its own answer;
        or, when nothing was said, the person's only bound vehicle."""
        if has_entity(tracker, "plate") or tracker.get_slot("plate"):
            return {}
        text = latest_text(tracker)
        match = PLATE_LIKE.search(text)
        requested = tracker.get_slot("requested_slot")
        if match is None and requested == "plate":
            match = PROOF_TOKEN.search(text)
        if match:
            return {"plate": match.group()}
        if requested is None and self.skip_proof_when_bound:
            async with database().session() as session, session.begin():
                person = await person_of(session, tracker)
                bound = await queries.bound_vehicles(session, person.id)
            if len(bound) == 1:
                return {"plate": bound[0].plate}
        return {}

    async def extract_vin_suffix(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                 domain: DomainDict) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "vin_suffix" or has_entity(tracker, "plate"):
            return {}
        if has_entity(tracker, "vin_suffix"):
            return {}
        text = latest_text(tracker)
        match = PROOF_TOKEN.search(text)
        if match:
            return {"vin_suffix": match.group()}
        if re.search(r"\d", text):  # digits, but not a plausible suffix: say what is expected
            return {"vin_suffix": text[:20]}
        return {}

    async def check_bound(self, session, person_id: int, vehicle, dispatcher) -> Dict[Text, Any]:
        """What a vehicle this person has bound means here (before any proof is asked)."""
        if await queries.is_bound(session, person_id, vehicle.id):
            return {"plate": vehicle.plate, "proof_status": BOUND}
        return {}

    async def validate_plate(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> Dict[Text, Any]:
        raw = first(value) or ""
        cfg = settings()
        plate = parse_plate(raw)
        if plate is None:
            dispatcher.utter_message(text=replies.malformed_plate(raw))
            return {"plate": None}
        if not in_jurisdiction(plate, cfg.jurisdiction):
            dispatcher.utter_message(text=replies.outside_jurisdiction(plate.number, cfg.city))
            return {"plate": None}
        async with database().session() as session, session.begin():
            vehicle = await queries.vehicle_by_plate(session, plate.number)
            if vehicle is None:
                dispatcher.utter_message(text=replies.unknown_plate(plate.number, cfg.city))
                return {"plate": None}
            person = await person_of(session, tracker)
            bound = await self.check_bound(session, person.id, vehicle, dispatcher)
            if bound:
                return bound
            if await queries.proof_locked_until(session, person.id, plate.number, cfg.proof):
                return {"plate": plate.number, "proof_status": LOCKED}
        return {"plate": plate.number, "proof_status": None}

    async def validate_vin_suffix(self, value: Any, dispatcher: CollectingDispatcher,
                                  tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        cfg = settings()
        proof = normalise_proof(first(value) or "")
        if not re.fullmatch(rf"[A-Z0-9]{{{cfg.proof_length}}}", proof):
            dispatcher.utter_message(text=replies.malformed_proof(cfg.proof_length))
            return {"vin_suffix": None}
        plate = tracker.get_slot("plate")
        async with database().session() as session, session.begin():
            vehicle = await queries.vehicle_by_plate(session, plate) if plate else None
            if vehicle is None:
                return {"vin_suffix": None, "plate": None}
            person = await person_of(session, tracker)
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


async def proved_vehicle(session, tracker: Tracker, dispatcher: CollectingDispatcher, *,
                         binding_counts: bool):
    """At submit time, the vehicle the form proved (or, if binding_counts, one the person has
    bound), checked once more against the records; else None after saying why."""
    cfg = settings()
    plate, status, proof = (tracker.get_slot(s) for s in ("plate", "proof_status", "vin_suffix"))
    person = await person_of(session, tracker)
    if status == LOCKED:
        until = await queries.proof_locked_until(session, person.id, plate, cfg.proof)
        if until is not None:
            dispatcher.utter_message(text=replies.locked_out(until))
            return person, None
    vehicle = await queries.vehicle_by_plate(session, plate)
    proved = vehicle is not None and (
        (binding_counts and await queries.is_bound(session, person.id, vehicle.id))
        or (status == VERIFIED and queries.proof_matches(vehicle, proof, cfg.proof_length)))
    if not proved:
        dispatcher.utter_message(response="utter_default")
        return person, None
    return person, vehicle
