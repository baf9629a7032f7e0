"""What both readers of numbers need: character normalisation, the English cardinal words and
their grammar, Chinese integer numerals and the vulgar fraction glyphs.

Used by :mod:`distill.quantities.text` (numbers in a question) and
:mod:`distill.quantities.answers` (published answers), defined here once so the two read a
``１２``, a ``twenty-five``, a ``一百二十`` or a ``½`` alike. Plain strings in, ints and Fractions
out; nothing here finds numbers in a text or decides what an answer is.
"""

from __future__ import annotations

import re
from fractions import Fraction

# --------------------------------------------------------------------------------------------
# Normalisation (one character in, one character out, so spans carry over unchanged)
# --------------------------------------------------------------------------------------------

# "，" stays: in CJK text it separates list items, never digit groups. "．" stays too: Math23K
# and most CJK text use it as the full stop ("种了11棵．3个组…"); between full-width digits
# ("１２．５") it is a decimal point, see normalize_text.
_FW = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F) if c not in (0xFF0C, 0xFF0E)}
_FW.update(
    {
        0x3000: ord(" "),
        0x00A0: ord(" "),
        0x2212: ord("-"),  # minus sign
        0x2012: ord("-"),
        0x2013: ord("-"),  # en dash (ranges)
        0x2010: ord("-"),
        0x2011: ord("-"),
        0xFE63: ord("-"),
        0x2044: ord("/"),  # fraction slash
        0x2215: ord("/"),
        0xFE6A: ord("%"),
        0x066A: ord("%"),
    }
)
_FW_TABLE = str.maketrans(_FW)
_FW_DECIMAL_POINT = re.compile(r"(?<=[\uff10-\uff19])．(?=[\uff10-\uff19])")


def normalize_text(text: str) -> str:
    """Full-width ASCII (``１２３``, ``％``, ``／``, ``（``) and minus/dash variants as ASCII.

    Length-preserving, so an index into the result is an index into ``text``. The full-width
    comma ``，`` is kept (a CJK list separator, never a digit group separator), and so is the
    full-width full stop ``．`` except between full-width digits (``１２．５`` -> ``12.5``).
    """
    s = text.translate(_FW_TABLE)
    if "．" in s:
        points = [m.start() for m in _FW_DECIMAL_POINT.finditer(text)]
        if points:
            chars = list(s)
            for i in points:
                chars[i] = "."
            s = "".join(chars)
    return s


# --------------------------------------------------------------------------------------------
# English cardinal words (fraction words and multipliers belong to the text reader)
# --------------------------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9,
}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_ORDINAL_WORDS = (
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    "thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth"
)


def number_words() -> dict[str, int]:
    """The English cardinal words this module reads, with their values."""
    return {**_UNITS, **_TEENS, **_TENS, **_SCALES}


def _alt(words) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_W_U = _alt(k for k in _UNITS if k != "zero")
_W_SMALL = rf"(?:(?:{_alt(_TENS)})(?:[ -](?:{_W_U}))?|{_alt(_TEENS)}|{_W_U}|zero)"
_W_H = rf"(?:(?:{_W_SMALL}|a)\s+hundred(?:\s+(?:and\s+)?{_W_SMALL})?)"
_W_S3 = rf"(?:{_W_H}|{_W_SMALL})"
_W_SCALED = rf"(?:(?:{_W_S3}|a)\s+(?:billion|million|thousand))"
_W_CARD = (
    rf"(?:{_W_SCALED}(?:,?\s+(?:and\s+)?{_W_SCALED})*(?:,?\s+(?:and\s+)?{_W_S3})?|{_W_S3})"
    rf"(?![ -](?:{_ORDINAL_WORDS}|hundredths?|thousandths?)\b)"
)
_WORD_SPLIT = re.compile(r"[\s,-]+")


def _card_value(words: str) -> int | None:
    total = current = 0
    seen = False
    for w in _WORD_SPLIT.split(words.lower()):
        if not w or w == "and":
            continue
        if w == "a":
            current = 1
        elif w in _UNITS:
            current += _UNITS[w]
            seen = True
        elif w in _TEENS:
            current += _TEENS[w]
            seen = True
        elif w in _TENS:
            current += _TENS[w]
            seen = True
        elif w == "hundred":
            current = (current or 1) * 100
            seen = True
        elif w in _SCALES:
            total += (current or 1) * _SCALES[w]
            current = 0
            seen = True
        else:
            return None
    return total + current if seen else None


# --------------------------------------------------------------------------------------------
# Chinese integer numerals
# --------------------------------------------------------------------------------------------

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_BIG = {"万": 10**4, "亿": 10**8}


def _zh_int(s: str) -> int | None:
    """A Chinese numeral ("一百二十", "三千零五", "两万", "十二") as an int; None when malformed.

    A run of bare digits ("三四", "二〇一五") is None: approximations and codes, not counts.
    "一百五" is the colloquial 150.
    """
    if not s:
        return None
    total = section = 0
    num: int | None = None
    last_unit = 10**5
    zero_seen = False
    for ch in s:
        if ch in _ZH_DIGITS:
            d = _ZH_DIGITS[ch]
            if d == 0:
                if num is not None:
                    return None
                zero_seen = True
                continue
            if num is not None:
                return None
            num = d
        elif ch in _ZH_UNITS:
            u = _ZH_UNITS[ch]
            if u >= last_unit:
                return None
            if num is None:
                if u != 10 or section or total:
                    if u == 10 and zero_seen:
                        num = 1
                    else:
                        return None
                else:
                    num = 1
            section += num * u
            last_unit = u
            num = None
            zero_seen = False
        elif ch in _ZH_BIG:
            u = _ZH_BIG[ch]
            if num is not None:
                section += num
                num = None
            if not section or (total and total < u):
                return None
            total += section * u
            section = 0
            last_unit = 10**5
            zero_seen = False
        else:
            return None
    if num is not None:
        if not zero_seen and 100 <= last_unit < 10**5 and (section or total):
            num = num * last_unit // 10  # 一百五 = 150, 两千三 = 2300
        section += num
    return total + section


# --------------------------------------------------------------------------------------------
# Vulgar fraction glyphs
# --------------------------------------------------------------------------------------------

_VULGAR = {"½": Fraction(1, 2), "⅓": Fraction(1, 3), "⅔": Fraction(2, 3), "¼": Fraction(1, 4),
           "¾": Fraction(3, 4), "⅕": Fraction(1, 5), "⅖": Fraction(2, 5), "⅗": Fraction(3, 5),
           "⅘": Fraction(4, 5), "⅙": Fraction(1, 6), "⅚": Fraction(5, 6), "⅛": Fraction(1, 8),
           "⅜": Fraction(3, 8), "⅝": Fraction(5, 8), "⅞": Fraction(7, 8), "⅐": Fraction(1, 7),
           "⅑": Fraction(1, 9), "⅒": Fraction(1, 10)}
