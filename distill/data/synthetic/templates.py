"""The synthetic generator's templates, each defined once (``TEMPLATES``), and what they write with.

The reader is whoever adds or changes a kind of problem. A template is a function of a
:class:`_Ctx` (the random stream, the language, number and vocabulary makers) and a step count,
registered with ``@_template(name, steps, about)``; it writes the question natively in English
or Chinese (its two phrasings sit side by side, sharing the numbers and the gold) and returns a
:class:`_Draft`: context sentences, the question, and the gold as arithmetic on the numbers it
wrote (``(a + b) / k``). That arithmetic builds a :mod:`distill.equations` tree: leaves are
``Placeholder(slot)`` for a number written in the text (``slot`` indexes ``_Ctx.nums``, the
order the numbers were drawn -- not the ``N0, N1 ...`` of the masked row) and ``Num`` for an
implicit constant (a perimeter's 2). A template raises :class:`_Retry` when the drawn numbers do
not fit. Checking, rendering and rows are :mod:`distill.data.synthetic.generator`'s.

Contract of a template: every number it writes is a :meth:`_Ctx.n` / :meth:`_Ctx.pct` /
:meth:`_Ctx.const` node placed in the text with ``{node}`` at most once, and the gold uses each
written number at most once and only the constants in :data:`ALLOWED_CONSTANTS`. The order of
random draws is part of the output: reordering them changes every problem (bump
``GENERATOR``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Sequence

from distill.equations import BinOp, Expr, Num, Placeholder
from distill.quantities import canonical

if TYPE_CHECKING:
    from distill.data.synthetic.config import SyntheticConfig

__all__ = ["ALLOWED_CONSTANTS", "MAX_STEPS", "TEMPLATES", "template_names"]

ALLOWED_CONSTANTS = (1, 2)  # numbers a gold equation may use without them being written
MAX_STEPS = 4


# =============================================================================== expressions
class _Gold:
    """A gold (sub)expression as a template writes it: ``+ - * /`` build the
    :class:`distill.equations.BinOp` of the two trees."""

    __slots__ = ("tree",)

    def __init__(self, tree: Expr):
        self.tree = tree

    def __add__(self, other: _Gold) -> _Gold:
        return _Gold(BinOp("+", self.tree, other.tree))

    def __sub__(self, other: _Gold) -> _Gold:
        return _Gold(BinOp("-", self.tree, other.tree))

    def __mul__(self, other: _Gold) -> _Gold:
        return _Gold(BinOp("*", self.tree, other.tree))

    def __truediv__(self, other: _Gold) -> _Gold:
        return _Gold(BinOp("/", self.tree, other.tree))


class _Num(_Gold):
    """A leaf: a number written in the text (``slot`` set), or a constant (``const``) that may be
    tied to a word of the text ("twice") or be implicit (a perimeter's 2). ``reads_as`` is the
    value :mod:`distill.quantities` gives the written form ("half" reads as 1/2, used as ``/2``).
    Its tree is ``Placeholder(slot)``, or ``Num`` (canonical text) for an implicit constant."""

    __slots__ = ("value", "shown", "slot", "const", "ratio", "reads_as")

    def __init__(self, value: Fraction, shown: str, slot: int | None, const: bool, ratio: bool,
                 reads_as: Fraction | None = None):  # fmt: skip
        self.value, self.shown, self.slot, self.const, self.ratio = value, shown, slot, const, ratio
        self.reads_as = value if reads_as is None else reads_as
        super().__init__(Num(value, canonical(value)) if slot is None else Placeholder(slot))

    def __format__(self, spec: str) -> str:
        if self.slot is None:
            raise ValueError("an implicit constant cannot be written into the text")
        return f"\x00{self.slot}\x00"

    __str__ = lambda self: format(self, "")  # noqa: E731


# ================================================================================ vocabulary
@dataclass(frozen=True)
class _Person:
    name: str
    male: bool

    def __format__(self, spec: str) -> str:
        return self.name

    he = property(lambda s: "he" if s.male else "she")
    He = property(lambda s: "He" if s.male else "She")
    him = property(lambda s: "him" if s.male else "her")
    his = property(lambda s: "his" if s.male else "her")
    His = property(lambda s: "His" if s.male else "Her")
    ta = property(lambda s: "他" if s.male else "她")


@dataclass(frozen=True)
class _Item:
    sg: str
    pl: str
    zh: str
    cl: str  # Chinese measure word
    edible: bool = False

    @property
    def a(self) -> str:
        return ("an " if self.sg[0] in "aeiou" else "a ") + self.sg

    @property
    def Pl(self) -> str:
        return self.pl[0].upper() + self.pl[1:]


_EN_PEOPLE = [
    ("Tom", True), ("Lily", False), ("Sam", True), ("Emma", False), ("Jack", True),
    ("Mia", False), ("Noah", True), ("Ava", False), ("Leo", True), ("Zoe", False),
    ("Ben", True), ("Grace", False), ("Max", True), ("Chloe", False), ("Ryan", True),
    ("Ella", False), ("Omar", True), ("Priya", False), ("Kenji", True), ("Sofia", False),
]  # fmt: skip
_ZH_PEOPLE = [
    ("小明", True), ("小红", False), ("小华", True), ("小丽", False), ("小刚", True),
    ("小芳", False), ("小军", True), ("小兰", False), ("小强", True), ("小燕", False),
    ("小亮", True), ("小雪", False), ("小飞", True), ("小静", False), ("小宇", True),
    ("小婷", False), ("小东", True), ("小玲", False), ("阿伟", True), ("小梅", False),
]  # fmt: skip
_ITEMS = [
    _Item("apple", "apples", "苹果", "个", True), _Item("orange", "oranges", "橘子", "个", True),
    _Item("pencil", "pencils", "铅笔", "支"), _Item("sticker", "stickers", "贴纸", "张"),
    _Item("marble", "marbles", "弹珠", "颗"), _Item("cookie", "cookies", "饼干", "块", True),
    _Item("storybook", "storybooks", "故事书", "本"), _Item("balloon", "balloons", "气球", "个"),
    _Item("stamp", "stamps", "邮票", "张"), _Item("candy", "candies", "糖果", "颗", True),
    _Item("shell", "shells", "贝壳", "个"), _Item("toy car", "toy cars", "玩具车", "辆"),
    _Item("peach", "peaches", "桃子", "个", True), _Item("card", "cards", "卡片", "张"),
    _Item("pear", "pears", "梨", "个", True),
]  # fmt: skip
_GOODS = [
    _Item("notebook", "notebooks", "笔记本", "本"), _Item("pen", "pens", "钢笔", "支"),
    _Item("ruler", "rulers", "尺子", "把"), _Item("ball", "balls", "皮球", "个"),
    _Item("cup", "cups", "杯子", "个"), _Item("kite", "kites", "风筝", "个"),
    _Item("schoolbag", "schoolbags", "书包", "个"), _Item("shirt", "shirts", "衬衫", "件"),
    _Item("toy robot", "toy robots", "玩具机器人", "个"), _Item("umbrella", "umbrellas", "雨伞", "把"),
]  # fmt: skip
_FRUIT_BY_WEIGHT = [("apples", "苹果"), ("grapes", "葡萄"), ("bananas", "香蕉"), ("cherries", "樱桃")]
_VEHICLES = [("car", "汽车"), ("bus", "客车"), ("truck", "货车"), ("train", "火车")]
_TOWNS = ["Maple Town", "Riverside", "Oakville", "Hillcrest", "Lakeview", "Pine Valley"]


class _Retry(Exception):
    """The drawn numbers do not fit the template; draw again."""


class _Ctx:
    """What a template function gets: the random stream, the language and number makers."""

    def __init__(self, rng: random.Random, lang: str, config: SyntheticConfig):
        self.rng, self.lang, self.en, self.config = rng, lang, lang == "en", config
        self.maxv = config.max_value
        self.nums: list[_Num] = []
        self.people: list[_Person] = []
        self.items: list[_Item] = []

    # -- numbers
    def n(self, value: int) -> _Num:
        """A number written in the text."""
        node = _Num(Fraction(value), str(value), len(self.nums), False, False)
        self.nums.append(node)
        return node

    def pct(self, percent: int) -> _Num:
        """A percentage written as ``{node}%``; its value is ``percent / 100``."""
        node = _Num(Fraction(percent, 100), str(percent), len(self.nums), False, True)
        self.nums.append(node)
        return node

    def const(self, value: int, word: str | None = None, reads_as: Fraction | None = None) -> _Num:
        """An allowed constant: tied to ``word`` in the text, or implicit when no word."""
        assert value in ALLOWED_CONSTANTS
        slot = None if word is None else len(self.nums)
        node = _Num(Fraction(value), word or str(value), slot, True, False, reads_as)
        if word is not None:
            self.nums.append(node)
        return node

    def ri(self, lo: int, hi: int) -> int:
        if lo > hi:
            raise _Retry
        return self.rng.randint(lo, hi)

    def pick(self, *options: Any) -> Any:
        return options[self.rng.randrange(len(options))]

    def coin(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def total(self, k: int, quotient: int, inexact_ok: bool = False) -> int:
        """A dividend for ``/ k``: a multiple of k, unless the template says a non-integer
        result reads naturally (a speed, a price, not a count) and the config allows one."""
        if inexact_ok and not self.config.integer_answers_only and k > 1 and self.coin():
            return quotient * k + self.rng.randint(1, k - 1)
        return quotient * k

    # -- vocabulary
    def person(self) -> _Person:
        pool = _EN_PEOPLE if self.en else _ZH_PEOPLE
        while True:
            p = _Person(*pool[self.rng.randrange(len(pool))])
            if p not in self.people:
                self.people.append(p)
                return p

    def item(self, pool: Sequence[_Item] = _ITEMS) -> _Item:
        while True:
            it = pool[self.rng.randrange(len(pool))]
            if it not in self.items:
                self.items.append(it)
                return it


@dataclass
class _Draft:
    context: list[str]
    question: str
    expr: _Gold


@dataclass(frozen=True)
class _Template:
    name: str
    steps: tuple[int, ...]
    build: Callable[[_Ctx, int], _Draft]
    about: str


TEMPLATES: dict[str, _Template] = {}


def _template(name: str, steps: tuple[int, ...], about: str):
    def wrap(fn: Callable[[_Ctx, int], _Draft]) -> Callable[[_Ctx, int], _Draft]:
        assert name not in TEMPLATES
        TEMPLATES[name] = _Template(name, steps, fn, about)
        return fn

    return wrap


def template_names() -> list[str]:
    """The template names, in library order."""
    return list(TEMPLATES)


def _en_list(parts: Sequence[str]) -> str:
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# ================================================================================= templates
@_template("add_more", (1,), "having, then buying / receiving more")
def _add_more(c: _Ctx, steps: int) -> _Draft:
    p, q, it = c.person(), c.person(), c.item()
    a, b = c.n(c.ri(2, c.maxv)), c.n(c.ri(2, c.maxv))
    if c.en:
        ctx, qn = c.pick(
            ([f"{p} has {a} {it.pl}.", f"{p.He} buys {b} more."],
             f"How many {it.pl} does {p} have now?"),
            ([f"{p} had {a} {it.pl}.", f"{q} gave {p.him} {b} more."],
             f"How many {it.pl} does {p} have now?"),
            ([f"There are {a} {it.pl} in a basket.", f"{p} puts {b} more {it.pl} into the basket."],
             f"How many {it.pl} are in the basket now?"),
            ([f"{p} collected {a} {it.pl} in the morning and {b} {it.pl} in the afternoon."],
             f"How many {it.pl} did {p} collect in all?"),
        )  # fmt: skip
    else:
        ctx, qn = c.pick(
            ([f"{p}有{a}{it.cl}{it.zh}，又买了{b}{it.cl}。"], f"{p}现在有多少{it.cl}{it.zh}？"),
            ([f"{p}原来有{a}{it.cl}{it.zh}。", f"{q}送给{p.ta}{b}{it.cl}。"], f"{p}现在有多少{it.cl}{it.zh}？"),
            ([f"篮子里有{a}{it.cl}{it.zh}。", f"{p}又放进去{b}{it.cl}。"], f"篮子里现在有多少{it.cl}{it.zh}？"),
            ([f"{p}上午收集了{a}{it.cl}{it.zh}，下午收集了{b}{it.cl}。"], f"{p.ta}这天共收集了多少{it.cl}{it.zh}？"),
        )  # fmt: skip
    return _Draft(ctx, qn, a + b)


@_template("take_away", (1,), "having, then giving away / losing / eating / selling")
def _take_away(c: _Ctx, steps: int) -> _Draft:
    p, q, it = c.person(), c.person(), c.item()
    bv = c.ri(2, c.maxv - 1)
    a, b = c.n(bv + c.ri(1, c.maxv - bv)), c.n(bv)
    if c.en:
        third = (
            ([f"There were {a} {it.pl} on a plate.", f"{p} ate {b} of them."],
             f"How many {it.pl} are left on the plate?")
            if it.edible
            else ([f"A shop had {a} {it.pl}.", f"It sold {b} of them."],
                  f"How many {it.pl} does the shop have left?")
        )  # fmt: skip
        ctx, qn = c.pick(
            ([f"{p} has {a} {it.pl}.", f"{p.He} gives {b} of them to {q}."],
             f"How many {it.pl} does {p} have left?"),
            ([f"{p} had {a} {it.pl}.", f"{p.He} lost {b} of them."],
             f"How many {it.pl} does {p} have now?"),
            third,
        )  # fmt: skip
    else:
        third = (
            ([f"盘子里有{a}{it.cl}{it.zh}。", f"{p}吃了{b}{it.cl}。"], f"盘子里还剩多少{it.cl}{it.zh}？")
            if it.edible
            else ([f"商店有{a}{it.cl}{it.zh}，卖出了{b}{it.cl}。"], f"商店还剩多少{it.cl}{it.zh}？")
        )  # fmt: skip
        ctx, qn = c.pick(
            ([f"{p}有{a}{it.cl}{it.zh}，送给{q}{b}{it.cl}。"], f"{p}还剩多少{it.cl}{it.zh}？"),
            ([f"{p}原来有{a}{it.cl}{it.zh}。", f"{p.ta}弄丢了{b}{it.cl}。"], f"{p}现在有多少{it.cl}{it.zh}？"),
            third,
        )  # fmt: skip
    return _Draft(ctx, qn, a - b)


@_template("event_chain", (2, 3, 4), "a count changed by several events (items, bus riders)")
def _event_chain(c: _Ctx, steps: int) -> _Draft:
    start = c.ri(2, c.maxv)
    a = c.n(start)
    expr: _Gold = a
    running = start
    changes: list[tuple[bool, _Num]] = []
    for _ in range(steps):
        plus = running < 3 or c.coin()
        if plus:
            b = c.n(c.ri(2, min(c.maxv, 40)))
            running += int(b.value)
            expr = expr + b
        else:
            b = c.n(c.ri(2, running - 1))
            running -= int(b.value)
            expr = expr - b
        changes.append((plus, b))
    if c.coin(0.3):  # riders on a bus
        if c.en:
            ctx = [f"There are {a} people on a bus."]
            for i, (plus, b) in enumerate(changes):
                lead = "At the next stop, " if i else "At the bus stop, "
                ctx.append(f"{lead}{b} people get {'on' if plus else 'off'}.")
            return _Draft(ctx, "How many people are on the bus now?", expr)
        ctx = [f"公交车上有{a}人。"]
        for i, (plus, b) in enumerate(changes):
            lead = "再次到站时，" if i else "到站后，"
            ctx.append(f"{lead}{'上来' if plus else '下去'}{b}人。")
        return _Draft(ctx, "现在车上有多少人？", expr)
    p, q, it = c.person(), c.person(), c.item()
    ctx = []
    if c.en:
        ctx.append(f"{p} has {a} {it.pl}.")
        for plus, b in changes:
            if plus:
                s = c.pick(
                    f"{p.He} buys {b} more.",
                    f"{q} gives {p.him} {b} more.",
                    f"{p.He} finds {b} more.",
                )
            else:
                s = c.pick(f"{p.He} gives {b} to {q}.", f"{p.He} loses {b}.", f"{p.He} sells {b}.",
                           *( [f"{p.He} eats {b}."] if it.edible else []))  # fmt: skip
            ctx.append(s)
        return _Draft(ctx, f"How many {it.pl} does {p} have now?", expr)
    ctx.append(f"{p}有{a}{it.cl}{it.zh}。")
    for plus, b in changes:
        if plus:
            s = c.pick(
                f"{p.ta}又买了{b}{it.cl}。",
                f"{q}又送给{p.ta}{b}{it.cl}。",
                f"{p.ta}又找到了{b}{it.cl}。",
            )
        else:
            s = c.pick(f"{p.ta}送给{q}{b}{it.cl}。", f"{p.ta}弄丢了{b}{it.cl}。", f"{p.ta}卖掉了{b}{it.cl}。",
                       *([f"{p.ta}吃掉了{b}{it.cl}。"] if it.edible else []))  # fmt: skip
        ctx.append(s)
    return _Draft(ctx, f"现在{p}有多少{it.cl}{it.zh}？", expr)


@_template("rows", (1,), "rows x per row, boxes x per box")
def _rows(c: _Ctx, steps: int) -> _Draft:
    p, it = c.person(), c.item()
    r, k = c.n(c.ri(2, 12)), c.n(c.ri(2, min(c.maxv, 30)))
    if c.en:
        ctx, qn = c.pick(
            ([f"A classroom has {r} rows of desks.", f"There are {k} desks in each row."],
             "How many desks are there in the classroom?"),
            ([f"{p} plants {r} rows of trees with {k} trees in each row."],
             f"How many trees does {p} plant?"),
            ([f"Each box holds {k} {it.pl}.", f"{p} has {r} full boxes."],
             f"How many {it.pl} does {p} have?"),
            ([f"In a parade, the students march in {r} rows with {k} students in each row."],
             "How many students are in the parade?"),
        )  # fmt: skip
    else:
        ctx, qn = c.pick(
            ([f"教室里有{r}排课桌，每排{k}张。"], "教室里共有多少张课桌？"),
            ([f"{p}种了{r}行树，每行种{k}棵。"], f"{p}共种了多少棵树？"),
            ([f"每盒装{k}{it.cl}{it.zh}。", f"{p}有{r}盒这样的{it.zh}。"], f"{p}共有多少{it.cl}{it.zh}？"),
            ([f"操场上的学生站成{r}排，每排{k}人。"], "操场上共有多少名学生？"),
        )  # fmt: skip
    return _Draft(ctx, qn, r * k)


@_template("price_total", (1,), "unit price x count")
def _price_total(c: _Ctx, steps: int) -> _Draft:
    p, g = c.person(), c.item(_GOODS)
    pr, n = c.n(c.ri(2, min(c.maxv, 50))), c.n(c.ri(2, 12))
    if c.en:
        ctx, qn = c.pick(
            ([f"{g.a.capitalize()} costs ${pr}."], f"How much do {n} {g.pl} cost?"),
            ([f"{p} buys {n} {g.pl} at ${pr} each."], f"How much does {p.he} pay?"),
            ([f"{g.Pl} are sold for ${pr} each.", f"{p} wants {n} of them."],
             f"How much money does {p} need?"),
        )  # fmt: skip
    else:
        ctx, qn = c.pick(
            ([f"每{g.cl}{g.zh}{pr}元。"], f"买{n}{g.cl}需要多少元？"),
            ([f"{p}买了{n}{g.cl}{g.zh}，每{g.cl}{pr}元。"], f"{p}共花了多少元？"),
            ([f"{g.zh}的单价是{pr}元。", f"{p}要买{n}{g.cl}。"], f"{p}需要付多少元？"),
        )  # fmt: skip
    return _Draft(ctx, qn, pr * n)


@_template("share_equally", (1,), "sharing equally among k")
def _share_equally(c: _Ctx, steps: int) -> _Draft:
    p, it = c.person(), c.item()
    kv = c.ri(2, 9)
    k = c.n(kv)
    a = c.n(c.total(kv, c.ri(2, c.maxv // kv)))
    if c.en:
        ctx, qn = c.pick(
            ([f"{p} has {a} {it.pl} and shares them equally among {k} friends."],
             f"How many {it.pl} does each friend get?"),
            ([f"{a} {it.pl} are divided equally into {k} bags."],
             f"How many {it.pl} are in each bag?"),
            ([f"A teacher gives {a} {it.pl} to {k} students, the same number to each student."],
             f"How many {it.pl} does each student get?"),
        )  # fmt: skip
    else:
        ctx, qn = c.pick(
            ([f"{p}把{a}{it.cl}{it.zh}平均分给{k}个小朋友。"], f"每个小朋友分到多少{it.cl}？"),
            ([f"把{a}{it.cl}{it.zh}平均装进{k}个袋子里。"], f"每个袋子里装多少{it.cl}？"),
            ([f"老师有{a}{it.cl}{it.zh}，平均奖励给{k}名学生。"], f"每名学生得到多少{it.cl}？"),
        )  # fmt: skip
    return _Draft(ctx, qn, a / k)


@_template("groups_of", (1,), "how many groups of k")
def _groups_of(c: _Ctx, steps: int) -> _Draft:
    p, it = c.person(), c.item()
    kv = c.ri(2, 9)
    k = c.n(kv)
    a = c.n(c.total(kv, c.ri(2, c.maxv // kv)))
    if c.en:
        ctx, qn = c.pick(
            ([f"There are {a} students in a gym class.",
              f"The teacher puts them into groups of {k}."],
             "How many groups are there?"),
            ([f"{p} packs {a} {it.pl} into bags, {k} in each bag."],
             f"How many bags does {p.he} fill?"),
            ([f"A ribbon is {a} meters long.",
              f"{p} cuts it into pieces that are each {k} meters long."],
             f"How many pieces does {p} get?"),
        )  # fmt: skip
    else:
        ctx, qn = c.pick(
            ([f"体育课上有{a}名学生，老师让每组{k}人。"], "可以分成多少组？"),
            ([f"{p}把{a}{it.cl}{it.zh}装进袋子，每袋装{k}{it.cl}。"], "可以装满多少袋？"),
            ([f"这根彩带长{a}米，{p}把它剪成每段{k}米的小段。"], "可以剪成多少段？"),
        )  # fmt: skip
    return _Draft(ctx, qn, a / k)


@_template("compare_more_less", (1,), "B has b more / fewer than A")
def _compare_more_less(c: _Ctx, steps: int) -> _Draft:
    p, q, it = c.person(), c.person(), c.item()
    more = c.coin()
    if more:
        a, b = c.n(c.ri(2, c.maxv)), c.n(c.ri(2, c.maxv))
    else:
        bv = c.ri(2, c.maxv - 1)
        a, b = c.n(bv + c.ri(1, c.maxv - bv)), c.n(bv)
    if c.en:
        rel = f"{b} {'more' if more else 'fewer'} {it.pl} than {p}"
        first, second = f"{p} has {a} {it.pl}.", f"{q} has {rel}."
        ctx = c.pick([first, second], [second, first])
        qn = f"How many {it.pl} does {q} have?"
    else:
        rel = f"{'多' if more else '少'}{b}{it.cl}"
        ctx = c.pick(
            [f"{p}有{a}{it.cl}{it.zh}，{q}比{p}{rel}。"],
            [f"{q}的{it.zh}比{p}{rel}。", f"{p}有{a}{it.cl}。"],
        )
        qn = f"{q}有多少{it.cl}{it.zh}？"
    return _Draft(ctx, qn, a + b if more else a - b)


@_template("compare_difference", (1,), "how many more / fewer")
def _compare_difference(c: _Ctx, steps: int) -> _Draft:
    p, q, it = c.person(), c.person(), c.item()
    bv = c.ri(2, c.maxv - 1)
    a, b = c.n(bv + c.ri(1, c.maxv - bv)), c.n(bv)
    if c.en:
        ctx = [f"{p} has {a} {it.pl} and {q} has {b}."]
        qn = c.pick(
            f"How many more {it.pl} does {p} have than {q}?",
            f"How many fewer {it.pl} does {q} have than {p}?",
        )
    else:
        ctx = [f"{p}有{a}{it.cl}{it.zh}，{q}有{b}{it.cl}。"]
        qn = c.pick(f"{p}比{q}多多少{it.cl}？", f"{q}比{p}少多少{it.cl}？")
    return _Draft(ctx, qn, a - b)


@_template("times_as_many", (1, 2), "k times as many; and the total or difference")
def _times_as_many(c: _Ctx, steps: int) -> _Draft:
    p, q, it = c.person(), c.person(), c.item()
    kind = "times" if steps == 1 else c.pick("together", "difference")
    if steps == 1 and c.coin(0.3):
        kind = "divide"
    if kind != "difference" and c.coin(0.25):  # "twice" / "两倍": the constant 2, written as a word
        kv, k = 2, c.const(2, "twice" if c.en else "两")
        times = f"{k} as many"
    else:
        kv = c.ri(3 if kind == "difference" else 2, 9)
        k = c.n(kv)
        times = f"{k} times as many"
    if kind == "divide":
        big = c.n(c.total(kv, c.ri(2, c.maxv // kv)))
        if c.en:
            ctx = [f"{q} has {big} {it.pl}, which is {times} as {p} has."]
            qn = f"How many {it.pl} does {p} have?"
        else:
            ctx = [f"{q}有{big}{it.cl}{it.zh}，是{p}的{k}倍。"]
            qn = f"{p}有多少{it.cl}{it.zh}？"
        return _Draft(ctx, qn, big / k)
    a = c.n(c.ri(2, c.maxv))
    if c.en:
        ctx = [f"{p} has {a} {it.pl}.", f"{q} has {times} {it.pl} as {p}."]
        qn = {
            "times": f"How many {it.pl} does {q} have?",
            "together": f"How many {it.pl} do {p} and {q} have altogether?",
            "difference": f"How many more {it.pl} does {q} have than {p}?",
        }[kind]
    else:
        ctx = [f"{p}有{a}{it.cl}{it.zh}，{q}的{it.zh}是{p}的{k}倍。"]
        qn = {
            "times": f"{q}有多少{it.cl}{it.zh}？",
            "together": f"{p}和{q}共有多少{it.cl}{it.zh}？",
            "difference": f"{q}比{p}多多少{it.cl}？",
        }[kind]
    if kind == "times":
        return _Draft(ctx, qn, a * k)
    one = c.const(1)
    return _Draft(ctx, qn, a * (k + one) if kind == "together" else a * (k - one))


@_template("speed_distance", (1,), "distance = speed x time, and its inverses")
def _speed_distance(c: _Ctx, steps: int) -> _Draft:
    p = c.person()
    veh_en, veh_zh = c.pick(*_VEHICLES)
    kind = c.pick("distance", "distance", "speed", "time")
    bike = kind == "distance" and c.coin(0.3)
    vv = c.ri(8, 20) if bike else c.ri(30, min(c.maxv, 90))
    if kind == "distance":
        v, t = c.n(vv), c.n(c.ri(2, 8))
        if bike:
            if c.en:
                ctx, qn = (
                    [f"{p} rides a bike at {v} km per hour for {t} hours."],
                    f"How many kilometers does {p.he} ride?",
                )
            else:
                ctx, qn = [f"{p}骑自行车，每小时骑{v}公里，骑了{t}小时。"], f"{p.ta}骑了多少公里？"
        elif c.en:
            ctx, qn = (
                [f"A {veh_en} travels at {v} km per hour."],
                f"How far does it travel in {t} hours, in km?",
            )
        else:
            ctx, qn = [f"{veh_zh}每小时行驶{v}公里。"], f"{t}小时行驶多少公里？"
        return _Draft(ctx, qn, v * t)
    tv = c.ri(2, 8)
    dv = c.total(tv, vv, inexact_ok=True) if kind == "speed" else vv * tv
    if dv > c.maxv:
        raise _Retry
    if kind == "speed":
        t, d = c.n(tv), c.n(dv)
        if c.en:
            ctx, qn = (
                [f"A {veh_en} travels {d} km in {t} hours."],
                "What is its average speed in km per hour?",
            )
        else:
            ctx, qn = [f"{veh_zh}{t}小时行驶了{d}公里。"], "它平均每小时行驶多少公里？"
        return _Draft(ctx, qn, d / t)
    d, v = c.n(dv), c.n(vv)
    if c.en:
        ctx, qn = (
            [f"A {veh_en} has to travel {d} km at {v} km per hour."],
            "How many hours does the trip take?",
        )
    else:
        ctx, qn = [f"{veh_zh}要行驶{d}公里，每小时行驶{v}公里。"], "需要多少小时？"
    return _Draft(ctx, qn, d / v)


_PERCENTS = (10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90)


@_template("fraction_of", (1, 2), "a percentage or half of a quantity; the rest")
def _fraction_of(c: _Ctx, steps: int) -> _Draft:
    p, q, it = c.person(), c.person(), c.item()
    half = steps == 1 and c.coin(0.25)
    if half:
        a = c.n(c.total(2, c.ri(2, c.maxv // 2)))
        two = c.const(2, "half" if c.en else "一半", reads_as=Fraction(1, 2))
        if c.en:
            ctx, qn = (
                [f"{p} has {a} {it.pl}.", f"{p.He} gives {two} of them to {q}."],
                f"How many {it.pl} does {q} get?",
            )
        else:
            ctx, qn = [f"{p}有{a}{it.cl}{it.zh}，把其中的{two}送给了{q}。"], f"{q}得到了多少{it.cl}？"
        return _Draft(ctx, qn, a / two)
    pv = c.pick(*_PERCENTS)
    unit = Fraction(pv, 100).denominator
    av = c.ri(1, c.maxv // unit) * unit
    a, pc = c.n(av), c.pct(pv)
    rest = steps == 2
    if c.en:
        ctx, qn = c.pick(
            ([f"There are {a} students in a class.", f"{pc}% of them are girls."],
             "How many boys are in the class?" if rest else "How many girls are in the class?"),
            ([f"{p} had {a} {it.pl} and gave {pc}% of them to {q}."],
             f"How many {it.pl} does {p} have left?" if rest else f"How many {it.pl} did {q} get?"),
            ([f"A farm has {a} animals.", f"{pc}% of them are sheep, and the rest are cows."],
             "How many cows are on the farm?" if rest else "How many sheep are on the farm?"),
        )  # fmt: skip
    else:
        ctx, qn = c.pick(
            ([f"班里有{a}名学生，其中女生占{pc}%。"], "男生有多少名？" if rest else "女生有多少名？"),
            ([f"{p}有{a}{it.cl}{it.zh}，把其中的{pc}%送给了{q}。"],
             f"{p}还剩多少{it.cl}？" if rest else f"{q}得到了多少{it.cl}？"),
            ([f"农场里有{a}只动物，其中{pc}%是羊，其余的是牛。"], "农场里有多少头牛？" if rest else "农场里有多少只羊？"),
        )  # fmt: skip
    return _Draft(ctx, qn, a * (c.const(1) - pc) if rest else a * pc)


def _bill(c: _Ctx, cost: int) -> int:
    bills = [b for b in (10, 20, 50, 100, 200, 500) if cost < b <= c.maxv]
    if not bills:
        raise _Retry
    return c.pick(*bills[:2])


@_template("pay_change", (2,), "buy n at p each, pay with a note, change")
def _pay_change(c: _Ctx, steps: int) -> _Draft:
    p, g = c.person(), c.item(_GOODS)
    nv, pv = c.ri(2, 9), c.ri(2, 20)
    n, pr, m = c.n(nv), c.n(pv), c.n(_bill(c, nv * pv))
    if c.en:
        ctx, qn = c.pick(
            ([f"{p} buys {n} {g.pl} at ${pr} each.", f"{p.He} pays with a ${m} bill."],
             f"How much change does {p.he} get?"),
            ([f"{g.Pl} cost ${pr} each.", f"{p} pays ${m} for {n} of them."],
             f"How much change should {p.he} get back?"),
        )  # fmt: skip
    else:
        ctx, qn = c.pick(
            ([f"{p}买了{n}{g.cl}{g.zh}，每{g.cl}{pr}元。", f"{p.ta}付给售货员{m}元。"], "应找回多少元？"),
            ([f"{g.zh}每{g.cl}{pr}元，{p}买了{n}{g.cl}，付了{m}元。"], "应找回多少元？"),
        )  # fmt: skip
    return _Draft(ctx, qn, m - n * pr)


@_template("two_purchases", (3, 4), "a at p each and b at q each; total, or change from a note")
def _two_purchases(c: _Ctx, steps: int) -> _Draft:
    p, g1, g2 = c.person(), c.item(_GOODS), c.item(_GOODS)
    av, pv, bv, qv = c.ri(2, 6), c.ri(2, 15), c.ri(2, 6), c.ri(2, 15)
    a, p1, b, p2 = c.n(av), c.n(pv), c.n(bv), c.n(qv)
    total = a * p1 + b * p2
    change = steps == 4
    m = c.n(_bill(c, av * pv + bv * qv)) if change else None
    if c.en:
        ctx = c.pick(
            [f"{p} buys {a} {g1.pl} at ${p1} each and {b} {g2.pl} at ${p2} each."],
            [
                f"{p} buys {a} {g1.pl} for ${p1} each.",
                f"{p.He} also buys {b} {g2.pl} for ${p2} each.",
            ],
        )
        if change:
            ctx = ctx + [f"{p.He} pays with a ${m} bill."]
        if change:
            qn = f"How much change does {p.he} receive?"
        else:
            qn = f"How much does {p.he} spend in total?"
    else:
        ctx = c.pick(
            [f"{p}买了{a}{g1.cl}{g1.zh}，每{g1.cl}{p1}元，又买了{b}{g2.cl}{g2.zh}，每{g2.cl}{p2}元。"],
            [
                f"{p}买了{a}{g1.cl}{g1.zh}和{b}{g2.cl}{g2.zh}。",
                f"{g1.zh}每{g1.cl}{p1}元，{g2.zh}每{g2.cl}{p2}元。",
            ],
        )
        if change:
            ctx = ctx + [f"{p.ta}付了{m}元。"]
        qn = "应找回多少元？" if change else f"{p}共花了多少元？"
    return _Draft(ctx, qn, m - total if change else total)


@_template("unit_price", (2,), "n cost T; what do m cost")
def _unit_price(c: _Ctx, steps: int) -> _Draft:
    p, g = c.person(), c.item(_GOODS)
    nv, uv = c.ri(2, 9), c.ri(2, 20)
    tv = c.total(nv, uv, inexact_ok=True)
    if tv > c.maxv:
        raise _Retry
    mv = c.ri(2, 12)
    if mv == nv:
        raise _Retry
    n, t, m = c.n(nv), c.n(tv), c.n(mv)
    fen, fzh = c.pick(*_FRUIT_BY_WEIGHT)
    if c.en:
        ctx, qn = c.pick(
            ([f"{n} {g.pl} cost ${t}."], f"How much do {m} {g.pl} cost?"),
            ([f"{p} paid ${t} for {n} {g.pl}."],
             f"At the same price, how much would {m} {g.pl} cost?"),
            ([f"{n} kg of {fen} cost ${t}."], f"How much do {m} kg of {fen} cost?"),
        )  # fmt: skip
    else:
        ctx, qn = c.pick(
            ([f"{n}{g.cl}{g.zh}共{t}元。"], f"照这样计算，买{m}{g.cl}需要多少元？"),
            ([f"{p}买{n}{g.cl}{g.zh}花了{t}元。"], f"买同样的{g.zh}{m}{g.cl}要多少元？"),
            ([f"{n}公斤{fzh}{t}元。"], f"买{m}公斤{fzh}需要多少元？"),
        )  # fmt: skip
    return _Draft(ctx, qn, t / n * m)


@_template("work_rate", (2, 3), "rate x hours a day x days; two machines")
def _work_rate(c: _Ctx, steps: int) -> _Draft:
    p = c.person()
    h, d = None, None
    if steps == 2:
        r = c.n(c.ri(5, min(c.maxv, 60)))
        h, d = c.n(c.ri(2, 8)), c.n(c.ri(2, 7))
        if c.en:
            ctx, qn = c.pick(
                ([f"A machine makes {r} toys per hour.", f"It runs {h} hours a day."],
                 f"How many toys does it make in {d} days?"),
                ([f"{p} reads {r} pages per hour and reads for {h} hours every day."],
                 f"How many pages does {p.he} read in {d} days?"),
            )  # fmt: skip
        else:
            ctx, qn = c.pick(
                ([f"机器每小时生产{r}个玩具，每天工作{h}小时。"], f"{d}天共生产多少个玩具？"),
                ([f"{p}每小时看{r}页书，每天看{h}小时。"], f"{d}天共看多少页？"),
            )  # fmt: skip
        return _Draft(ctx, qn, r * h * d)
    r1, r2 = c.n(c.ri(5, min(c.maxv, 40))), c.n(c.ri(5, min(c.maxv, 40)))
    h, d = c.n(c.ri(2, 8)), c.n(c.ri(2, 7))
    if c.en:
        ctx = [
            f"Machine A makes {r1} toys per hour and machine B makes {r2} toys per hour.",
            f"Both machines run {h} hours a day.",
        ]
        qn = f"How many toys do they make together in {d} days?"
    else:
        ctx = [f"甲机器每小时生产{r1}个玩具，乙机器每小时生产{r2}个玩具。", f"它们每天都工作{h}小时。"]
        qn = f"{d}天它们共生产多少个玩具？"
    return _Draft(ctx, qn, (r1 + r2) * h * d)


@_template("savings", (2, 3, 4), "saving s a week for w weeks, starting money, spending")
def _savings(c: _Ctx, steps: int) -> _Draft:
    p = c.person()
    sv, wv = c.ri(2, 20), c.ri(2, 10)
    variant = c.pick("spend", "start") if steps == 2 else ("both" if steps == 3 else "books")
    s, w = c.n(sv), c.n(wv)
    if variant == "spend":
        cost = c.n(c.ri(2, min(c.maxv, sv * wv - 1)))
        if c.en:
            ctx = [
                f"{p} saves ${s} every week.",
                f"After {w} weeks, {p.he} spends ${cost} on a gift.",
            ]
            qn = f"How much money does {p.he} have left?"
        else:
            ctx = [f"{p}每周存{s}元，存了{w}周。", f"然后{p.ta}用{cost}元买了礼物。"]
            qn = f"{p}还剩多少元？"
        return _Draft(ctx, qn, s * w - cost)
    a = c.n(c.ri(2, c.maxv))
    if variant == "start":
        if c.en:
            ctx = [
                f"{p} has ${a} in {p.his} piggy bank.",
                f"{p.He} adds ${s} every week for {w} weeks.",
            ]
            qn = "How much money is in the piggy bank now?"
        else:
            ctx = [f"{p}的存钱罐里有{a}元。", f"{p.ta}每周再存入{s}元，存了{w}周。"]
            qn = "存钱罐里现在有多少元？"
        return _Draft(ctx, qn, a + s * w)
    have = int(a.value) + sv * wv
    if variant == "both":
        cost = c.n(c.ri(2, min(c.maxv, have - 1)))
        if c.en:
            ctx = [
                f"{p} has ${a} in {p.his} piggy bank.",
                f"{p.He} saves ${s} more every week for {w} weeks.",
                f"Then {p.he} spends ${cost} on a bike helmet.",
            ]
        else:
            ctx = [f"{p}的存钱罐里原有{a}元。", f"{p.ta}每周存入{s}元，连续存了{w}周。", f"后来{p.ta}花{cost}元买了头盔。"]
        qn = f"How much money does {p.he} have left?" if c.en else "存钱罐里还剩多少元？"
        return _Draft(ctx, qn, a + s * w - cost)
    nv = c.ri(2, 6)
    each = c.n(c.ri(2, min(c.maxv, (have - 1) // nv)))
    nb = c.n(nv)
    if c.en:
        ctx = [
            f"{p} has ${a} in {p.his} piggy bank.",
            f"{p.He} saves ${s} more every week for {w} weeks.",
            f"Then {p.he} buys {nb} books at ${each} each.",
        ]
        qn = f"How much money does {p.he} have left?"
    else:
        ctx = [f"{p}的存钱罐里原有{a}元。", f"{p.ta}每周存入{s}元，连续存了{w}周。", f"后来{p.ta}买了{nb}本书，每本{each}元。"]
        qn = "存钱罐里还剩多少元？"
    return _Draft(ctx, qn, a + s * w - nb * each)


@_template("share_after_change", (2, 3), "change a count, then share it equally")
def _share_after_change(c: _Ctx, steps: int) -> _Draft:
    p, q, it = c.person(), c.person(), c.item()
    kv = c.ri(2, 9)
    tv = c.total(kv, c.ri(2, c.maxv // kv))
    k = c.n(kv)
    if steps == 2 and c.coin():  # buys more, then shares
        bv = c.ri(2, tv - 2)
        a, b = c.n(tv - bv), c.n(bv)
        if c.en:
            ctx = [
                f"{p} has {a} {it.pl} and buys {b} more.",
                f"{p.He} shares all of them equally among {k} friends.",
            ]
            qn = f"How many {it.pl} does each friend get?"
        else:
            ctx = [f"{p}有{a}{it.cl}{it.zh}，又买来{b}{it.cl}。", f"{p.ta}把这些{it.zh}平均分给{k}个小朋友。"]
            qn = f"每个小朋友分到多少{it.cl}？"
        return _Draft(ctx, qn, (a + b) / k)
    if steps == 2:  # keeps some, shares the rest
        bv = c.ri(2, c.maxv - tv)
        a, b = c.n(tv + bv), c.n(bv)
        if c.en:
            ctx = [
                f"{p} has {a} {it.pl} and keeps {b} of them.",
                f"{p.He} shares the rest equally among {k} friends.",
            ]
            qn = f"How many {it.pl} does each friend get?"
        else:
            ctx = [f"{p}有{a}{it.cl}{it.zh}，自己留下{b}{it.cl}。", f"剩下的平均分给{k}个小朋友。"]
            qn = f"每个小朋友分到多少{it.cl}？"
        return _Draft(ctx, qn, (a - b) / k)
    cv, bv = c.ri(2, 30), c.ri(2, 30)
    av = tv + cv - bv
    if not 2 <= av <= c.maxv:
        raise _Retry
    a, b, cc = c.n(av), c.n(bv), c.n(cv)
    if c.en:
        ctx = [f"{p} has {a} {it.pl}.", f"{p.He} buys {b} more and gives {cc} to {q}.",
               f"{p.He} puts the rest into {k} boxes, the same number in each box."]  # fmt: skip
        qn = f"How many {it.pl} are in each box?"
    else:
        ctx = [f"{p}有{a}{it.cl}{it.zh}，又买来{b}{it.cl}，送给{q}{cc}{it.cl}。", f"剩下的平均装进{k}个盒子。"]
        qn = f"每个盒子装多少{it.cl}？"
    return _Draft(ctx, qn, (a + b - cc) / k)


@_template("boxes_sold", (2, 3), "boxes x per box, sold some, repack the rest")
def _boxes_sold(c: _Ctx, steps: int) -> _Draft:
    it = c.item()
    av, bv = c.ri(2, 12), c.ri(2, min(c.maxv, 30))
    have = av * bv
    if steps == 2:
        cv = c.ri(2, min(c.maxv, have - 1))
    else:
        dv = c.ri(2, 9)
        rest = c.total(dv, c.ri(1, (have - 2) // dv))
        cv = have - rest
        if not 2 <= cv <= c.maxv:
            raise _Retry
    a, b, sold = c.n(av), c.n(bv), c.n(cv)
    if c.en:
        ctx = [
            f"A store has {a} boxes of {it.pl} with {b} {it.pl} in each box.",
            f"It sells {sold} {it.pl}.",
        ]
        qn = f"How many {it.pl} are left?"
    else:
        ctx = [f"商店运来{a}箱{it.zh}，每箱{b}{it.cl}。", f"卖出了{sold}{it.cl}。"]
        qn = f"还剩多少{it.cl}？"
    if steps == 2:
        return _Draft(ctx, qn, a * b - sold)
    d = c.n(dv)
    if c.en:
        ctx.append(f"The rest are packed into bags of {d}.")
        qn = "How many bags are needed?"
    else:
        ctx.append(f"剩下的{it.zh}每袋装{d}{it.cl}。")
        qn = "可以装多少袋？"
    return _Draft(ctx, qn, (a * b - sold) / d)


@_template("rectangle", (1, 2, 3), "area, perimeter, cost of fencing or paving")
def _rectangle(c: _Ctx, steps: int) -> _Draft:
    wv = c.ri(2, min(c.maxv - 1, 40))
    lv = c.ri(wv + 1, min(c.maxv, 60))
    ln, wd = c.n(lv), c.n(wv)
    two = c.const(2)
    kind = {1: "area", 2: c.pick("perimeter", "paving"), 3: "fence"}[steps]
    en_q = {
        "area": "What is its area in square meters?",
        "perimeter": "What is its perimeter in meters?",
    }
    zh_q = {"area": "它的面积是多少平方米？", "perimeter": "它的周长是多少米？"}
    if c.en:
        ctx = [f"A rectangular garden is {ln} meters long and {wd} meters wide."]
    else:
        ctx = [f"长方形花园长{ln}米，宽{wd}米。"]
    if kind in en_q:
        qn = en_q[kind] if c.en else zh_q[kind]
        return _Draft(ctx, qn, ln * wd if kind == "area" else (ln + wd) * two)
    pr = c.n(c.ri(2, 20))
    if kind == "paving":
        ctx.append(f"Paving costs ${pr} per square meter." if c.en else f"铺地砖每平方米需要{pr}元。")
        qn = "How much does it cost to pave the whole garden?" if c.en else "铺满这个花园需要多少元？"
        return _Draft(ctx, qn, ln * wd * pr)
    ctx.append(f"A fence costs ${pr} per meter." if c.en else f"围栏每米{pr}元。")
    qn = "How much does it cost to put a fence around the garden?" if c.en else "给花园围上围栏需要多少元？"
    return _Draft(ctx, qn, (ln + wd) * two * pr)


@_template("average", (2, 3, 4), "average of 2-4 scores or daily amounts")
def _average(c: _Ctx, steps: int) -> _Draft:
    p = c.person()
    count = steps  # n values: n-1 additions and one division
    scores = c.coin()
    lo, hi = (max(2, c.maxv // 2), c.maxv) if scores else (5, min(c.maxv, 60))
    vals = [c.ri(lo, hi) for _ in range(count)]
    if c.config.integer_answers_only or c.coin():
        vals[-1] -= sum(vals) % count
        if vals[-1] < lo:
            vals[-1] += count
        if vals[-1] > hi:
            raise _Retry
    n = c.n(count)
    nodes = [c.n(v) for v in vals]
    expr: _Gold = nodes[0]
    for node in nodes[1:]:
        expr = expr + node
    expr = expr / n
    if c.en:
        if scores:
            ctx = [f"{p} scored {_en_list([str(x) for x in nodes])} points in {n} tests."]
            qn = f"What is {p.his} average score?"
        else:
            ctx = [f"In {n} days, {p} read {_en_list([str(x) for x in nodes])} pages."]
            qn = f"On average, how many pages did {p.he} read per day?"
    else:
        if scores:
            parts = [f"{x}分" for x in nodes]
            ctx = [f"{p}在{n}次测验中分别得了{'、'.join(parts[:-1])}和{parts[-1]}。"]
            qn = f"{p.ta}平均每次得多少分？"
        else:
            parts = [f"{x}页" for x in nodes]
            ctx = [f"{p}{n}天分别看了{'、'.join(parts[:-1])}和{parts[-1]}书。"]
            qn = "平均每天看多少页？"
    return _Draft(ctx, qn, expr)


@_template("trip_remaining", (2, 4), "road length minus distance ridden at given speeds")
def _trip_remaining(c: _Ctx, steps: int) -> _Draft:
    p = c.person()
    legs = [(c.ri(3, min(15, c.maxv // 5)), c.ri(2, 3)) for _ in range(1 if steps == 2 else 2)]
    done = sum(v * t for v, t in legs)
    dv = c.ri(done + 1, c.maxv)
    d = c.n(dv)
    nodes = [(c.n(v), c.n(t)) for v, t in legs]
    expr: _Gold = d
    for v, t in nodes:
        expr = expr - v * t
    if c.en:
        town1, town2 = c.rng.sample(_TOWNS, 2)
        ride = f"{p} rides a bike at {nodes[0][0]} km per hour for {nodes[0][1]} hours"
        if len(nodes) == 2:
            ride += f", then at {nodes[1][0]} km per hour for {nodes[1][1]} hours"
        ctx = [f"The road from {town1} to {town2} is {d} km long.", f"Starting at {town1}, {ride}."]
        qn = f"How many kilometers does {p.he} still have to ride?"
    else:
        ride = f"{p}骑自行车从甲地出发，以每小时{nodes[0][0]}公里的速度骑了{nodes[0][1]}小时"
        if len(nodes) == 2:
            ride += f"，又以每小时{nodes[1][0]}公里的速度骑了{nodes[1][1]}小时"
        ctx = [f"甲地到乙地的公路长{d}公里。", ride + "。"]
        qn = "这时离乙地还有多少公里？"
    return _Draft(ctx, qn, expr)


@_template("reading_pages", (2, 3, 4), "pages left after reading; days to finish")
def _reading_pages(c: _Ctx, steps: int) -> _Draft:
    p = c.person()
    rv, dv = c.ri(3, 12), c.ri(2, 6)
    read = rv * dv
    if steps == 2:
        P, r, d = c.n(c.ri(read + 1, c.maxv)), c.n(rv), c.n(dv)
        if c.en:
            ctx, qn = (
                [f"A book has {P} pages.", f"{p} reads {r} pages a day for {d} days."],
                "How many pages are left to read?",
            )
        else:
            ctx, qn = [f"这本书共有{P}页。", f"{p}每天看{r}页，看了{d}天。"], "还剩多少页没看？"
        return _Draft(ctx, qn, P - r * d)
    if steps == 3:
        r2v = c.ri(3, 15)
        pv = read + c.total(r2v, c.ri(1, (c.maxv - read) // r2v))
        if pv > c.maxv:
            raise _Retry
        P, r, d, r2 = c.n(pv), c.n(rv), c.n(dv), c.n(r2v)
        if c.en:
            ctx = [
                f"A book has {P} pages.",
                f"{p} reads {r} pages a day for {d} days.",
                f"Then {p.he} reads {r2} pages a day.",
            ]
            qn = f"How many more days does {p.he} need to finish the book?"
        else:
            ctx = [f"这本书共有{P}页。", f"{p}每天看{r}页，看了{d}天。", f"剩下的每天看{r2}页。"]
            qn = "还要多少天才能看完？"
        return _Draft(ctx, qn, (P - r * d) / r2)
    r2v, d2v = c.ri(3, 12), c.ri(2, 5)
    P = c.n(c.ri(read + r2v * d2v + 1, c.maxv))
    r, d, r2, d2 = c.n(rv), c.n(dv), c.n(r2v), c.n(d2v)
    if c.en:
        ctx = [
            f"A book has {P} pages.",
            f"{p} reads {r} pages a day for {d} days, then {r2} pages a day for {d2} days.",
        ]
        qn = "How many pages are left to read?"
    else:
        ctx = [f"这本书共有{P}页。", f"{p}先每天看{r}页，看了{d}天，又每天看{r2}页，看了{d2}天。"]
        qn = "还剩多少页没看？"
    return _Draft(ctx, qn, P - r * d - r2 * d2)


# =============================================================================== distractors
def _distractor(c: _Ctx) -> tuple[str, _Num]:
    """A sentence carrying one irrelevant number."""
    kind = c.rng.randrange(5)
    p = c.people[0] if c.people else c.person()
    if kind == 0:
        d = c.n(c.ri(6, min(c.maxv, 12)))
        return (f"{p} is {d} years old." if c.en else f"{p}今年{d}岁。"), d
    if kind == 1:
        d = c.n(c.ri(5, min(c.maxv, 35)))
        return (f"It is {d} degrees outside today." if c.en else f"今天的气温是{d}摄氏度。"), d
    if kind == 2:
        q, it = c.person(), c.item()
        d = c.n(c.ri(2, c.maxv))
        return (f"{q} has {d} {it.pl}." if c.en else f"{q}有{d}{it.cl}{it.zh}。"), d
    if kind == 3:
        d = c.n(c.ri(5, min(c.maxv, 30)))
        return (f"{p} lives {d} minutes from school." if c.en else f"{p}家离学校步行要{d}分钟。"), d
    d = c.n(c.ri(2, min(c.maxv, 30)))
    return (f"The town library opened {d} years ago." if c.en else f"镇上的图书馆已经开了{d}年。"), d
