"""FLTT refinement, the pure core: pool, acceptance, choice, merge, gold equivalence; the
config rule; the run report's refusal. A round end to end (from a copy of the pipeline tests'
reference run, then stopped inside the round and resumed) is in tests/test_pipeline.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from distill.refine.config import RefineConfig
from distill.refine.core import (
    accepted_labels,
    choose_label,
    doubtful_reasons,
    failure_pool,
    label_of_output,
    merge_labels,
    same_function,
)

REPO = Path(__file__).resolve().parents[1]
CONSTANTS = ["1", "2", "3.14", "100"]


def _search_row(pid: str, rank: int, score: float, unused: int = 0, matches: int = 3,
                verdict: str = "correct") -> dict:
    meta = {"n_matches": matches, "rank": rank, "score": score, "features": {"unused": unused}}
    return {"id": pid, "sample_idx": rank, "verdict": verdict, "meta": json.dumps(meta)}


def test_doubtful_labels_by_matches_margin_and_unused_quantities():
    cfg = RefineConfig(doubtful_matches=10, doubtful_margin=0.5, doubtful_unused=True)
    clear = [_search_row("a", 0, 3.0), _search_row("a", 1, 1.0)]
    assert doubtful_reasons(clear, cfg) == []
    close = [_search_row("a", 0, 3.0, matches=12), _search_row("a", 1, 2.8)]
    assert doubtful_reasons(close, cfg) == ["many_matches", "small_margin"]
    assert doubtful_reasons([_search_row("a", 0, 3.0, unused=1)], cfg) == ["unused_quantity"]
    off = RefineConfig(doubtful_matches=None, doubtful_margin=None, doubtful_unused=False)
    assert doubtful_reasons(close + [_search_row("a", 2, 0.0, unused=2)], off) == []


def test_the_failure_pool_is_the_unlabelled_and_the_doubtful():
    problems = [{"id": i} for i in ("a", "b", "c")]
    rationales = [_search_row("a", 0, 3.0), _search_row("a", 1, 0.0),
                  _search_row("b", 0, 3.0), _search_row("b", 1, 2.9)]
    labels = {"a": ["x = N0 + N1"], "b": ["x = N0 * N1"]}
    assert failure_pool(problems, labels, rationales, RefineConfig()) == {
        "b": ["small_margin"], "c": ["unlabelled"]}


def test_a_candidate_is_accepted_only_when_it_gives_the_answer_from_allowed_parts():
    problem = {"quantities": ["3", "4"], "answer": "7"}
    assert label_of_output("+ N0 N1", problem, CONSTANTS) == "x = N0 + N1"
    assert label_of_output("- * N0 N1 + N0 2", problem, CONSTANTS) == "x = N0 * N1 - (N0 + 2)"
    assert label_of_output("* N0 N1", problem, CONSTANTS) is None        # 12, not 7
    assert label_of_output("+ N0 N2", problem, CONSTANTS) is None        # no N2
    assert label_of_output("+ N0 + N1 0", problem, CONSTANTS) is None    # 0 is no constant
    assert label_of_output("+ N0", problem, CONSTANTS) is None           # not an equation
    votes = accepted_labels(["+ N0 N1", "+ N1 N0", "+ N0 N1", "* N0 N1"], problem, CONSTANTS)
    assert votes == Counter({"x = N0 + N1": 2, "x = N1 + N0": 1})


def test_the_most_sampled_label_is_chosen_when_it_has_enough_votes():
    votes = Counter({"x = N0 + N1": 2, "x = N1 + N0": 2, "x = N0 * N1 - N0 - 5": 3})
    assert choose_label(votes, 1) == "x = N0 * N1 - N0 - 5"
    assert choose_label(Counter({"x = N0 * 1 + N1": 2, "x = N0 + N1": 2}), 1) == "x = N0 + N1"
    assert choose_label(votes, 4) is None and choose_label(Counter(), 1) is None


def test_labels_merge_by_rule():
    labels = {"a": ["x = N0 + N1"], "b": ["x = N0 * N1"]}
    chosen = {"a": "x = N1 + N0", "b": "x = N0 * N1", "c": "x = N0 - N1"}
    replaced, changed = merge_labels(labels, chosen, "replace")
    assert replaced == {"a": ["x = N1 + N0"], "b": ["x = N0 * N1"], "c": ["x = N0 - N1"]}
    assert changed == 2  # b's label is the one it had
    added, changed = merge_labels(labels, chosen, "add")
    assert added == {"a": ["x = N0 + N1", "x = N1 + N0"], "b": ["x = N0 * N1"],
                     "c": ["x = N0 - N1"]}
    assert changed == 2


def test_gold_equivalence_is_the_same_function_of_the_quantities():
    assert same_function("x = N0 * (N1 + N2)", "x = N0 * N1 + N2 * N0", 3)
    assert not same_function("x = N0 * N1 + N2", "x = N0 * (N1 + N2)", 3)
    assert not same_function("x = N0 / (N1 - N1)", "x = N0", 2)  # division by zero: no


def test_refinement_needs_search_and_a_prefix_student():
    from distill.config import ConfigError, load_config

    cfg = load_config(REPO / "configs" / "quickstart.yaml").model_dump(mode="json")
    cfg["refine"] = {"rounds": 1}
    cfg["train"]["target"] = "equation_infix"
    from distill.config import PipelineConfig

    with pytest.raises(ValueError, match="refine"):
        PipelineConfig.model_validate(cfg)
    assert ConfigError  # (re-exported)


def test_the_run_report_without_a_run_is_refused(tmp_path: Path) -> None:
    from distill.runreport import run_report

    with pytest.raises(FileNotFoundError, match="no run here"):
        run_report(tmp_path)


def test_the_run_report_shows_what_a_language_model_teacher_wrote_and_kept(tmp_path: Path) -> None:
    from distill.runreport import run_report

    (tmp_path / "manifest.json").write_text(json.dumps({"name": "r", "stages": {
        "fdd_1": {"status": "complete", "seconds": 9.5}}}))
    (tmp_path / "fdd_1").mkdir()
    (tmp_path / "fdd_1" / "summary.json").write_text(json.dumps({
        "round": 1, "problems": 120, "easy": 100, "hard": 20, "generated": 31,
        "rejected": {"too_little_agreement": 6, "no_equation_found": 3},
        "accuracy": 0.5, "correct": 15, "n": 30, "seconds": 9.5,
        "teacher": {"fdd_similar": {"rows": 40, "correct": 38, "pass_rate": 0.95},
                    "fdd_harder": {"rows": 100, "correct": 90, "pass_rate": 0.9},
                    "written": 140, "new": 40, "agreed": 34, "kept": 31}}))
    text, by_round = run_report(tmp_path)
    assert "| 1 | 120 | 100 | 20 | 31 | no_equation_found 3, too_little_agreement 6 | 50.0% | 9.5 |" in text
    assert ("Round 1 teacher: fdd_similar 38 of 40 usable; fdd_harder 90 of 100 usable; 40 new, "
            "34 with agreeing solutions, 31 labelled by the search.") in text
    assert by_round == [("fdd 1", 0.5)]


def test_a_round_retrains_from_scratch_or_from_the_last_student(tmp_path: Path, monkeypatch) -> None:
    from distill.refine.stage import retrain_config
    from distill.train.config import TrainConfig

    train = TrainConfig.model_validate({"student": {"kind": "scratch", "architecture": "tree"},
                                        "epochs": 25, "checkpointing": {"name": "student"}})
    fresh = retrain_config(train, "refine_1", None, None)
    assert fresh.student == train.student and fresh.epochs == 25
    assert fresh.checkpointing.name == "student_refine_1"
    last = tmp_path / "epoch_0025"
    last.mkdir()
    (last / "config.json").write_text(json.dumps({"model_type": "mathdistill_tree",
                                                  "is_encoder_decoder": True}))
    tuned = retrain_config(train, "fdd_2", 8, last)
    assert (tuned.student.kind, tuned.student.name_or_path) == ("hf_seq2seq", str(last))
    assert tuned.epochs == 8 and tuned.checkpointing.name == "student_fdd_2"
    assert tuned.target == train.target and tuned.lr == train.lr
    (last / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert retrain_config(train, "refine_2", None, last).student.kind == "hf_causal"
    # a run directory given relatively still names the same folder in the training workers
    monkeypatch.chdir(tmp_path)
    assert retrain_config(train, "r", None, Path("epoch_0025")).student.name_or_path == str(last)
