"""Every channel's secrets and endpoints, as the environment variables credentials.yml reads.

Field names are the channel's credential keys; each one's variable is PREFIX_FIELD (WEIBO_APP_SECRET).
`generate` makes fresh secrets for a machine that talks to local stand-ins, never the real platforms.
"""
from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field, fields
from typing import ClassVar, Mapping


@dataclass
class WeChatSettings:
    token: str
    app_id: str
    app_secret: str
    aes_key: str
    mode: str = "safe"
    api_base: str = "https://api.weixin.qq.com"
    reply_budget: float = 4.0
    dedup: str = "memory"
    token_store: str = "memory"
    rasa_api_token: str = ""  # guards Rasa's HTTP API (status, trackers); made fresh if empty

    def __post_init__(self) -> None:
        self.rasa_api_token = self.rasa_api_token or secrets.token_hex(16)

    def env(self) -> dict:
        return {"RASA_API_TOKEN": self.rasa_api_token, "WECHAT_TOKEN": self.token, "WECHAT_APP_ID": self.app_id,
                "WECHAT_APP_SECRET": self.app_secret, "WECHAT_AES_KEY": self.aes_key,
                "WECHAT_MODE": self.mode, "WECHAT_API_BASE": self.api_base,
                "WECHAT_REPLY_BUDGET": str(self.reply_budget), "WECHAT_DEDUP": self.dedup,
                "WECHAT_TOKEN_STORE": self.token_store}

    def credentials(self) -> dict:
        return {"token": self.token, "app_id": self.app_id, "app_secret": self.app_secret,
                "encoding_aes_key": self.aes_key, "mode": self.mode, "api_base_url": self.api_base,
                "reply_budget": self.reply_budget, "dedup": self.dedup, "token_store": self.token_store}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "WeChatSettings":
        return cls(token=env["WECHAT_TOKEN"], app_id=env.get("WECHAT_APP_ID", ""),
                   app_secret=env.get("WECHAT_APP_SECRET", ""), aes_key=env.get("WECHAT_AES_KEY", ""),
                   mode=env.get("WECHAT_MODE", "safe"),
                   api_base=env.get("WECHAT_API_BASE", "https://api.weixin.qq.com"),
                   reply_budget=float(env.get("WECHAT_REPLY_BUDGET", "4.0")),
                   dedup=env.get("WECHAT_DEDUP", "memory"), token_store=env.get("WECHAT_TOKEN_STORE", "memory"),
                   rasa_api_token=env.get("RASA_API_TOKEN", ""))

    @classmethod
    def generate(cls, **overrides) -> "WeChatSettings":
        aes = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        aes = "".join(c if c.isalnum() else "A" for c in aes)
        values = dict(token=secrets.token_hex(8), app_id="wx" + secrets.token_hex(8),
                      app_secret=secrets.token_hex(16), aes_key=aes)
        values.update(overrides)
        return cls(**values)


class _EnvSettings:
    """Settings whose fields are credential keys, each read from PREFIX_FIELD."""
    PREFIX: ClassVar[str] = ""

    def env(self) -> dict:
        return {f"{self.PREFIX}_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    def credentials(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_env(cls, env: Mapping[str, str]):
        known = {f.name: env[f"{cls.PREFIX}_{f.name.upper()}"] for f in fields(cls)
                 if f"{cls.PREFIX}_{f.name.upper()}" in env}
        for f in fields(cls):
            if f.name in known and f.type in ("float", float):
                known[f.name] = float(known[f.name])
        return cls(**known)


@dataclass
class WeiboSettings(_EnvSettings):
    PREFIX: ClassVar[str] = "WEIBO"
    app_secret: str = ""
    access_token: str = ""
    api_base_url: str = "https://m.api.weibo.com"
    reply_budget: float = 4.0
    dedup: str = "memory"

    @classmethod
    def generate(cls, **overrides) -> "WeiboSettings":
        return cls(**{"app_secret": secrets.token_hex(16), "access_token": "2.00" + secrets.token_hex(16),
                      **overrides})


@dataclass
class SMSSettings(_EnvSettings):
    PREFIX: ClassVar[str] = "SMS"
    gateway: str = "aliyun"
    aliyun_access_key_id: str = ""
    aliyun_access_key_secret: str = ""
    aliyun_sign_name: str = "青岛交警"
    aliyun_template_code: str = "SMS_480000001"
    aliyun_endpoint: str = "https://dysmsapi.aliyuncs.com"
    aliyun_path_secret: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = ""
    twilio_api_base: str = "https://api.twilio.com"
    public_url: str = ""
    generic_secret: str = ""
    reply_budget: float = 5.0
    dedup: str = "memory"

    @classmethod
    def generate(cls, **overrides) -> "SMSSettings":
        values = dict(aliyun_access_key_id="LTAI" + secrets.token_hex(10),
                      aliyun_access_key_secret=secrets.token_hex(15), aliyun_path_secret=secrets.token_hex(16),
                      twilio_account_sid="AC" + secrets.token_hex(16), twilio_auth_token=secrets.token_hex(16),
                      twilio_from="+8610690000122", generic_secret=secrets.token_hex(24))
        values.update(overrides)
        return cls(**values)


@dataclass
class TelegramSettings(_EnvSettings):
    PREFIX: ClassVar[str] = "TELEGRAM"
    access_token: str = ""
    verify: str = "jiaojing_bot"
    webhook_url: str = "https://example.invalid/webhooks/telegram/webhook"
    secret_token: str = ""
    api_base_url: str = "https://api.telegram.org"
    dedup: str = "memory"

    @classmethod
    def generate(cls, **overrides) -> "TelegramSettings":
        values = dict(access_token=f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(26)[:35]}",
                      secret_token=secrets.token_urlsafe(24))
        values.update(overrides)
        return cls(**values)


@dataclass
class ChannelSettings:
    """All channels at once: what credentials.yml needs in the environment."""
    wechat: WeChatSettings
    weibo: WeiboSettings = field(default_factory=WeiboSettings.generate)
    sms: SMSSettings = field(default_factory=SMSSettings.generate)
    telegram: TelegramSettings = field(default_factory=TelegramSettings.generate)

    def env(self) -> dict:
        env = {}
        for part in (self.wechat, self.weibo, self.sms, self.telegram):
            env.update(part.env())
        return env

    @property
    def rasa_api_token(self) -> str:
        return self.wechat.rasa_api_token

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "ChannelSettings":
        return cls(WeChatSettings.from_env(env), WeiboSettings.from_env(env), SMSSettings.from_env(env),
                   TelegramSettings.from_env(env))

    @classmethod
    def generate(cls, wechat_api: str, weibo_api: str, sms_api: str, telegram_api: str,
                 rasa_url: str) -> "ChannelSettings":
        """Secrets for this machine, every platform API a local stand-in (one SMS stand-in serves
        both gateways' APIs)."""
        return cls(WeChatSettings.generate(api_base=wechat_api), WeiboSettings.generate(api_base_url=weibo_api),
                   SMSSettings.generate(aliyun_endpoint=sms_api, twilio_api_base=sms_api,
                                        public_url=rasa_url),
                   TelegramSettings.generate(api_base_url=telegram_api,
                                             webhook_url=f"{rasa_url}/webhooks/telegram/webhook"))
