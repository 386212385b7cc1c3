"""The dispatcher's settings, from the environment only, checked at start-up: every error names
the variable. A channel is enabled when its credentials are present; rows for a disabled channel
stay pending for a dispatcher that has them."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from actions.records.db import DatabaseConfigError, async_url, database_url
from bots.dispatcher import Policy
from bots.senders.email import SMTPConfig
from scripts.settings import ChannelSettings

CHANNELS = ("wechat", "sms", "email", "telegram", "weibo")
# Sends per second. Telegram: ~30/s overall, kept under it. WeChat template messages: high but
# finite (100,000 a day by default, API frequency limits). SMS gateways: the account's QPS.
DEFAULT_RATES = {"wechat": 1000.0, "sms": 100.0, "email": 20.0, "telegram": 25.0, "weibo": 50.0}
TEMPLATE_KINDS = ("violation", "inspection", "licence", "points", "report")


class BotConfigError(ValueError):
    pass


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, key: str, default: Optional[str] = None) -> Optional[str]:
        value = self.env.get(key)
        return value.strip() if value is not None and value.strip() else default

    def number(self, key: str, default: float, low: float, high: float) -> float:
        raw = self.text(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise BotConfigError(f"{key}: '{raw}' is not a number") from None
        if not low <= value <= high:
            raise BotConfigError(f"{key}: {value:g} is outside {low:g}..{high:g}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.number(key, default, low, high)
        if value != int(value):
            raise BotConfigError(f"{key}: must be a whole number")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        raw = self.text(key)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise BotConfigError(f"{key}: '{raw}' is not true/false")

    def url(self, key: str, default: str) -> str:
        value = self.text(key, default)
        if not re.match(r"https?://[^\s/]+", value):
            raise BotConfigError(f"{key}: '{value}' is not an http(s) URL")
        return value.rstrip("/")


@dataclass(frozen=True)
class BotSettings:
    database_url: str
    channels: ChannelSettings
    enabled: Tuple[str, ...]
    smtp: Optional[SMTPConfig]
    policy: Policy
    rates: Dict[str, float]
    template_ids: Dict[str, str]
    details_url: str
    wechat_threads: int = 32
    token_cooldown: float = 30.0
    ingest_token: Optional[str] = field(default=None, repr=False)
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8090
    reminder_time: Tuple[int, int] = (9, 0)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "BotSettings":
        env = os.environ if env is None else env
        e = _Env(env)
        url = database_url(env)
        try:
            async_url(url)
        except DatabaseConfigError as exc:
            raise BotConfigError(str(exc)) from None
        # The webhook token is the Rasa channel's business; the dispatcher needs only the API keys.
        channels = ChannelSettings.from_env({"WECHAT_TOKEN": "", **env})
        enabled = []
        if channels.wechat.app_id and channels.wechat.app_secret:
            enabled.append("wechat")
        sms = channels.sms
        if sms.gateway not in ("aliyun", "twilio"):
            raise BotConfigError(f"SMS_GATEWAY: '{sms.gateway}' is not aliyun or twilio")
        if (sms.gateway == "aliyun" and sms.aliyun_access_key_id and sms.aliyun_access_key_secret) or \
                (sms.gateway == "twilio" and sms.twilio_account_sid and sms.twilio_auth_token):
            if sms.gateway == "twilio" and not sms.twilio_from:
                raise BotConfigError("SMS_TWILIO_FROM: required when SMS_GATEWAY is twilio")
            enabled.append("sms")
        smtp = cls._smtp(e)
        if smtp is not None:
            enabled.append("email")
        if channels.telegram.access_token:
            from channels.telegram import TelegramConfig, TelegramConfigError

            try:
                TelegramConfig.from_credentials(channels.telegram.credentials())
            except TelegramConfigError as exc:
                match = re.search(r"'(\w+)' (.*)", str(exc))
                key, problem = (match.group(1), match.group(2)) if match else ("ACCESS_TOKEN", str(exc))
                raise BotConfigError(f"TELEGRAM_{key.upper()}: {problem}") from None
            enabled.append("telegram")
        if channels.weibo.access_token:
            enabled.append("weibo")
        if "wechat" in enabled:
            e.url("WECHAT_API_BASE", channels.wechat.api_base)
        only = e.text("JJ_PUSH_CHANNELS")
        if only:
            wanted = tuple(c.strip() for c in only.split(",") if c.strip())
            for c in wanted:
                if c not in CHANNELS:
                    raise BotConfigError(f"JJ_PUSH_CHANNELS: unknown channel '{c}' (use {', '.join(CHANNELS)})")
                if c not in enabled:
                    raise BotConfigError(f"JJ_PUSH_CHANNELS: '{c}' is listed but its credentials are not set")
            enabled = [c for c in enabled if c in wanted]
        lease = e.number("JJ_PUSH_LEASE", 60.0, 5.0, 3600.0)
        send_timeout = e.number("JJ_PUSH_SEND_TIMEOUT", min(20.0, lease / 3), 1.0, 600.0)
        if send_timeout * 2 > lease:
            raise BotConfigError(f"JJ_PUSH_SEND_TIMEOUT: {send_timeout:g}s must be at most half of "
                                 f"JJ_PUSH_LEASE ({lease:g}s)")
        policy = Policy(lease=lease, max_attempts=e.integer("JJ_PUSH_MAX_ATTEMPTS", 8, 1, 100),
                        batch=e.integer("JJ_PUSH_BATCH", 500, 1, 10000),
                        concurrency=e.integer("JJ_PUSH_CONCURRENCY", 100, 1, 2000),
                        backoff_base=e.number("JJ_PUSH_BACKOFF_BASE", 5.0, 0.0, 3600.0),
                        backoff_max=e.number("JJ_PUSH_BACKOFF_MAX", 3600.0, 1.0, 86400.0),
                        poll=e.number("JJ_PUSH_POLL", 1.0, 0.01, 60.0), send_timeout=send_timeout)
        rates = {c: e.number(f"JJ_RATE_{c.upper()}", DEFAULT_RATES[c], 0.01, 100000.0) for c in CHANNELS}
        templates = {k: e.text(f"JJ_WECHAT_TEMPLATE_{k.upper()}", f"jj_{k}_notice") for k in TEMPLATE_KINDS}
        token = e.text("JJ_INGEST_TOKEN")
        if token is not None and len(token) < 16:
            raise BotConfigError("JJ_INGEST_TOKEN: must be at least 16 characters")
        reminder = e.text("JJ_REMINDER_TIME", "09:00")
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", reminder)
        if not match:
            raise BotConfigError(f"JJ_REMINDER_TIME: '{reminder}' is not HH:MM")
        return cls(database_url=url, channels=channels, enabled=tuple(enabled), smtp=smtp, policy=policy,
                   rates=rates, template_ids=templates,
                   details_url=e.url("JJ_DETAILS_URL", "https://jj.example.gov.cn/notice"),
                   wechat_threads=e.integer("JJ_WECHAT_THREADS", 32, 1, 256),
                   token_cooldown=e.number("JJ_TOKEN_COOLDOWN", 30.0, 1.0, 3600.0),
                   ingest_token=token, ingest_host=e.text("JJ_INGEST_HOST", "127.0.0.1"),
                   ingest_port=e.integer("JJ_INGEST_PORT", 8090, 1, 65535),
                   reminder_time=(int(match.group(1)), int(match.group(2))))

    @staticmethod
    def _smtp(e: _Env) -> Optional[SMTPConfig]:
        host = e.text("SMTP_HOST")
        if host is None:
            return None
        starttls, tls = e.flag("SMTP_STARTTLS", False), e.flag("SMTP_TLS", False)
        if starttls and tls:
            raise BotConfigError("SMTP_STARTTLS: cannot be combined with SMTP_TLS (implicit TLS)")
        sender = e.text("SMTP_FROM")
        if sender is None or "@" not in sender:
            raise BotConfigError("SMTP_FROM: required, an e-mail address such as 交警助手 <notice@example.gov.cn>")
        user, password = e.text("SMTP_USER"), e.text("SMTP_PASSWORD")
        if bool(user) != bool(password):
            raise BotConfigError("SMTP_PASSWORD: SMTP_USER and SMTP_PASSWORD go together")
        ca_file = e.text("SMTP_CA_FILE")
        if ca_file is not None and not Path(ca_file).is_file():
            raise BotConfigError(f"SMTP_CA_FILE: no such file: {ca_file}")
        port = e.integer("SMTP_PORT", 465 if tls else (587 if starttls else 25), 1, 65535)
        return SMTPConfig(host=host, port=port, sender=sender, user=user, password=password, starttls=starttls,
                          tls=tls, ca_file=ca_file, timeout=e.number("SMTP_TIMEOUT", 15.0, 1.0, 300.0))
