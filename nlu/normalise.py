"""Chinese text normalisation before tokenising.

Traditional → simplified (OpenCC), full-width → half-width, plates written with separators,
lower case or spoken digits → the canonical plate, spoken digit runs (幺二三…) → digits.
Every transform keeps, for each output character, the index of the source character it came
from, so entity spans annotated on the raw text can be moved onto the normalised text.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from typing import Callable, Optional

from actions.records.plates import PROVINCES, SEPARATORS, SPOKEN_DIGITS, parse_plate

Chars = list[tuple[str, int]]  # (character, index in the source text)

_converter: Optional[Callable[[str], str]] = None
_converter_lock = threading.Lock()


def _t2s() -> Callable[[str], str]:
    """OpenCC's converter, loaded on first use (its dictionaries take a moment)."""
    global _converter
    if _converter is None:
        with _converter_lock:
            if _converter is None:
                from opencc import OpenCC
                _converter = OpenCC("t2s").convert
    return _converter


def _halfwidth(chars: Chars) -> Chars:
    out: Chars = []
    for ch, src in chars:
        for mapped in unicodedata.normalize("NFKC", ch):
            out.append((mapped, src))
    return out


def _simplified(chars: Chars) -> Chars:
    text = "".join(ch for ch, _ in chars)
    converted = _t2s()(text)
    if len(converted) == len(text):
        return [(new, src) for new, (_, src) in zip(converted, chars)]
    # A phrase conversion changed the length: fall back to one character at a time.
    out: Chars = []
    for ch, src in chars:
        for new in _t2s()(ch):
            out.append((new, src))
    return out


_SEP = re.escape(SEPARATORS)
_SPOKEN = "".join(SPOKEN_DIGITS)
# A province, an office letter, then 5-6 letters/digits, any of them spoken, with separators between.
_PLATE_CANDIDATE = re.compile(
    rf"[{PROVINCES}][{_SEP}]*[A-Za-z](?:[{_SEP}]*[A-Za-z0-9{_SPOKEN}]){{5,6}}")
_DIGIT_RUN = re.compile(rf"[0-9{_SPOKEN}]{{4,}}")


def _plates(chars: Chars) -> Chars:
    text = "".join(ch for ch, _ in chars)
    out: Chars = []
    pos = 0
    for match in _PLATE_CANDIDATE.finditer(text):
        kept = [i for i in range(match.start(), match.end()) if chars[i][0] not in SEPARATORS]
        # Try the longest reading first: 8 characters (new energy) before 7.
        for n in (len(kept), len(kept) - 1):
            candidate = "".join(SPOKEN_DIGITS.get(chars[i][0], chars[i][0].upper()) for i in kept[:n])
            if n >= 7 and parse_plate(candidate) is not None:
                out.extend(chars[pos:match.start()])
                out.extend((c, chars[i][1]) for c, i in zip(candidate, kept[:n]))
                pos = kept[n - 1] + 1
                break
    out.extend(chars[pos:])
    return out


def _spoken_digits(chars: Chars) -> Chars:
    text = "".join(ch for ch, _ in chars)
    out = list(chars)
    for match in _DIGIT_RUN.finditer(text):
        run = match.group()
        # Only runs that are clearly numbers: some real digits, or the unambiguous 幺/洞/拐.
        if any(c.isdigit() for c in run) or any(c in "幺洞拐" for c in run):
            for i in range(match.start(), match.end()):
                ch, src = out[i]
                out[i] = (SPOKEN_DIGITS.get(ch, ch), src)
    return out


def normalise_with_offsets(text: str) -> tuple[str, list[int]]:
    chars: Chars = [(ch, i) for i, ch in enumerate(text)]
    for step in (_halfwidth, _simplified, _plates, _spoken_digits):
        chars = step(chars)
    return "".join(ch for ch, _ in chars), [src for _, src in chars]


def normalise(text: str) -> str:
    return normalise_with_offsets(text)[0]


def move_span(sources: list[int], start: int, end: int) -> Optional[tuple[int, int]]:
    """The span [start, end) of the source text, on the normalised text."""
    inside = [i for i, src in enumerate(sources) if start <= src < end]
    if not inside:
        return None
    return inside[0], inside[-1] + 1


def is_traditional(text: str) -> bool:
    """Whether the text is written in traditional characters (it changes under t2s)."""
    return bool(text) and _t2s()(text) != text
