"""Every enabled channel's sender, from BotSettings. Nothing connects until the first send."""
from __future__ import annotations

from typing import Dict

from actions.records.db import Database
from bots.senders.result import Sender


def make_senders(settings, database: Database) -> Dict[str, Sender]:
    senders: Dict[str, Sender] = {}
    ch = settings.channels
    if "wechat" in settings.enabled:
        from bots.senders.wechat import WeChatSender, make_push_client
        from bots.senders.wechat_token import DatabaseTokenStore, RedisTokenStore

        client = make_push_client(ch.wechat.app_id, ch.wechat.app_secret, ch.wechat.api_base,
                                  pool=settings.wechat_threads)
        sender = WeChatSender(client, None, settings.template_ids, settings.details_url,
                              threads=settings.wechat_threads)
        name = f"wechat:{ch.wechat.app_id}"
        if ch.wechat.token_store.startswith(("redis://", "rediss://", "unix://")):
            sender.tokens = RedisTokenStore(ch.wechat.token_store, name, sender.fetch_token, settings.token_cooldown)
        else:
            sender.tokens = DatabaseTokenStore(database, name, sender.fetch_token, settings.token_cooldown)
        senders["wechat"] = sender
    if "sms" in settings.enabled:
        from bots.senders.sms import SMSSender, make_gateway

        senders["sms"] = SMSSender(make_gateway(ch.sms), ch.sms.aliyun_sign_name)
    if "email" in settings.enabled:
        from bots.senders.email import EmailSender

        senders["email"] = EmailSender(settings.smtp, settings.details_url)
    if "telegram" in settings.enabled:
        from bots.senders.telegram import TelegramSender
        from channels.telegram import TelegramConfig

        senders["telegram"] = TelegramSender(TelegramConfig.from_credentials(ch.telegram.credentials()),
                                             settings.details_url)
    if "weibo" in settings.enabled:
        from bots.senders.weibo import WeiboSender
        from channels.weibo import WeiboConfig

        senders["weibo"] = WeiboSender(WeiboConfig.from_credentials(ch.weibo.credentials()), settings.details_url)
    return senders


def make_dispatcher(settings, database: Database):
    from bots.dispatcher import Dispatcher
    from bots.ratelimit import TokenBucket

    limits = {c: TokenBucket(settings.rates[c]) for c in settings.enabled}
    return Dispatcher(database, make_senders(settings, database), settings.policy, limits)
