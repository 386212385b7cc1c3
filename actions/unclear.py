"""A reply that is not plainly an answer or a request: one the model could not place (nlu_fallback),
a yes or no, or, while a form is asking something, one it read as out of scope.

With nothing being asked, a yes or no the model is unsure of ("😀😀", "嗯哼") is not taken as a yes.

Rasa does not validate a form's slots after another action has run in the turn, so without this the
reply would be dropped: "第二个" or "挑个靠后的" when asked for a time slot, "好了" when asked for photos,
a description in unusual words. The form's own validation action gets the reply first; only when it
takes nothing is the user told what the question expects.
"""
from __future__ import annotations

from typing import List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.appointments import ValidateBookRemoteProcessingForm
from actions.bindings import ValidateBindVehicleForm
from actions.common import latest_intent, sure_of_intent
from actions.licences import ValidateBindLicenceForm, ValidateQueryPointsForm
from actions.reports import (ValidateReportFacilityForm, ValidateReportMisconductForm,
                             ValidateReportViolationForm)
from actions.subscriptions import ValidateSubscribeForm
from actions.violations import ValidateQueryViolationsForm

VALIDATORS: dict[str, type[FormValidationAction]] = {
    "query_violations_form": ValidateQueryViolationsForm, "bind_vehicle_form": ValidateBindVehicleForm,
    "query_points_form": ValidateQueryPointsForm, "bind_licence_form": ValidateBindLicenceForm,
    "subscribe_form": ValidateSubscribeForm, "report_facility_form": ValidateReportFacilityForm,
    "report_violation_form": ValidateReportViolationForm, "report_misconduct_form": ValidateReportMisconductForm,
    "book_remote_processing_form": ValidateBookRemoteProcessingForm,
}
# What each question expects, said when a reply to it could not be understood.
HINTS = {
    "plate": "车牌号由省份简称、字母和5-6位字母数字组成，例如：鲁B12345、鲁BD12345。",
    "vin_suffix": "请发送车架号（VIN）或发动机号的最后6位，例如：672418；车架号印在行驶证上，也能在前挡风玻璃左下角看到。",
    "licence_no": "驾驶证号就是18位身份证号码，例如：370202199001011234。",
    "file_no": "档案编号是驾驶证副页上的12位数字。",
    "alert_channel": "可回复：1 就用这里，2 短信，3 电子邮件。",
    "phone": "请发送11位手机号，例如：13900001234。",
    "email": "请发送邮箱地址，例如：name@example.com。",
    "facility_type": "可回复：信号灯、交通标志、道路标线、护栏，或直接说哪里坏了。",
    "location": "请说出路名、路口或附近的地标，例如：香港中路与山东路路口；也可以直接发送微信位置。",
    "description": "请用一两句话说明问题，例如：红灯不亮、标志牌被树枝遮挡。",
    "photos_done": "请直接发送照片或视频；发完请回复“好了”。",
    "violation_type": "可回复：违法停车、闯红灯、逆行、占用应急车道、不礼让行人，或直接说看到了什么。",
    "report_time": "例如：刚才、今天上午8点、昨天下午三点半。",
    "appointment_kind": "可回复：1 交通事故，2 交通违法。",
    "appointment_slot": "请回复列表中的序号，也可以说“最早的”“明天下午”。",
}


# Said when nothing is being asked, by what the reply was read as.
PLAIN_REPLY = {"affirm": "utter_ok", "deny": "utter_ok", "out_of_scope": "utter_out_of_scope"}


class ActionUnclearReply(Action):
    def name(self) -> Text:
        return "action_unclear_reply"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        read_as, sure = latest_intent(tracker), sure_of_intent(tracker)
        validator = VALIDATORS.get((tracker.active_loop or {}).get("name"))
        requested = tracker.get_slot("requested_slot")
        if validator is None or requested is None:
            dispatcher.utter_message(response=PLAIN_REPLY.get(read_as, "utter_default") if sure else "utter_default")
            return []
        said = len(dispatcher.messages)
        events = await validator().run(dispatcher, tracker, domain)
        answered = any(e.get("event") == "slot" and e.get("name") == requested and e.get("value") is not None
                       for e in events) \
            or getattr(validator, "understands", lambda _: False)(tracker)
        if answered or len(dispatcher.messages) != said:
            return events
        if read_as == "out_of_scope":
            dispatcher.utter_message(response="utter_out_of_scope")
        elif read_as == "affirm" and sure:
            pass  # "好的": the form asks its question again
        else:
            if requested == "alert_address":  # where alerts go: a phone for SMS, else an e-mail address
                requested = "email" if tracker.get_slot("alert_channel") == "email" else "phone"
            lead = "" if read_as == "deny" and sure else "抱歉，没有看懂这条回复。"
            tail = "如不再办理，请回复“取消”。" if read_as == "deny" else ""
            dispatcher.utter_message(text=lead + HINTS.get(requested, "") + tail)
        return events
