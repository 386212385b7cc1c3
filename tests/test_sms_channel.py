"""The SMS channel's protocol, over real HTTP: Twilio signed form posts with TwiML answers, Alibaba
Cloud upstream batches on a secret path, the generic HMAC webhook; retries, keywords, numbered
choices, SMS-length replies, and the outbound senders against stand-in gateway APIs."""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlsplit

import pytest
import requests

from channels.base import BUSY
from channels.sms import (SUBSCRIBE, UNSUBSCRIBE, SMSConfig, SMSConfigError, SMSInput, normalise_phone,
                          sms_length, sms_parts)
from channels.sms_senders import AliyunSender, TwilioSender, rpc_signature
from tests.conftest import REDIS_URL, need_service
from tests.support.background import BackgroundServer, free_port
from tests.support.channel_host import ChannelHost
from tests.support.sms_gateways import AliyunSMSStandIn, Outbox, TwilioStandIn, gateways_app
from tests.support.sms_user import (AliyunGateway, GenericGateway, SMSUser, TwilioGateway, generic_signature,
                                    push_aliyun)

SIG = "【青岛交警】"
PUBLIC = "https://jj.example.gov.cn"
TWILIO_SID, TWILIO_TOKEN = "AC" + "1f" * 16, "twilio-test-auth-token-0123456789"
ALI_ID, ALI_SECRET = "LTAI5tTestKeyId0001", "test-access-key-secret-0123456789"
PATH_SECRET, GENERIC_SECRET = "p4th-secret-0123456789abcdef", "generic-secret-0123456789abcdef"


def credentials(api: str, gateway: str, **overrides) -> dict:
    creds = {
        "gateway": gateway, "twilio_account_sid": TWILIO_SID, "twilio_auth_token": TWILIO_TOKEN,
        "twilio_from": "+8610690000122", "twilio_api_base": api, "public_url": PUBLIC,
        "aliyun_access_key_id": ALI_ID, "aliyun_access_key_secret": ALI_SECRET, "aliyun_sign_name": "青岛交警",
        "aliyun_template_code": "SMS_480000001", "aliyun_endpoint": api, "aliyun_path_secret": PATH_SECRET,
        "generic_secret": GENERIC_SECRET, "reply_budget": 1.0,
    }
    creds.update(overrides)
    return creds


@pytest.fixture(scope="module")
def gateways():
    outbox = Outbox()
    aliyun, twilio = AliyunSMSStandIn(ALI_ID, ALI_SECRET, outbox), TwilioStandIn(TWILIO_SID, TWILIO_TOKEN, outbox)
    with BackgroundServer(gateways_app(aliyun, twilio)) as server:
        yield server.url, aliyun, twilio


@pytest.fixture(scope="module")
def hosts(gateways):
    """Replies through Alibaba (budget 1 s) and through Twilio (budget 0.5 s)."""
    url = gateways[0]
    channels = {"ali": SMSInput(SMSConfig.from_credentials(credentials(url, "aliyun"))),
                "tw": SMSInput(SMSConfig.from_credentials(credentials(url, "twilio", reply_budget=0.5)))}
    with ChannelHost(channels) as host:
        yield host


class Site:
    def __init__(self, host: ChannelHost, key: str, outbox_url: str) -> None:
        self.url, self.agent, self.outbox_url = host.urls[key], host.agents[key], outbox_url
        self.agent.received.clear()
        # Twilio signs the public URL (a proxy in front forwards to this host).
        self.twilio = TwilioGateway(f"{self.url}/twilio", TWILIO_TOKEN,
                                    signed_url=PUBLIC + urlsplit(self.url).path + "/twilio")
        self.aliyun = AliyunGateway(f"{self.url}/aliyun/{PATH_SECRET}")
        self.generic = GenericGateway(f"{self.url}/generic", GENERIC_SECRET)

    def user(self, phone=None) -> SMSUser:
        return SMSUser(phone, outbox_url=self.outbox_url)


@pytest.fixture
def site(hosts, gateways, request):
    return Site(hosts, getattr(request, "param", "ali"), gateways[0])


# -- Twilio ------------------------------------------------------------------------------------------

def test_twilio_text_is_answered_with_twiml(site):
    user = site.user("+8613812345678")
    reply = user.via_twilio(site.twilio, "你好")
    assert reply.status == 200 and "<Response><Message>" in reply.body
    assert reply.replies == [f"{SIG}收到：你好"]
    [message] = site.agent.received
    assert (message.sender_id, message.input_channel) == ("13812345678", "sms")


def test_twilio_forged_or_missing_signature_is_refused(site):
    user = site.user()
    assert user.via_twilio(site.twilio, "你好", signature="").status == 401
    assert user.via_twilio(site.twilio, "你好", signature="bm90IGEgc2lnbmF0dXJl").status == 403
    forged = TwilioGateway(site.twilio.webhook, "another-auth-token", signed_url=site.twilio.signed_url)
    assert user.via_twilio(forged, "你好").status == 403
    # Signed for the URL the server sees, not the public one Twilio posts to: not Twilio.
    internal = TwilioGateway(site.twilio.webhook, TWILIO_TOKEN)
    assert user.via_twilio(internal, "你好").status == 403
    assert site.agent.received == []


def test_twilio_retry_of_a_message_sid_is_answered_once(site):
    user = site.user()
    first = user.via_twilio(site.twilio, "查违章", sid="SM" + "ab" * 16)
    again = user.via_twilio(site.twilio, "查违章", sid="SM" + "ab" * 16)
    assert first.replies == [f"{SIG}收到：查违章"]
    assert again.status == 200 and again.replies == []
    assert site.agent.texts() == ["查违章"]


@pytest.mark.parametrize("site", ["tw"], indirect=True)
def test_slow_twilio_answer_goes_out_through_the_twilio_api(site):
    user = site.user()
    reply = user.via_twilio(site.twilio, "slow:1.5")
    assert reply.status == 200 and reply.replies == [] and "<Response" in reply.body
    assert reply.elapsed < 1.2  # answered at the budget, not when the agent finished
    assert user.wait_for_texts(1) == [f"{SIG}收到：slow:1.5"]


def test_agent_failure_gets_an_apology(site):
    assert site.user().via_twilio(site.twilio, "boom").replies == [SIG + BUSY]


# -- Alibaba Cloud -----------------------------------------------------------------------------------

def test_aliyun_batch_from_several_phones_is_acknowledged_and_answered_by_sms(site):
    one, two = site.user(), site.user()
    items = [one.aliyun_item("第一条"), two.aliyun_item("你好"), one.aliyun_item("第二条")]
    reply = push_aliyun(site.aliyun, items)
    assert reply.status == 200 and json.loads(reply.body) == {"code": 0, "msg": "成功"}
    assert reply.elapsed < 0.5
    # Alibaba puts 【青岛交警】 in front itself (the sign name), so it is there exactly once.
    assert one.wait_for_texts(2) == [f"{SIG}收到：第一条", f"{SIG}收到：第二条"]
    assert two.wait_for_texts(1) == [f"{SIG}收到：你好"]
    assert sorted(m.sender_id for m in site.agent.received) == sorted([one.number, one.number, two.number])


def test_aliyun_wrong_path_secret_is_forbidden(site):
    user = site.user()
    wrong = AliyunGateway(f"{site.url}/aliyun/{PATH_SECRET[:-1]}x")
    assert user.via_aliyun(wrong, "你好").status == 403
    assert requests.post(f"{site.url}/aliyun/", json=[user.aliyun_item("你好")], timeout=10).status_code in (403, 404)
    time.sleep(0.2)
    assert site.agent.received == [] and user.received() == []


def test_aliyun_redelivery_of_a_sequence_id_is_answered_once(site):
    user = site.user()
    assert user.via_aliyun(site.aliyun, "查违章", sequence_id=777000111).status == 200
    assert user.via_aliyun(site.aliyun, "查违章", sequence_id=777000111).status == 200
    assert user.wait_for_texts(1) == [f"{SIG}收到：查违章"]
    time.sleep(0.3)
    assert user.received() == [f"{SIG}收到：查违章"] and site.agent.texts() == ["查违章"]


# -- generic webhook ---------------------------------------------------------------------------------

def test_generic_webhook_acknowledges_and_answers_by_sms(site):
    user = site.user("8613912345678")
    reply = user.via_generic(site.generic, "你好")
    assert reply.status == 200 and json.loads(reply.body) == {"ok": True}
    assert user.wait_for_texts(1) == [f"{SIG}收到：你好"]
    assert site.agent.received[0].sender_id == "13912345678"


def test_generic_signature_missing_forged_or_stale_is_refused(site):
    user = site.user()
    body = json.dumps({"from": user.phone, "to": "1069", "text": "你好", "id": "g-1"},
                      ensure_ascii=False).encode()
    assert requests.post(site.generic.webhook, data=body, timeout=10).status_code == 401
    assert user.via_generic(site.generic, "你好", secret="another-secret-0123456789").status == 403
    assert user.via_generic(site.generic, "你好", timestamp=int(time.time()) - 3600).status == 403
    stamp = str(int(time.time()))
    signed = {"X-Timestamp": stamp, "X-Signature": generic_signature(GENERIC_SECRET, stamp, body)}
    tampered = requests.post(site.generic.webhook, data=body.replace("你好".encode(), "退订".encode()),
                             headers=signed, timeout=10)
    assert tampered.status_code == 403
    time.sleep(0.2)
    assert site.agent.received == []


def test_generic_retry_of_an_id_is_answered_once(site):
    user = site.user()
    assert user.via_generic(site.generic, "查违章", msg_id="gen-42").status == 200
    again = user.via_generic(site.generic, "查违章", msg_id="gen-42")
    assert again.status == 200 and json.loads(again.body)["duplicate"] is True
    assert user.wait_for_texts(1) == [f"{SIG}收到：查违章"]
    time.sleep(0.3)
    assert site.agent.texts() == ["查违章"]


# -- bad input -----------------------------------------------------------------------------------------

def _signed_generic(site, body: bytes) -> requests.Response:
    stamp = str(int(time.time()))
    return requests.post(site.generic.webhook, data=body, timeout=10, headers={
        "X-Timestamp": stamp, "X-Signature": generic_signature(GENERIC_SECRET, stamp, body)})


def _signed_twilio(site, form: dict) -> requests.Response:
    from tests.support.sms_user import twilio_signature

    return requests.post(site.twilio.webhook, data=form, timeout=10, headers={
        "X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, site.twilio.signed_url, form)})


TWILIO_OK = {"MessageSid": "SM" + "cd" * 16, "From": "+8613812345678", "To": "+8610690000122", "Body": "你好"}


@pytest.mark.parametrize("form, status", [
    ({**TWILIO_OK, "From": "+14155550100"}, 400),   # not a mainland mobile number
    ({**TWILIO_OK, "From": "10086"}, 400),
    ({**TWILIO_OK, "Body": "   "}, 400),            # empty text
    ({k: v for k, v in TWILIO_OK.items() if k != "MessageSid"}, 400),
    ({**TWILIO_OK, "MessageSid": "not-a-sid"}, 400),
])
def test_twilio_bad_fields_get_400(site, form, status):
    assert _signed_twilio(site, form).status_code == status
    assert site.agent.received == []


def test_twilio_undecodable_or_oversized_body(site):
    headers = {"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"}
    assert requests.post(site.twilio.webhook, data=b"Body=\xff\xfe", headers=headers, timeout=10).status_code == 400
    assert requests.post(site.twilio.webhook, data=b"Body=" + b"a" * 20_000, headers=headers,
                         timeout=10).status_code == 413
    assert site.agent.received == []


@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b"[]", 400),
    (b'"text"', 400),
    (b'[{"phone_number": "13812345678", "content": "hi"}]', 400),                     # no sequence_id
    (b'[{"phone_number": "12345", "content": "hi", "sequence_id": 1}]', 400),         # bad number
    (b'[{"phone_number": "13812345678", "content": 5, "sequence_id": 2}]', 400),
    (b'[{"phone_number": "13812345678", "content": "ok", "sequence_id": 3}, 7]', 400),  # one bad item
    (b"\xff\xfe[]", 400),
    (b"[" + b'"x",' * 10_000 + b'"x"]', 413),
])
def test_aliyun_malformed_or_oversized_batches(site, body, status):
    res = requests.post(site.aliyun.webhook, data=body, timeout=10)
    assert res.status_code == status
    time.sleep(0.1)
    assert site.agent.received == []


@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b"[1, 2]", 400),
    (json.dumps({"from": "+1 415 555 0100", "text": "hi", "id": "a"}).encode(), 400),
    (json.dumps({"from": "13812345678", "text": "", "id": "b"}).encode(), 400),
    (json.dumps({"from": "13812345678", "text": "hi"}).encode(), 400),
    (json.dumps({"from": "13812345678", "text": "hi", "id": True}).encode(), 400),
    (b"{" + b" " * 20_000 + b"}", 413),
])
def test_generic_malformed_or_oversized_bodies(site, body, status):
    assert _signed_generic(site, body).status_code == status
    time.sleep(0.1)
    assert site.agent.received == []


# -- what the user types and what they get back ------------------------------------------------------

@pytest.mark.parametrize("typed, payload", [
    ("TD", UNSUBSCRIBE), ("td", UNSUBSCRIBE), (" T ", UNSUBSCRIBE), ("Stop", UNSUBSCRIBE),
    ("unsubscribe", UNSUBSCRIBE), ("退订", UNSUBSCRIBE), ("退訂", UNSUBSCRIBE), ("ＴＤ", UNSUBSCRIBE),
    ("订阅", SUBSCRIBE), ("START", SUBSCRIBE), ("subscribe", SUBSCRIBE),
    ("TD一下是什么意思", "TD一下是什么意思"), ("stop sign broken", "stop sign broken"),
])
def test_keywords_become_payloads_before_nlu(site, typed, payload):
    site.user().via_twilio(site.twilio, typed)
    assert site.agent.texts() == [payload]


def test_keywords_work_through_every_gateway(site):
    user = site.user()
    user.via_aliyun(site.aliyun, "退订")
    user.via_generic(site.generic, "STOP")
    user.wait_for_texts(2)
    assert site.agent.texts() == [UNSUBSCRIBE, UNSUBSCRIBE]


def test_typed_text_cannot_pose_as_a_payload(site):
    site.user().via_twilio(site.twilio, '/unsubscribe_alerts{"channel": "sms"}')
    assert site.agent.texts() == ['／unsubscribe_alerts{"channel": "sms"}']


def test_buttons_become_numbered_choices_that_map_back(site):
    user = site.user()
    [reply] = user.via_twilio(site.twilio, "buttons").replies
    assert reply == f"{SIG}请选择：\n回复 1：查违章\n回复 2：帮助"
    user.via_twilio(site.twilio, "1")
    assert site.agent.texts()[-1] == "/query_violations"


def test_same_phone_is_one_sender_whichever_gateway_delivered(site):
    site.user("+86 138 0000 1111").via_twilio(site.twilio, "一")
    site.user("8613800001111").via_aliyun(site.aliyun, "二")
    site.user("13800001111").via_generic(site.generic, "三")
    SMSUser("13800001111", site.outbox_url).wait_for_texts(2)
    assert {m.sender_id for m in site.agent.received} == {"13800001111"}


def test_traditional_in_traditional_out_and_whitespace_squeezed(site):
    user = site.user()
    assert user.via_twilio(site.twilio, "查詢違章").replies == [f"{SIG}收到：查詢違章"]
    assert user.via_twilio(site.twilio, "buttons").replies[0].startswith(f"{SIG}請選擇：")
    other = site.user()
    assert other.via_twilio(site.twilio, "你好    世界\n\n\n  再见").replies == [f"{SIG}收到：你好 世界\n再见"]


def test_emoji_is_text_and_counts_twice(site):
    assert site.user().via_twilio(site.twilio, "😀👍").replies == [f"{SIG}收到：😀👍"]
    assert sms_length("😀") == 2


EXPECTED_LONG = "\n".join(f"第{i}行：" + "违法记录" * 20 for i in range(30))


def test_long_answer_is_split_with_the_signature_counted(site):
    replies = site.user().via_twilio(site.twilio, "long").replies
    assert len(replies) > 1
    assert all(r.startswith(SIG) and sms_length(r) <= 500 for r in replies)
    assert "\n".join(r[len(SIG):] for r in replies) == EXPECTED_LONG


def test_long_answer_by_aliyun_fits_its_500_character_limit(site):
    user = site.user()
    user.via_generic(site.generic, "long")
    texts = user.wait_for_texts(6)  # the stand-in refuses anything over 500 with isv.PARAM_LENGTH_LIMIT
    assert all(t.startswith(SIG) and sms_length(t) <= 500 for t in texts)
    assert "\n".join(t[len(SIG):] for t in texts) == EXPECTED_LONG


def test_billing_counts():
    assert [sms_parts("字" * n) for n in (1, 70, 71, 134, 135, 500)] == [1, 1, 2, 2, 3, 8]


@pytest.mark.parametrize("raw, phone", [
    ("+8613812345678", "13812345678"), ("8613812345678", "13812345678"), ("+86 138-1234-5678", "13812345678"),
    ("008613812345678", "13812345678"), ("13812345678", "13812345678"), ("+14155550100", None),
    ("12812345678", None), ("1381234567", None), ("", None), (None, None),
])
def test_phone_numbers_normalised_to_11_digits(raw, phone):
    assert normalise_phone(raw) == phone


def test_sender_failure_is_logged_with_the_gateway_code(site, gateways, caplog):
    _, aliyun, _ = gateways
    user = site.user()
    aliyun.errors[user.number] = "isv.BLACK_KEY_CONTROL_LIMIT"
    try:
        with caplog.at_level(logging.ERROR, logger="channels.sms"):
            user.via_generic(site.generic, "你好")
            deadline = time.monotonic() + 5
            while "isv.BLACK_KEY_CONTROL_LIMIT" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        del aliyun.errors[user.number]
    assert "isv.BLACK_KEY_CONTROL_LIMIT" in caplog.text and "permanent" in caplog.text
    assert user.received() == []


# -- senders -----------------------------------------------------------------------------------------

def aliyun_sender(url: str, secret: str = ALI_SECRET) -> AliyunSender:
    return AliyunSender(ALI_ID, secret, "青岛交警", "SMS_480000001", endpoint=url)


async def test_aliyun_sender_outcomes(gateways):
    url, aliyun, _ = gateways
    sender = aliyun_sender(url)
    try:
        ok = await sender.send("13700000001", "您的车辆有一条新的违法记录。")
        assert ok.delivered and ok.code == "OK" and ok.message_id
        assert aliyun.outbox.to("13700000001")[-1].text == "【青岛交警】您的车辆有一条新的违法记录。"
        bad = await sender.send("1370000", "x")
        assert bad.permanent and bad.code == "isv.MOBILE_NUMBER_ILLEGAL"
        aliyun.errors["13700000002"] = "isv.BUSINESS_LIMIT_CONTROL"
        limited = await sender.send("13700000002", "x")
        assert limited.transient and limited.retry_after == 60
        aliyun.errors["13700000002"] = "isp.SYSTEM_ERROR"
        assert (await sender.send("13700000002", "x")).transient
    finally:
        aliyun.errors.pop("13700000002", None)
        await sender.close()
    wrong = aliyun_sender(url, "not-the-secret")
    try:
        result = await wrong.send("13700000003", "x")
        assert result.permanent and result.code == "SignatureDoesNotMatch"
    finally:
        await wrong.close()
    gone = aliyun_sender(f"http://127.0.0.1:{free_port()}")
    try:
        assert (await gone.send("13700000004", "x")).transient  # nothing listening
    finally:
        await gone.close()


def test_rpc_signature_matches_alibabas_documented_example():
    # The worked example of Alibaba Cloud's RPC signature documentation (secret "testsecret").
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
              "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
              "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26"}
    assert rpc_signature(params, "testsecret", "GET") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


async def test_twilio_sender_outcomes(gateways):
    url, _, twilio = gateways
    sender = TwilioSender(TWILIO_SID, TWILIO_TOKEN, "+8610690000122", api_base=url)
    try:
        ok = await sender.send("13700000011", "【青岛交警】您好")
        assert ok.delivered and ok.message_id.startswith("SM")
        assert twilio.outbox.to("13700000011")[-1].text == "【青岛交警】您好"
        twilio.errors["13700000012"] = (429, 20429)
        assert (await sender.send("13700000012", "x")).transient
        twilio.errors["13700000012"] = (400, 21610)
        stopped = await sender.send("13700000012", "x")
        assert stopped.permanent and stopped.code == "21610"
        invalid = await sender.send("+86abc", "x")
        assert invalid.permanent and invalid.code == "21211"
    finally:
        twilio.errors.pop("13700000012", None)
        await sender.close()
    wrong = TwilioSender(TWILIO_SID, "wrong-token", "+8610690000122", api_base=url)
    try:
        result = await wrong.send("13700000013", "x")
        assert result.permanent and result.code == "20003"
    finally:
        await wrong.close()


# -- configuration -------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, key", [
    ({"gateway": None}, "gateway"),
    ({"gateway": "tencent"}, "gateway"),
    ({"aliyun_access_key_secret": ""}, "aliyun_access_key_secret"),
    ({"aliyun_template_code": "123"}, "aliyun_template_code"),
    ({"aliyun_endpoint": "dysmsapi.aliyuncs.com"}, "aliyun_endpoint"),
    ({"twilio_account_sid": "AC123"}, "twilio_account_sid"),
    ({"twilio_from": "10690000122"}, "twilio_from"),
    ({"public_url": None}, "public_url"),
    ({"aliyun_path_secret": "short"}, "aliyun_path_secret"),
    ({"generic_secret": "short"}, "generic_secret"),
    ({"max_chars": 1000}, "max_chars"),
    ({"reply_budget": "soon"}, "reply_budget"),
    ({"dedup": "postgres://x"}, "dedup"),
    ({"twilio_auth_token": None, "aliyun_path_secret": None, "generic_secret": None}, "aliyun_path_secret"),
])
def test_config_errors_name_the_key(change, key):
    creds = {k: v for k, v in {**credentials("http://127.0.0.1:1", "aliyun"), **change}.items() if v is not None}
    with pytest.raises(SMSConfigError) as err:
        SMSConfig.from_credentials(creds)
    assert f"channels.sms.SMSInput: '{key}'" in str(err.value)


def test_only_configured_gateways_need_their_keys():
    aliyun_only = {"gateway": "aliyun", "aliyun_access_key_id": ALI_ID, "aliyun_access_key_secret": ALI_SECRET,
                   "aliyun_sign_name": "青岛交警", "aliyun_template_code": "SMS_1", "aliyun_path_secret": PATH_SECRET}
    config = SMSConfig.from_credentials(aliyun_only)
    assert config.twilio_auth_token is None and config.max_chars == 500 and config.signature_text == SIG
    with pytest.raises(SMSConfigError, match="'twilio_account_sid'"):
        SMSConfig.from_credentials({**aliyun_only, "gateway": "twilio"})


def test_unconfigured_routes_are_not_found(gateways):
    aliyun_only = SMSInput(SMSConfig.from_credentials(credentials(gateways[0], "aliyun", twilio_auth_token=None,
                                                                   generic_secret=None)))
    with ChannelHost({"only": aliyun_only}) as host:
        assert requests.post(f"{host.urls['only']}/twilio", data={"Body": "x"}, timeout=10).status_code == 404
        assert requests.post(f"{host.urls['only']}/generic", json={}, timeout=10).status_code == 404
        assert host.agents["only"].received == []


def test_redelivery_to_another_process_is_answered_once_through_redis(gateways):
    url = need_service(REDIS_URL, "redis")
    creds = credentials(gateways[0], "aliyun", dedup=url)
    two = {"a": SMSInput(SMSConfig.from_credentials(creds)), "b": SMSInput(SMSConfig.from_credentials(creds))}
    with ChannelHost(two) as host:  # two Rasa processes behind one load balancer
        user = SMSUser(outbox_url=gateways[0])
        sid = "SM" + f"{time.time_ns():032x}"[-32:]
        for key in ("a", "b"):
            gw = TwilioGateway(f"{host.urls[key]}/twilio", TWILIO_TOKEN,
                               signed_url=PUBLIC + urlsplit(host.urls[key]).path + "/twilio")
            assert user.via_twilio(gw, "你好", sid=sid).status == 200
        assert host.agents["a"].texts() + host.agents["b"].texts() == ["你好"]
