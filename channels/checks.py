"""Comparing what a request carries with our own secrets."""
from __future__ import annotations

import hmac
from typing import Optional


def same(given: Optional[str], expected: str) -> bool:
    """Constant-time equality that never raises: compare_digest refuses non-ASCII text, and raw
    header bytes reach us as surrogates. A forged value is a refusal, not a 500."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))
