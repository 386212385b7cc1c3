"""Plate and VIN rules: normalise what people type, then validate.

Pure functions; nothing here touches the database.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Optional

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

# Traditional forms of the characters that can appear in a plate.
TRADITIONAL = str.maketrans({
    "魯": "鲁", "滬": "沪", "遼": "辽", "蘇": "苏", "贛": "赣", "晉": "晋", "陝": "陕",
    "閩": "闽", "貴": "贵", "粵": "粤", "寧": "宁", "瓊": "琼", "雲": "云", "學": "学",
    "掛": "挂", "領": "领", "東": "东",
})

# Digits as they are spoken over the phone or typed by people reading a plate aloud.
SPOKEN_DIGITS = {
    "幺": "1", "洞": "0", "拐": "7", "两": "2", "兩": "2", "零": "0", "〇": "0",
    "一": "1", "二": "2", "三": "3", "四": "4", "五": "5", "六": "6", "七": "7",
    "八": "8", "九": "9",
}

# Separators people put inside plates: middle dots, hyphens, spaces.
SEPARATORS = " \t\u3000·•・‧∙.-_－—"

_L = "A-HJ-NP-Z"  # plate letters: never I or O
_P = f"[{PROVINCES}]"
_ORDINARY = re.compile(rf"^{_P}[{_L}][{_L}0-9]{{4}}[{_L}0-9挂学警港澳领]$")
_NE_SMALL = re.compile(rf"^{_P}[{_L}][A-HJK][{_L}0-9][0-9]{{4}}$")
_NE_LARGE = re.compile(rf"^{_P}[{_L}][0-9]{{5}}[DF]$")
_EMBASSY = re.compile(r"^使[0-9]{6}$")
_ARMED_POLICE = re.compile(rf"^WJ{_P}?[0-9]{{4}}[{_L}0-9]$")
_MILITARY = re.compile(r"^[A-Z]{2}[0-9]{5}$")

VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_VALUES = {**{str(d): d for d in range(10)},
               **dict(zip("ABCDEFGH", range(1, 9))), **dict(zip("JKLMN", range(1, 6))),
               "P": 7, "R": 9, **dict(zip("STUVWXYZ", range(2, 10)))}


def to_halfwidth(text: str) -> str:
    """Full-width letters, digits and punctuation to their ASCII forms."""
    return unicodedata.normalize("NFKC", text) if text else text


def normalise_plate(raw: str) -> str:
    """What someone typed as a plate, in the canonical form: 鲁B12345."""
    text = to_halfwidth(raw or "").translate(TRADITIONAL).upper()
    out = []
    for ch in text:
        if ch in SEPARATORS:
            continue
        out.append(SPOKEN_DIGITS.get(ch, ch))
    return "".join(out)


@dataclass(frozen=True)
class Plate:
    number: str
    kind: str       # ordinary, new_energy_small, new_energy_large, trailer, ...
    type_code: str  # the plate-type code query systems use (02 small car, 52 NE small, ...)

    @property
    def issuer(self) -> str:
        """Province abbreviation plus issuing-office letter, e.g. 鲁B."""
        return self.number[:2]


def parse_plate(raw: str) -> Optional[Plate]:
    """A Plate if the text is a valid Chinese plate, else None."""
    number = normalise_plate(raw)
    if _NE_SMALL.match(number):
        return Plate(number, "new_energy_small", "52")
    if _NE_LARGE.match(number):
        return Plate(number, "new_energy_large", "51")
    if _ORDINARY.match(number):
        suffix = number[-1]
        kind, code = {
            "挂": ("trailer", "15"), "学": ("driving_school", "16"), "警": ("police", "23"),
            "港": ("hong_kong", "26"), "澳": ("macao", "27"), "领": ("consulate", "04"),
        }.get(suffix, ("ordinary", "02"))
        return Plate(number, kind, code)
    if _EMBASSY.match(number):
        return Plate(number, "embassy", "03")
    if _ARMED_POLICE.match(number):
        return Plate(number, "armed_police", "31")
    if _MILITARY.match(number):
        return Plate(number, "military", "32")
    return None


def in_jurisdiction(plate: Plate, prefixes: Iterable[str]) -> bool:
    """Whether the plate was issued by one of the configured offices (e.g. 鲁B)."""
    return plate.kind not in ("armed_police", "military", "embassy") and any(
        plate.number.startswith(p) for p in prefixes)


def vin_check_digit(vin: str) -> str:
    """The ISO 3779 / GB 16735 check character (position 9) for a 17-character VIN."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin.upper(), _VIN_WEIGHTS))
    rem = total % 11
    return "X" if rem == 10 else str(rem)


def is_valid_vin(vin: str) -> bool:
    vin = (vin or "").upper()
    return bool(_VIN.match(vin)) and vin[8] == vin_check_digit(vin)


def normalise_proof(raw: str) -> str:
    """A VIN or engine-number suffix as typed: half-width, upper case, no separators."""
    return normalise_plate(raw)


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_NUMBER = re.compile(r"^[1-9]\d{16}[\dX]$")


def id_check_char(body: str) -> str:
    """The GB 11643 check character of an 18-character ID (= licence) number's first 17 digits."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS)) % 11]


def is_valid_id_number(number: str) -> bool:
    number = (number or "").upper()
    return bool(_ID_NUMBER.match(number)) and id_check_char(number[:17]) == number[17]
