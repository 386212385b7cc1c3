"""End to end, every conversation of the public: bindings, points, alerts, reports, appointments,
FAQ, hand-off, feedback, cancelling and changing the subject, through the WeChat webhook."""
from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta

import pytest
import requests
from sqlalchemy import select

from actions.records.clock import BEIJING
from actions.records.db import make_sync_engine
from actions.records.models import (Appointment, AppointmentSlot, ChannelIdentity, Feedback, Handoff, Person,
                                    Report, ReportMedia, Subscription, Vehicle, VehicleBinding)
from tests.support.wechat_user import WeChatUser, next_msg_id

pytestmark = pytest.mark.e2e

ASK_PROOF = "后6位"


def talk(user: WeChatUser, *messages: str) -> str:
    """Send each message in turn; the text of the last answer."""
    reply = None
    for message in messages:
        reply = user.say(message)
        assert reply.status == 200, message
        assert reply.text is not None, f"no passive answer to {message!r}"
    return reply.text


def query(assistant, statement):
    engine = make_sync_engine(assistant.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(statement).all()
    finally:
        engine.dispose()


def person_id(assistant, user: WeChatUser) -> int:
    [(pid,)] = query(assistant, select(ChannelIdentity.person_id).where(ChannelIdentity.external_id == user.openid))
    return pid


def send_xml(user: WeChatUser, kind: str, body: str) -> str:
    xml = (f"<xml><ToUserName>gh</ToUserName><FromUserName>{user.openid}</FromUserName>"
           f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{kind}</MsgType>{body}"
           f"<MsgId>{next_msg_id()}</MsgId></xml>")
    reply = user.post_xml(xml)
    assert reply.status == 200 and reply.text is not None
    return reply.text


def send_photo(user: WeChatUser, n: int = 1) -> str:
    return send_xml(user, "image", f"<PicUrl>http://mmbiz.example/{user.openid}-{n}.jpg</PicUrl><MediaId>m{n}</MediaId>")


# -- bindings -------------------------------------------------------------------------------

def test_bind_a_vehicle_then_query_without_proof(assistant):
    user = WeChatUser(assistant.platform)
    assert ASK_PROOF in talk(user, "绑定车辆鲁B12345")
    assert "绑定成功" in talk(user, "672418")
    listing = talk(user, "查违章")  # the only bound vehicle, no proof asked
    assert "鲁B12345" in listing and "有 3 条未处理" in listing
    assert "已经绑定" in talk(user, "绑定车辆鲁B12345")
    bound = talk(user, "我绑定了哪些车")
    assert "鲁B12345" in bound and "1/5" in bound
    assert "已解除 鲁B12345 的绑定" in talk(user, "解绑鲁B12345")
    assert ASK_PROOF in talk(user, "查一下鲁B12345的违章")  # unbound: proof again


def test_at_most_five_vehicles(assistant):
    user = WeChatUser(assistant.platform)
    cars = query(assistant, select(Vehicle.plate, Vehicle.vin).where(Vehicle.plate.like("鲁B%"))
                 .order_by(Vehicle.id).offset(10).limit(6))
    for plate, vin in cars[:5]:
        talk(user, f"绑定车辆{plate}")
        assert "绑定成功" in talk(user, vin[-6:]), plate
    plate, _ = cars[5]
    assert "最多绑定 5 辆" in talk(user, f"绑定车辆{plate}")
    assert len(query(assistant, select(VehicleBinding).where(VehicleBinding.person_id == person_id(assistant, user)))) == 5


def test_bind_a_licence_then_points_without_proof(assistant):
    user = WeChatUser(assistant.platform)
    assert "18位身份证号码" in talk(user, "绑定驾驶证")
    assert "12位档案编号" in talk(user, "370202199003071233")
    assert "驾驶证绑定成功" in talk(user, "370200900001")
    points = talk(user, "我还有几分")
    assert "已记 6 分，剩余 6 分" in points and "张*明" in points and "张晓明" not in points


def test_points_with_proof_and_the_rules(assistant):
    user = WeChatUser(assistant.platform)
    talk(user, "查驾照分")
    talk(user, "370202198511120041")
    full = talk(user, "370200900002")
    assert "已记 12 分" in full and "科目一" in full and "不能学法减分" in full
    other = WeChatUser(assistant.platform)
    talk(other, "我还有几分", "37020220030521002X")
    probation = talk(other, "370200900003")
    assert "实习期" in probation and "记分周期" in probation
    wrong = WeChatUser(assistant.platform)
    talk(wrong, "我还有几分", "370202199003071233")
    assert "档案编号与驾驶证号不符" in talk(wrong, "370200900009")


# -- alerts ---------------------------------------------------------------------------------

def test_subscribe_by_sms_and_unsubscribe(assistant):
    user = WeChatUser(assistant.platform)
    assert "哪个渠道" in talk(user, "订阅违章提醒")
    assert "手机号" in talk(user, "短信")
    assert "11位" in talk(user, "1390000")
    done = talk(user, "13900001234")
    assert "订阅成功" in done and "139****1234" in done and "22:00" in done
    pid = person_id(assistant, user)
    subs = query(assistant, select(Subscription.alert_kind).where(Subscription.person_id == pid,
                                                                  Subscription.active.is_(True)))
    assert {k for (k,) in subs} == {"violation", "inspection", "licence", "report"}
    assert "已退订" in talk(user, "退订短信提醒")
    assert query(assistant, select(Subscription).where(Subscription.person_id == pid,
                                                       Subscription.active.is_(True))) == []


def test_a_question_while_the_phone_is_asked_for_does_not_lose_it(assistant):
    user = WeChatUser(assistant.platform)
    talk(user, "订阅违章提醒")
    assert "手机号" in talk(user, "短信")
    detour = talk(user, "罚款怎么交")
    assert "12123" in detour and "手机号" in detour and "订阅成功" not in detour
    done = talk(user, "13900004321")
    assert "订阅成功" in done and "139****4321" in done
    [(phone,)] = query(assistant, select(Person.phone).where(Person.id == person_id(assistant, user)))
    assert phone == "13900004321"


def test_a_channel_not_offered_is_named_with_those_that_are(assistant):
    user = WeChatUser(assistant.platform)
    talk(user, "订阅违章提醒")
    answer = talk(user, "发我QQ上")
    assert "暂不支持通过QQ" in answer and "短信" in answer and "电子邮件" in answer
    assert "订阅成功" in talk(user, "1")


def test_subscribe_here_on_wechat(assistant):
    user = WeChatUser(assistant.platform)
    assert "哪个渠道" in talk(user, "有违章的话通知我")
    done = talk(user, "1")  # the first choice: this channel
    assert "订阅成功" in done and "通过微信发送" in done and "绑定车辆" in done
    assert "已退订" in talk(user, "TD")


# -- reports --------------------------------------------------------------------------------

def test_report_a_broken_signal_with_a_photo(assistant):
    user = WeChatUser(assistant.platform)
    asked = talk(user, "香港中路与山东路路口的红绿灯不亮了")
    assert "照片" in asked
    assert "已收到 1 张" in send_photo(user)
    done = talk(user, "好了")
    number = re.search(r"R\d{12}", done).group()
    assert "24小时" in done
    [(kind, facility, location, status)] = query(assistant, select(
        Report.kind, Report.facility_type, Report.location, Report.status).where(Report.report_no == number))
    assert (kind, facility, status) == ("facility", "signal", "received") and "香港中路" in location
    photos = query(assistant, select(ReportMedia.url).join(Report, Report.id == ReportMedia.report_id)
                   .where(Report.report_no == number))
    assert len(photos) == 1


def test_report_a_facility_with_a_wechat_location(assistant):
    user = WeChatUser(assistant.platform)
    assert "位置" in talk(user, "我要报修，有个标志牌倒了")
    after = send_xml(user, "location", "<Location_X>36.0671</Location_X><Location_Y>120.3826</Location_Y>"
                                       "<Scale>15</Scale><Label>山东省青岛市市南区东海西路</Label>")
    assert "照片" in after
    done = talk(user, "没有")
    number = re.search(r"R\d{12}", done).group()
    [(facility, location, lat)] = query(assistant, select(Report.facility_type, Report.location, Report.latitude)
                                        .where(Report.report_no == number))
    assert facility == "sign" and "东海西路" in location and lat == "36.0671"


@pytest.mark.parametrize("answer", [
    "路面有个大坑",   # no facility named: the model tags nothing
    "路灯不亮",       # reads as a new facility report, which is the form's own task
])
def test_facility_kind_in_free_words_is_the_answer_and_the_description(assistant, answer):
    user = WeChatUser(assistant.platform)
    assert "哪类设施" in talk(user, "我要报修交通设施")
    assert "位置" in talk(user, answer)             # not asked again, and no description asked for
    assert "照片" in talk(user, "香港中路")
    number = re.search(r"R\d{12}", talk(user, "好了")).group()
    [(facility, description)] = query(assistant, select(Report.facility_type, Report.description)
                                      .where(Report.report_no == number))
    assert facility == "other" and answer in description


def test_report_a_violation_needs_evidence(assistant):
    user = WeChatUser(assistant.platform)
    talk(user, "举报鲁B54321在香港中路违停")
    asked = talk(user, "昨天上午8点")
    assert "照片或视频" in asked
    rules = talk(user, "好了")
    assert "至少一张照片或一段视频" in rules and "12秒" in rules
    send_photo(user)
    done = talk(user, "好了")
    number = re.search(r"R\d{12}", done).group()
    [(kind, plate, vtype, occurred)] = query(assistant, select(Report.kind, Report.plate, Report.violation_type,
                                                               Report.occurred_at).where(Report.report_no == number))
    assert (kind, plate, vtype) == ("violation", "鲁B54321", "illegal_parking")
    assert occurred.hour == 8


@pytest.mark.parametrize("answer, vtype, description", [
    ("占了应急车道", "emergency_lane", None),        # a stray tag, or a span around the synonym: the kind wins
    ("车停在消防通道上", "other", "车停在消防通道上"),  # no named kind: "other", in the reporter's words
    ("超速了", "other", "超速了"),
    ("一直在那儿堵着别人出不去", "other", "一直在那儿堵着别人出不去"),  # nothing tagged: still an answer
])
def test_violation_kind_in_free_words(assistant, answer, vtype, description):
    user = WeChatUser(assistant.platform)
    assert "什么违法行为" in talk(user, "我要举报鲁B54321")
    assert "地点" in talk(user, answer)
    talk(user, "香港中路")
    talk(user, "昨天上午8点")
    send_photo(user)
    number = re.search(r"R\d{12}", talk(user, "好了")).group()
    [(stored_type, stored_description)] = query(assistant, select(Report.violation_type, Report.description)
                                                .where(Report.report_no == number))
    assert (stored_type, stored_description) == (vtype, description)


def test_a_vague_answer_is_asked_to_say_more(assistant):
    user = WeChatUser(assistant.platform)
    talk(user, "我要举报黄牛")
    assert "具体" in talk(user, "嗯嗯那个")
    number = re.search(r"R\d{12}", talk(user, "车管所门口有人收500块说驾考包过")).group()
    assert query(assistant, select(Report.description).where(Report.report_no == number)) == \
        [("车管所门口有人收500块说驾考包过",)]
    talk(user, "报修信号灯")
    asked = talk(user, "不知道")                  # where it is: not an answer
    assert "具体位置" in asked or "位置" in asked
    assert "照片" in talk(user, "香港中路与山东路路口", "红灯不亮")
    number = re.search(r"R\d{12}", talk(user, "好了")).group()
    assert query(assistant, select(Report.location).where(Report.report_no == number)) == [("香港中路与山东路路口",)]


def test_report_status_and_statistics_are_private(assistant):
    user = WeChatUser(assistant.platform)
    done = talk(user, "车管所门口有黄牛，说交钱驾考包过")
    number = re.search(r"R\d{12}", done).group()
    assert "诈骗" in done and "保密" in done
    status = talk(user, f"查询举报{number}")
    assert number in status and "待审核" in status
    assert number in talk(user, "我的举报")
    assert "共提交举报 1 条" in talk(user, "我的举报统计")
    stranger = WeChatUser(assistant.platform)
    assert "没有找到" in talk(stranger, f"查询举报{number}")
    assert "还没有提交过" in talk(stranger, "我的举报")


# -- appointments ---------------------------------------------------------------------------

def test_book_a_remote_appointment(assistant):
    user = WeChatUser(assistant.platform)
    offer = talk(user, "预约远程视频处理事故")
    assert "回复 1：" in offer and "时段" in offer
    assert "手机号" in talk(user, "1")
    done = talk(user, "13900005678")
    number = re.search(r"A\d{12}", done).group()
    assert "139****5678" in done and "视频" in done
    [(kind, phone)] = query(assistant, select(Appointment.kind, Appointment.contact_phone)
                            .where(Appointment.appointment_no == number))
    assert (kind, phone) == ("accident", "13900005678")


def test_a_number_from_an_earlier_report_is_not_taken_as_the_contact_phone(assistant):
    user = WeChatUser(assistant.platform)
    talk(user, "举报一个诈骗电话19900012345，冒充交警说我违章让我转账")
    talk(user, "预约远程处理违章")
    assert "手机号" in talk(user, "1")                 # asked for, not assumed
    done = talk(user, "13900005678")
    assert "139****5678" in done and "2345" not in done


def test_an_address_from_an_earlier_report_is_not_where_alerts_go(assistant):
    user = WeChatUser(assistant.platform)
    talk(user, "有人冒充交警从 fake122@example.com 给我发邮件说要交罚款，举报这个诈骗")
    talk(user, "订阅违章提醒")
    assert "邮箱地址" in talk(user, "3")               # asked for, not assumed
    done = talk(user, "me@example.org")
    assert "me@example.org" in done and "fake122" not in done


def test_a_phone_written_in_groups_up_front_is_not_asked_for_again(assistant):
    user = WeChatUser(assistant.platform)
    offer = talk(user, "想约个视频处理违章，电话 139 8765-4321")
    assert "回复 1：" in offer and "手机号" not in offer
    done = talk(user, "1")
    number = re.search(r"A\d{12}", done).group()
    assert "139****4321" in done
    [(kind, phone)] = query(assistant, select(Appointment.kind, Appointment.contact_phone)
                            .where(Appointment.appointment_no == number))
    assert (kind, phone) == ("violation", "13987654321")


def offered_slots(offer: str) -> list[str]:
    """The numbered choices of a slot offer, as shown: "12月07日（周一）09:30-10:00"."""
    return re.findall(r"回复 \d+：(\d{2}月\d{2}日（周.）\d{2}:\d{2}-\d{2}:\d{2})", offer)


def booked_start(assistant, done: str) -> str:
    number = re.search(r"A\d{12}", done).group()
    [(starts_at,)] = query(assistant, select(AppointmentSlot.starts_at).join(
        Appointment, Appointment.slot_id == AppointmentSlot.id).where(Appointment.appointment_no == number))
    return f"{starts_at:%m月%d日}（周{'一二三四五六日'[starts_at.weekday()]}）{starts_at:%H:%M}"


def a_working_day_ahead(days: int) -> date:
    day = datetime.now(BEIJING).date() + timedelta(days=days)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


@pytest.mark.parametrize("answer, place", [("第二个", 1), ("要最后一个", -1)])
def test_a_slot_picked_in_words(assistant, answer, place):
    user = WeChatUser(assistant.platform)
    choices = offered_slots(talk(user, "预约远程处理违章"))
    assert len(choices) >= 3
    assert "手机号" in talk(user, answer)
    assert booked_start(assistant, talk(user, "13900005678")) == choices[place][:-6]


def test_a_day_named_in_words_shows_that_days_slots(assistant):
    day = a_working_day_ahead(3)
    user = WeChatUser(assistant.platform)
    talk(user, "预约远程视频处理事故")
    offer = talk(user, f"{day.month}月{day.day}日下午")
    choices = offered_slots(offer)
    assert choices and all(c.startswith(f"{day:%m月%d日}") and c[-11:-6] >= "14:00" for c in choices), offer
    assert "手机号" in talk(user, "最后一个")
    assert booked_start(assistant, talk(user, "13900005678")) == choices[-1][:-6]


def test_an_exact_time_in_words_is_booked(assistant):
    day = a_working_day_ahead(4)
    user = WeChatUser(assistant.platform)
    talk(user, "预约远程处理违章")
    assert "手机号" in talk(user, f"{day.month}月{day.day}号上午十点半")
    assert booked_start(assistant, talk(user, "13900005678")).endswith("10:30")


def slot_order(choice: str) -> tuple:
    """A shown slot as a sortable key; a January day offered in December comes after it."""
    month, day, clock = re.match(r"(\d{2})月(\d{2})日（周.）(\d{2}:\d{2})", choice).groups()
    ahead = int(month) < datetime.now(BEIJING).month
    return (ahead, int(month), int(day), clock)


@pytest.mark.parametrize("answer", ["挑个靠后的", "有没有晚一点的", "不要太早的"])
def test_later_slots_on_asking_for_them(assistant, answer):
    user = WeChatUser(assistant.platform)
    first = offered_slots(talk(user, "预约远程处理违章"))
    offer = talk(user, answer)
    later = offered_slots(offer)
    assert later and min(map(slot_order, later)) > max(map(slot_order, first)), offer
    assert "没有看懂" not in offer and "服务范围" not in offer
    assert "手机号" in talk(user, "第一个")
    assert booked_start(assistant, talk(user, "13900005678")) == later[0][:-6]


@pytest.mark.parametrize("question", ["今天天气怎么样", "明天股票会涨吗"])
def test_a_question_about_something_else_that_names_a_day_is_not_a_choice_of_day(assistant, question):
    user = WeChatUser(assistant.platform)
    first = offered_slots(talk(user, "预约远程处理违章"))
    reply = talk(user, question)
    assert "服务范围" in reply and "今天" not in reply and "明天" not in reply, reply
    assert offered_slots(reply) == first          # the question comes again with the same choices
    assert "手机号" in talk(user, "第一个")


def test_a_weekend_day_says_why_and_offers_the_nearest(assistant):
    today = datetime.now(BEIJING).date()
    saturday = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
    user = WeChatUser(assistant.platform)
    talk(user, "预约远程处理违章")
    offer = talk(user, f"{saturday.month}月{saturday.day}日上午")
    assert "没有可约的时段" in offer and "工作日" in offer and offered_slots(offer)


# -- questions, people, changes of mind ------------------------------------------------------

@pytest.mark.parametrize("question, expected", [
    ("罚款怎么交", "12123"),
    ("驾照满12分会怎么样", "12"),
    ("学法减分怎么弄", "减分"),
    ("私家车多久年检一次", "年"),
    ("驾照快到期了怎么换", "90"),
    ("外地的违章能在青岛处理吗", "违"),
    ("随手拍有什么要求", "视频"),
    ("有人说驾考包过靠谱吗", "诈骗"),
])
def test_faq_answers(assistant, question, expected):
    answer = talk(WeChatUser(assistant.platform), question)
    assert expected in answer
    assert re.search(r"12123|公安部|办法|条例|规定|官方|为准", answer)  # it says where the source is


def test_handoff_and_feedback_are_stored(assistant):
    user = WeChatUser(assistant.platform)
    assert "人工" in talk(user, "转人工")
    assert "感谢您的意见" in talk(user, "建议你们增加英文服务")
    pid = person_id(assistant, user)
    assert query(assistant, select(Handoff.status).where(Handoff.person_id == pid)) == [("open",)]
    assert query(assistant, select(Feedback.text).where(Feedback.person_id == pid)) == [("建议你们增加英文服务",)]


def test_cancel_in_the_middle_of_a_form(assistant):
    user = WeChatUser(assistant.platform)
    talk(user, "绑定车辆")
    assert "已取消" in talk(user, "算了不绑了")
    assert "交警助手" in talk(user, "你好")            # nothing is being asked any more
    talk(user, "预约远程处理")
    assert "已取消" in talk(user, "取消")


def test_a_question_in_the_middle_of_a_form_and_back(assistant):
    user = WeChatUser(assistant.platform)
    assert ASK_PROOF in talk(user, "查一下鲁B12345的违章")
    detour = talk(user, "罚款在哪里交")
    assert "12123" in detour and ASK_PROOF in detour   # answered, and the question is asked again
    assert "有 3 条未处理" in talk(user, "672418")


def test_traditional_in_traditional_out(assistant):
    user = WeChatUser(assistant.platform)
    asked = talk(user, "查詢魯B12345的違章")
    assert "為保護車主隱私" in asked
    listing = talk(user, "672418")
    assert "條未處理的交通違法記錄" in listing


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("message", ["", "😀😀", "<script>alert(1)</script>", "'; DROP TABLE reports; --",
                                     "查" * 5000])
def test_bad_input_gets_a_clear_answer(assistant, message):
    reply = WeChatUser(assistant.platform).say(message)
    assert reply.status == 200 and reply.text
    assert "<script>" not in reply.text


@pytest.mark.parametrize("plate", ["鲁BI2345", "鲁BO2345", "鲁B1234", "Q B12345"])
def test_almost_valid_plates(assistant, plate):
    text = talk(WeChatUser(assistant.platform), f"查一下{plate}的违章")
    assert "不是有效的车牌号" in text or "车牌号" in text


@pytest.mark.parametrize("proof", ["67241", "6724188"])
def test_vin_suffix_of_the_wrong_length(assistant, proof):
    user = WeChatUser(assistant.platform)
    talk(user, "查一下鲁B12345的违章")
    assert "应为6个字母或数字" in talk(user, proof)


# -- a reply that is not plainly an answer: unplaced, a yes or no, out of scope ---------------
# Which intent a message gets is the model's business; the action that the rules run for these
# is called here as Rasa calls it, over HTTP on the real action server.

def run_action(assistant, action: str, form, requested, text: str, read_as, entities=(), **slots) -> dict:
    """The action server's answer to `action`, for a tracker whose latest message is `text`."""
    from rasa.shared.core.domain import Domain

    parse = {"text": text, "intent": {"name": read_as[0], "confidence": read_as[1]}, "entities": list(entities)}
    tracker = {"sender_id": f"{action}-{next_msg_id()}", "slots": {"requested_slot": requested, **slots},
               "latest_message": parse, "latest_input_channel": "wechat", "active_loop": {"name": form} if form else {},
               "events": [{"event": "user", "text": text, "parse_data": parse, "input_channel": "wechat"}]}
    body = {"next_action": action, "sender_id": tracker["sender_id"], "tracker": tracker,
            "domain": Domain.load("domain.yml").as_dict(), "version": "3.6.21"}
    res = requests.post(f"{assistant.stack.config.actions_url}/webhook", json=body, timeout=30)
    assert res.status_code == 200, res.text
    return res.json()


def said_in(answer: dict) -> list:
    return [r.get("text") or r.get("response") or "" for r in answer["responses"]]  # text, or a response's name


def unclear_reply(assistant, form: str, requested: str, text: str, read_as=("nlu_fallback", 0.2),
                  **slots) -> tuple[list, list]:
    answer = run_action(assistant, "action_unclear_reply", form, requested, text, read_as, **slots)
    return [(e["name"], e["value"]) for e in answer["events"] if e["event"] == "slot"], said_in(answer)


def test_an_unclear_reply_that_answers_the_question_is_taken(assistant):
    slots, said = unclear_reply(assistant, "subscribe_form", "alert_address", "我的号 139 0000 4321 吧",
                                alert_channel="sms")
    assert ("alert_address", "13900004321") in slots and said == []
    slots, said = unclear_reply(assistant, "book_remote_processing_form", "appointment_slot", "那就第二个呗",
                                appointment_kind="violation", offered_slots=["11", "12", "13"])
    assert ("appointment_slot", "12") in slots and said == []


def test_an_unclear_reply_that_answers_nothing_is_told_what_is_asked(assistant):
    slots, said = unclear_reply(assistant, "subscribe_form", "alert_address", "就那个嘛", alert_channel="sms")
    assert not [v for k, v in slots if k == "alert_address" and v] and "11位手机号" in " ".join(said)
    slots, said = unclear_reply(assistant, "report_misconduct_form", "description", "😀😀")
    assert not [v for k, v in slots if k == "description" and v] and "文字" in " ".join(said)
    _, said = unclear_reply(assistant, "query_violations_form", "vin_suffix", "就那个嘛", plate="鲁B12345")
    assert "后6位" in " ".join(said) and "行驶证" in " ".join(said)


def test_a_yes_or_no_in_the_middle_of_a_form(assistant):
    slots, said = unclear_reply(assistant, "report_facility_form", "photos_done", "好了", ("affirm", 0.95),
                                facility_type="signal", location="香港中路", description="红灯不亮")
    assert ("photos_done", True) in slots and said == []
    _, said = unclear_reply(assistant, "query_violations_form", "plate", "好的", ("affirm", 0.95))
    assert said == []                                     # the form asks again, nothing more
    _, said = unclear_reply(assistant, "query_violations_form", "vin_suffix", "不知道", ("deny", 0.9),
                            plate="鲁B12345")
    assert "行驶证" in said[0] and "取消" in said[0] and "没有看懂" not in said[0]
    _, said = unclear_reply(assistant, "query_violations_form", "plate", "嗯哼", ("affirm", 0.5))
    assert "没有看懂" in said[0] and "鲁B12345" in said[0]


def test_out_of_scope_in_the_middle_of_a_form(assistant):
    _, said = unclear_reply(assistant, "bind_vehicle_form", "plate", "股票怎么样", ("out_of_scope", 0.9))
    assert said == ["utter_out_of_scope"]
    _, said = unclear_reply(assistant, "book_remote_processing_form", "appointment_slot", "挑个靠后的",
                            ("out_of_scope", 0.8), appointment_kind="violation", offered_slots=["1", "2"])
    assert said == []                                     # the slots after those are offered next
    _, said = unclear_reply(assistant, "book_remote_processing_form", "appointment_slot", "明天下午行吗",
                            ("out_of_scope", 0.8), appointment_kind="violation", offered_slots=["1", "2"])
    assert said == []                                     # a day and a time: tomorrow afternoon's slots next
    _, said = unclear_reply(assistant, "book_remote_processing_form", "appointment_slot", "明天天气怎么样",
                            ("out_of_scope", 0.99), appointment_kind="violation", offered_slots=["1", "2"])
    assert said == ["utter_out_of_scope"]                 # a day alone, in a question about something else


def test_a_yes_the_model_is_unsure_of_with_nothing_asked(assistant):
    _, said = unclear_reply(assistant, None, None, "😀😀", ("affirm", 0.5))
    assert said == ["utter_default"]                     # "没有理解您的意思"
    _, said = unclear_reply(assistant, None, None, "好的", ("affirm", 0.95))
    assert said == ["utter_ok"]


# -- a detail with nothing being asked: "护栏歪了", a bare plate ----------------------------------

def entity(name: str, value: str) -> dict:
    return {"entity": name, "value": value, "start": 0, "end": len(value)}


def unplaced_detail(assistant, text: str, entities=(), read_as=("inform", 0.6), form=None, **slots):
    answer = run_action(assistant, "action_unplaced_detail", form, slots.pop("requested", None), text, read_as,
                        entities, **slots)
    followups = [e["name"] for e in answer["events"] if e["event"] == "followup"]
    slot_events = [(e["name"], e["value"]) for e in answer["events"] if e["event"] == "slot"]
    return followups, slot_events, said_in(answer)


def test_a_facility_and_its_fault_start_the_repair_report(assistant):
    followups, slots, said = unplaced_detail(assistant, "护栏歪了", [entity("facility_type", "guardrail")])
    assert followups == ["report_facility_form"] and ("description", "护栏歪了") in slots
    assert "报修" in said[0] and "取消" in said[0]
    # Unplaced by the model ("隔离栏被撞了" between a report and an answer): the same.
    followups, _, _ = unplaced_detail(assistant, "隔离栏被撞了", [entity("facility_type", "guardrail")],
                                      ("nlu_fallback", 0.3))
    assert followups == ["report_facility_form"]
    followups, slots, _ = unplaced_detail(assistant, "护栏", [entity("facility_type", "guardrail")])
    assert followups == ["report_facility_form"] and slots == []  # a bare kind says nothing of the fault


def test_a_plate_and_a_violation_start_a_report(assistant):
    followups, _, said = unplaced_detail(assistant, "鲁B12345 闯红灯",
                                         [entity("plate", "鲁B12345"), entity("violation_type", "red_light")])
    assert followups == ["report_violation_form"] and "举报" in said[0]


@pytest.mark.parametrize("plate", ["鲁B12345", "鲁B·3K7Q2", "鲁BD12345"])
def test_a_bare_plate_is_answered_with_what_can_be_done(assistant, plate):
    followups, slots, [text] = unplaced_detail(assistant, plate, [entity("plate", plate)])
    number = plate.replace("·", "")
    assert followups == [] and slots == []
    assert f"查违章{number}" in text and f"举报{number}" in text and f"绑定{number}" in text


def test_an_unplaced_detail_that_says_nothing_usable(assistant):
    _, _, said = unplaced_detail(assistant, "鲁BI2345", [entity("plate", "鲁BI2345")])
    assert "不是有效的车牌号" in said[0] and "鲁B12345" in said[0]
    _, _, said = unplaced_detail(assistant, "鲁B1234I")  # plate-like, but the model tagged nothing
    assert "“鲁B1234I”不是有效的车牌号" in said[0]
    assert unplaced_detail(assistant, "😀😀", read_as=("nlu_fallback", 0.2))[2] == ["utter_default"]
    # Inside a form that did not take the reply, nothing starts: the old answer.
    followups, _, said = unplaced_detail(assistant, "护栏歪了", [entity("facility_type", "guardrail")],
                                         form="query_violations_form", requested="plate")
    assert followups == [] and said == ["utter_default"]


def test_a_fault_said_first_goes_on_to_a_filed_report(assistant):
    """Whether the model reads it as a report or as an answer with nothing asked, it becomes one."""
    user = WeChatUser(assistant.platform)
    assert "位置" in talk(user, "护栏歪了")
    answer = talk(user, "香港中路与山东路路口")
    if "描述" in answer:
        answer = talk(user, "护栏被撞歪了")
    assert "照片" in answer
    done = talk(user, "好了")
    number = re.search(r"R\d{12}", done)
    assert number, done
    [(kind, where, description)] = query(assistant, select(Report.facility_type, Report.location, Report.description)
                                         .where(Report.report_no == number.group()))
    assert (kind, where) == ("guardrail", "香港中路与山东路路口") and "护栏" in description


def test_a_bare_plate_through_the_assistant(assistant):
    text = talk(WeChatUser(assistant.platform), "鲁B12345")
    assert "查违章鲁B12345" in text and "举报鲁B12345" in text
    assert "违章" in text and "有 3 条" not in text  # nothing about the vehicle is disclosed
    assert "不是有效的车牌号" in talk(WeChatUser(assistant.platform), "鲁B1234I")  # letter I: never on a plate


def test_a_plate_and_what_it_did_said_first_start_a_violation_report(assistant):
    user = WeChatUser(assistant.platform)
    first = talk(user, "鲁B12345 闯红灯")
    assert "举报" in first and "什么地点" in first           # plate and violation taken, place asked
    assert "什么时间" in talk(user, "香港中路与山东路路口")
    assert "照片或视频" in talk(user, "今天上午8点")
    assert "已收到 1 张" in send_photo(user)
    number = re.search(r"R\d{12}", talk(user, "好了")).group()
    [(plate, vtype)] = query(assistant, select(Report.plate, Report.violation_type).where(Report.report_no == number))
    assert (plate, vtype) == ("鲁B12345", "red_light")
