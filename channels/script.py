"""Answering in the script the user writes in: traditional in, traditional out."""
from __future__ import annotations

import re
import threading
from typing import Callable, Dict, Optional

_lock = threading.Lock()
_converters: Dict[str, Callable[[str], str]] = {}


def _opencc(config: str) -> Callable[[str], str]:
    with _lock:
        if config not in _converters:
            from opencc import OpenCC  # dictionaries load on first use, not at import

            _converters[config] = OpenCC(config).convert
    return _converters[config]


def script_of(text: str) -> Optional[str]:
    """'traditional' or 'simplified' for text with Chinese characters, None for text without."""
    if not any("\u4e00" <= c <= "\u9fff" for c in text or ""):
        return None
    return "traditional" if _opencc("t2s")(text) != text else "simplified"


def to_traditional(text: str) -> str:
    # Taiwan-standard characters (為, 裡) are what people who write traditional actually use;
    # OpenCC's generic s2t picks variants such as 爲.
    return _opencc("s2tw")(text)


# C0 controls other than tab and line breaks, and DEL: no keyboard types them, JSON platforms can
# carry them, and PostgreSQL cannot store U+0000 in text.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def guard_payload(text: str) -> str:
    """Typed text as Rasa gets it: control characters dropped, and never posing as an intent
    payload (a leading '/' becomes full-width)."""
    text = CONTROL.sub("", text)
    return "／" + text[1:] if text.startswith("/") else text
