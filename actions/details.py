"""A detail given with nothing being asked: the model reads "护栏歪了" or a bare plate as an answer
(inform), or cannot place it at all ("隔离栏被撞了" between a report and an answer), and no form is
open to take it. Rather than "not understood", the details say which task they belong to: a
facility starts a repair report, a plate and a violation start a 随手拍 report, a plate alone is
answered with what can be done with it, a plate that is not one says how plates are written.
Inside a form this changes nothing: the form had its turn and did not take the reply.
"""
from __future__ import annotations

from typing import List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import entity_values, has_words, latest_text
from actions.records.plates import parse_plate
from actions.vehicle_proof import PLATE_LIKE

NOT_MEANT = "如果不是要办这件事，回复“取消”即可。"


def plate_choices(plate: str) -> str:
    return (f"收到车牌 {plate}。您想办理哪一项？\n"
            f"· 查违章：回复“查违章{plate}”\n"
            f"· 随手拍举报这辆车：回复“举报{plate}”\n"
            f"· 绑定这辆车：回复“绑定{plate}”")


class ActionUnplacedDetail(Action):
    def name(self) -> Text:
        return "action_unplaced_detail"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        if tracker.active_loop_name:
            dispatcher.utter_message(response="utter_default")
            return []
        text = latest_text(tracker)
        # The model tags no plate in "鲁B1234I": something plate-like still gets the plate answer.
        match = PLATE_LIKE.search(text)
        said_plates = entity_values(tracker, "plate") or ([match.group()] if match else [])
        plates = [p for p in (parse_plate(v) for v in said_plates) if p]
        if entity_values(tracker, "facility_type") and not plates:
            dispatcher.utter_message(text="收到，这就帮您报修。" + NOT_MEANT)
            # The words are the description: "护栏歪了" says what is wrong; a bare "护栏" does not.
            described = [SlotSet("description", text[:1000])] if len(text) >= 4 and has_words(text) else []
            return described + [FollowupAction("report_facility_form")]
        if plates and entity_values(tracker, "violation_type"):
            dispatcher.utter_message(text="收到，这就帮您随手拍举报。" + NOT_MEANT)
            return [FollowupAction("report_violation_form")]
        if len(plates) == 1:
            dispatcher.utter_message(text=plate_choices(plates[0].number))
            return []
        if said_plates and not plates:
            dispatcher.utter_message(text=replies.malformed_plate(said_plates[0]))
            return []
        dispatcher.utter_message(response="utter_default")
        return []
