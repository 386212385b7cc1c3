"""The staff console for tests: a running app on loopback, accounts, and a signed-in HTTP client."""
from __future__ import annotations

import asyncio
import re
import secrets
from typing import Optional

from aiohttp import ClientSession, CookieJar

from actions.records.db import Database

CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


async def create_account(url: str, role: str, username: Optional[str] = None) -> tuple[str, str]:
    """A new staff account (through console.accounts, as the command does): (username, password)."""
    from console import accounts

    username = username or f"{role[:3]}_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(14)
    db = Database(url)
    try:
        await accounts.add(db, username, role, password)
    finally:
        await db.dispose()
    return username, password


def add_account(url: str, role: str, username: Optional[str] = None) -> tuple[str, str]:
    """create_account, outside any event loop (for fixtures)."""
    return asyncio.run(create_account(url, role, username))


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def signed_in(base: str, username: str, password: str) -> tuple[ClientSession, str]:
    """A client session signed in to the console, and its CSRF token."""
    http = ClientSession(cookie_jar=CookieJar(unsafe=True))  # unsafe: cookies for 127.0.0.1
    async with http.get(f"{base}/login") as res:
        token = csrf_of(await res.text())
    async with http.post(f"{base}/login", data={"_csrf": token, "username": username, "password": password},
                         allow_redirects=False) as res:
        assert res.status == 303, await res.text()
    async with http.get(f"{base}/reports") as res:
        assert res.status == 200
        return http, csrf_of(await res.text())
