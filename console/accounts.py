"""Staff accounts from the command line:

    python -m console.accounts add NAME --role reviewer|supervisor [--password-stdin]
    python -m console.accounts list
    python -m console.accounts disable NAME

The password is asked for twice (not echoed), or read as one line from standard input.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
from typing import Optional

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from actions.records.clock import now_local
from actions.records.db import Database, DatabaseConfigError, async_url, database_url
from actions.records.models import StaffAccount, StaffSession

from . import passwords
from .auth import ROLES

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")


async def add(db: Database, username: str, role: str, password: str) -> StaffAccount:
    if not USERNAME.match(username):
        raise ValueError("username: 3-64 letters, digits, _ . -")
    if role not in ROLES:
        raise ValueError(f"role: one of {', '.join(ROLES)}")
    account = StaffAccount(username=username, password_hash=passwords.hash_password(password), role=role,
                           disabled=False, created_at=now_local())
    try:
        async with db.session() as s, s.begin():
            s.add(account)
    except IntegrityError:
        raise ValueError(f"account {username!r} exists already") from None
    return account


async def set_disabled(db: Database, username: str, disabled: bool = True) -> bool:
    """Disable (or enable) an account; disabling ends its sessions at once."""
    async with db.session() as s, s.begin():
        account = (await s.execute(select(StaffAccount).where(StaffAccount.username == username))
                   ).scalar_one_or_none()
        if account is None:
            return False
        account.disabled = disabled
        if disabled:
            await s.execute(delete(StaffSession).where(StaffSession.account_id == account.id))
        return True


async def listing(db: Database) -> list[StaffAccount]:
    async with db.session() as s:
        return list((await s.execute(select(StaffAccount).order_by(StaffAccount.username))).scalars())


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("密码 / password: ")
    if first != getpass.getpass("再输一次 / again: "):
        raise ValueError("the passwords differ")
    return first


async def _main(args: argparse.Namespace) -> int:
    db = Database(args.database_url)
    try:
        if args.command == "add":
            await add(db, args.name, args.role, _read_password(args.password_stdin))
            print(f"added {args.name} ({args.role})")
        elif args.command == "disable":
            if not await set_disabled(db, args.name):
                print(f"no account {args.name!r}", file=sys.stderr)
                return 1
            print(f"disabled {args.name}")
        else:
            for a in await listing(db):
                print(f"{a.username}\t{a.role}\t{'disabled' if a.disabled else 'active'}\t{a.created_at:%Y-%m-%d %H:%M}")
        return 0
    finally:
        await db.dispose()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m console.accounts", description="staff accounts of the console")
    sub = parser.add_subparsers(dest="command", required=True)
    p_add = sub.add_parser("add", help="create an account")
    p_add.add_argument("name")
    p_add.add_argument("--role", required=True, choices=ROLES)
    p_add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sub.add_parser("list", help="list the accounts")
    p_dis = sub.add_parser("disable", help="disable an account and end its sessions")
    p_dis.add_argument("name")
    args = parser.parse_args(argv)
    try:
        args.database_url = database_url()
        async_url(args.database_url)
        return asyncio.run(_main(args))
    except (ValueError, DatabaseConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, ProgrammingError) as exc:  # most often: migration 0005 not applied yet
        print(f"error: the records database is not ready (run the migrations to head): {exc.orig}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
