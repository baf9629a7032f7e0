"""distill.quantities: numbers in problem text and answers (tables, plus real-data checks)."""

from __future__ import annotations

import random
import re
import time
from decimal import Decimal
from fractions import Fraction as F

import pytest

from distill.quantities import (
    MAX_DIGITS,
    MAX_EXPONENT,
    ParsedAnswer,
    Quantity,
    QuantityTooLarge,
    canonical,
    decimal_fraction,
    detect_lang,
    extract_quantities,
    mask_question,
    normalize_text,
    parse_answer,
    parse_number,
)

# --------------------------------------------------------------------------------------------
# Extraction: (text, expected [(surface text, value)]); spans are checked for every case
# --------------------------------------------------------------------------------------------

EN_CASES = [
    ("Bryan has 56 books in each of his 9 bookshelves .", [("56", 56), ("9", 9)]),
    ("The farm sold 1,200 eggs and 1,000,000 grains.", [("1,200", 1200), ("1,000,000", 10**6)]),
    ("Pick 3,4 and 5 from the list.", [("3", 3), ("4", 4), ("5", 5)]),
    ("It costs $1,234.50 in total.", [("1,234.50", F("1234.5"))]),
    ("He ate 2.5 pies and .5 cakes.", [("2.5", F(5, 2)), (".5", F(1, 2))]),
    ("A 12 % tax, 80% off, then 80 percent more.",
     [("12 %", F(3, 25)), ("80%", F(4, 5)), ("80 percent", F(4, 5))]),
    ("She used 1/3 of the flour and 2 1/2 cups of milk.", [("1/3", F(1, 3)), ("2 1/2", F(5, 2))]),
    ("Mix 7(2/3) cups with (1/3) cup.", [("7(2/3)", F(23, 3)), ("(1/3)", F(1, 3))]),
    ("Add ½ cup and 2½ spoons.", [("½", F(1, 2)), ("2½", F(5, 2))]),
    ("The temperature fell to -5 degrees, then rose to 3.", [("-5", -5), ("3", 3)]),
    ("Read pages 5-6 before class.", [("5", 5), ("6", 6)]),
    ("Compute 48/2 = 24 now.", [("48", 48), ("2", 2), ("24", 24)]),
    ("Seven red apples and twenty-five green apples", [("Seven", 7), ("twenty-five", 25)]),
    ("a hundred kids, one hundred twenty cars, two thousand five hundred pens",
     [("a hundred", 100), ("one hundred twenty", 120), ("two thousand five hundred", 2500)]),
    ("one hundred and five dollars", [("one hundred and five", 105)]),
    ("She ate half of it, then a half, then one-half.",
     [("half", F(1, 2)), ("a half", F(1, 2)), ("one-half", F(1, 2))]),
    ("twice as many, thrice as long, double the cost, triple the size",
     [("twice", 2), ("thrice", 3), ("double", 2), ("triple", 3)]),
    ("a dozen eggs and three dozen rolls", [("a dozen", 12), ("three", 3), ("dozen", 12)]),
    ("a third of the class, two thirds of them, a quarter, three-fourths",
     [("a third", F(1, 3)), ("two thirds", F(2, 3)), ("a quarter", F(1, 4)),
      ("three-fourths", F(3, 4))]),
    ("two and a half hours", [("two and a half", F(5, 2))]),
    ("twenty percent of 300", [("twenty percent", F(1, 5)), ("300", 300)]),
    ("Sara sold 9 half - dollars.", [("9", 9), ("half", F(1, 2))]),
    ("How many dozens of eggs is that?", [("dozens", 12)]),
    ("a three-year-old child", [("three", 3)]),
    ("He walks more by the 8th week.", [("8", 8)]),  # digit ordinals are used by gold equations
    ("It played 24 MP3 songs on a 5 m2 mat.", [("24", 24), ("5", 5)]),
    # negatives: ordinals, vague and non-number words, a bare "one"/"a"
    ("On the third day the fifth grade class met for the first time.", []),
    ("It was her twenty-first birthday and a third friend came.", []),
    ("One boy has one apple and a pear; no one cares.", []),
    ("Dozens of birds and hundreds of bees in the first half and the second half.", []),
]

ZH_CASES = [
    ("小明有１２３个苹果，吃了（１／３）．", [("１２３", 123), ("（１／３）", F(1, 3))]),
    ("长１２．５米．3个组", [("１２．５", F(25, 2)), ("3", 3)]),
    ("全书的(1/6)，第3天看的页数是总数的150%", [("(1/6)", F(1, 6)), ("3", 3), ("150%", F(3, 2))]),
    ("振兴粮店运来1(5/6)吨面粉", [("1(5/6)", F(11, 6))]),
    ("两个工人修了全程的一半", [("两", 2), ("一半", F(1, 2))]),
    ("三分之一的学生和百分之二十的老师", [("三分之一", F(1, 3)), ("百分之二十", F(1, 5))]),
    ("百分之20和千分之五", [("百分之20", F(1, 5)), ("千分之五", F(1, 200))]),
    ("十二个人，二十五本书，一百二十元，一百零五棵", [("十二", 12), ("二十五", 25), ("一百二十", 120), ("一百零五", 105)]),
    ("全场打八折，八成新的车", [("八折", F(4, 5)), ("八成", F(4, 5))]),
    ("打8折，七成五", [("8折", F(4, 5)), ("七成五", F(3, 4))]),
    ("一个半小时走了全程，半小时后到", [("一个半", F(3, 2)), ("半", F(1, 2))]),
    ("圆的半径是3厘米", [("3", 3)]),
    ("甲乙两地相距36千米，师徒二人", [("36", 36)]),
    ("某开发商投资350万元", [("350", 350)]),
    ("5千克苹果和一千克梨", [("5", 5)]),
    ("二年级有45人，三月份", [("45", 45)]),
    ("1300/600的商是多少", [("1300", 1300), ("600", 600)]),
    ("成活率是75%-80%", [("75%", F(3, 4)), ("80%", F(4, 5))]),
    ("气温是-5摄氏度，比8时-11时低", [("-5", -5), ("8", 8), ("11", 11)]),
    ("看了十分钟，十分高兴", [("十", 10)]),
    ("小红看了3又二分之一页", [("3又二分之一", F(7, 2))]),
    ("用0.09m2的木料", [("0.09", F(9, 100))]),
    # negatives: words containing a numeral, ordinals, a bare 一 before a measure word
    ("一共有一些人一样一起走，第一名，星期一，一边走一定到", []),
    ("一条小路的一边植树，三角形和四边形，六年级", []),
    ("三四个人去了四川，他们千万要小心", []),
]

ALL_CASES = [(t, "en", e) for t, e in EN_CASES] + [(t, "zh", e) for t, e in ZH_CASES]


@pytest.mark.parametrize("text,lang,expected", ALL_CASES, ids=[c[0][:30] for c in ALL_CASES])
def test_extract_quantities(text, lang, expected):
    qs = extract_quantities(text, lang)
    assert [(q.text, q.value) for q in qs] == [(t, F(v)) for t, v in expected]
    for q in qs:
        assert isinstance(q, Quantity) and isinstance(q.value, F)
        assert text[q.start : q.end] == q.text
    assert [q.start for q in qs] == sorted(q.start for q in qs)
    assert all(a.end <= b.start for a, b in zip(qs, qs[1:]))
    assert extract_quantities(text) == qs  # language detection agrees


@pytest.mark.parametrize(
    "text,kinds",
    [
        ("1,200 and 2.5 and 80% and 1/3 and 2 1/2 and seven",
         ["integer", "decimal", "percent", "fraction", "mixed", "word"]),
        ("百分之二十和三分之一和两个和7(2/3)", ["percent", "word", "word", "mixed"]),
    ],
)
def test_kinds(text, kinds):
    assert [q.kind for q in extract_quantities(text)] == kinds


def test_spans_index_the_original_text():
    text = "（１／３）的１２３％是多少？"
    q1, q2 = extract_quantities(text)
    assert (q1.start, q1.end, q1.value) == (0, 5, F(1, 3))
    assert (q2.text, q2.value, q2.kind) == ("１２３％", F(123, 100), "percent")


@pytest.mark.parametrize("text", ["", "no numbers here", "没有数字", "   "])
def test_extract_nothing(text):
    assert extract_quantities(text) == []


def test_extract_non_string_is_empty():
    assert extract_quantities(None) == []  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,masked",
    [
        ("Bryan has 56 books in each of his 9 bookshelves .",
         "Bryan has N0 books in each of his N1 bookshelves ."),
        ("小明有3个苹果，吃了(1/3)，还剩一半", "小明有N0个苹果，吃了N1，还剩N2"),
        ("Seven apples cost $1,234.50, a 10 % rise.", "N0 apples cost $N1, a N2 rise."),
        ("nothing to mask", "nothing to mask"),
    ],
)
def test_mask_question(text, masked):
    out, qs = mask_question(text)
    assert out == masked
    assert qs == extract_quantities(text)


@pytest.mark.parametrize("text,lang,expected", ALL_CASES, ids=[c[0][:30] for c in ALL_CASES])
def test_mask_keeps_text_outside_quantities(text, lang, expected):
    masked, qs = mask_question(text, lang)
    restored = masked
    for i in reversed(range(len(qs))):  # N10 before N1
        restored = restored.replace(f"N{i}", qs[i].text, 1)
    assert restored == text
    assert re.findall(r"N\d+", masked) == [f"N{i}" for i in range(len(qs))]


# --------------------------------------------------------------------------------------------
# Language, normalisation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,lang",
    [("How many apples?", "en"), ("小明有3个苹果", "zh"), ("98/16*112=．", "en"),
     ("Li Lei bought 3 apples in 北京 market today", "en"), ("AB两地相距36千米", "zh")],
)
def test_detect_lang(text, lang):
    assert detect_lang(text) == lang


def test_normalize_text_is_length_preserving():
    s = "（１２３／４５６）％－７，。．"
    n = normalize_text(s)
    assert len(n) == len(s)
    assert n == "(123/456)%-7，。．"
    assert normalize_text("１２．５") == "12.5"


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------

# raw, value, exact, percent, unit
ANSWER_CASES = [
    ("#### 1,234", F(1234), True, False, None),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", F(72), True, False, None),
    ("10%", F(1, 10), True, True, None),
    ("10 percent", F(1, 10), True, True, None),
    ("((4)/(7))", F(4, 7), True, False, None),
    ("(4/7)", F(4, 7), True, False, None),
    ("4/7", F(4, 7), True, False, None),
    ("7((2)/(3))", F(23, 3), True, False, None),
    ("-7((2)/(3))", F(-23, 3), True, False, None),
    ("2 1/2", F(5, 2), True, False, None),
    ("9 (apples)", F(9), True, False, "apples"),
    ("$1,234.50", F("1234.50"), True, False, "$"),
    ("-3", F(-3), True, False, None),
    ("3.5 cm", F(7, 2), True, False, "cm"),
    ("20元", F(20), True, False, "元"),
    ("45 dollars", F(45), True, False, "dollars"),
    ("0.666666666667", F(2, 3), False, False, None),
    ("33.333333%", F(1, 3), False, True, None),
    ("0.253125", F(81, 320), True, False, None),  # exact as printed: no rounding to recover
    ("3.3333", F(33333, 10000), True, False, None),  # fewer than six fractional digits
    (504.0, F(504), True, False, None),
    (0.3333333333333333, F(1, 3), False, False, None),
    (2.5, F(5, 2), True, False, None),
    (7, F(7), True, False, None),
    (F(3, 4), F(3, 4), True, False, None),
    ("1e3", F(1000), True, False, None),
    ("１２３", F(123), True, False, None),
    ("１０％", F(1, 10), True, True, None),
    (r"\frac{1}{2}", F(1, 2), True, False, None),
    (r"\dfrac{3}{4}", F(3, 4), True, False, None),
    (r"-\frac{1}{2}", F(-1, 2), True, False, None),
    (r"\boxed{12}", F(12), True, False, None),
    (r"The answer is $\boxed{\frac{5}{8}}$.", F(5, 8), True, False, None),
    (r"12^\circ", F(12), True, False, "°"),
    (r"1{,}000", F(1000), True, False, None),
    ("x = 5", F(5), True, False, None),
    ("twenty-five", F(25), True, False, None),
    ("三十", F(30), True, False, None),
    ("百分之二十", F(1, 5), True, True, None),
    ("½", F(1, 2), True, False, None),
]


@pytest.mark.parametrize(
    "raw,value,exact,percent,unit", ANSWER_CASES, ids=[repr(c[0])[:30] for c in ANSWER_CASES]
)
def test_parse_answer_numbers(raw, value, exact, percent, unit):
    p = parse_answer(raw)
    assert isinstance(p, ParsedAnswer)
    assert (p.value, p.exact, p.percent, p.unit) == (value, exact, percent, unit)
    expected_original = repr(raw) if isinstance(raw, float) else str(raw)
    assert p.original == expected_original


@pytest.mark.parametrize(
    "raw,text",
    [("yes", "yes"), ("Yes.", "yes"), ("Tom", "tom"), ("3:30 p.m.", "3:30 p.m"),
     ("15 r8", "15 r8"),
     (r"\frac{\pi}{2}", None), (r"\sqrt{2}", None), ("5 apples and 3 oranges", None),
     ("2 hours 30 minutes", None), ("", ""), ("3,4", "3,4"), ("1/0", "1/0")],
)
def test_parse_answer_non_numbers(raw, text):
    p = parse_answer(raw)
    assert p.value is None and p.exact is False and p.percent is False
    assert p.original == raw
    if text is not None:
        assert p.text == text


@pytest.mark.parametrize(
    "raw",
    [None, float("nan"), float("inf"), True, object(), b"12", "####", "\\frac{", "((((1",
     "1e999999", "(" * 500 + "1" + ")" * 500, "9" * 5000, "-", ".", "%", "$", "\\boxed{"],
    ids=lambda r: repr(r)[:20],
)
def test_parse_answer_never_raises(raw):
    p = parse_answer(raw)
    assert isinstance(p, ParsedAnswer)
    if raw is None:
        assert (p.original, p.value, p.text) == ("", None, "")


@pytest.mark.parametrize(
    "s,value",
    [("1,234", F(1234)), ("-3.5", F(-7, 2)), ("1e3", F(1000)), ("10%", F(1, 10)),
     ("4/7", F(4, 7)), ("((4)/(7))", F(4, 7)), ("7((2)/(3))", F(23, 3)), ("2 1/2", F(5, 2)),
     ("\\frac{1}{2}", F(1, 2)), ("０．５", F(1, 2)), ("0.666666666667", F(666666666667, 10**12)),
     ("apples", None), ("3 cm", None), ("1/0", None), ("", None), ("1.2.3", None)],
)
def test_parse_number(s, value):
    assert parse_number(s) == value


# --------------------------------------------------------------------------------------------
# canonical
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,text",
    [(F(18), "18"), (F(-3), "-3"), (F(0), "0"), (F(72, 5), "14.4"), (F(1, 8), "0.125"),
     (F(-1, 8), "-0.125"), (F(4, 7), "4/7"), (F(-2, 3), "-2/3"), (F(1, 1024), "0.0009765625"),
     (F(10**30 + 1, 10**12), "1000000000000000000.000000000001"), (F(1, 3), "1/3")],
)
def test_canonical(value, text):
    assert canonical(value) == text


def test_canonical_round_trips():
    values = {F(p, q) for p in range(-60, 61) for q in range(1, 41)}
    values |= {F(p, 10**k) for p in (-7, 1, 3, 125, 999) for k in range(0, 12)}
    values |= {F(2**40 + 1, 2**20), F(-(10**20) - 1, 3), F(1, 5**9)}
    for v in values:
        text = canonical(v)
        assert parse_number(text) == v, (v, text)
        assert parse_answer(text).value == v
        d = v.denominator
        while d % 2 == 0:
            d //= 2
        while d % 5 == 0:
            d //= 5
        assert ("/" in text) == (d != 1), (v, text)  # terminating decimals as decimals
        assert ("." in text) == (d == 1 and v.denominator != 1), (v, text)


# --------------------------------------------------------------------------------------------
# Bounds (issue 11: an answer must not stall the host that reads it)
# --------------------------------------------------------------------------------------------


def test_decimal_fraction_refuses_huge_exponents_before_computing():
    t = time.monotonic()
    for text in ("1e999999999", "-1e-999999999", "1e4000000", f"1e{MAX_EXPONENT + 1}"):
        with pytest.raises(QuantityTooLarge, match="magnitude"):
            decimal_fraction(Decimal(text))
    with pytest.raises(QuantityTooLarge, match="digits"):
        decimal_fraction(Decimal("1." + "1" * MAX_DIGITS))
    assert time.monotonic() - t < 1.0  # Fraction(Decimal('1e999999999')) would take hours
    assert decimal_fraction(Decimal(f"1e{MAX_EXPONENT}")) == F(10) ** MAX_EXPONENT
    assert decimal_fraction(Decimal("-2.50E-3")) == F(-1, 400)
    assert decimal_fraction(Decimal("0E-999999999")) == 0
    with pytest.raises(ValueError):
        decimal_fraction(Decimal("NaN"))


def test_canonical_raises_a_clear_error_beyond_max_digits():
    assert canonical(F(10**4299)) == "1" + "0" * 4299
    for value, what in [(F(1, 2**13000), "decimal expansion"), (F(10**4300), "integer"),
                        (F(1, 3**9100), "denominator"), (F(3**9100, 7), "numerator")]:
        with pytest.raises(QuantityTooLarge, match=what):
            canonical(value)
    assert issubclass(QuantityTooLarge, ValueError)


def _unwrap_reference(s: str) -> str:
    """The former quadratic _unwrap: the behaviour the linear one must keep."""
    s = s.strip()
    while len(s) >= 2 and s[0] in "({[" and s[-1] in ")}]":
        depth = 0
        for i, ch in enumerate(s):
            if ch in "({[":
                depth += 1
            elif ch in ")}]":
                depth -= 1
                if depth == 0 and i != len(s) - 1:
                    return s
        s = s[1:-1].strip()
    return s


def test_unwrap_matches_the_reference_on_random_bracket_strings():
    from distill.quantities import _unwrap

    rng = random.Random(11)
    for _ in range(3000):
        s = "".join(rng.choice("(){}[] 4/") for _ in range(rng.randint(0, 14)))
        assert _unwrap(s) == _unwrap_reference(s), repr(s)
    for s in ["((4))", "(1)/(2)", "( (4) )", "((4)", "(4))", "())(", "[{(3)}]", ""]:
        assert _unwrap(s) == _unwrap_reference(s), s


def test_nested_parentheses_parse_in_linear_time():
    # 8,001 characters took 0.75-2 s with the quadratic unwrapping and ~490 KB about an hour;
    # 200,001 characters would take minutes. Linear: well under a second, even on a busy box.
    t = time.monotonic()
    assert parse_answer("(" * 4000 + "4" + ")" * 4000).value == 4
    assert parse_answer("(" * 100_000 + "7" + ")" * 100_000).value == 7
    assert time.monotonic() - t < 5.0
