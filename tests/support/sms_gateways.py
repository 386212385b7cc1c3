"""Stand-ins for the SMS gateways' send APIs on loopback, speaking their real protocols.

- Alibaba Cloud Dysmsapi SendSms (RPC style, GET or POST form on "/"): checks the HMAC-SHA1 v1.0
  signature with the access key secret as Alibaba does, the timestamp and the nonce; answers
  {"Code": "OK", "BizId": ...} or Alibaba's error codes (isv.MOBILE_NUMBER_ILLEGAL, ...).
- Twilio Messages (POST /2010-04-01/Accounts/{sid}/Messages.json): basic auth, E.164 numbers,
  body limits; answers 201 with the message resource or Twilio's error JSON (21211, 20429, ...).

Both record what they accepted; tests and tools read it back from GET /_standin/sent?phone=...
(the phone as 11 digits). Tests may force an error for a number: `errors[phone] = code`.

    python -m tests.support.sms_gateways --port 8082 --aliyun-key-id ID --aliyun-key-secret S \
        --twilio-sid AC... --twilio-token T
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional
from urllib.parse import quote

from aiohttp import web


@dataclass
class Sent:
    gateway: str  # aliyun, twilio
    phone: str    # 11 digits
    text: str     # as the handset shows it
    params: dict
    at: float = field(default_factory=time.time)


def _phone11(number: str) -> str:
    return number[3:] if number.startswith("+86") else number


class Outbox:
    """What the stand-ins accepted, shared by both."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def to(self, phone: str) -> list[Sent]:
        return [s for s in self.sent if s.phone == phone]

    async def inspect(self, request: web.Request) -> web.Response:
        phone = request.query.get("phone")
        after = float(request.query.get("after", "0"))
        return web.json_response([{"gateway": s.gateway, "phone": s.phone, "text": s.text, "at": s.at}
                                  for s in self.sent if (not phone or s.phone == phone) and s.at > after])


def _encode(value: str) -> str:
    return quote(str(value), safe="-_.~")


class AliyunSMSStandIn:
    """Dysmsapi 2017-05-25 SendSms. Templates are "${content}"; the sign name is put in front."""

    def __init__(self, key_id: str, key_secret: str, outbox: Optional[Outbox] = None,
                 sign_names: tuple = ("青岛交警",), templates: tuple = ("SMS_480000001",)) -> None:
        self.key_id, self.key_secret = key_id, key_secret
        self.outbox = outbox or Outbox()
        self.sign_names, self.templates = set(sign_names), set(templates)
        self.errors: dict[str, str] = {}  # phone -> error code to answer
        self.nonces: set[str] = set()
        self.calls = 0

    def expected_signature(self, method: str, params: dict) -> str:
        canonical = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()) if k != "Signature")
        to_sign = f"{method}&%2F&{_encode(canonical)}"
        return base64.b64encode(hmac.new((self.key_secret + "&").encode(), to_sign.encode(),
                                         hashlib.sha1).digest()).decode()

    @staticmethod
    def _error(code: str, message: str, status: int = 200) -> web.Response:
        return web.json_response({"RequestId": secrets.token_hex(16).upper(), "Code": code, "Message": message},
                                 status=status)

    async def rpc(self, request: web.Request) -> web.Response:
        self.calls += 1
        params = dict(request.query) if request.method == "GET" else dict(await request.post())
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "Action", "Version"):
            if not params.get(name):
                return self._error("MissingParameter", f"{name} is mandatory for this action.", 400)
        if params["AccessKeyId"] != self.key_id:
            return self._error("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        if (params.get("SignatureMethod"), params.get("SignatureVersion")) != ("HMAC-SHA1", "1.0"):
            return self._error("InvalidSignatureMethod", "Specified signature method is not valid.", 400)
        if not hmac.compare_digest(self.expected_signature(request.method, params), params["Signature"]):
            return self._error("SignatureDoesNotMatch",
                               "Specified signature is not matched with our calculation.", 400)
        try:
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return self._error("InvalidTimeStamp.Format", "Specified time stamp is not valid.", 400)
        if abs(time.time() - stamp.timestamp()) > 900:
            return self._error("InvalidTimeStamp.Expired", "Specified time stamp or date has expired.", 400)
        if params["SignatureNonce"] in self.nonces:
            return self._error("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        self.nonces.add(params["SignatureNonce"])
        if (params["Action"], params["Version"]) != ("SendSms", "2017-05-25"):
            return self._error("InvalidAction.NotFound",
                               "Specified api is not found, please check your url and method.", 404)
        return self._send(params)

    def _send(self, params: dict) -> web.Response:
        phones = params.get("PhoneNumbers", "").split(",")
        if any(not re.fullmatch(r"1[3-9]\d{9}", p) for p in phones):
            return self._error("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if params.get("SignName") not in self.sign_names:
            return self._error("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        if params.get("TemplateCode") not in self.templates:
            return self._error("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            variables = json.loads(params.get("TemplateParam") or "")
            content = variables["content"]
            if not isinstance(content, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._error("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        text = f"【{params['SignName']}】{content}"
        if len(text.encode("utf-16-le")) // 2 > 500:
            return self._error("isv.PARAM_LENGTH_LIMIT", "参数超出长度限制")
        for phone in phones:
            if phone in self.errors:
                code = self.errors[phone]
                messages = {"isv.BUSINESS_LIMIT_CONTROL": "触发分钟级流控Permits:1",
                            "isv.BLACK_KEY_CONTROL_LIMIT": "黑名单管控", "isp.SYSTEM_ERROR": "系统错误"}
                return self._error(code, messages.get(code, code))
        for phone in phones:
            self.outbox.sent.append(Sent("aliyun", phone, text, params))
        return web.json_response({"RequestId": secrets.token_hex(16).upper(), "Code": "OK", "Message": "OK",
                                  "BizId": f"{secrets.randbelow(10**15)}^0"})


class TwilioStandIn:
    """Twilio's Messages resource. `errors[phone] = (status, code)` forces an error answer."""

    def __init__(self, account_sid: str, auth_token: str, outbox: Optional[Outbox] = None,
                 numbers: tuple = ("+8610690000122",)) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.outbox = outbox or Outbox()
        self.numbers = set(numbers)
        self.errors: dict[str, tuple[int, int]] = {}
        self.calls = 0

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message, "status": status,
                                  "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return hmac.compare_digest(header, expected)

    async def messages(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.match_info["sid"] != self.account_sid or not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        form = await request.post()
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not re.fullmatch(r"\+[1-9]\d{6,14}", to):
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if from_ not in self.numbers:
            return self._error(400, 21606, f"The From phone number {from_} is not a valid, SMS-capable "
                                           "inbound phone number or short code for your account.")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return self._error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        phone = _phone11(to)
        if phone in self.errors:
            status, code = self.errors[phone]
            known = {20429: "Too Many Requests", 21610: "Attempt to send to unsubscribed recipient"}
            return self._error(status, code, known.get(code, "error"))
        self.outbox.sent.append(Sent("twilio", phone, body, dict(form)))
        sid = "SM" + secrets.token_hex(16)
        now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        return web.json_response({
            "sid": sid, "account_sid": self.account_sid, "to": to, "from": from_, "body": body,
            "status": "queued", "num_segments": str(-(-len(body) // 67) if len(body) > 70 else 1),
            "direction": "outbound-api", "api_version": "2010-04-01", "date_created": now, "date_updated": now,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"}, status=201)


def gateways_app(aliyun: AliyunSMSStandIn, twilio: TwilioStandIn) -> web.Application:
    """Both gateways on one server: Alibaba at "/", Twilio under /2010-04-01/, the outbox at /_standin/."""
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_route("GET", "/", aliyun.rpc)
    app.router.add_route("POST", "/", aliyun.rpc)
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", twilio.messages)
    app.router.add_get("/_standin/sent", aliyun.outbox.inspect)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--aliyun-key-id", required=True)
    parser.add_argument("--aliyun-key-secret", required=True)
    parser.add_argument("--aliyun-sign-name", default="青岛交警")
    parser.add_argument("--aliyun-template", default="SMS_480000001")
    parser.add_argument("--twilio-sid", required=True)
    parser.add_argument("--twilio-token", required=True)
    parser.add_argument("--twilio-from", default="+8610690000122")
    args = parser.parse_args()
    outbox = Outbox()
    aliyun = AliyunSMSStandIn(args.aliyun_key_id, args.aliyun_key_secret, outbox, (args.aliyun_sign_name,),
                              (args.aliyun_template,))
    twilio = TwilioStandIn(args.twilio_sid, args.twilio_token, outbox, (args.twilio_from,))
    web.run_app(gateways_app(aliyun, twilio), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
