"""Numbers in problem text and in answers: the one place where they are read.

Takes plain strings, gives exact values (:class:`fractions.Fraction`); no Ray, no sympy, and no
float on the way (a float *input* is read through its ``repr``).

**Problem text** (:func:`extract_quantities`, :func:`mask_question`), English and Chinese.
Spans index the original text; values are the number as written (``0.3333`` stays 3333/10000).

* Digits: ``12``, ``2.5``, ``.5`` (after a space, ``$`` or ``(``), ``1,200`` (a comma groups
  thousands only when every group after it has three digits and no ``,digit`` follows, so
  ``3,4 and 5`` is three numbers), ``(1/3)``, ``7(2/3)``, ``2 1/2``, ``½``, ``2½``, and
  percentages ``80%``, ``80 %``, ``80 percent``. Full-width forms (``１２３``, ``％``, ``／``,
  ``（１／３）``, ``１２．５``) read as their ASCII twins; ``．`` between ASCII digits is the CJK
  full stop Math23K uses, not a decimal point.
* A bare ``a/b`` is a fraction in English (``1/3 cup``) but a division of two numbers in
  Chinese text, where fractions are written ``(a/b)``, and next to another operator in any
  text (``1300/600的商``, ``48/2 = 24``, ``840/6/70``).
* ``-`` is a sign only right before a digit and after a start, a space (not after a digit and
  a space), an opening bracket, ``= : ; ,`` or a copula (是, 为, 作, 拔, 到, 至): ``-5`` and
  ``气温是-5摄氏度`` are -5; ``5-6``, ``24%-32%`` and ``8时-11时`` are ranges of positive numbers.
* English words: cardinals (``seven``, ``twenty-five``, ``a hundred``, ``one hundred and
  twenty``, ``two thousand five hundred``), fractions (``half``, ``a half``, ``one-half``,
  ``a third``, ``two thirds``, ``a quarter``, ``three-fourths``), ``two and a half``,
  ``twenty percent``, ``twice``/``thrice``/``double(d)``/``triple(d)``/``quadruple(d)``, and
  ``dozen`` (12). ``three dozen`` gives two quantities, 3 and 12, as gold equations write
  ``3*12``; ``dozens of birds`` is vague and skipped (``how many dozens of`` is not).
  ``half`` after ``first``/``second``/``last`` names a part of a game, not a quantity.
* Chinese numerals: ``十二``, ``二十五``, ``一百二十``, ``一百零五``, ``两`` (2), ``一半`` and
  ``半`` before a unit (``半小时``, ``半价``; not ``半径``, ``上半年``), ``一个半`` (3/2),
  ``三分之一``, ``3又二分之一``, ``百分之二十`` (kind percent), ``千分之五``, ``八成`` /
  ``七成五`` and ``八折`` / ``八五折`` / ``7.5折`` (tenths, kind percent). A trailing ``万`` /
  ``亿`` is a unit, as the gold equations read it (``350万元`` is 350), and ``千`` before
  ``克``/``米``/``瓦`` is the prefix kilo (``5千克`` is 5).

Not quantities:

* ordinals in words (``the third day``, ``fifth grade``, ``twenty-first``, ``第一``, ``星期一``,
  ``二年级``, ``三月份``, ``二楼``). Ordinals in digits (``第3天``, ``8th week``) are kept: gold
  equations use them (68 Math23K problems need a ``第N``);
* numerals inside words and names (``一共``, ``一些``, ``一样``, ``十分`` = very, ``千万`` = must,
  ``三角形``, ``四边形``, ``四川``, ``“十一”``, ``《十万个为什么》``), vague runs (``三四个``,
  ``十几``), ``MP3`` and unit exponents (``m2``);
* ``两``/``二`` naming a pair just listed or the two ends of a trip (``甲乙两车``, ``师徒二人``,
  ``两地``): it says "both", not a count;
* a bare ``one`` / ``a`` / ``一`` before a noun (``one day``, ``一条小路``). 1 is always an allowed
  constant downstream, so extracting it adds ambiguity and no coverage: measured on the gold
  equations, coverage is unchanged either way, and extracting it costs +0.05 quantities per
  MAWPS problem and +0.71 per Math23K problem. A ``1`` written in digits is kept, and so is
  ``一`` inside a larger numeral (``一百``, ``十一``, ``三分之一``, ``一个半``).

**Answers** (:func:`parse_answer`, :func:`parse_number`): every published form, see
:func:`parse_answer`. A decimal with six or more fractional digits that lies within half a
unit of its last digit of a fraction with denominator <= 1000 is read as that fraction with
``exact=False`` (``0.666666666667`` -> 2/3); so is a float that is the nearest float to such a
fraction (``0.3333333333333333``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

__all__ = [
    "QuantityKind",
    "Quantity",
    "ParsedAnswer",
    "extract_quantities",
    "mask_question",
    "detect_lang",
    "parse_answer",
    "parse_number",
    "canonical",
    "decimal_fraction",
    "normalize_text",
    "number_words",
    "MAX_EXPONENT",
    "MAX_DIGITS",
    "QuantityTooLarge",
]

#: Largest power of ten a number may carry (``1e400``, ``3 x 10^-400``): beyond it a literal is
#: not read as a number, and :func:`decimal_fraction` refuses it (turning ``1e999999999`` into a
#: Fraction would compute a billion-digit power).
MAX_EXPONENT = 400
#: Most digits :func:`canonical` writes for a numerator, denominator or decimal expansion
#: (Python's own int-to-text limit): a larger value raises :class:`QuantityTooLarge`.
MAX_DIGITS = 4300


class QuantityTooLarge(ValueError):
    """A value beyond the bounds numbers are read and written within (:data:`MAX_EXPONENT`,
    :data:`MAX_DIGITS`); the message says which bound and by how much."""


QuantityKind = Literal["integer", "decimal", "percent", "fraction", "mixed", "word"]


@dataclass(frozen=True)
class Quantity:
    """One number in a text: ``text == original[start:end]``; percentages are fractions of one."""

    text: str
    value: Fraction
    start: int
    end: int
    kind: QuantityKind


@dataclass(frozen=True)
class ParsedAnswer:
    """A published answer read as a number when it is one (see :func:`parse_answer`)."""

    original: str
    value: Fraction | None
    exact: bool
    percent: bool
    unit: str | None
    text: str


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


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_lang(text: str) -> str:
    """``"zh"`` when CJK ideographs are at least a tenth as many as Latin letters, else ``"en"``."""
    if not isinstance(text, str):
        return "en"
    cjk = len(_CJK.findall(text))
    if not cjk:
        return "en"
    return "zh" if cjk * 10 >= len(_LATIN.findall(text)) else "en"


# --------------------------------------------------------------------------------------------
# English number words
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
_DENOMS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "fourth": 4, "fourths": 4, "quarter": 4,
    "quarters": 4, "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7,
    "sevenths": 7, "eighth": 8, "eighths": 8, "ninth": 9, "ninths": 9, "tenth": 10,
    "tenths": 10, "eleventh": 11, "elevenths": 11, "twelfth": 12, "twelfths": 12,
    "sixteenth": 16, "sixteenths": 16, "twentieth": 20, "twentieths": 20, "hundredth": 100,
    "hundredths": 100, "thousandth": 1000, "thousandths": 1000,
}
_MULTIPLIERS = {
    "twice": 2, "thrice": 3, "double": 2, "doubled": 2, "doubles": 2, "triple": 3,
    "tripled": 3, "triples": 3, "quadruple": 4, "quadrupled": 4, "quadruples": 4,
}
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
_W_DEN_PL = _alt(k for k in _DENOMS if k.endswith("s") and k != "halves")
_W_DEN_SG = _alt(k for k in _DENOMS if not k.endswith("s") and k not in ("half", "quarter"))
# "a third" is a fraction only where an ordinal cannot stand: before "of", a measure, a
# comparison or punctuation ("a third of the class", "a third cup") -- not "a third friend".
_W_AFTER_SG = (
    r"(?=\s*(?:$|[.,;:?!)]|(?:of|as|more|less|than|cups?|pounds?|ounces?|inch(?:es)?|"
    r"feet|foot|yards?|miles?|hours?|gallons?|liters?|litres?|kilograms?|grams?|meters?|"
    r"teaspoons?|tablespoons?|pints?|quarts?|tons?|acres?|kilometers?)\b))"
)

_EN_WORDS = re.compile(
    r"(?:"
    # N and a half / N and two thirds (N in digits or words)
    rf"(?P<wmix>(?P<wmix_int>\d+|{_W_CARD})\s+and\s+(?P<wmix_num>a|one|{_W_SMALL})[ -]"
    rf"(?P<wmix_den>{_alt(_DENOMS)}))"
    # fractions: a half, one-half, two thirds, three-fourths, a quarter, one fifth
    rf"|(?P<wfrac>(?P<wfrac_num>a|one|{_W_SMALL})[ -](?P<wfrac_den>half|quarters?|{_W_DEN_PL}))"
    rf"|(?P<wfsg>one[ -](?P<wfsg_den1>{_W_DEN_SG})"
    rf"|a[ -](?P<wfsg_den2>{_W_DEN_SG}){_W_AFTER_SG})"
    # cardinals, optionally a percentage
    rf"|(?P<wcardp>(?P<wcard>{_W_CARD})(?P<wpct>\s+(?:percent|per\s+cent)\b)?)"
    r"|(?P<whalf>half)"
    rf"|(?P<wmult>{_alt(_MULTIPLIERS)})"
    r"|(?P<wdoz>(?:a\s+)?dozens?)"
    r")(?![A-Za-z0-9_])",
    re.IGNORECASE,
)
_DOZENS_OF = re.compile(r"\s+of\b", re.IGNORECASE)
_HOW_MANY = re.compile(r"how\s+many\s+$", re.IGNORECASE)
_HALF_ORDINAL_BEFORE = re.compile(r"(?:first|second|last|1st|2nd)\s+$", re.IGNORECASE)
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


def _small_value(word: str) -> int | None:
    word = word.lower()
    if word in ("a", "one"):
        return 1
    return _card_value(word)


_A_NUMBER = re.compile(
    rf"[ -]+(?:hundred|thousand|million|billion|dozen|half|quarter|{_W_DEN_SG})\b", re.IGNORECASE
)
_EN_STARTS = frozenset(
    {"a", "one", "half", "dozen", "dozens"} | set(_UNITS) | set(_TEENS) | set(_TENS)
    | set(_MULTIPLIERS)
)
_EN_TOKEN = re.compile(
    rf"(?<![A-Za-z])(?=[{''.join(sorted({w[0] for w in _EN_STARTS}))}])(?:{_alt(_EN_STARTS)})"
    r"(?![A-Za-z])|\d+(?=\s+and\s)",
    re.IGNORECASE,
)


def _english_words(s: str, out: list) -> None:
    # Anchored matches at plausible first words only: an unanchored scan of this regex costs
    # ten times more on ordinary text.
    last_end = 0
    for t in _EN_TOKEN.finditer(s):
        start = t.start()
        if start < last_end:
            continue
        word = t.group()
        if (word == "a" or word == "A") and not _A_NUMBER.match(s, t.end()):
            continue
        if start and (s[start - 1].isalnum() or s[start - 1] in "-_"):
            continue
        m = _EN_WORDS.match(s, start)
        if m is None:
            continue
        last_end = m.end()
        g = m.lastgroup
        end = m.end()
        text = m.group()
        low = text.lower()
        if g == "wmix":
            n = m.group("wmix_int")
            base = Fraction(n) if n.isdigit() else _card_value(n)
            num = _small_value(m.group("wmix_num"))
            den = _DENOMS[m.group("wmix_den").lower()]
            if base is None or num is None:
                continue
            out.append((start, end, base + Fraction(num, den), "word"))
        elif g == "wfrac":
            num = _small_value(m.group("wfrac_num"))
            den = _DENOMS[m.group("wfrac_den").lower()]
            if num is None or num == 0:
                continue
            out.append((start, end, Fraction(num, den), "word"))
        elif g == "wfsg":
            den = m.group("wfsg_den1") or m.group("wfsg_den2")
            out.append((start, end, Fraction(1, _DENOMS[den.lower()]), "word"))
        elif g == "wcardp":
            val = _card_value(m.group("wcard"))
            if val is None:
                continue
            if m.group("wpct"):
                out.append((start, end, Fraction(val, 100), "percent"))
            elif low != "one":  # a bare "one" is a pronoun/article as often as a count
                out.append((start, end, Fraction(val), "word"))
        elif g == "whalf":
            if _HALF_ORDINAL_BEFORE.search(s, max(0, start - 12), start):
                continue
            out.append((start, end, Fraction(1, 2), "word"))
        elif g == "wmult":
            out.append((start, end, Fraction(_MULTIPLIERS[low]), "word"))
        elif g == "wdoz":
            if low.endswith("dozens") and _DOZENS_OF.match(s, end) and not _HOW_MANY.search(
                s, max(0, start - 10), start
            ):
                continue  # "dozens of people" is vague; "how many dozens of eggs" is a unit
            out.append((start, end, Fraction(12), "word"))


# --------------------------------------------------------------------------------------------
# Chinese numerals
# --------------------------------------------------------------------------------------------

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_BIG = {"万": 10**4, "亿": 10**8}
_ZN = "[零〇一二两三四五六七八九十百千万亿]+"
_DN = r"\d+(?:\.\d+)?"


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


def _zh_or_digits(s: str) -> Fraction | None:
    if not s:
        return None
    if s[0].isdigit():
        try:
            return Fraction(s)
        except (ValueError, ZeroDivisionError):
            return None
    v = _zh_int(s)
    return None if v is None else Fraction(v)


_ZH_FORMS = re.compile(
    # 百分之二十 / 百分之20 / 千分之五
    rf"(?P<pct>(?P<pct_base>百|千)分之(?P<pct_num>{_DN}|{_ZN}))"
    # 三又三分之一
    rf"|(?P<zmix>(?P<zmix_int>{_DN}|{_ZN})又(?P<zmix_den>{_DN}|{_ZN})分之(?P<zmix_num>{_DN}|{_ZN}))"
    # 三分之一 / 3分之1
    rf"|(?P<zfrac>(?P<zfrac_den>{_DN}|{_ZN})分之(?P<zfrac_num>{_DN}|{_ZN}))"
    # 一个半小时 / 两个半月
    rf"|(?P<zgb>(?P<zgb_int>\d+|{_ZN})个半)(?![径圆导球岛场])"
    # 八成 / 七成五 (tenths); 八折 / 八五折 / 7.5折 (discount to tenths of the price)
    rf"|(?P<zcheng>(?P<zcheng_int>\d+(?:\.\d+)?|[一二两三四五六七八九十])成(?P<zcheng_dec>[一二三四五六七八九])?)"
    rf"(?![人员绩本品功熟立为果长年交相之间])"
    rf"|(?P<zzhe>(?P<zzhe_num>\d+(?:\.\d+)?|[一二三四五六七八九]{{1,2}})折)(?![合算叠线射])"
    r"|(?P<zhalf>一半)"
    # bare 半 before a unit of time or count: 半年, 半小时, 半个, 半价; and 减半/折半/对半
    r"|(?P<zbhalf>(?<![上下前后大多一])半(?=年|天|日|月|小时|个|价|数|斤|公斤|千克|米|杯|碗|瓶|周|分钟|节|秒|圈|桶|箱|袋|筐|篮|块|池)"
    r"|(?<=[减折对])半)"
    rf"|(?P<zn>{_ZN})"
)

_ZH_NOT_BEFORE = re.compile(r"(?:第|笫|星期|礼拜|周|初|高|老|初中|高中|红|[《“\"(（]|\d)$")
# 甲乙两地, A、B两城, 师徒二人: 两/二 names the pair just listed ("both"), it is not a count
_ZH_PAIR_BEFORE = re.compile(
    r"(?:甲、?乙|[A-Za-z]、?[A-Za-z]|东、?西|南、?北|师徒|兄弟|姐妹|父子|母子|母女|夫妻|"
    r"[\u4e00-\u9fff]、[\u4e00-\u9fff])$"
)
_ZH_STOP_AFTER = re.compile(
    r"年级|月份?(?!\s*[以前后内里])|号|班(?!车)|角形|边形|角星|面体|棱|维|元一次|元二次|次方程|"
    r"中(?:学|的学生|全会)|好学生|上八下|颜六色|方百计|面八方|番五次|全十美|心二意|"
    r"等奖|者|国|川|字|佳|运会|级|[\d”\"》]|[(（]\d+[)）]"
)
_GRADE_LIST = re.compile(r"(?:、[一二三四五六\d])+年级")
_LIANG_PLACES = re.compile(r"(?:地|城|站|港|镇|村|岸|市|县|码头|车站)")
_ER_ORDINAL_AFTER = set("楼期店手龙队是套级号")
_ZH_STOP_WORDS = {"千万", "万一", "一一", "九九"}  # must, in case, one by one, times table


def _chinese_numerals(s: str, out: list) -> None:
    for m in _ZH_FORMS.finditer(s):
        g = m.lastgroup
        start, end = m.start(), m.end()
        if g == "pct":
            n = _zh_or_digits(m.group("pct_num"))
            if n is None:
                continue
            if m.group("pct_base") == "百":
                out.append((start, end, n / 100, "percent"))
            else:
                out.append((start, end, n / 1000, "word"))
        elif g == "zmix":
            i, d, n = (_zh_or_digits(m.group(k)) for k in ("zmix_int", "zmix_den", "zmix_num"))
            if i is None or not d or n is None:
                continue
            out.append((start, end, i + n / d, "word"))
        elif g == "zfrac":
            d, n = _zh_or_digits(m.group("zfrac_den")), _zh_or_digits(m.group("zfrac_num"))
            if not d or n is None:
                continue
            out.append((start, end, n / d, "word"))
        elif g == "zgb":
            i = _zh_or_digits(m.group("zgb_int"))
            if i is None:
                continue
            out.append((start, end, i + Fraction(1, 2), "word"))
        elif g == "zcheng":
            i = _zh_or_digits(m.group("zcheng_int"))
            if i is None or i > 10 or (start and s[start - 1] in "分变做合组完达造改制构形织编换折几"):
                continue
            d = m.group("zcheng_dec")
            val = i / 10 + (Fraction(_ZH_DIGITS[d], 100) if d else 0)
            out.append((start, end, val, "percent"))
        elif g == "zzhe":
            t = m.group("zzhe_num")
            if start and s[start - 1] in "对几":
                continue
            if t[0].isdigit():
                v = Fraction(t)
            else:
                v = Fraction(int("".join(str(_ZH_DIGITS[c]) for c in t)))
            if not 0 < v < 100:
                continue
            out.append((start, end, v / (10 if v < 10 else 100), "percent"))
        elif g in ("zhalf", "zbhalf"):
            out.append((start, end, Fraction(1, 2), "word"))
        else:
            _zh_cardinal(s, m.group(), start, out)


def _zh_cardinal(s: str, run: str, start: int, out: list) -> None:
    end = start + len(run)
    # 千克 / 千米 / 千瓦: 千 is the metric prefix kilo, not a thousand.
    if run.endswith("千") and end < len(s) and s[end] in "克米瓦帕卡焦字":
        run, end = run[:-1], end - 1
    # a trailing 万 / 亿 is a unit of count (3万元 is 3 in the gold equations)
    unit_follows = False
    while run and run[-1] in "万亿" and len(run) > 1:
        run, end = run[:-1], end - 1
        unit_follows = True
    if not run or run in _ZH_STOP_WORDS or run[0] in "零〇" or run[-1] in "零〇":
        return
    if start and (s[start - 1] in "几数" or _ZH_NOT_BEFORE.search(s, max(0, start - 2), start)):
        return
    nxt = s[end : end + 4]
    if run in ("十", "百", "千") and nxt.startswith(("几", "多万", "来")):
        return  # 十几, 几十: vague
    if nxt.startswith("分") and not nxt.startswith("分钟"):
        return  # 十分 (= very); 十分钟 is ten minutes
    if _ZH_STOP_AFTER.match(nxt):
        return
    if nxt.startswith("、") and _GRADE_LIST.match(s, end, end + 12):
        return  # 一、二、三年级
    val = _zh_int(run)
    if val is None:
        return
    if val == 2 and len(run) == 1 and _ZH_PAIR_BEFORE.search(s, max(0, start - 3), start):
        return
    if run == "两" and _LIANG_PLACES.match(nxt):
        return  # 两地 / 两城: the two ends of a trip, named rather than counted
    if run == "二" and nxt[:1] in _ER_ORDINAL_AFTER:
        return  # 二楼, 二期, 二队, 二手, 二是: a name or an ordinal
    if run == "一" and not unit_follows:
        return  # bare 一 before a measure word: see the module docstring
    out.append((start, end, Fraction(val), "word"))


# --------------------------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------------------------

_VULGAR = {"½": Fraction(1, 2), "⅓": Fraction(1, 3), "⅔": Fraction(2, 3), "¼": Fraction(1, 4),
           "¾": Fraction(3, 4), "⅕": Fraction(1, 5), "⅖": Fraction(2, 5), "⅗": Fraction(3, 5),
           "⅘": Fraction(4, 5), "⅙": Fraction(1, 6), "⅚": Fraction(5, 6), "⅛": Fraction(1, 8),
           "⅜": Fraction(3, 8), "⅝": Fraction(5, 8), "⅞": Fraction(7, 8), "⅐": Fraction(1, 7),
           "⅑": Fraction(1, 9), "⅒": Fraction(1, 10)}
_INT = r"(?:\d{1,3}(?:,\d{3})+(?!,?\d)|\d+)"
_DIGITS = re.compile(
    r"(?P<sign>-(?=[\d.(]))?(?:"
    r"(?P<mixp>(?P<mixp_i>\d+)\(\s*(?P<mixp_n>\d+)\s*/\s*(?P<mixp_d>\d+)\s*\))"
    r"|(?P<fracp>\(\s*(?P<fracp_n>\d+)\s*/\s*(?P<fracp_d>\d+)\s*\))"
    r"|(?P<mixs>(?P<mixs_i>\d+)[ ]+(?P<mixs_n>\d+)/(?P<mixs_d>\d+))(?![\d/.])"
    r"|(?P<frac>(?P<frac_n>\d+)/(?P<frac_d>\d+))(?![\d/]|\.\d)"
    rf"|(?P<vul>(?P<vul_i>\d+)?[{''.join(_VULGAR)}])"
    rf"|(?P<num>{_INT}(?:\.\d+)?|(?<![^\s$(])\.\d+)"
    r")(?P<pct>\s?%|\s+(?:percent|per\s+cent)\b)?"
)
_DIGIT_START = re.compile(rf"[-(.\d{''.join(_VULGAR)}]")
_SIGN_BEFORE = set(" \t\n([{,:;=、：；（【，。．是为作拔到至约") | {""}
_GLUED = re.compile(r"(?:(?<![A-Za-z])([Mm][Pp])|(?<![A-Za-z])[cdkm]?m)$")


def _digits(s: str, out: list, zh: bool) -> None:
    # Anchored matches at the few characters a number can start with: scanning the full
    # pattern over every position costs fifteen times more.
    last_end = 0
    for c in _DIGIT_START.finditer(s):
        if c.start() < last_end:
            continue
        m = _DIGITS.match(s, c.start())
        if m is None:
            continue
        start, end = m.start(), m.end()
        last_end = end
        body_start = start
        g = None
        for g in ("num", "fracp", "frac", "mixp", "mixs", "vul"):
            if m.group(g) is not None:
                break
        if m.group("sign"):
            prev = s[start - 1] if start else ""
            if prev not in _SIGN_BEFORE or (prev == " " and start >= 2 and s[start - 2].isdigit()):
                body_start = start + 1
        neg = body_start == start and bool(m.group("sign"))
        glued = _GLUED.search(s, max(0, body_start - 3), body_start)
        if glued and (glued.group(1) or s[body_start:end] in ("2", "3")):
            continue  # MP3, m2 / cm3: a model name or a unit exponent, not a count
        body = s[m.start(g) : m.end(g)]
        if g == "frac" and (zh or _is_division(s, body_start, end)):
            # Math23K writes fractions as (a/b); a bare a/b there, or one beside another
            # operator ("840/6/70", "7/9=", "+2010/67"), is a division of two numbers
            n0, n1, d0, d1 = body_start, m.end("frac_n"), m.start("frac_d"), m.end("frac_d")
            out.append((n0, n1, Fraction(int(s[n0:n1])), "integer"))
            out.append((d0, d1, Fraction(int(s[d0:d1])), "integer"))
            continue
        if g == "num":
            if "." in body:
                ip, _, fp = body.replace(",", "").partition(".")
                val, kind = Fraction(int(ip + fp), 10 ** len(fp)), "decimal"
            else:
                val, kind = Fraction(int(body.replace(",", ""))), "integer"
        elif g == "mixp":
            d = int(m.group("mixp_d"))
            if not d:
                continue
            val = int(m.group("mixp_i")) + Fraction(int(m.group("mixp_n")), d)
            kind = "mixed"
        elif g == "fracp":
            d = int(m.group("fracp_d"))
            if not d:
                continue
            val, kind = Fraction(int(m.group("fracp_n")), d), "fraction"
        elif g == "mixs":
            num, d = int(m.group("mixs_n")), int(m.group("mixs_d"))
            if not d or num >= d:
                # "3 10/2" is not a mixed number: keep the two numbers
                _digits_split_mixed(s, m, out)
                continue
            val, kind = int(m.group("mixs_i")) + Fraction(num, d), "mixed"
        elif g == "frac":
            d = int(m.group("frac_d"))
            if not d:
                continue
            val, kind = Fraction(int(m.group("frac_n")), d), "fraction"
        else:
            i = m.group("vul_i")
            val = _VULGAR[body[-1]] + (int(i) if i else 0)
            kind = "mixed" if i else "fraction"
        if neg:
            val = -val
        if m.group("pct"):
            val, kind = val / 100, "percent"
        out.append((body_start, end, val, kind))


_OPERATORS = set("+-*/=×÷^<>")


def _is_division(s: str, start: int, end: int) -> bool:
    before = s[max(0, start - 8) : start].rstrip()[-1:]
    after = s[end : end + 8].lstrip()[:1]
    return (before != "" and before in _OPERATORS) or (after != "" and after in _OPERATORS)


def _digits_split_mixed(s: str, m: re.Match, out: list) -> None:
    i0, i1 = m.start("mixs_i"), m.end("mixs_i")
    out.append((i0, i1, Fraction(int(m.group("mixs_i"))), "integer"))
    n0, d1 = m.start("mixs_n"), m.end("mixs_d")
    d = int(m.group("mixs_d"))
    if d:
        out.append((n0, d1, Fraction(int(m.group("mixs_n")), d), "fraction"))


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_HAS_ZH_NUM = re.compile(r"[零〇一二两三四五六七八九十百千万亿半]")


def extract_quantities(text: str, lang: str | None = None) -> list[Quantity]:
    """The numbers in a problem text, in order of appearance, without overlaps.

    ``lang`` is ``"en"`` or ``"zh"`` (detected when None); digits are read in both, number
    words of that language only. See the module docstring for what counts as a quantity.
    """
    if not isinstance(text, str) or not text:
        return []
    if lang is None:
        lang = detect_lang(text)
    s = normalize_text(text)
    found: list[tuple[int, int, Fraction, str]] = []
    zh = str(lang).lower().startswith("zh")
    _digits(s, found, zh)
    if zh:
        if _HAS_ZH_NUM.search(s):
            _chinese_numerals(s, found)
    else:
        _english_words(s, found)
    if not found:
        return []
    # earliest start first, then longest; drop anything overlapping a kept span
    found.sort(key=lambda t: (t[0], -t[1]))
    out: list[Quantity] = []
    last_end = -1
    for start, end, value, kind in found:
        if start < last_end:
            continue
        out.append(Quantity(text[start:end], value, start, end, kind))  # type: ignore[arg-type]
        last_end = end
    return out


def mask_question(text: str, lang: str | None = None) -> tuple[str, list[Quantity]]:
    """The text with the i-th quantity replaced by ``N{i}``; everything else unchanged."""
    qs = extract_quantities(text, lang)
    if not qs:
        return (text if isinstance(text, str) else ""), qs
    parts: list[str] = []
    pos = 0
    for i, q in enumerate(qs):
        parts.append(text[pos : q.start])
        parts.append(f"N{i}")
        pos = q.end
    parts.append(text[pos:])
    return "".join(parts), qs


# --------------------------------------------------------------------------------------------
# Numeric literals and answers
# --------------------------------------------------------------------------------------------

_DEC_LIT = re.compile(
    r"(?P<sign>[+-])?(?P<int>\d{1,3}(?:,\d{3})+|\d*)(?:\.(?P<frac>\d*))?(?:[eE](?P<exp>[+-]?\d+))?"
)
_TIMES_TEN = re.compile(r"^(.+?)\s*(?:\*|x|×|\\times|\\cdot)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?$")
_MIXED_SPACE = re.compile(r"^([+-]?)(\d+)(?:\s+|\s*又\s*|\s+and\s+)(\d+\s*/\s*\d+)$")
_MIXED_PAREN = re.compile(r"^([+-]?)(\d+)\s*(\(.*\))$")
_PCT_SUFFIX = re.compile(r"\s*(?:%|\\%|percent|per\s+cent|pct)$", re.IGNORECASE)


def _decimal(s: str) -> Fraction | None:
    m = _DEC_LIT.fullmatch(s)
    if not m:
        return None
    ip, fp, exp = m.group("int"), m.group("frac"), m.group("exp")
    if not ip and not fp:
        return None
    digits = ip.replace(",", "") + (fp or "")
    val = Fraction(int(digits or "0"), 10 ** len(fp or ""))
    if exp:
        e = int(exp)
        if abs(e) > MAX_EXPONENT:
            return None
        val *= Fraction(10) ** e
    return -val if m.group("sign") == "-" else val


def _unwrap(s: str) -> str:
    """Strip whitespace and parentheses that enclose the whole string: "((4))" -> "4".

    A layer ``s[l] ... s[r]`` is stripped unless a closing bracket inside it (before ``r``)
    brings the depth back to the level before ``l`` (``(1)/(2)`` keeps its brackets). One pass
    records, per depth, where closing brackets bring it there; each layer is then one binary
    search: O(n log n) in all, not O(n) per layer (an answer of 4,000 nested parentheses)."""
    s = s.strip()
    if len(s) < 2 or s[0] not in "({[" or s[-1] not in ")}]":
        return s
    closes: dict[int, list[int]] = {}  # depth after a closing bracket -> its positions
    depth = 0
    for i, ch in enumerate(s):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
            closes.setdefault(depth, []).append(i)
    lo, hi, base = 0, len(s) - 1, 0  # the current string is s[lo:hi + 1]; base: depth before lo
    while hi - lo >= 1 and s[lo] in "({[" and s[hi] in ")}]":
        at = closes.get(base, ())
        j = bisect_left(at, lo)
        if j < len(at) and at[j] < hi:
            break
        lo, hi, base = lo + 1, hi - 1, base + 1
        while lo <= hi and s[lo].isspace():
            lo += 1
        while hi >= lo and s[hi].isspace():
            hi -= 1
    return s[lo:hi + 1]


def _split_top(s: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _literal(s: str, depth: int = 0) -> Fraction | None:
    """A plain numeric literal (no percent, no unit): decimals, fractions, mixed numbers."""
    if depth > 6:
        return None
    s = _unwrap(s)
    if not s:
        return None
    v = _decimal(s)
    if v is not None:
        return v
    if s[0] in "+-" and len(s) > 1 and s[1] in "(":
        inner = _literal(s[1:], depth + 1)
        return None if inner is None else (-inner if s[0] == "-" else inner)
    if s[-1] in _VULGAR:
        head = s[:-1].strip()
        if not head:
            return _VULGAR[s[-1]]
        i = _decimal(head)
        if i is not None and i.denominator == 1:
            return -(abs(i) + _VULGAR[s[-1]]) if head.startswith("-") else i + _VULGAR[s[-1]]
        return None
    m = _MIXED_SPACE.match(s)
    if m:
        frac = _literal(m.group(3), depth + 1)
        if frac is None or frac >= 1:
            return None
        v = int(m.group(2)) + frac
        return -v if m.group(1) == "-" else v
    m = _MIXED_PAREN.match(s)
    if m and "/" in m.group(3):
        frac = _literal(m.group(3), depth + 1)
        if frac is not None and 0 <= frac < 1:
            v = int(m.group(2)) + frac
            return -v if m.group(1) == "-" else v
        return None
    parts = _split_top(s, "/")
    if len(parts) == 2:
        a, b = _literal(parts[0], depth + 1), _literal(parts[1], depth + 1)
        if a is None or not b:
            return None
        return a / b
    m = _TIMES_TEN.match(s)
    if m:
        a = _literal(m.group(1), depth + 1)
        e = int(m.group(2))
        if a is None or abs(e) > MAX_EXPONENT:
            return None
        return a * Fraction(10) ** e
    return None


_LATEX_FRAC = re.compile(r"\\[dtc]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_FRAC_SHORT = re.compile(r"\\[dtc]?frac\s*(\d)\s*(\d)")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit|mathbf|operatorname)\s*\{([^{}]*)\}")
_LATEX_SPACES = re.compile(r"\\[,;:! ]|\\quad|\\qquad|\\displaystyle|\\left|\\right|~")
_DEGREE = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)")


def boxed_content(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (braces balanced), or None
    when there is none or it is not closed."""
    i = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if i < 0:
        return None
    j = text.find("{", i)
    if j < 0:
        return None
    depth = 0
    for k in range(j, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k]
    return None


def _strip_boxed(s: str) -> str:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}``; an unclosed one gives the
    rest of the text after its brace."""
    inner = boxed_content(s)
    if inner is not None:
        return inner
    i = max(s.rfind("\\boxed"), s.rfind("\\fbox"))
    j = s.find("{", i) if i >= 0 else -1
    return s if j < 0 else s[j + 1 :]


def numeric_texts(values: list) -> list[str]:
    """``values`` as strings, each checked to be a number :func:`parse_number` reads (allowed
    constants in configs); raises ValueError naming the ones that are not."""
    bad = [v for v in values if parse_number(str(v)) is None]
    if bad:
        raise ValueError(f"not numbers: {bad}")
    return [str(v) for v in values]


def _strip_latex(s: str) -> tuple[str, str | None]:
    """Plain-number LaTeX as plain text; returns (text, unit from \\text{} or a degree sign)."""
    unit = None
    if "\\boxed" in s or "\\fbox" in s:
        s = _strip_boxed(s)
    s = s.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s.count("$") in (2, 4):
        s = s.strip("$").strip()
    for a, b in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(a) and s.endswith(b):
            s = s[len(a) : -len(b)].strip()
    if _DEGREE.search(s):
        s = _DEGREE.sub("", s)
        unit = "°"
    texts = _LATEX_TEXT.findall(s)
    if texts:
        s = _LATEX_TEXT.sub(lambda m: " " + m.group(1) + " ", s)
    s = _LATEX_SPACES.sub("", s).replace("{,}", "").replace("\\%", "%").replace("\\$", "$")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for _ in range(3):
        if "frac" not in s:
            break
        s = _LATEX_FRAC.sub(r"((\1)/(\2))", s)
        s = _LATEX_FRAC_SHORT.sub(r"((\1)/(\2))", s)
    if s.startswith("{") and s.endswith("}"):
        s = _unwrap(s)
    return s.strip(), unit


_CURRENCY_PREFIX = re.compile(r"^(?:\$|US\$|USD|¥|￥|€|£|Rs\.?|₹|RMB)\s*", re.IGNORECASE)
_VAR_PREFIX = re.compile(r"^(?:[a-zA-Z]\s*=|=)\s*")
_ANSWER_PREFIX = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*", re.IGNORECASE)
_LEADING_NUM = re.compile(
    r"^[+-]?(?:\d+\s*\(\s*\(?\s*\d+\s*\)?\s*/\s*\(?\s*\d+\s*\)?\s*\)"  # 7((2)/(3)), 7(2/3)
    r"|\(+\s*[+-]?\d+(?:\.\d+)?\s*\)?\s*/\s*\(?\s*\d+(?:\.\d+)?\s*\)+"  # ((4)/(7)), (4/7)
    r"|\d+\s+\d+\s*/\s*\d+(?![\d.])"  # 2 1/2
    r"|(?:\d{1,3}(?:,\d{3})+|\d*)\.?\d+(?:[eE][+-]?\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
    r"[½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞]?"
    r"|[½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞])"
    r"(?:\s*(?:%|percent\b|per\s+cent\b|pct\b))?",
    re.IGNORECASE,
)
_UNIT_OK = re.compile(r"^[^\d=+*/^\\<>]*$")
_WS = re.compile(r"\s+")
_TRAIL_PUNCT = ".。．!！;；,，"


def _percent_split(s: str) -> tuple[str, bool]:
    m = _PCT_SUFFIX.search(s)
    if m:
        return s[: m.start()].strip(), True
    if s.startswith("百分之"):
        return s[3:], True
    return s, False


def _number_in_words(s: str) -> Fraction | None:
    low = s.strip().lower()
    if not low:
        return None
    if _CARD_FULL.fullmatch(low):
        v = _card_value(low)
        return None if v is None else Fraction(v)
    v = _zh_int(s.strip())
    return None if v is None else Fraction(v)


_CARD_FULL = re.compile(_W_CARD, re.IGNORECASE)


def _value_and_percent(s: str) -> tuple[Fraction | None, bool]:
    body, pct = _percent_split(s)
    v = _literal(body)
    if v is None:
        v = _number_in_words(body)
    if v is None:
        return None, False
    return (v / 100 if pct else v), pct


def parse_number(s: str) -> Fraction | None:
    """One numeric literal in any published form (``1,234``, ``-3.5``, ``1e3``, ``10%``,
    ``4/7``, ``((4)/(7))``, ``7((2)/(3))``, ``2 1/2``, ``\\frac{1}{2}``, ``½``, full width,
    ``twenty-five``, ``三十``), exactly as written; None when the whole string is not one."""
    if isinstance(s, bool) or s is None:
        return None
    if isinstance(s, Fraction):
        return s
    if isinstance(s, int):
        return Fraction(s)
    if isinstance(s, float):
        return Fraction(repr(s)) if math.isfinite(s) else None
    if not isinstance(s, str):
        return None
    t = normalize_text(s).strip()
    if not t:
        return None
    if "\\" in t or "$" in t or "{" in t:
        t, _ = _strip_latex(t)
        if "\\" in t:
            return None
    return _value_and_percent(t)[0]


def _recover(value: Fraction, frac_digits: int) -> Fraction | None:
    """A fraction with denominator <= 1000 within half a unit of the last printed digit."""
    if frac_digits < 6 or value.denominator <= 1000:
        return None
    q = value.limit_denominator(1000)
    if q != value and abs(q - value) <= Fraction(1, 2 * 10**frac_digits):
        return q
    return None


_FRAC_DIGITS = re.compile(r"\.(\d+)(?:[eE][+-]?\d+)?\s*%?$")


def _clean_text(s: str) -> str:
    """Whitespace collapsed, trailing sentence punctuation dropped, lower case."""
    s = _WS.sub(" ", s).strip()
    while s and s[-1] in _TRAIL_PUNCT:
        s = s[:-1].rstrip()
    return s.lower()


def parse_answer(raw: str | int | float | Fraction | None) -> ParsedAnswer:
    """A published answer in any form, read without raising.

    ``#### 1,234`` (or a whole GSM8K solution: the text after the last ``####``), ``10%``,
    ``((4)/(7))``, ``7((2)/(3))``, ``2 1/2``, ``9 (apples)``, ``$1,234.50``, ``3.5 cm``,
    ``1e3``, ``\\boxed{12}``, ``\\frac{1}{2}``, ``12^\\circ``, ints, floats (through ``repr``)
    and Fractions. A decimal with >= 6 fractional digits (or a float) that is the rounding of
    a fraction with denominator <= 1000 is read as that fraction with ``exact=False``.
    Anything else (``yes``, ``3:30 p.m.``, ``15 r8``, ``\\sqrt{2}``) has ``value=None`` and a
    normalised ``text``.
    """
    try:
        return _parse_answer(raw)
    except Exception:  # noqa: BLE001 - the contract is "never raise"; a bad input is not a number
        original = raw if isinstance(raw, str) else ("" if raw is None else _safe_repr(raw))
        return ParsedAnswer(original, None, False, False, None, _clean_text(str(original)))


def _safe_repr(raw: object) -> str:
    try:
        return repr(raw) if isinstance(raw, float) else str(raw)
    except Exception:  # noqa: BLE001
        return ""


def _parse_answer(raw: object) -> ParsedAnswer:
    if raw is None:
        return ParsedAnswer("", None, False, False, None, "")
    if isinstance(raw, bool):
        return ParsedAnswer(str(raw), None, False, False, None, str(raw).lower())
    if isinstance(raw, Fraction):
        return ParsedAnswer(str(raw), raw, True, False, None, canonical(raw))
    if isinstance(raw, int):
        return ParsedAnswer(str(raw), Fraction(raw), True, False, None, str(raw))
    if isinstance(raw, float):
        r = repr(raw)
        if not math.isfinite(raw):
            return ParsedAnswer(r, None, False, False, None, r)
        v = Fraction(r)
        if v.denominator <= 1000:
            return ParsedAnswer(r, v, True, False, None, r)
        q = Fraction(raw).limit_denominator(1000)
        if float(q) == raw:
            return ParsedAnswer(r, q, False, False, None, r)
        return ParsedAnswer(r, v, True, False, None, r)
    original = raw if isinstance(raw, str) else _safe_repr(raw)
    s = normalize_text(unicodedata.normalize("NFC", original)).strip()
    if "####" in s:
        s = s[s.rfind("####") + 4 :].strip()
    unit: str | None = None
    if "\\" in s or "$" in s or "{" in s:
        s, unit = _strip_latex(s)
    s = _ANSWER_PREFIX.sub("", s)
    s = _VAR_PREFIX.sub("", s).strip()
    m = _CURRENCY_PREFIX.match(s)
    if m and len(s) > m.end() and (s[m.end()].isdigit() or s[m.end()] in ".-"):
        unit = unit or m.group().strip()
        s = s[m.end() :].strip()
    while s and s[-1] in _TRAIL_PUNCT and not (s[-1] == "." and len(s) > 1 and s[-2] == "."):
        s = s[:-1].rstrip()
    text = _clean_text(s)
    if not s or "\\" in s:
        return ParsedAnswer(original, None, False, False, unit, text)

    value, pct = _value_and_percent(s)
    num_text = s
    if value is None:
        m = _LEADING_NUM.match(s)
        if m and m.end() < len(s):
            rest = s[m.end() :].strip()
            rest_clean = rest.strip("()（）[] .,。")
            if rest_clean and _UNIT_OK.match(rest_clean) and not rest.startswith((":", "：")):
                value, pct = _value_and_percent(m.group().strip())
                if value is not None:
                    unit = rest_clean
                    num_text = m.group().strip()
    if value is None:
        return ParsedAnswer(original, None, False, False, unit, text)
    exact = True
    m = _FRAC_DIGITS.search(num_text)
    if m and "/" not in num_text:
        body, _ = _percent_split(num_text)
        literal = _literal(body)
        if literal is not None:
            q = _recover(literal, len(m.group(1)))
            if q is not None:
                value, exact = (q / 100 if pct else q), False
    return ParsedAnswer(original, value, exact, pct, unit, _clean_text(num_text))


def decimal_fraction(d: Decimal) -> Fraction:
    """A finite Decimal as an exact Fraction, within bounds: raises :class:`QuantityTooLarge`
    when its power of ten is beyond +-:data:`MAX_EXPONENT` or it has more than
    :data:`MAX_DIGITS` digits (checked before any arithmetic), ValueError when it is not
    finite."""
    if not d.is_finite():
        raise ValueError(f"{d} is not a finite number")
    sign, digits, exp = d.as_tuple()
    if len(digits) > MAX_DIGITS:
        raise QuantityTooLarge(f"a decimal of {len(digits)} digits (limit {MAX_DIGITS})")
    if d and abs(d.adjusted()) > MAX_EXPONENT:
        raise QuantityTooLarge(f"a decimal of magnitude 1e{d.adjusted()} (limit "
                               f"1e+-{MAX_EXPONENT})")
    if not d:
        return Fraction(0)
    if exp < -MAX_EXPONENT - MAX_DIGITS:
        raise QuantityTooLarge(f"a decimal with exponent {exp}")
    return Fraction(d)


def _text(n: int, what: str) -> str:
    if n.bit_length() > MAX_DIGITS * 3.33:  # more than MAX_DIGITS digits, before str() fails
        raise QuantityTooLarge(f"{what} of about {int(n.bit_length() * 0.30103)} digits "
                               f"(limit {MAX_DIGITS})")
    try:
        return str(n)
    except ValueError as e:  # a lower int-to-text limit set by the process
        raise QuantityTooLarge(f"{what}: {e}") from None


def canonical(value: Fraction) -> str:
    """The exact canonical string of a value: ``18``, ``-3``, ``14.4``, ``0.125``, ``4/7``.

    Terminating decimals are written as decimals (computed exactly, never via float);
    anything else as ``p/q``. ``parse_number(canonical(v)) == v`` for every Fraction.
    Raises :class:`QuantityTooLarge` (a ValueError) when a numerator, denominator or decimal
    expansion would need more than :data:`MAX_DIGITS` digits (``Fraction(1, 2**13000)``).
    """
    v = value if isinstance(value, Fraction) else Fraction(value)
    p, q = v.numerator, v.denominator
    if q == 1:
        return _text(p, "an integer")
    a = b = 0
    d = q
    while d % 2 == 0:
        d //= 2
        a += 1
    while d % 5 == 0:
        d //= 5
        b += 1
    if d != 1:
        return f"{_text(p, 'a numerator')}/{_text(q, 'a denominator')}"
    k = max(a, b)
    if k > MAX_DIGITS:
        raise QuantityTooLarge(f"a decimal expansion of {k} fractional digits (limit {MAX_DIGITS})")
    scaled = abs(p) * (10**k // q)
    digits = _text(scaled, "a decimal expansion").rjust(k + 1, "0")
    body = f"{digits[:-k]}.{digits[-k:]}".rstrip("0")
    return ("-" if p < 0 else "") + body
