"""End to end: the real Rasa server and action server on loopback, driven through the WeChat
webhook with signed, encrypted XML, on each database backend."""
from __future__ import annotations

import re
import time

import pytest
import requests
from sqlalchemy import select

from actions.records.db import make_sync_engine
from actions.records.models import AuditEntry, ChannelIdentity, ProofAttempt
from tests.support.wechat_user import WeChatUser, next_msg_id

pytestmark = pytest.mark.e2e

ASK_PROOF = "车架号（VIN）或发动机号的后6位"


def user_events(assistant, openid: str) -> list[dict]:
    res = requests.get(f"{assistant.rasa_url}/conversations/{openid}/tracker",
                       params={"token": assistant.settings.rasa_api_token}, timeout=10)
    res.raise_for_status()
    return [e for e in res.json()["events"] if e["event"] == "user"]


def audit_rows(assistant, sender: str) -> list[AuditEntry]:
    engine = make_sync_engine(assistant.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(AuditEntry).where(AuditEntry.sender_id == sender)).all()
    finally:
        engine.dispose()


def test_url_verification(assistant):
    assert assistant.platform.verify_url("jiaojing").text == "jiaojing"


def test_greeting_says_what_it_can_do(assistant):
    reply = WeChatUser(assistant.platform).say("你好")
    assert reply.status == 200
    assert "交警助手" in reply.text and "查违章" in reply.text and "举报" in reply.text and "预约" in reply.text
    assert reply.elapsed < assistant.settings.reply_budget


def test_violations_after_the_right_proof(assistant):
    user = WeChatUser(assistant.platform)
    ask = user.say("查一下鲁B12345的违章")
    assert ASK_PROOF in ask.text
    listing = user.say("672418").text
    assert "鲁B12345" in listing and "有 3 条未处理的交通违法记录" in listing
    assert "闯红灯" in listing and "违法停车" in listing and "开车接打手机" in listing
    assert "合计：罚款 400 元，记 9 分。" in listing
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} ", listing)  # time and place per record
    assert "张*明" in listing and "张晓明" not in listing          # the owner's name is masked
    [entry] = audit_rows(assistant, user.openid)
    assert (entry.channel, entry.action, entry.subject) == ("wechat", "disclose_violations", "鲁B12345")
    assert len(entry.detail["records"]) == 3 and entry.detail["proof"] == "vin_suffix"
    # The proof is not remembered: the next query asks again.
    assert ASK_PROOF in user.say("再查一下鲁B12345的违章").text


@pytest.mark.parametrize("question, proof", [
    ("查一下魯Ｂ·12345的違章", "719034"),            # traditional, full-width, a middle dot
    ("鲁b 12345 有没有违章", "６７２４１８"),          # lower case, a space, full-width digits
    ("查询鲁B幺二三四五违章记录", "六七二四幺八"),       # digits as spoken
])
def test_written_variants_work_the_same(assistant, question, proof):
    from nlu.normalise import normalise  # compares in one script: traditional questions get traditional answers

    user = WeChatUser(assistant.platform)
    assert normalise(ASK_PROOF) in normalise(user.say(question).text)
    assert "有 3 条未处理的交通违法记录" in normalise(user.say(proof).text)


def test_wrong_proofs_count_and_lock_out(assistant):
    user = WeChatUser(assistant.platform)
    user.say("查鲁BD12345的违章")
    assert "还可以再试 2 次" in user.say("000000").text
    assert "还可以再试 1 次" in user.say("111111").text
    locked = user.say("222222").text
    assert "查询已暂时锁定" in locked and re.search(r"将于 \d{4}-\d{2}-\d{2} \d{2}:\d{2} 解除", locked)
    # Even the right proof is refused while the lock lasts, and nothing is disclosed.
    assert "查询已暂时锁定" in user.say("查鲁BD12345的违章").text
    assert "未处理的交通违法记录" not in (user.say("305517").text or "")
    assert audit_rows(assistant, user.openid) == []


def test_malformed_proof_is_explained_and_not_counted(assistant):
    user = WeChatUser(assistant.platform)
    user.say("查鲁B88888的违章")
    assert "应为6个字母或数字" in user.say("12").text
    done = user.say("880123").text
    assert "没有未处理的交通违法记录" in done
    engine = make_sync_engine(assistant.database_url)
    with engine.connect() as conn:
        person = conn.execute(select(ChannelIdentity.person_id)
                              .where(ChannelIdentity.external_id == user.openid)).scalar_one()
        attempts = conn.execute(select(ProofAttempt.success).where(ProofAttempt.person_id == person)).scalars().all()
    engine.dispose()
    assert attempts == [True]


def test_unknown_malformed_and_outside_plates_each_get_their_answer(assistant):
    user = WeChatUser(assistant.platform)
    unknown = user.say("查一下鲁B00001的违章").text
    malformed = user.say("查一下鲁B1234的违章").text
    outside = user.say("查一下京A12345的违章").text
    assert "没有找到 鲁B00001" in unknown
    assert "不是有效的车牌号" in malformed
    assert "不是青岛核发的号牌" in outside and "交管12123" in outside
    assert len({unknown, malformed, outside}) == 3


def test_retry_of_the_same_msgid_is_answered_once(assistant):
    user = WeChatUser(assistant.platform)
    msg_id = next_msg_id()
    first = user.say("你好", msg_id=msg_id)
    retry = user.say("你好", msg_id=msg_id)
    assert first.answered and not retry.answered and retry.body == "success"
    assert [e["text"] for e in user_events(assistant, user.openid)] == ["你好"]


def test_slow_answer_is_delivered_through_customer_service(assistant):
    user = WeChatUser(assistant.platform)
    budget = assistant.settings.reply_budget
    assistant.proxy.delay = budget + 1.0  # the action server is slow to answer
    try:
        reply = user.say("查一下鲁B12345的违章")
        assert reply.body == "success" and reply.elapsed < budget + 0.5
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not assistant.wechat_api.messages_to(user.openid):
            time.sleep(0.1)
    finally:
        assistant.proxy.delay = 0
    [sent] = assistant.wechat_api.messages_to(user.openid)
    assert ASK_PROOF in sent.text


def test_bad_input_gets_a_clear_answer(assistant):
    user = WeChatUser(assistant.platform)
    for text in ("😀😀😀", "'; DROP TABLE vehicles; --", "asdfghjkl"):
        reply = user.say(text)
        assert reply.status == 200 and reply.text, text
    # A clear answer (not understood, or not something it does, with what it can do); records intact.
    answer = user.say("'; DROP TABLE vehicles; --").text
    assert "帮助" in answer or "不在我的服务范围内" in answer
    assert ASK_PROOF in WeChatUser(assistant.platform).say("查鲁B12345违章").text


def test_forged_request_is_refused_and_not_processed(assistant):
    from tests.support.wechat_user import WeChatPlatform

    forged = WeChatPlatform(assistant.webhook, "notthetoken", assistant.platform.app_id,
                            assistant.platform.aes_key, "safe")
    user = WeChatUser(forged)
    assert user.say("查一下鲁B12345的违章").status == 403
    assert user_events(assistant, user.openid) == []


@pytest.mark.parametrize("text, intent, plate", [
    ("查一下鲁B12345的违章", "query_violations", "鲁B12345"),
    ("查詢魯Ｂ·１２３４５的違章", "query_violations", "鲁B12345"),
    ("鲁bd 12345有没有被拍", "query_violations", "鲁BD12345"),
    ("你好", "greet", None),
    ("你能做什么", "help", None),
    ("今天天气怎么样", "out_of_scope", None),
])
def test_understanding_through_the_running_model(assistant, text, intent, plate):
    res = requests.post(f"{assistant.rasa_url}/model/parse", params={"token": assistant.settings.rasa_api_token},
                        json={"text": text}, timeout=10)
    parsed = res.json()
    assert parsed["intent"]["name"] == intent
    plates = [e["value"] for e in parsed["entities"] if e["entity"] == "plate"]
    assert plates == ([plate] if plate else [])


def test_feature_regexes_are_never_entities(assistant):
    # data/nlu/regex.yml also holds patterns that are DIET features only; they must not reach
    # the slots as entities, while the plate and phone found in the same message still do.
    text = "有人冒充交警卖分说能信吗，我要举报，鲁B12345，电话13900001111"
    res = requests.post(f"{assistant.rasa_url}/model/parse", params={"token": assistant.settings.rasa_api_token},
                        json={"text": text}, timeout=10)
    kinds = {e["entity"] for e in res.json()["entities"]}
    assert {"plate", "phone"} <= kinds
    assert not {k for k in kinds if k.startswith("asks_")}


def test_help_and_goodbye(assistant):
    user = WeChatUser(assistant.platform)
    assert "查违章" in user.say("帮助").text and "转人工" in user.say("帮助").text
    user.say("查一下鲁B12345的违章")
    assert "一路平安" in user.say("再见").text          # leaving mid-query ends it
    assert "交警助手" in user.say("你好").text           # and nothing is still being asked
