"""Every platform API the assistant calls, as stand-ins on loopback, and channel settings that
point at them. Shared by the test fixtures and the benchmarks."""
from __future__ import annotations

import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

from scripts.settings import ChannelSettings, SMSSettings, TelegramSettings, WeChatSettings, WeiboSettings
from tests.support.background import BackgroundServer
from tests.support.sms_gateways import AliyunSMSStandIn, Outbox, TwilioStandIn, gateways_app
from tests.support.telegram_api import TelegramAPIStandIn
from tests.support.wechat_api import WeChatAPIStandIn
from tests.support.weibo_api import WeiboAPIStandIn


@dataclass
class Platforms:
    wechat: WeChatAPIStandIn   # .url is where it listens
    weibo: WeiboAPIStandIn
    weibo_url: str
    aliyun: AliyunSMSStandIn
    twilio: TwilioStandIn
    sms_url: str               # both SMS gateways' APIs
    telegram: TelegramAPIStandIn
    telegram_url: str


@contextmanager
def running_platforms(wechat: Optional[WeChatAPIStandIn] = None) -> Iterator[Platforms]:
    """Start every stand-in (reusing a running WeChat one if given); stop them on exit."""
    weibo = WeiboAPIStandIn("2.00" + secrets.token_hex(16))
    outbox = Outbox()
    aliyun = AliyunSMSStandIn("LTAI" + secrets.token_hex(10), secrets.token_hex(15), outbox)
    twilio = TwilioStandIn("AC" + secrets.token_hex(16), secrets.token_hex(16), outbox)
    telegram = TelegramAPIStandIn(f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(26)[:35]}")
    own = None
    if wechat is None:
        wechat = WeChatAPIStandIn("wx" + secrets.token_hex(8), secrets.token_hex(16))
        own = BackgroundServer(wechat.app()).start()
        wechat.url = own.url
    try:
        with BackgroundServer(weibo.app()) as w, BackgroundServer(gateways_app(aliyun, twilio)) as s, \
                BackgroundServer(telegram.app()) as t:
            yield Platforms(wechat, weibo, w.url, aliyun, twilio, s.url, telegram, t.url)
    finally:
        if own is not None:
            own.stop()


def channel_settings(platforms: Platforms, rasa_url: str, **wechat_overrides) -> ChannelSettings:
    """Every channel's settings, pointed at the stand-ins, with fresh secrets of our own."""
    p = platforms
    return ChannelSettings(
        WeChatSettings.generate(app_id=p.wechat.app_id, app_secret=p.wechat.app_secret, api_base=p.wechat.url,
                                **wechat_overrides),
        WeiboSettings.generate(access_token=p.weibo.access_token, api_base_url=p.weibo_url),
        SMSSettings.generate(aliyun_access_key_id=p.aliyun.key_id, aliyun_access_key_secret=p.aliyun.key_secret,
                             aliyun_endpoint=p.sms_url, aliyun_template_code=sorted(p.aliyun.templates)[0],
                             twilio_account_sid=p.twilio.account_sid, twilio_auth_token=p.twilio.auth_token,
                             twilio_api_base=p.sms_url, public_url=rasa_url),
        TelegramSettings.generate(access_token=p.telegram.token, verify=p.telegram.bot["username"],
                                  api_base_url=p.telegram_url,
                                  webhook_url=f"{rasa_url}/webhooks/telegram/webhook"))
