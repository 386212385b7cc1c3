"""Staff password hashes: argon2id through argon2-cffi, with its default (RFC 9106) parameters."""
from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
MIN_LENGTH = 10


@lru_cache(maxsize=1)
def _dummy() -> str:
    """Verified against when the username is unknown, so that both cases take the same time."""
    return _hasher.hash("not-a-real-password-0")


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"password must have at least {MIN_LENGTH} characters")
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _dummy(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)
