"""SMS through channels.sms_senders (Alibaba Cloud by default, Twilio), one notification each."""
from __future__ import annotations

import re

from bots import messages
from bots.senders.result import Notification, Outcome, Sender
from channels.sms_senders import AliyunSender, SMSSender as GatewaySender, TwilioSender
from scripts.settings import SMSSettings

PHONE = re.compile(r"1[3-9]\d{9}")


def make_gateway(settings: SMSSettings) -> GatewaySender:
    if settings.gateway == "twilio":
        return TwilioSender(settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_from,
                            api_base=settings.twilio_api_base)
    return AliyunSender(settings.aliyun_access_key_id, settings.aliyun_access_key_secret,
                        settings.aliyun_sign_name, settings.aliyun_template_code,
                        endpoint=settings.aliyun_endpoint)


class SMSSender(Sender):
    channel = "sms"

    def __init__(self, gateway: GatewaySender, sign_name: str) -> None:
        self.gateway, self.sign_name = gateway, sign_name

    def text(self, note: Notification) -> str:
        text = messages.sms_text(note.event_kind, note.payload)
        # Alibaba puts 【签名】 in front itself; other gateways send exactly what we give them.
        return text if self.gateway.adds_signature else f"【{self.sign_name}】{text}"

    async def send(self, note: Notification) -> Outcome:
        if not PHONE.fullmatch(note.to):
            return Outcome.permanent("invalid-address", f"not a mainland mobile number: {note.to!r}")
        result = await self.gateway.send(note.to, self.text(note))
        if result.delivered:
            return Outcome.delivered(result.message_id)
        if result.transient:
            return Outcome.transient(result.code, result.message, result.retry_after)
        return Outcome.permanent(result.code, result.message)

    async def close(self) -> None:
        await self.gateway.close()
