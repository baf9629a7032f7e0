"""distill.equations: parsing, exact evaluation, solving, formatting, literals (tables), plus
the gold-equation agreement on the real MAWPS and Math23K files (marked ``shared_data``)."""

from __future__ import annotations

import random
import time
from fractions import Fraction as F

import pytest

from distill.equations import (
    BinOp,
    Equation,
    EquationError,
    Literal,
    Neg,
    Num,
    Placeholder,
    Var,
    evaluate,
    literal_numbers,
    parse,
    parse_equation,
    parse_expression,
    parse_prefix,
    placeholders,
    solve_all,
    solve_equation,
    substitute,
    to_infix,
    to_prefix,
    variables,
)

# --------------------------------------------------------------------------------------------
# Parsing: (text as written, canonical infix)
# --------------------------------------------------------------------------------------------

PARSE_CASES = [
    ("x=56*9", "x = 56 * 9"),
    ("X=(27.0*16.0)", "X = 27.0 * 16.0"),
    ("56*9=x", "56 * 9 = x"),
    ("(7.0*x)+4.0=(3.0*x)-20.0", "7.0 * x + 4.0 = 3.0 * x - 20.0"),
    ("x=(11-1)*2", "x = (11 - 1) * 2"),
    ("x=[490-50*(4+1)]/4", "x = (490 - 50 * (4 + 1)) / 4"),
    ("x={3+[2*(1+1)]}", "x = 3 + 2 * (1 + 1)"),
    ("（３＋４）×２÷７−１", "(3 + 4) * 2 / 7 - 1"),
    ("x = 3 · 4", "x = 3 * 4"),
    ("2**3^2", "2 ^ 3 ^ 2"),
    ("(2^3)^2", "(2 ^ 3) ^ 2"),
    ("2(3+4)", "2 * (3 + 4)"),
    ("3x+2", "3 * x + 2"),
    ("(a+b)(a-b)", "(a + b) * (a - b)"),
    ("N0(N1+N2)", "N0 * (N1 + N2)"),
    ("(a+b)x", "(a + b) * x"),
    ("2x^2", "2 * x ^ 2"),
    ("number=1.477/-7.0", "number = 1.477 / (-7.0)"),
    ("-2^2", "-2 ^ 2"),
    ("(-2)^2", "(-2) ^ 2"),
    ("-(3)", "-(3)"),
    ("--x", "-(-x)"),
    ("+5", "5"),
    ("1,200*3", "1200 * 3"),
    (".5*4", ".5 * 4"),
    ("x=200*(1+(1/5))", "x = 200 * (1 + (1/5))"),
    ("x=((1)/(3))*6", "x = (1/3) * 6"),
    ("x=1-(-1/3)", "x = 1 - (-1/3)"),
    ("x=1/[(((1)/(8*15))+((1)/(9*20)))*6]", "x = 1 / ((1 / (8 * 15) + 1 / (9 * 20)) * 6)"),
    ("x=6/[3/12]", "x = 6 / [3 / 12]"),  # a division, not the literal (3/12)
    ("x=120*80%*15%", "x = 120 * 80% * 15%"),
    ("x=12 %", "x = 12%"),
    ("(1+2)%", "(1 + 2) / 100"),
    ("a-(b-c)", "a - (b - c)"),
    ("a-b-c", "a - b - c"),
    ("a/(b*c)", "a / (b * c)"),
    ("a*(b/c)", "a * (b / c)"),
    ("hours=4.0*0.5/3.0", "hours = 4.0 * 0.5 / 3.0"),
]


@pytest.mark.parametrize("text,infix", PARSE_CASES)
def test_parse_forms(text: str, infix: str) -> None:
    node = parse(text)
    assert to_infix(node) == infix
    assert parse(to_infix(node)) == node  # the canonical text reads back as the same tree


def test_parse_kinds() -> None:
    assert parse("N12") == Placeholder(12)
    assert parse("x") == Var("x") and parse("temp_a") == Var("temp_a")
    assert parse("-7.0") == Num(F(-7)) and parse("-(7)") == Neg(Num(F(7)))
    assert parse("(1/3)") == Num(F(1, 3)) and parse("1/3") == BinOp("/", Num(F(1)), Num(F(3)))
    assert parse("(1.5/3)") == BinOp("/", Num(F(3, 2)), Num(F(3)))  # not integer over integer
    assert parse("(4/0)") == BinOp("/", Num(F(4)), Num(F(0)))  # not a literal: evaluates to an error
    assert isinstance(parse_equation("x=1"), Equation)
    assert isinstance(parse_expression("1+x"), BinOp)
    assert Num(F(1, 4), "25%") == Num(F(1, 4), "0.25")  # literals compare by value


# --------------------------------------------------------------------------------------------
# Exact evaluation
# --------------------------------------------------------------------------------------------

EVAL_CASES = [
    ("0.1+0.2", F(3, 10)),
    ("1/3+1/6", F(1, 2)),
    ("(1/3)+(1/6)", F(1, 2)),
    ("25%", F(1, 4)),
    ("12.5%", F(1, 8)),
    ("200*(1+20%)", F(240)),
    ("2^10", F(1024)),
    ("2**10", F(1024)),
    ("2^-2", F(1, 4)),
    ("(2/3)^3", F(8, 27)),
    ("2^3^2", F(512)),
    ("-2^2", F(-4)),
    ("(-2)^2", F(4)),
    ("16^(1/2)", F(4)),
    ("(8/27)^(1/3)", F(2, 3)),
    ("4^1.5", F(8)),
    ("0^0", F(1)),
    ("2(3+4)", F(14)),
    ("6/2(1+2)", F(9)),  # implicit multiplication binds like *, left to right
    ("10-3-2", F(5)),
    ("2*3+4", F(10)),
    ("2+3*4", F(14)),
    ("1,200/3", F(400)),
    ("3.14*[(3+2)^2-3^2]", F(1256, 25)),
    ("1-(-1/3)", F(4, 3)),
    ("（３＋４）×２", F(14)),
]


@pytest.mark.parametrize("text,value", EVAL_CASES)
def test_evaluate_exact(text: str, value: F) -> None:
    result = evaluate(text)
    assert isinstance(result, F) and result == value


def test_evaluate_bindings_and_float_power() -> None:
    b = {"N0": F(2), "N1": F(3), "N2": 4, "x": F(1, 2)}
    assert evaluate("N0*(N1+N2)", b) == 14
    assert evaluate(parse_expression("1/2x"), {"x": F(4)}) == 2  # (1/2)*x
    assert evaluate("3x", b) == F(3, 2)
    root2 = evaluate("2^0.5")  # the one inexact path: float, returned as a Fraction
    assert isinstance(root2, F) and abs(float(root2) - 2**0.5) < 1e-15


# --------------------------------------------------------------------------------------------
# Solving
# --------------------------------------------------------------------------------------------

SOLVE_CASES = [
    ("x=56*9", F(504)),
    ("X=(27.0*16.0)", F(432)),
    ("56*9=x", F(504)),
    ("x=(11-1)*2", F(20)),
    ("(7.0*x)+4.0=(3.0*x)-20.0", F(-6)),
    ("70-x=27", F(43)),
    ("x/4=3", F(12)),
    ("X-7-4=5", F(16)),
    ("7=3+x", F(4)),
    ("3x=12", F(12, 3)),
    ("2(x+1)=x", F(-2)),
    ("x=x/2+3", F(6)),
    ("hours=4.0*0.5/3.0", F(2, 3)),
    ("x*25%=5", F(20)),
    ("12/x=3", F(4)),
    ("(200.0/x)-1.0=200.0/(10.0+x)", F(40)),
    ("560.0/(60.0-x)=640.0/(60.0+x)", F(4)),
    ("2000.0/(760.0+x)=1800.0/(760.0-x)", F(40)),
    ("(1.0/x)+(1.0/(x-6.0))=7.0*(1.0/x)", F(36, 5)),
    ("(40.0/(60.0+x))+(40.0/(60.0-x))=1.5", F(20)),  # quadratic: roots -20 and 20
    ("x^3=8", F(2)),
    ("(x-2)^2=0", F(2)),
]


@pytest.mark.parametrize("text,value", [c for c in SOLVE_CASES if c[1] is not None])
def test_solve_equation(text: str, value: F) -> None:
    assert solve_equation(text) == value


def test_solve_all_and_options() -> None:
    assert solve_all("(6.0+x)*(x-6.0)=189.0") == (F(-15), F(15))
    assert solve_equation("(6.0+x)*(x-6.0)=189.0") == 15  # the one positive root
    assert solve_all("x*x=49") == (F(-7), F(7))
    roots = solve_all("x^2=2")  # irrational: float precision
    assert len(roots) == 2 and abs(float(roots[1]) - 2**0.5) < 1e-12
    roots = solve_all("x+(1.0/x)=3.3333")
    assert [round(float(r), 4) for r in roots] == [0.3333, 3.0]
    assert solve_all("(76.0-25.0)") == (F(51),)  # a bare expression reads as x = expression
    assert solve_equation("x=N0*(N1+N2)", bindings={"N0": F(2), "N1": F(3), "N2": F(4)}) == 14
    assert solve_equation("y=2*a+x", unknown="y", bindings={"a": F(3), "x": F(1)}) == 7
    assert solve_equation(parse_equation("x-1=2")) == 3
    assert solve_equation("x^5-x=0") == 1  # degree 5 through sympy: roots -1, 0, 1
    assert abs(float(solve_equation("2^x=8")) - 3) < 1e-12  # non-polynomial: numeric
    assert abs(float(solve_equation("x^0.5=3")) - 9) < 1e-9


# --------------------------------------------------------------------------------------------
# Errors: (function, argument, a fragment of the message)
# --------------------------------------------------------------------------------------------

ERROR_CASES = [
    (evaluate, "1/0", "division by zero"),
    (evaluate, "1/(2-2)", "division by zero"),
    (evaluate, "0^-1", "division by zero"),
    (evaluate, "2^100", "exponent"),
    (evaluate, "(10^60)^60", "too large"),
    (evaluate, "(-8)^(1/3)", "negative base"),
    (evaluate, "x+1", "no value for 'x'"),
    (evaluate, "(4/0)", "division by zero"),
    (parse, "", "empty"),
    (parse, "   ", "empty"),
    (parse, "x=", "ends unexpectedly"),
    (parse, "x=(1+2", "expected ')'"),
    (parse, "x=[1+2)", "expected ']'"),
    (parse, "x=3 apples", "unexpected 'apples'"),
    (parse, "hello world", "unexpected 'world'"),
    (parse, "2 3", "unexpected '3'"),
    (parse, "*3", "unexpected '*'"),
    (parse, "x=80千米/小时", "unexpected character '千'"),
    (parse, "x=3=4", "several '='"),
    (parse, "X=0.32=0.21", "several '='"),
    (parse, "(" * 3000 + "1" + ")" * 3000, "nested too deeply"),
    (parse, None, "expected a string"),
    (parse_equation, "3+4", "no '='"),
    (parse_expression, "x=3", "'=' in an expression"),
    (solve_equation, "x+y=3", "several unknowns"),
    (solve_equation, "3=3", "no unknown"),
    (solve_equation, "x=x+1", "no solution"),
    (solve_equation, "x=x", "every value"),
    (solve_equation, "x*x=-4", "no real solution"),
    (solve_equation, "x/(x-3)=3/(x-3)", "no real solution"),  # x=3 zeroes a denominator
    (solve_equation, "x/(x-3)=3/(x-3)+1", "every value"),
    (solve_equation, "x=5/(3-3)", "division by zero"),
    (solve_equation, "x=N0+1", "no value for 'N0'"),
    (solve_equation, "x+(1.0/x)=3.3333", "ambiguous"),
    (solve_equation, "2*x", "not an equation"),
    (parse_prefix, "", "empty"),
    (parse_prefix, "+ 1", "ends early"),
    (parse_prefix, "1 2", "extra tokens"),
    (parse_prefix, "+ 1 2+3", "not a prefix token"),
    (parse_prefix, "+ 1 = 2", "'=' inside"),
]


@pytest.mark.parametrize("fn,arg,fragment", ERROR_CASES)
def test_errors(fn, arg, fragment: str) -> None:
    with pytest.raises(EquationError, match=None) as info:
        fn(arg)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_must_occur() -> None:
    with pytest.raises(EquationError, match="does not occur"):
        solve_equation("x=3", unknown="y")
    with pytest.raises(EquationError, match="several unknowns"):
        solve_equation("y=a+x", unknown="y")


# --------------------------------------------------------------------------------------------
# Infix / prefix round trips
# --------------------------------------------------------------------------------------------

PREFIX_CASES = [
    ("N0 * (N1 + N2)", "* N0 + N1 N2"),
    ("N0 + N1 * N2", "+ N0 * N1 N2"),
    ("(N0 - N1) / N2", "/ - N0 N1 N2"),
    ("N0 - (N1 - N2)", "- N0 - N1 N2"),
    ("N0 ^ 2 - 3.14", "- ^ N0 2 3.14"),
    ("-(N0 + N1)", "neg + N0 N1"),
    ("-2 * N0", "* -2 N0"),
    ("N0 * (1 + 25%)", "* N0 + 1 25%"),
    ("N0 / (1 - (1/3))", "/ N0 - 1 (1/3)"),
    ("N0 / [1 / 3]", "/ N0 / 1 3"),
    ("N0 / (1/3)", "/ N0 (1/3)"),
    ("x = N0 * N1", "= x * N0 N1"),
    ("(7.0 * x + 4.0) / 2 = 3.0 * x - 20.0", "= / + * 7.0 x 4.0 2 - * 3.0 x 20.0"),
]


@pytest.mark.parametrize("infix,prefix", PREFIX_CASES)
def test_prefix_round_trip(infix: str, prefix: str) -> None:
    node = parse(infix)
    assert to_infix(node) == infix
    assert to_prefix(node) == prefix
    assert parse_prefix(prefix) == node
    assert to_infix(parse_prefix(prefix)) == infix


def _random_tree(rng: random.Random, depth: int):
    if depth == 0 or rng.random() < 0.25:
        kind = rng.randrange(6)
        if kind == 0:
            return Placeholder(rng.randrange(4))
        if kind == 1:
            return Var(rng.choice("xy"))
        value = rng.choice([F(3), F(-2), F(5, 2), F(-1, 4), F(1, 3), F(-2, 7), F(0), F(12)])
        return Num(value)
    if rng.random() < 0.15:
        return Neg(_random_tree(rng, depth - 1))
    return BinOp(rng.choice("+-*/^"), _random_tree(rng, depth - 1), _random_tree(rng, depth - 1))


def test_random_round_trips() -> None:
    rng = random.Random(7)
    bindings = {"N0": F(2), "N1": F(-3), "N2": F(1, 2), "N3": F(5), "x": F(3, 4), "y": F(-1)}
    for _ in range(1500):
        tree = _random_tree(rng, 4)
        assert parse(to_infix(tree)) == tree, to_infix(tree)
        assert parse_prefix(to_prefix(tree)) == tree, to_prefix(tree)
        try:
            value = evaluate(tree, bindings)
        except EquationError:
            continue
        assert evaluate(to_infix(tree), bindings) == value


# --------------------------------------------------------------------------------------------
# Literals and helpers
# --------------------------------------------------------------------------------------------


def L(value, text, percent=False, parts=None) -> Literal:
    return Literal(F(value), text, percent, None if parts is None else (F(parts[0]), F(parts[1])))


LITERAL_CASES = [
    ("x=200*(1+(1/5))", [L(200, "200"), L(1, "1"), L(F(1, 5), "(1/5)", parts=(1, 5))]),
    ("x=((1)/(3))*6", [L(F(1, 3), "(1/3)", parts=(1, 3)), L(6, "6")]),
    ("x=(12/4)+1", [L(3, "(12/4)", parts=(12, 4)), L(1, "1")]),
    ("x=1/3", [L(1, "1"), L(3, "3")]),
    ("x=(1.5/3)", [L(F(3, 2), "1.5"), L(3, "3")]),
    ("x=120*80%*15%", [L(120, "120"), L(F(4, 5), "80%", True), L(F(3, 20), "15%", True)]),
    ("(7.0*x)+4.0=(3.0*x)-20.0", [L(7, "7.0"), L(4, "4.0"), L(3, "3.0"), L(20, "20.0")]),
    ("x=3*3", [L(3, "3"), L(3, "3")]),
    ("number=1.477/-7.0", [L(F("1.477"), "1.477"), L(-7, "-7.0")]),
    ("x=N0*N1", []),
]


@pytest.mark.parametrize("text,expected", LITERAL_CASES)
def test_literal_numbers(text: str, expected: list[Literal]) -> None:
    assert literal_numbers(text) == expected
    assert literal_numbers(parse(text)) == expected


def test_placeholders_variables_substitute() -> None:
    assert placeholders("N0 + N2 * N0") == (0, 2)
    assert variables("x + N1 * y = 3") == ("x", "y")
    tree = substitute(parse("N0*(N1+x)"), {"N0": 2, "N1": F(1, 2)})
    assert to_infix(tree) == "2 * (0.5 + x)"
    assert evaluate(tree, {"x": F(1)}) == 3
    assert to_infix(substitute(parse("x=N0/3"), {"N0": F(1, 3), "x": Var("y")})) == "y = (1/3) / 3"


def test_speed() -> None:
    """23k Math23K-sized equations must parse and solve in a few seconds."""
    texts = ["x=(11-1)*2", "x=200*(1+(1/5))", "x=108/[1-(1/4)-(1-(1/4))*(1/5)]", "(7*x)+4=(3*x)-20"]
    start = time.perf_counter()
    for _ in range(500):
        for t in texts:
            solve_equation(t)
    assert time.perf_counter() - start < 5.0  # 2000 equations; about 0.2 s on 2 cores
