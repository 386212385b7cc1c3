"""Binding vehicles and licences to a person, unbinding, and listing what is bound."""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import channel_of, entity_values, person_of
from actions.records import queries
from actions.records.masking import mask_id_number
from actions.records.plates import parse_plate
from actions.runtime import database
from actions.vehicle_proof import BOUND, LIMIT, VehicleProofForm, proved_vehicle

RESET = [SlotSet("plate", None), SlotSet("vin_suffix", None), SlotSet("proof_status", None)]


class ValidateBindVehicleForm(VehicleProofForm, FormValidationAction):
    skip_proof_when_bound = False

    def name(self) -> Text:
        return "validate_bind_vehicle_form"

    async def check_bound(self, session, person_id: int, vehicle, dispatcher) -> Dict[Text, Any]:
        if await queries.is_bound(session, person_id, vehicle.id):
            return {"plate": vehicle.plate, "proof_status": BOUND}
        if len(await queries.bound_vehicles(session, person_id)) >= queries.MAX_BOUND_VEHICLES:
            return {"plate": vehicle.plate, "proof_status": LIMIT}
        return {}


class ActionBindVehicle(Action):
    def name(self) -> Text:
        return "action_bind_vehicle"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        plate, status = tracker.get_slot("plate"), tracker.get_slot("proof_status")
        if not plate:
            return RESET
        if status == BOUND:
            dispatcher.utter_message(text=replies.already_bound(plate))
            return RESET
        if status == LIMIT:
            dispatcher.utter_message(text=replies.binding_limit(queries.MAX_BOUND_VEHICLES))
            return RESET
        async with database().session() as session, session.begin():
            # Binding needs this conversation's proof: an existing binding does not count.
            person, vehicle = await proved_vehicle(session, tracker, dispatcher, binding_counts=False)
            if vehicle is None:
                return RESET
            if len(await queries.bound_vehicles(session, person.id)) >= queries.MAX_BOUND_VEHICLES:
                dispatcher.utter_message(text=replies.binding_limit(queries.MAX_BOUND_VEHICLES))
                return RESET
            await queries.bind_vehicle(session, person.id, vehicle.id)
            await queries.audit(session, person_id=person.id, channel=channel_of(tracker),
                                sender_id=tracker.sender_id, action="bind_vehicle", subject=plate,
                                detail={"proof": "vin_suffix"})
        dispatcher.utter_message(text=replies.vehicle_bound(plate))
        return RESET


class ActionUnbindVehicle(Action):
    def name(self) -> Text:
        return "action_unbind_vehicle"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        plates = [p for p in (parse_plate(v) for v in entity_values(tracker, "plate")) if p]
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            bound = await queries.bound_vehicles(session, person.id)
            if not bound:
                dispatcher.utter_message(text=replies.nothing_bound())
                return RESET
            if not plates:
                dispatcher.utter_message(
                    text="请问要解绑哪辆车？",
                    buttons=[{"title": v.plate, "payload": f'/unbind_vehicle{{"plate": "{v.plate}"}}'} for v in bound])
                return RESET
            target = next((v for v in bound if v.plate == plates[0].number), None)
            if target is None:
                dispatcher.utter_message(text=replies.not_bound(plates[0].number))
                return RESET
            await queries.unbind_vehicle(session, person.id, target.id)
            await queries.audit(session, person_id=person.id, channel=channel_of(tracker),
                                sender_id=tracker.sender_id, action="unbind_vehicle", subject=target.plate,
                                detail={})
        dispatcher.utter_message(text=replies.vehicle_unbound(target.plate))
        return RESET


class ActionListBindings(Action):
    def name(self) -> Text:
        return "action_list_bindings"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            vehicles = await queries.bound_vehicles(session, person.id)
            licences = await queries.bound_licences(session, person.id)
        if not vehicles and not licences:
            dispatcher.utter_message(text=replies.nothing_bound())
            return []
        lines = []
        if vehicles:
            lines.append(f"已绑定车辆（{len(vehicles)}/{queries.MAX_BOUND_VEHICLES}）：")
            lines += [f"{i}. {v.plate}" for i, v in enumerate(vehicles, start=1)]
        if licences:
            lines.append("已绑定驾驶证：")
            lines += [f"{i}. {mask_id_number(lic.licence_no)}" for i, lic in enumerate(licences, start=1)]
        lines.append("发送“解绑”加车牌号可解除绑定。")
        dispatcher.utter_message(text="\n".join(lines))
        return []
