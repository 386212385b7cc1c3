"""E-mail through aiosmtplib: plain text with an HTML alternative; SMTP 4xx transient, 5xx permanent."""
from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Optional

import aiosmtplib

from bots import messages
from bots.senders.result import Notification, Outcome, Sender

ADDRESS = re.compile(r"[^@\s<>\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    sender: str
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    starttls: bool = False
    tls: bool = False                 # implicit TLS (port 465)
    ca_file: Optional[str] = None     # trust this CA (a private or test certificate)
    timeout: float = 15.0


class EmailSender(Sender):
    channel = "email"

    def __init__(self, config: SMTPConfig, details_url: str) -> None:
        self.config, self.details_url = config, details_url
        self._tls: Optional[ssl.SSLContext] = None

    def message(self, note: Notification) -> EmailMessage:
        url = messages.details_url(self.details_url, note.event_key)
        subject, plain, page = messages.email(note.event_kind, note.payload, url)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.config.sender, note.to, subject
        msg["Date"] = formatdate(localtime=True)
        # A stable id per notification lets a mail system drop a re-sent duplicate.
        msg["Message-ID"] = make_msgid(idstring=f"outbox-{note.id}", domain=self.config.sender.rsplit("@", 1)[-1].strip(">"))
        msg.set_content(plain)
        msg.add_alternative(page, subtype="html")
        return msg

    def _context(self) -> Optional[ssl.SSLContext]:
        if not (self.config.starttls or self.config.tls):
            return None
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self.config.ca_file)
        return self._tls

    async def send(self, note: Notification) -> Outcome:
        if not ADDRESS.fullmatch(note.to):
            return Outcome.permanent("invalid-address", f"not an e-mail address: {note.to!r}")
        c = self.config
        try:
            await aiosmtplib.send(self.message(note), hostname=c.host, port=c.port, username=c.user,
                                  password=c.password, start_tls=c.starttls, use_tls=c.tls,
                                  tls_context=self._context(), timeout=c.timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients] or [550]
            return self._reply(min(codes), "; ".join(r.message for r in exc.recipients))
        except aiosmtplib.SMTPResponseException as exc:
            return self._reply(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            return Outcome.transient("network", f"{exc.__class__.__name__}: {exc}")
        return Outcome.delivered()

    @staticmethod
    def _reply(code: int, message: str) -> Outcome:
        if 400 <= code < 500:
            return Outcome.transient(f"smtp-{code}", message)
        return Outcome.permanent(f"smtp-{code}", message)
