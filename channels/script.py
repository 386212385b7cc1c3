"""Answering in the script the user writes in: traditional in, traditional out."""
from __future__ import annotations

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


def guard_payload(text: str) -> str:
    """Typed text never reaches Rasa as an intent payload: a leading '/' becomes full-width."""
    return "／" + text[1:] if text.startswith("/") else text
