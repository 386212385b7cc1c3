"""Writes domain.yml and data/rules.yml from one description of intents, slots and forms, so that
every form gets the same start, submit, cancel and interruption rules.

    python scripts/write_dialogue.py
"""
from pathlib import Path

import json

import yaml

ROOT = Path(__file__).resolve().parents[1]

INTENTS = """greet goodbye thank affirm deny cancel help out_of_scope human_handoff feedback_suggestion
inform query_violations query_points bind_vehicle unbind_vehicle list_bindings bind_licence
subscribe_alerts unsubscribe_alerts report_facility report_violation query_report_status
my_report_stats report_misconduct book_remote_processing faq link_account""".split()
ENTITIES = """plate vin_suffix licence_no file_no report_no appointment_no phone email facility_type
violation_type location time channel appointment_kind photo latitude longitude appointment_slot""".split()

def ent(name, forms=(), requested_slot=None):
    """From an entity; with forms, only while one of them asks for this slot."""
    m = {"type": "from_entity", "entity": name}
    if forms:
        m["conditions"] = [{"active_loop": f, "requested_slot": requested_slot} for f in forms]
    return m
def custom():
    return {"type": "custom"}

SLOTS = {
  "plate": ("text", [ent("plate"), custom()]),
  "vin_suffix": ("text", [ent("vin_suffix", ("query_violations_form", "bind_vehicle_form"), "vin_suffix"), custom()]),
  "proof_status": ("text", [custom()]),
  "licence_no": ("text", [ent("licence_no"), custom()]),
  "file_no": ("text", [ent("file_no", ("query_points_form", "bind_licence_form"), "file_no"), custom()]),
  "alert_channel": ("text", [custom()]),
  "alert_address": ("text", [custom()]),
  "phone": ("text", [ent("phone"), custom()]),
  "facility_type": ("text", [ent("facility_type")]),
  "location": ("text", [ent("location"), custom()]),
  "latitude": ("text", [ent("latitude")]),
  "longitude": ("text", [ent("longitude")]),
  "description": ("text", [custom()]),
  "photo": ("text", [ent("photo")]),
  "photos": ("list", [custom()]),
  "photos_done": ("bool", [custom()]),
  "violation_type": ("text", [ent("violation_type")]),
  "report_time": ("text", [ent("time"), custom()]),
  "appointment_kind": ("text", [ent("appointment_kind"), custom()]),
  "appointment_slot": ("text", [ent("appointment_slot"), custom()]),
  "offered_slots": ("list", [custom()]),
}

FORMS = {
  "query_violations_form": ("query_violations", ["plate", "vin_suffix"], "action_show_violations"),
  "bind_vehicle_form": ("bind_vehicle", ["plate", "vin_suffix"], "action_bind_vehicle"),
  "query_points_form": ("query_points", ["licence_no", "file_no"], "action_show_points"),
  "bind_licence_form": ("bind_licence", ["licence_no", "file_no"], "action_bind_licence"),
  "subscribe_form": ("subscribe_alerts", ["alert_channel", "alert_address"], "action_subscribe"),
  "report_facility_form": ("report_facility", ["facility_type", "location", "description", "photos_done"], "action_submit_facility_report"),
  "report_violation_form": ("report_violation", ["plate", "violation_type", "location", "report_time", "photos_done"], "action_submit_violation_report"),
  "report_misconduct_form": ("report_misconduct", ["description"], "action_submit_misconduct_report"),
  "book_remote_processing_form": ("book_remote_processing", ["appointment_kind", "appointment_slot", "phone"], "action_book_appointment"),
}

def btn(title, intent, **entities):
    payload = "/" + intent + (json.dumps(entities, ensure_ascii=False) if entities else "")
    return {"title": title, "payload": payload}

HELP = ("我可以帮您办理：\n1. 查违章：发送“查违章”加车牌号\n2. 查驾驶证记分：发送“我还有几分”\n"
        "3. 绑定车辆/驾驶证：绑定后查询无需再验证\n4. 订阅提醒：新违法、年检、换证、举报结果\n"
        "5. 随手拍举报交通违法、报修信号灯和标志标线\n6. 查询举报进度和我的举报统计\n"
        "7. 举报买卖分、黄牛、“驾考包过”等线索\n8. 预约远程视频处理事故或违法\n"
        "9. 解答罚款缴纳、记分、年检、换证、异地违法等常见问题\n需要人工服务请发送“转人工”。")

# Text messages are billed per 67 characters: SMS gets short versions of the long answers.
SMS_HELP = "可发：查违章鲁B12345、我还有几分、绑定车辆、订阅提醒、随手拍、报修信号灯、我的举报、预约、转人工。回复TD退订。"

RESPONSES = {
  "utter_greet": [{"text": "您好，这里是交警助手。" + HELP}, {"text": "您好！" + SMS_HELP, "channel": "sms"}],
  "utter_help": [{"text": HELP}, {"text": SMS_HELP, "channel": "sms"}],
  "utter_goodbye": [{"text": "感谢使用交警助手，祝您一路平安！"}],
  "utter_thank": [{"text": "不客气，祝您出行平安！还有其他问题随时发消息给我。"}],
  "utter_ok": [{"text": "好的。还有什么可以帮您？发送“帮助”可查看我能做什么。"}],
  "utter_out_of_scope": [{"text": "抱歉，这个问题不在我的服务范围内。" + HELP},
                         {"text": "抱歉，这不在我的服务范围内。" + SMS_HELP, "channel": "sms"}],
  "utter_default": [{"text": "抱歉，我没有理解您的意思。您可以换个说法，或发送“帮助”查看我能做什么，发送“转人工”联系值班民警。"}],
  "utter_ask_query_violations_form_plate": [{"text": "请告诉我要查询的车牌号，例如：鲁B12345。"}],
  "utter_ask_query_violations_form_vin_suffix": [{"text": "为保护车主隐私，请提供该车车架号（VIN）或发动机号的后6位。"}],
  "utter_ask_bind_vehicle_form_plate": [{"text": "请告诉我要绑定的车牌号，例如：鲁B12345。"}],
  "utter_ask_bind_vehicle_form_vin_suffix": [{"text": "请提供该车车架号（VIN）或发动机号的后6位，用于核实您是车主或使用人。"}],
  "utter_ask_query_points_form_licence_no": [{"text": "请提供驾驶证号（即18位身份证号码）。"}],
  "utter_ask_query_points_form_file_no": [{"text": "请提供驾驶证副页上的12位档案编号，用于核实身份。"}],
  "utter_ask_bind_licence_form_licence_no": [{"text": "请提供要绑定的驾驶证号（即18位身份证号码）。"}],
  "utter_ask_bind_licence_form_file_no": [{"text": "请提供驾驶证副页上的12位档案编号。"}],
  "utter_ask_subscribe_form_alert_channel": [{"text": "请问提醒通过哪个渠道发送给您？", "buttons": [
      btn("就用这里", "inform", channel="here"), btn("短信", "inform", channel="sms"), btn("电子邮件", "inform", channel="email")]}],
  "utter_ask_report_facility_form_facility_type": [{"text": "请问是哪类设施出了问题？", "buttons": [
      btn("信号灯", "inform", facility_type="signal"), btn("交通标志", "inform", facility_type="sign"),
      btn("道路标线", "inform", facility_type="marking"), btn("护栏", "inform", facility_type="guardrail"),
      btn("其他设施", "inform", facility_type="other")]}],
  "utter_ask_report_facility_form_location": [{"text": "请告诉我具体位置（如“香港中路与山东路路口”），也可以直接发送微信位置。"}],
  "utter_ask_report_facility_form_description": [{"text": "请简单描述问题，例如“红灯不亮”“标志牌被树枝遮挡”。"}],
  "utter_ask_report_facility_form_photos_done": [{"text": "如有现场照片请直接发送（最多5张）；发完或没有照片请回复“好了”。"}],
  "utter_ask_report_violation_form_plate": [{"text": "请提供违法车辆的车牌号。"}],
  "utter_ask_report_violation_form_violation_type": [{"text": "请问是什么违法行为？", "buttons": [
      btn("违法停车", "inform", violation_type="illegal_parking"), btn("闯红灯", "inform", violation_type="red_light"),
      btn("逆行", "inform", violation_type="wrong_way"), btn("占用应急车道", "inform", violation_type="emergency_lane"),
      btn("不礼让行人", "inform", violation_type="not_yielding"), btn("其他", "inform", violation_type="other")]}],
  "utter_ask_report_violation_form_location": [{"text": "请问在什么地点？也可以直接发送微信位置。"}],
  "utter_ask_report_violation_form_report_time": [{"text": "请问大概什么时间发生的？例如“今天上午8点”。"}],
  "utter_ask_report_violation_form_photos_done": [{"text": "请发送违法行为的照片或视频（至少1份，最多5份），发完请回复“好了”。"}],
  "utter_ask_report_misconduct_form_description": [{"text": "请描述您了解的情况：什么人、在哪里、怎么收费或承诺什么。我们会为您保密。"}],
  "utter_ask_book_remote_processing_form_appointment_kind": [{"text": "请问要远程处理哪类业务？", "buttons": [
      btn("交通事故（轻微、无人伤亡）", "inform", appointment_kind="accident"), btn("交通违法", "inform", appointment_kind="violation")]}],
  "utter_ask_book_remote_processing_form_phone": [{"text": "请提供联系手机号，民警将通过它与您视频联系。"}],
}

FAQ_ANSWERS = yaml.safe_load(open(ROOT / "data" / "reference" / "faq_answers.yml", encoding="utf-8"))["responses"]
RESPONSES.update(FAQ_ANSWERS)

ACTIONS = ["validate_" + f for f in FORMS] + sorted({v[2] for v in FORMS.values()}) + [
  "action_unbind_vehicle", "action_list_bindings", "action_unsubscribe", "action_report_status",
  "action_report_stats", "action_human_handoff", "action_store_feedback", "action_cancel",
  "action_forget_forms", "action_ask_appointment_slot", "action_link_account", "action_unclear_reply",
  "action_ask_alert_address", "action_unplaced_detail"]

domain = {
  "version": "3.1",
  "intents": INTENTS,
  "entities": ENTITIES,
  "slots": {name: {"type": t, "influence_conversation": False, "mappings": m} for name, (t, m) in SLOTS.items()},
  "forms": {name: {"required_slots": slots} for name, (_, slots, _) in FORMS.items()},
  "actions": ACTIONS,
  "responses": RESPONSES,
  "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": False},
}

rules = []
def rule(name, steps, condition=None):
    r = {"rule": name}
    if condition: r["condition"] = condition
    r["steps"] = steps
    rules.append(r)

SIMPLE = [("greet", "utter_greet"), ("goodbye", "utter_goodbye"), ("thank", "utter_thank"), ("help", "utter_help"),
          ("out_of_scope", "utter_out_of_scope"), ("nlu_fallback", "action_unplaced_detail"), ("faq", "utter_faq"),
          ("affirm", "action_unclear_reply"), ("deny", "action_unclear_reply"), ("inform", "action_unplaced_detail"),
          ("human_handoff", "action_human_handoff"), ("feedback_suggestion", "action_store_feedback"),
          ("list_bindings", "action_list_bindings"), ("unbind_vehicle", "action_unbind_vehicle"),
          ("unsubscribe_alerts", "action_unsubscribe"), ("query_report_status", "action_report_status"),
          ("my_report_stats", "action_report_stats"), ("link_account", "action_link_account")]
for intent, action in SIMPLE:
    rule(f"{intent}: {action}", [{"intent": intent}, {"action": action}])
rule("cancel with nothing under way", [{"intent": "cancel"}, {"action": "action_cancel"}, {"active_loop": None}])

# A reply that may still answer the question (a yes or no, one the model could not place or read as out
# of scope: "好了", "挑个靠后的") goes to the form's validation first, by action_unclear_reply.
INTERRUPTIONS = [("faq", "utter_faq"), ("help", "utter_help"), ("greet", "utter_greet"), ("thank", "utter_thank"),
                 ("link_account", "action_link_account")] + [
                 (intent, "action_unclear_reply") for intent in ("nlu_fallback", "affirm", "deny", "out_of_scope")]
for form, (intent, slots, submit) in FORMS.items():
    rule(f"{form}: start", [{"intent": intent}, {"action": form}, {"active_loop": form}])
    rule(f"{form}: submit", [{"action": form}, {"active_loop": None}, {"slot_was_set": [{"requested_slot": None}]},
                             {"action": submit}], condition=[{"active_loop": form}])
    rule(f"{form}: cancel", [{"intent": "cancel"}, {"action": "action_cancel"}, {"active_loop": None}],
         condition=[{"active_loop": form}])
    rule(f"{form}: goodbye ends it", [{"intent": "goodbye"}, {"action": "utter_goodbye"}, {"action": "action_forget_forms"},
                                      {"active_loop": None}], condition=[{"active_loop": form}])
    rule(f"{form}: hand-off ends it", [{"intent": "human_handoff"}, {"action": "action_human_handoff"},
                                       {"action": "action_forget_forms"}, {"active_loop": None}],
         condition=[{"active_loop": form}])
    for i_intent, response in INTERRUPTIONS:
        rule(f"{form}: {i_intent} in the middle", [{"intent": i_intent}, {"action": response}, {"action": form},
                                                   {"active_loop": form}], condition=[{"active_loop": form}])

class Dumper(yaml.SafeDumper):
    pass
def str_rep(d, s):
    return d.represent_scalar("tag:yaml.org,2002:str", s, style='"' if ("\n" in s or s.startswith("/") or s in ("yes","no","on","off")) else None)
Dumper.add_representer(str, str_rep)
hdr = "# Written by scripts/write_dialogue.py from one description of the forms: edit that, then run it.\n"
open(ROOT / "domain.yml", "w").write(hdr + yaml.dump(domain, Dumper=Dumper, allow_unicode=True, sort_keys=False, width=120))
open(ROOT / "data" / "rules.yml", "w").write(hdr + yaml.dump({"version": "3.1", "rules": rules}, Dumper=Dumper, allow_unicode=True, sort_keys=False, width=120))
print(len(rules), "rules")
