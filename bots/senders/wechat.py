"""WeChat template messages through wechatpy (message.send_template), blocking calls in threads.

The client is channels.wechat's GuardedWeChatClient (configurable API base) with wechatpy's own
token retry switched off: the token comes from the shared store (bots.senders.wechat_token), a
rejected token is invalidated there and the send retried once with the next one, never more.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Mapping, Optional

import requests
from requests.adapters import HTTPAdapter
from wechatpy.exceptions import WeChatClientException

from bots import messages
from bots.senders.result import Notification, Outcome, Sender
from bots.senders.wechat_token import TokenUnavailable
from channels.wechat import TOKEN_ERRORS, GuardedWeChatClient, WeChatConfig

logger = logging.getLogger(__name__)

TRANSIENT_CODES = {-1, 45009, 45047, 45011}   # busy, API frequency, over the count, too fast
BLOCKED_CODES = {43004, 45015, 43101}          # unfollowed / blocked us / refused the messages
OPENID = re.compile(r"[A-Za-z0-9_-]{6,64}")
TOKEN_RETRY_DELAY = 60.0


class PushWeChatClient(GuardedWeChatClient):
    """The access token is handed in per call (thread-local), never fetched by wechatpy itself."""

    def __init__(self, config: WeChatConfig, pool: int) -> None:
        super().__init__(config)
        self.auto_retry = False
        # One keep-alive connection per sending thread.
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        # requests reads the environment on every call (proxy variables, ~/.netrc, CA bundle
        # variables): a tenth of a send's CPU. Read once here instead; same result for a process
        # whose environment does not change.
        http = self._http
        http.proxies.update(requests.utils.get_environ_proxies(config.api_base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            http.verify = bundle
        if http.auth is None:
            http.auth = requests.utils.get_netrc_auth(config.api_base_url)
        http.trust_env = False
        self._call = threading.local()

    @property
    def access_token(self) -> str:
        token = getattr(self._call, "token", None)
        if not token:
            raise WeChatClientException(40001, "no shared access token for this call", client=self)
        return token

    def send_template_with(self, token: str, openid: str, template: Mapping[str, Any]) -> dict:
        self._call.token = token
        try:
            return self.message.send_template(openid, template["template_id"], template["data"],
                                              url=template.get("url"))
        finally:
            self._call.token = None

    def send_text_with(self, token: str, openid: str, text: str) -> dict:
        """A customer-service text message (message/custom/send)."""
        self._call.token = token
        try:
            return self.message.send_text(openid, text)
        finally:
            self._call.token = None

    def fetch_token(self) -> tuple:
        result = self.fetch_access_token()
        return result["access_token"], int(result.get("expires_in", 7200))


def make_push_client(app_id: str, app_secret: str, api_base: str, pool: int = 32) -> PushWeChatClient:
    config = WeChatConfig(token="unused", app_id=app_id, app_secret=app_secret, encoding_aes_key=None,
                          mode="plain", api_base_url=api_base.rstrip("/"))
    return PushWeChatClient(config, pool)


class WeChatSender(Sender):
    channel = "wechat"

    def __init__(self, client: PushWeChatClient, tokens: Any, template_ids: Mapping[str, str],
                 details_url: str, threads: int = 32) -> None:
        self.client, self.tokens = client, tokens
        self.template_ids, self.details_url = dict(template_ids), details_url
        self.threads = threads
        self._pool: Optional[ThreadPoolExecutor] = None

    async def fetch_token(self) -> tuple:
        """For the token store: one fetch, in a thread."""
        return await self._run(self.client.fetch_token)

    async def _run(self, fn, *args):
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="wechat-send")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def template(self, note: Notification) -> Dict[str, Any]:
        return messages.wechat_template(note.event_kind, note.payload, self.template_ids,
                                        messages.details_url(self.details_url, note.event_key))

    async def send(self, note: Notification) -> Outcome:
        if not OPENID.fullmatch(note.to):
            return Outcome.permanent("invalid-address", f"not a WeChat openid: {note.to!r}")
        if note.event_kind in messages.CUSTOM_TEXT_KINDS:
            return await self.send_custom(note)
        template = self.template(note)
        for attempt in (1, 2):
            try:
                token = await self.tokens.get()
            except TokenUnavailable as exc:
                return Outcome.transient("token", str(exc), TOKEN_RETRY_DELAY)
            try:
                result = await self._run(self.client.send_template_with, token, note.to, template)
            except requests.RequestException as exc:
                return Outcome.transient("network", f"{exc.__class__.__name__}: {exc}")
            except WeChatClientException as exc:
                code = exc.errcode
                if code in TOKEN_ERRORS and attempt == 1:
                    await self.tokens.invalidate(token)
                    continue
                return self.classify(code, exc.errmsg, exc)
            return Outcome.delivered(str(result.get("msgid", "")) if isinstance(result, dict) else None)
        return Outcome.transient("token", "access token rejected twice", TOKEN_RETRY_DELAY)

    async def send_custom(self, note: Notification) -> Outcome:
        """Customer-service text (staff replies, appointment changes): allowed only within 48
        hours of the user's last message. 45015 here means that window closed, not a block."""
        text = messages.custom_text(note.event_kind, note.payload)
        for attempt in (1, 2):
            try:
                token = await self.tokens.get()
            except TokenUnavailable as exc:
                return Outcome.transient("token", str(exc), TOKEN_RETRY_DELAY)
            try:
                await self._run(self.client.send_text_with, token, note.to, text)
            except requests.RequestException as exc:
                return Outcome.transient("network", f"{exc.__class__.__name__}: {exc}")
            except WeChatClientException as exc:
                if exc.errcode in TOKEN_ERRORS and attempt == 1:
                    await self.tokens.invalidate(token)
                    continue
                if exc.errcode == 45015:
                    return Outcome.permanent("45015", f"outside the 48-hour reply window: {exc.errmsg}")
                return self.classify(exc.errcode, exc.errmsg, exc)
            return Outcome.delivered()
        return Outcome.transient("token", "access token rejected twice", TOKEN_RETRY_DELAY)

    @staticmethod
    def classify(code: Optional[int], errmsg: Any, exc: Exception) -> Outcome:
        if code is None:  # HTTP error or undecodable answer
            status = getattr(getattr(exc, "response", None), "status_code", None)
            return Outcome.transient(f"http-{status}", str(errmsg or exc))
        if code in TOKEN_ERRORS:
            return Outcome.transient(str(code), str(errmsg), TOKEN_RETRY_DELAY)
        if code in TRANSIENT_CODES:
            return Outcome.transient(str(code), str(errmsg), 60.0 if code in (45009, 45047) else None)
        if code in BLOCKED_CODES:
            return Outcome.permanent(str(code), f"user blocked or unfollowed: {errmsg}", blocked=True)
        if code == 40003:
            return Outcome.permanent("invalid-address", f"40003 {errmsg}")
        return Outcome.permanent(str(code), str(errmsg))

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.client._http.close()
        close = getattr(self.tokens, "close", None)
        if close is not None:
            await close()
