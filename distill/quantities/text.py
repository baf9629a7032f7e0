"""Numbers in problem TEXT: where each one is, what it is worth, and the question masked.

The reader is whoever turns a question into quantities (:func:`distill.records.make_problem`'s
``quantities`` and ``masked_question``, the verifier, the gold-literal mapper, the synthetic
generator's check that every written number is found). Contract: takes the question as written
and its language (``"en"`` / ``"zh"``, detected by :func:`detect_lang` when None); gives the
:class:`Quantity` spans in text order, without overlaps (:func:`extract_quantities`), and the
text with the i-th quantity replaced by ``N{i}`` and nothing else changed
(:func:`mask_question`). It never raises: a non-string or empty text has no quantities. Values
are exact (:class:`fractions.Fraction`), the number as written. Published answers are read by
:mod:`distill.quantities.answers`, not here.

What is a quantity, in English and Chinese text.
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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from distill.quantities._numbers import (
    _TEENS,
    _TENS,
    _UNITS,
    _VULGAR,
    _W_CARD,
    _W_SMALL,
    _ZH_DIGITS,
    _alt,
    _card_value,
    _zh_int,
    normalize_text,
)

__all__ = ["QuantityKind", "Quantity", "extract_quantities", "mask_question", "detect_lang"]

QuantityKind = Literal["integer", "decimal", "percent", "fraction", "mixed", "word"]


@dataclass(frozen=True)
class Quantity:
    """One number in a text: ``text == original[start:end]``; percentages are fractions of one."""

    text: str
    value: Fraction
    start: int
    end: int
    kind: QuantityKind


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
# English number words (cardinals: distill.quantities._numbers)
# --------------------------------------------------------------------------------------------

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
# Chinese numerals (integers: distill.quantities._numbers)
# --------------------------------------------------------------------------------------------

_ZN = "[零〇一二两三四五六七八九十百千万亿]+"
_DN = r"\d+(?:\.\d+)?"


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
