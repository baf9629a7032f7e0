"""Scoring and the evaluation report; the evaluation stage's actors (device and dtype)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.evaluate import compare, majority_answer, score_problems, summarize, write_report


@pytest.mark.parametrize(
    "answers, expected",
    [
        (["3", "0.5", "1/2", "3"], ("3", 2)),  # tie 2-2: the group seen first
        (["0.5", "1/2", "3"], ("0.5", 2)),  # 0.5 and 1/2 are one vote
        ([None, None], (None, 0)),
        ([None, "7"], ("7", 1)),
        (["10%", "0.1", "0.2"], ("10%", 2)),
    ],
)
def test_majority_answer(answers, expected) -> None:
    assert majority_answer(answers) == expected


def _p(pid, ds, gold, predicted, *, error=None, n_ops=None, sample_idx=0):
    return {"id": pid, "dataset": ds, "gold": gold, "predicted": predicted, "error": error,
            "n_ops": n_ops, "sample_idx": sample_idx}


PREDICTIONS = [
    _p("a/1", "a", "504.0", "504", n_ops=1),
    _p("a/2", "a", "((4)/(7))", "4/7", n_ops=2),
    _p("a/3", "a", "12", "13", n_ops=2),
    _p("b/1", "b", "#### 1,234", None, error="timeout", n_ops=None),
    _p("b/2", "b", "7", None, error=None),
]


def test_score_and_summarize() -> None:
    scored = {r["id"]: r for r in score_problems(PREDICTIONS)}
    assert scored["a/1"]["correct"] and scored["a/2"]["correct"]
    assert scored["a/3"]["error"] == "wrong" and scored["b/1"]["error"] == "timeout"
    assert scored["b/2"]["error"] == "no_answer"
    report = summarize(list(scored.values()))
    assert report["n"] == 5 and report["correct"] == 2 and report["accuracy"] == 0.4
    assert report["per_dataset"] == {
        "a": {"accuracy": round(2 / 3, 6), "n": 3, "correct": 2},
        "b": {"accuracy": 0.0, "n": 2, "correct": 0},
    }
    assert list(report["per_ops"]) == ["1", "2", "unknown"]
    assert report["errors"] == {"wrong": 1, "timeout": 1, "no_answer": 1}
    assert report["decoding"] == "greedy"


def test_majority_vote_over_samples() -> None:
    rows = [_p("p/1", "d", "6", a, sample_idx=i) for i, a in enumerate(["6", "5", "6.0", None, "5"])]
    (scored,) = score_problems(rows)
    assert scored["correct"] and scored["votes"] == 2 and scored["samples"] == 5
    assert summarize([scored])["decoding"] == "maj@5"


def test_one_decoding_per_config_and_its_name_in_the_report() -> None:
    from distill.evaluate.config import InferenceConfig

    with pytest.raises(ValueError, match="not both"):
        InferenceConfig(num_beams=4, num_samples=2)
    (scored,) = score_problems([_p("p/1", "d", "6", "6")])
    assert summarize([scored], num_beams=4)["decoding"] == "beam@4"
    assert summarize([scored])["decoding"] == "greedy"


def test_write_report_with_comparison(tmp_path: Path) -> None:
    report = summarize(score_problems(PREDICTIONS))
    previous = {"accuracy": 0.5, "per_dataset": {"a": {"accuracy": 0.5, "n": 3}}}
    paths = write_report(report, tmp_path, previous=previous)
    on_disk = json.loads(paths["json"].read_text())
    assert on_disk["accuracy"] == 0.4
    assert on_disk["compared_with_previous"] == compare(report, previous)
    assert on_disk["compared_with_previous"]["per_dataset"] == {"a": round(2 / 3 - 0.5, 6)}
    md = paths["md"].read_text()
    assert "Accuracy 40.00%" in md and "| a | 3 | 66.67% | +16.67% |" in md
    for name in ("accuracy_per_dataset", "accuracy_per_ops", "error_kinds"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.ray
def test_evaluation_actors_decode_in_the_configured_dtype(ray_local, tmp_path: Path) -> None:
    """The evaluation stage's Ray Data actors place the student themselves: the inference
    dtype reaches them (bfloat16 gives the outputs a bfloat16 model gives locally) and is
    resolved against the actor's device (float16 on a CPU actor is refused, by name)."""
    from distill.data.synthetic import SyntheticConfig
    from distill.data.synthetic import generate as synth
    from distill.evaluate import EvaluateConfig
    from distill.evaluate.stage import evaluate_student
    from distill.evaluate.config import InferenceConfig
    from distill.train.config import StudentConfig
    from distill.evaluate.infer import generate
    from distill.train.students import get_student

    problems = synth(SyntheticConfig(seed=7, langs=["en"], max_steps=2), "test", n=6)
    texts = lambda: (p["masked_question"] for p in problems)  # noqa: E731
    where = get_student("scratch").prepare(StudentConfig(vocab_size=400), texts, tmp_path / "s")
    # sampled: bfloat16 and float32 models draw different outputs for some problems
    # (and free: the equation grammar narrows the choices so much that the dtypes agree)
    inference = {"max_new_tokens": 8, "num_samples": 2, "temperature": 1.0, "top_p": 1.0,
                 "dtype": "bfloat16", "constrain_equations": False}
    report = evaluate_student(where, {"t": problems}, "equation_prefix",
                              EvaluateConfig(inference=inference, batch_size=1), tmp_path / "ev")
    assert report["n"] == 6 and report["decoding"] == "maj@2"
    rows = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").open()]
    on_ray = [[r["output"] for r in rows if r["id"] == p["id"]] for p in problems]

    def local(dtype: str) -> list[list[str]]:  # one source per call, as the actors got them
        cfg = InferenceConfig(**dict(inference, dtype=dtype))
        return [generate(where, [p["masked_question"]], cfg)[0] for p in problems]

    assert on_ray == local("bfloat16")
    assert on_ray != local("float32")

    with pytest.raises(Exception, match="float16 needs a CUDA device; this process decodes on cpu"):
        evaluate_student(where, {"t": problems}, "equation_prefix",
                         EvaluateConfig(inference={"dtype": "float16"}, batch_size=3),
                         tmp_path / "ev16")
