"""Grammar-constrained decoding of equation students (distill/evaluate/grammar.py).

The grammar itself on text, then the logits processor on untrained tiny students (T5 and a
decoder-only model), whose unconstrained outputs are garbage: every constrained output must
parse, name only the problem's quantities and give an answer or a runtime error, never
``unparsable``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.equations import parse_prefix, placeholders
from distill.evaluate.config import InferenceConfig
from distill.evaluate.grammar import PrefixGrammar
from distill.evaluate.infer import equation_answer, generate, grammars_for, prediction_rows


@pytest.mark.parametrize("text, complete", [
    ("/ + N0 N1 N2", True),
    ("* N0 3.14", True),
    ("neg N1", True),
    ("= + * N0 x N1 N2", True),     # an equation in x
    ("+ N0", False),                 # an operand missing
    ("+ N0 N", False),               # a placeholder half written
    ("", False),
])
def test_well_formed_prefixes_and_whole_expressions(text, complete):
    g = PrefixGrammar(3)
    state = g.state(text)
    assert state.ok and g.complete(state) is complete


@pytest.mark.parametrize("text", [
    "- + N0 N2 N3 N1",   # N3: the problem has 3 quantities
    "+ N0 N1 N2",        # a word after a complete expression
    "+ N0 N1  ",         # even a second space
    "+ x N0",            # x outside an equation
    "+ = N0 N1",         # '=' not first
    "+ N01 N1",          # leading zero
    "+ N0 apples",
    "+ N0\nN1",          # only spaces separate words
    "= N0 N1 ",          # an equation without its unknown
])
def test_texts_that_can_never_be_well_formed(text):
    assert not PrefixGrammar(3).state(text).ok


def test_constants_given_or_any_number():
    assert PrefixGrammar(2, ("1", "100")).state("* N0 100").ok
    assert not PrefixGrammar(2, ("1", "100")).state("* N0 7").ok
    assert PrefixGrammar(2).state("* N0 7.5").ok and not PrefixGrammar(2).state("* N0 7..").ok


def test_operators_only_while_the_tokens_left_can_close_the_expression():
    g = PrefixGrammar(3)
    state = g.state("+ + ")          # three operands missing
    assert g.allows(state, " N0", 2) and not g.allows(state, " N0", 1)
    assert not g.allows(state, " +", 3) and g.allows(state, " +", 4)
    assert not g.allows(g.state("+ N0 "), " ne", 1)  # 'neg' needs one more token, then N
    assert not g.allows(g.state("+ N0 N1"), " N2", 5)  # complete: only the end may follow


def _tiny_equation_student(tmp_path: Path, arch: str) -> tuple[str, list[dict]]:
    from distill.data.synthetic import SyntheticConfig
    from distill.data.synthetic import generate as synth
    from distill.sft.core import build_sft_examples, masked_gold_equations
    from distill.train.config import TrainConfig
    from distill.train.students import get_student

    problems = synth(SyntheticConfig(seed=3, langs=["en"], max_steps=3), "test", n=12)
    for p in problems:
        p["dataset"] = "synthetic:test"
    eqs, _ = masked_gold_equations(problems)
    rows = build_sft_examples(problems, "equation_prefix", equations=eqs).rows
    cfg = TrainConfig.model_validate({"student": {"kind": "scratch", "architecture": arch,
                                                  "preset": "tiny", "vocab_size": 500}})
    texts = lambda: (t for r in rows for t in (r["source_text"], r["target_text"]))  # noqa: E731
    where = get_student("scratch").prepare(cfg.student, texts, tmp_path / arch)
    return str(where), problems


@pytest.mark.parametrize("arch", ["t5", "qwen2"])
def test_an_untrained_student_writes_only_well_formed_equations(tmp_path: Path, arch: str):
    where, problems = _tiny_equation_student(tmp_path, arch)
    sources = [p["masked_question"] for p in problems]
    for config in (InferenceConfig(max_new_tokens=12, batch_size=5),
                   InferenceConfig(max_new_tokens=12, num_samples=3, seed=2),
                   InferenceConfig(max_new_tokens=12, batch_size=5, num_beams=3)):
        free = generate(where, sources, config)
        assert sum(equation_answer(o, p["quantities"])[1] == "unparsable"
                   for outs, p in zip(free, problems) for o in outs) > len(problems) // 2
        constrained = generate(where, sources, config,
                               grammars_for("equation_prefix", problems, config))
        for outs, p in zip(constrained, problems):
            assert len(outs) == config.num_samples
            for text in outs:
                tree = parse_prefix(text)  # raises if not well-formed
                assert all(i < len(p["quantities"]) for i in placeholders(tree)), text
        rows = prediction_rows(problems, constrained, "equation_prefix")
        assert all(r["error"] in (None, "runtime") for r in rows), rows[:3]


def test_grammars_only_for_prefix_equation_students_and_only_when_asked():
    problems = [{"quantities": ["3", "4"]}, {"quantities": []}]
    assert grammars_for("equation_prefix", problems, InferenceConfig()) == [
        PrefixGrammar(2), PrefixGrammar(0)]
    assert grammars_for("equation_prefix", problems,
                        InferenceConfig(constrain_equations=False)) is None
    for target in ("equation_infix", "pot", "cot", "kpdd"):
        assert grammars_for(target, problems, InferenceConfig()) is None
