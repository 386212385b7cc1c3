"""The violation query: a form that asks for a plate and its proof, then discloses and audits."""
from __future__ import annotations

from typing import List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import channel_of
from actions.records import queries
from actions.runtime import database, settings
from actions.vehicle_proof import BOUND, VehicleProofForm, proved_vehicle

RESET = [SlotSet("plate", None), SlotSet("vin_suffix", None), SlotSet("proof_status", None)]


class ValidateQueryViolationsForm(VehicleProofForm, FormValidationAction):
    def name(self) -> Text:
        return "validate_query_violations_form"


class ActionShowViolations(Action):
    """Submits the query form: checks the proof once more, discloses, audits, forgets the proof."""

    def name(self) -> Text:
        return "action_show_violations"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        plate, status = tracker.get_slot("plate"), tracker.get_slot("proof_status")
        if not plate:
            return RESET
        async with database().session() as session, session.begin():
            person, vehicle = await proved_vehicle(session, tracker, dispatcher, binding_counts=True)
            if vehicle is None:
                return RESET
            rows = await queries.unprocessed_violations(session, vehicle.id)
            await queries.audit(session, person_id=person.id, channel=channel_of(tracker),
                                sender_id=tracker.sender_id, action="disclose_violations", subject=plate,
                                detail={"records": [r.record_no for r in rows],
                                        "proof": "binding" if status == BOUND else "vin_suffix"})
        dispatcher.utter_message(text=replies.violations_list(plate, vehicle.owner_name, rows,
                                                              settings().max_listed))
        return RESET
