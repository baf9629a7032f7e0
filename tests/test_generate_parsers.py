"""distill.generate: every parser on hand-written completions (realistic, base-model run-ons and
malformed ones), the prompt templates (chat and base rendering, demos from training splits,
masking), the strategies' call sequences (KPDD in three, two and one calls; FLTT's format fix)
and the config."""

from __future__ import annotations

import pytest

from distill.quantities import mask_question
from distill.records import make_problem
from distill.generate import GenerateConfig, strategy_names
from distill.generate.parsers import (
    parse_core_question,
    parse_cot,
    parse_equation,
    parse_information,
    parse_key_points,
    parse_kpdd_one_call,
    parse_new_problem,
    parse_program,
)
from distill.generate.strategies import get_strategy
from distill.generate.templates import TemplateError, load_template, template_names

# ------------------------------------------------------------------------------------ CoT
COT = [
    ("Natalia sold 48 / 2 = 24 clips in May.\nAltogether she sold 48 + 24 = 72 clips.\n"
     "The answer is: 72", "72", "marker"),
    ("She makes 9 * 2 = $18 every day.\nThe answer is $18.", "$18", "marker"),
    ("Step 1: 5 + 3 = 8.\nThe final answer is 8 apples.", "8 apples", "marker"),
    ("So the total is 1,200 + 300 = 1,500.\n#### 1,500", "1,500", "marker"),
    ("Thus the area is $\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}", "boxed"),
    ("We get \\boxed{42}", "42", "boxed"),
    ("Final answer: 0.75", "0.75", "marker"),
    ("答案是：36", "36", "marker"),
    # markers: the LAST one wins (a model that corrects itself)
    ("The answer is: 10\nWait, I forgot the tax. 10 + 2 = 12.\nThe answer is: 12", "12", "marker"),
    # a marker line that is not a number by itself: its last number
    ("The answer is 5 + 3 = 8 boxes in total, counting both", "8", "marker_line"),
    # no marker: the last number written in digits
    ("First 3 * 4 = 12, then 12 - 5 = 7", "7", "last_number"),
    # a base model running on into the next few-shot example
    ("5 - 2 = 3 apples are left.\nThe answer is: 3\n\nProblem: Tom has 9 pens and loses 4. "
     "How many are left?\nSolution: 9 - 4 = 5.\nThe answer is: 5", "3", "marker"),
    ("The answer is: yes", "yes", "marker"),
]


@pytest.mark.parametrize("text,answer,source", COT)
def test_parse_cot(text, answer, source):
    p = parse_cot(text)
    assert p.ok, p.reason
    assert p.answer == answer
    assert p.info["answer_from"] == source


@pytest.mark.parametrize("text", [None, "", "   \n ", "I am not sure how to solve this.",
                                  "\n\nProblem: another problem 5"])
def test_parse_cot_unparsable(text):
    p = parse_cot(text)
    assert not p.ok and p.reason


# ------------------------------------------------------------------------------------ PoT
POT = [
    ("```python\nwallet = 100\nans = wallet / 2\n```", "wallet = 100\nans = wallet / 2"),
    ("Here is the program:\n```py\nans = 3 * 4\n```\nIt prints 12.", "ans = 3 * 4"),
    # the python block wins over an earlier bash block
    ("```bash\npip install nothing\n```\n```python\nans = 1 + 1\n```", "ans = 1 + 1"),
    # an unlabelled fence
    ("```\ntotal = 5 * 6\nprint(total)\n```", "total = 5 * 6\nprint(total)"),
    # cut by max_tokens: the fence never closes
    ("```python\ndef solution():\n    return 7 * 8\n", "def solution():\n    return 7 * 8"),
    # no fence at all, but the whole text is Python
    ("Program:\nx = 4\nans = x * 2", "x = 4\nans = x * 2"),
    # base model continuing with the next example after its program
    ("```python\nans = 2 + 2\n```\n\nProblem: Sam has 3 cats.\nProgram:\n```python\nans = 3\n```",
     "ans = 2 + 2"),
]


@pytest.mark.parametrize("text,code", POT)
def test_parse_program(text, code):
    p = parse_program(text)
    assert p.ok, p.reason
    assert p.program == code


@pytest.mark.parametrize("text,why", [
    (None, "empty"),
    ("The answer is 12 because 3 times 4 is 12.", "no code block"),
    ("```python\nans = (3 + \n```", "does not parse"),
    ("```python\n\n```", "empty code block"),
    ("```python\n" + "(" * 300 + "1" + ")" * 300 + "\n```", "does not parse"),
    ("```python\nx = 1\x00\n```", "does not parse"),
])
def test_parse_program_unparsable(text, why):
    p = parse_program(text)
    assert not p.ok and why in p.reason


# ------------------------------------------------------------------------------- equations
EQUATIONS = [
    ("x=(22-14)/4", "x=(22-14)/4"),
    ("Equation: x = 49 - 44", "x = 49 - 44"),
    ("Equation: x=(N0-N1)/N2.", "x=(N0-N1)/N2"),
    ("The equation is:\n$x = 16 \\times 4 \\div 2$", "x = 16 * 4 / 2"),
    ("`x=316+230*(6-1)`", "x=316+230*(6-1)"),
    ("方程：x=28/2", "x=28/2"),
    ("Let me think.\nx = \\frac{3}{4} * 8", "x = ((3)/(4)) * 8"),
    ("Equation: x=5*3\n\nProblem: Another one.\nEquation: x=1", "x=5*3"),
    ("70-x=27", "70-x=27"),
]


@pytest.mark.parametrize("text,equation", EQUATIONS)
def test_parse_equation(text, equation):
    p = parse_equation(text)
    assert p.ok, p.reason
    assert p.equation == equation


@pytest.mark.parametrize("text,candidate", [
    ("Equation: x = 49 - 44 pounds", "x = 49 - 44 pounds"),
    ("X = 316 + 230 × (6 − 1) = 1466", "X = 316 + 230 × (6 − 1) = 1466"),
    ("x = [(22 - 14) / 4", "x = [(22 - 14) / 4"),
])
def test_parse_equation_malformed_keeps_candidate_for_format_fix(text, candidate):
    p = parse_equation(text)
    assert not p.ok
    assert p.equation == candidate
    assert p.info["parse_error"]


def test_parse_equation_empty():
    assert not parse_equation("").ok and parse_equation("").equation is None


# ------------------------------------------------------------------------------------ KPDD
KP_TEXT = ("Core question: How much more money does Betty need?\n"
           "Problem-solving information:\n1. The wallet costs $100.\n2. She has half of it.")


def test_kpdd_sections():
    assert parse_core_question("How many pens does Tom have?\n\nThe rest...").key_points == \
        "How many pens does Tom have?"
    assert parse_core_question("Core question: How many pens?").key_points == "How many pens?"
    assert not parse_core_question("   ").ok
    info = parse_information("Problem-solving information:\n1. a\n2. b\nSolution: 3")
    assert info.key_points == "1. a\n2. b"
    assert not parse_information("").ok
    kp = parse_key_points("Key points:\n" + KP_TEXT)
    assert kp.ok and kp.key_points == KP_TEXT
    assert kp.info["core_question"] == "How much more money does Betty need?"
    assert not parse_key_points("Core question: only this").ok


def test_kpdd_one_call():
    cot = parse_kpdd_one_call(KP_TEXT + "\nSolution:\n100 / 2 = 50. 100 - 50 = 50.\n"
                              "The answer is: 50", "cot")
    assert cot.ok and cot.answer == "50" and cot.key_points == KP_TEXT
    pot = parse_kpdd_one_call(KP_TEXT + "\nProgram:\n```python\nans = 100 - 100 / 2\n```", "pot")
    assert pot.ok and pot.program == "ans = 100 - 100 / 2" and pot.key_points == KP_TEXT
    missing = parse_kpdd_one_call(KP_TEXT, "cot")
    assert not missing.ok and "Solution" in missing.reason and missing.key_points == KP_TEXT
    assert not parse_kpdd_one_call("The answer is: 5", "cot").ok


# ------------------------------------------------------------------------------------- FDD
def test_parse_new_problem():
    p = parse_new_problem("New problem: A baker made 24 muffins and 6 more cookies. "
                          "How many did she bake?\n\nSolution: 24 + 30 = 54")
    assert p.ok and p.question == "A baker made 24 muffins and 6 more cookies. How many did she bake?"
    assert parse_new_problem("Carlos has 3 bikes.\nHow many wheels?").question == \
        "Carlos has 3 bikes. How many wheels?"
    assert not parse_new_problem("New problem:   ").ok
    assert not parse_new_problem(None).ok


# ------------------------------------------------------------------------------- templates
def test_every_strategy_template_loads_and_renders_both_ways():
    problem = make_problem(dataset="t", split="train", source_id=1,
                           question="Tom has 3 boxes with 4 pens in each box. How many pens?",
                           answer="12")
    cfg = GenerateConfig(model="m", engine="hf")
    names = set()
    for name in strategy_names():
        for mode in ("three_calls", "two_calls", "one_call"):
            names.update(get_strategy(name).templates(cfg.model_copy(update={"kpdd_mode": mode})))
    assert names == set(template_names())
    slots = {"question": problem["question"], "masked_question": problem["masked_question"],
             "quantity_list": "N0 = 3, N1 = 4", "core_question": "How many pens?",
             "information": "1. 3 boxes", "key_points": KP_TEXT, "problem": problem["question"],
             "equation": "x = 3 * 4 pens", "error": "unexpected 'pens'"}
    for name in names:
        t = load_template(name)
        assert t.demos, name
        p = t.render(slots)
        assert p.messages[0]["role"] == "system"
        assert [m["role"] for m in p.messages[1:]] == ["user", "assistant"] * len(t.demos) + ["user"]
        assert p.text.startswith(t.instruction)
        assert p.text.rstrip().endswith(t.output_prefix.strip() or "?")
        assert p.stop
        zero = t.render(slots, num_demos=0)
        assert len(zero.messages) == 2


def test_masked_demos_are_masked_like_inputs():
    t = load_template("fltt_masked_equation")
    for demo in t.demos:
        masked, _ = mask_question(demo.vars["question"])
        assert masked in t.render({"masked_question": "Q N0?"}).text
        assert masked.count("N0") >= 1


def test_base_prompt_shape_and_missing_slot():
    t = load_template("cot")
    p = t.render({"question": "Ann has 5 apples and eats 2. How many are left?"}, num_demos=1)
    assert p.text.endswith("Problem: Ann has 5 apples and eats 2. How many are left?\nSolution:")
    assert "\nSolution: Betty has half of $100" in p.text
    with pytest.raises(TemplateError, match="question"):
        t.render({})


def test_user_prompts_dir_overrides_and_falls_back(tmp_path):
    (tmp_path / "cot.yaml").write_text(
        'description: mine\ninput: "Q: {{question}}"\noutput_prefix: "A:"\nstop: ["\\nQ:"]\n'
        'demos:\n  - vars: {question: "1+1?"}\n    output: "The answer is: 2"\n')
    assert load_template("cot", tmp_path).render({"question": "2+2?"}).text == \
        "Q: 1+1?\nA: The answer is: 2\n\nQ: 2+2?\nA:"
    assert load_template("pot", tmp_path).name == "pot"
    (tmp_path / "bad.yaml").write_text("input: x\nsurprise: 1\n")
    with pytest.raises(TemplateError, match="surprise"):
        load_template("bad", tmp_path)


# ------------------------------------------------------------------------------ strategies
PROBLEM = {"id": "t/1", "question": "Tom has 3 boxes with 4 pens in each box. How many pens?",
           "masked_question": "Tom has N0 boxes with N1 pens in each box. How many pens?",
           "quantities": ["3", "4"], "answer": "12", "answer_raw": "12", "lang": "en"}


def _drive(strategy, config, replies):
    calls = []
    for _ in range(5):
        call = strategy.next_call(PROBLEM, calls, config)
        if call is None:
            break
        calls.append({"step": call.step, "template": call.template, "completion": replies[call.step],
                      "variables": dict(call.variables)})
    return calls


def test_kpdd_three_two_and_one_calls():
    replies = {"core_question": "How many pens does Tom have?",
               "information": "1. Tom has 3 boxes.\n2. Each box holds 4 pens.",
               "key_points": "Core question: How many pens does Tom have?\n"
                             "Problem-solving information:\n1. Tom has 3 boxes.\n2. Each box holds 4 pens.",
               "solve": "3 * 4 = 12.\nThe answer is: 12"}
    expected_kp = replies["key_points"]
    s = get_strategy("kpdd_cot")
    base = GenerateConfig(model="m", engine="hf", strategy="kpdd_cot")
    three = _drive(s, base, replies)
    assert [c["step"] for c in three] == ["core_question", "information", "solve"]
    assert three[1]["variables"]["core_question"] == "How many pens does Tom have?"
    assert three[2]["variables"]["key_points"] == expected_kp
    p = s.parse(PROBLEM, three, base)
    assert p.ok and p.answer == "12" and p.key_points == expected_kp
    two_cfg = base.model_copy(update={"kpdd_mode": "two_calls"})
    two = _drive(s, two_cfg, replies)
    assert [c["step"] for c in two] == ["key_points", "solve"]
    assert s.parse(PROBLEM, two, two_cfg).key_points == expected_kp
    one_cfg = base.model_copy(update={"kpdd_mode": "one_call"})
    one = _drive(s, one_cfg, {"solve": expected_kp + "\nSolution:\n3 * 4 = 12\nThe answer is: 12"})
    assert [c["template"] for c in one] == ["kpdd_cot_one_call"]
    assert s.parse(PROBLEM, one, one_cfg).answer == "12"
    # an empty core question ends the row early, and parse says why
    broken = _drive(s, base, {**replies, "core_question": "  "})
    assert [c["step"] for c in broken] == ["core_question"]
    assert "core question" in s.parse(PROBLEM, broken, base).reason


def test_fltt_format_fix_only_when_the_equation_does_not_parse():
    s = get_strategy("fltt_equation")
    cfg = GenerateConfig(model="m", engine="hf", strategy="fltt_equation")
    good = _drive(s, cfg, {"equation": "Equation: x=3*4"})
    assert [c["step"] for c in good] == ["equation"]
    bad = _drive(s, cfg, {"equation": "Equation: x = 3 * 4 pens", "format_fix": "Equation: x=3*4"})
    assert [c["step"] for c in bad] == ["equation", "format_fix"]
    fix_vars = bad[1]["variables"]
    assert fix_vars["equation"] == "x = 3 * 4 pens" and "pens" in fix_vars["error"]
    assert fix_vars["problem"] == PROBLEM["question"]
    p = s.parse(PROBLEM, bad, cfg)
    assert p.ok and p.equation == "x=3*4" and p.info["format_fixed"]
    off = cfg.model_copy(update={"format_fix": False})
    assert [c["step"] for c in _drive(s, off, {"equation": "x = 3 * 4 pens"})] == ["equation"]
    nothing = _drive(s, cfg, {"equation": ""})  # nothing to repair
    assert len(nothing) == 1
    masked = get_strategy("fltt_masked_equation")
    mcfg = cfg.model_copy(update={"strategy": "fltt_masked_equation"})
    fixed = _drive(masked, mcfg, {"equation": "x = N0 * N1 pens", "format_fix": "x=N0*N1"})
    assert fixed[1]["variables"]["problem"] == PROBLEM["masked_question"]


def test_config_validation_and_fingerprint():
    with pytest.raises(ValueError, match="valid names: cot"):
        GenerateConfig(model="m", strategy="tot")
    with pytest.raises(ValueError, match="valid names: hf, openai, vllm"):
        GenerateConfig(model="m", engine="sglang")
    with pytest.raises(ValueError, match="http"):
        GenerateConfig(model="m", openai={"base_url": "localhost:8000"})
    with pytest.raises(ValueError):
        GenerateConfig(model="m", unknown_key=1)
    a = GenerateConfig(model="m", strategy="pot")
    same = {"batch_size": 3, "stop_after_failures": None, "vllm": {"concurrency": 4},
            "openai": {"base_url": "http://10.0.0.1:9000/v1", "timeout_s": 5.0, "max_retries": 0}}
    assert a.fingerprint() == GenerateConfig(model="m", strategy="pot", **same).fingerprint()
    for change in ({"model": "other"}, {"samples": 5}, {"rel_tol": 1e-3}):
        assert a.fingerprint() != a.model_copy(update=change).fingerprint(), change
    kp = GenerateConfig(model="m", strategy="kpdd_pot")
    assert kp.fingerprint() != kp.model_copy(update={"kpdd_mode": "one_call"}).fingerprint()
