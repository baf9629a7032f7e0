"""FLTT refinement: the pure core (pool, acceptance, choice, merge) and a small run with one
refinement round end to end, then killed inside the round and resumed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
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


# ------------------------------------------------------------------------------ end to end
def _config(epochs: int = 4):
    from distill.config import load_config

    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    data = cfg.data.model_copy(update={"synthetic": cfg.data.synthetic.model_copy(
        update={"n_train": 64, "n_valid": 8, "n_test": 12, "langs": ["en"], "max_steps": 1})})
    train = cfg.train.model_copy(update={"epochs": epochs, "num_workers": 1, "batch_size": 16,
                                         "log_every_steps": 5})
    # every label with a small ranking margin is doubtful: the pool is not empty
    refine = RefineConfig(rounds=1, candidates=4, doubtful_margin=100.0, epochs=epochs)
    return cfg.model_copy(update={"data": data, "train": train, "refine": refine,
                                  "search": cfg.search.model_copy(update={"max_ops": 2})})


@pytest.mark.ray
def test_a_refinement_round_end_to_end(tmp_path: Path) -> None:
    from distill.equations import parse_prefix
    from distill.evaluate.infer import equation_answer
    from distill.evaluate.student import resolve_student
    from distill.grading import answers_match
    from distill.pipeline import run_pipeline
    from distill.sft.core import equation_target
    from distill.train.stage import final_student

    run = tmp_path / "run"
    manifest = run_pipeline(_config(), run, log=lambda s: None)
    summary = manifest["stages"]["refine_1"]["counts"]
    out = run / "refine_1"
    rows = [json.loads(line) for line in (out / "candidates.jsonl").open()]
    problems = {r["id"]: r for r in pq.read_table(str(run / "data" / "train")).to_pylist()}
    assert summary["pool"] == len(rows) > 0
    assert summary["candidates_tried"] == 4 * len(rows)
    chosen = {r["id"]: r["chosen"] for r in rows if r["chosen"]}
    assert summary["accepted"] == len(chosen) > 0
    for r in rows:
        assert len(r["outputs"]) == 4
        for text in r["outputs"]:
            parse_prefix(text)  # the grammar: every candidate is well-formed
    for pid, label in chosen.items():  # an accepted label gives the problem's answer
        target = equation_target(label, "prefix", len(problems[pid]["quantities"]))
        answer, _ = equation_answer(target, problems[pid]["quantities"])
        assert answers_match(answer, problems[pid]["answer"]), (pid, label)
    labels = json.loads((out / "labels.json").read_text())
    for pid, label in chosen.items():
        assert labels[pid] == [label]  # rule: replace
    examples = pq.read_table(str(out / "examples.parquet")).to_pylist()
    by_problem = {e["problem_id"]: e["target_text"] for e in examples}
    assert len(examples) == len(by_problem) == sum(1 for v in labels.values() if v)
    for pid, label in chosen.items():
        assert by_problem[pid] == equation_target(label, "prefix")
    report = json.loads((out / "evaluate" / "report.json").read_text())
    assert summary["accuracy"] == report["accuracy"] and report["n"] == 12
    # the run's final student is the refined one (serving and `mathdistill evaluate` use it);
    # the first evaluation stays the first student's
    assert final_student(run) == run / summary["checkpoint_dir"]
    assert "refine_1" in summary["checkpoint_dir"]
    assert resolve_student(run).checkpoint == str(final_student(run))
    assert "refine_1" not in str(final_student(run, refined=False))
    # the run's report has the round, and the plot of accuracy by round
    text = (run / "report.md").read_text()
    assert "## Refinement rounds" in text and "### Round 1" in text
    assert f"| 1 | {summary['pool']} | {summary['candidates_tried']} | {summary['accepted']} |" \
        in text
    assert (run / "report_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a run stopped inside the round (the manifest still says running; its summary not yet
    # written): started again, the round keeps its candidates, labels and examples byte for
    # byte, resumes training from its checkpoints and completes
    before = {f: (out / f).read_bytes() for f in ("candidates.jsonl", "labels.json",
                                                    "examples.parquet")}
    data = json.loads((run / "manifest.json").read_text())
    data["stages"]["refine_1"]["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(data))
    (out / "summary.json").unlink()
    again = run_pipeline(_config(), run, log=lambda s: None)
    assert again["stages"]["refine_1"]["status"] == "complete"
    assert {f: (out / f).read_bytes() for f in before} == before
    assert again["stages"]["refine_1"]["counts"]["accepted"] == summary["accepted"]


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
