"""What crosses a stage boundary is a typed column: the masked equation goes from the search
(and the fltt_masked_equation teacher) to the SFT stage as ``masked_equation``, never as a key
of ``meta``; the synthetic generator hands its masked gold over the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from distill.records import PROBLEM_SCHEMA, RATIONALE_SCHEMA, make_problem, to_table
from distill.search.config import SearchConfig
from distill.search.problems import run_search
from distill.sft.config import SFTConfig
from distill.sft.core import equation_target
from distill.sft.stage import search_equations, write_sft_stage

QUESTIONS = [
    ("Tom has 3 apples and buys 4 more. How many apples does he have?", 7),
    ("A box holds 6 eggs. How many eggs are in 5 boxes?", 30),
    ("A shirt costs 80 dollars and is 25% off. How much is the discount?", 20),
]


@pytest.fixture()
def problems() -> list[dict]:
    return [make_problem(dataset="t", split="train", source_id=i, question=q, answer=a)
            for i, (q, a) in enumerate(QUESTIONS)]


def _write(rows: list[dict], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(rows, RATIONALE_SCHEMA), folder / "part-000.parquet")
    return folder


def _sft(problems, tmp_path: Path, rows: list[dict], teacher: str = "search",
         target: str = "equation_prefix") -> tuple[dict, list[dict]]:
    summary = write_sft_stage(problems, teacher, target, SFTConfig(), ["1", "2", "100"],
                              rationales_dir=_write(rows, tmp_path / teacher / "rationales"),
                              out=tmp_path / "sft")
    return summary, pq.read_table(tmp_path / "sft" / "examples.parquet").to_pylist()


def test_make_problem_fills_the_column(problems) -> None:
    assert all(p["masked_equation"] is None for p in problems)
    row = make_problem(dataset="t", split="train", source_id="m", question="He has 3 and 4.",
                       answer=7, masked_equation=" x=N0+N1 ")
    assert row["masked_equation"] == "x=N0+N1"
    assert to_table([row], PROBLEM_SCHEMA).column("masked_equation").to_pylist() == ["x=N0+N1"]


def test_search_rows_carry_the_masked_equation_as_a_column(problems) -> None:
    run = run_search(problems, SearchConfig(top_n=2))
    table = to_table(run.rows, RATIONALE_SCHEMA)
    assert table.schema.field("masked_equation").type == "string"
    best = {r["id"]: r for r in run.rows if r["sample_idx"] == 0}
    assert best["t/0"]["masked_equation"] == "x = N0 + N1"
    assert best["t/1"]["masked_equation"] == "x = N0 * N1"
    for r in run.rows:
        assert r["verdict"] == "correct" and r["masked_equation"].startswith("x = ")
        assert not {"equation_masked", "masked_equation"} & set(json.loads(r["meta"]))
    unsolved = run_search([make_problem(dataset="t", split="train", source_id="u",
                                        question="He has 3 apples.", answer=1000)],
                          SearchConfig(max_ops=1)).rows
    assert [(r["verdict"], r["masked_equation"]) for r in unsolved] == [("wrong", None)]


def test_sft_stage_builds_equation_targets_from_the_column(problems, tmp_path) -> None:
    rows = run_search(problems, SearchConfig(top_n=2)).rows
    summary, examples = _sft(problems, tmp_path, rows)
    best = {r["id"]: r["masked_equation"] for r in rows if r["sample_idx"] == 0}
    assert {e["problem_id"]: e["target_text"] for e in examples} == {
        pid: equation_target(eq, "prefix") for pid, eq in best.items()}
    assert {e["problem_id"]: e["source_text"] for e in examples} == {
        p["id"]: p["masked_question"] for p in problems}
    assert summary["examples"] == 3 and summary["skipped"] == {}


def test_rows_without_the_column_are_skipped_with_a_reason(problems, tmp_path) -> None:
    rows = run_search(problems, SearchConfig(top_n=2)).rows
    for r in rows:
        # the old hand-off in meta is not read any more ...
        r["meta"] = json.dumps({**json.loads(r["meta"]), "equation_masked": "x = N0 - N1"})
        if r["id"] == "t/1":  # ... and a problem whose correct rows have no column is skipped
            r["masked_equation"] = None
        if r["id"] == "t/2" and r["sample_idx"] == 0:  # the next-best row with one is taken
            r["masked_equation"] = None
    summary, examples = _sft(problems, tmp_path, rows)
    second = next(r["masked_equation"] for r in rows if r["id"] == "t/2" and r["sample_idx"] == 1)
    assert {e["problem_id"]: e["target_text"] for e in examples} == {
        "t/0": "+ N0 N1", "t/2": equation_target(second, "prefix")}
    assert summary["skipped"] == {"no_equation": 1, "search_no_masked_equation": 1}
    equations, skipped = search_equations(rows)
    assert set(equations) == {"t/0", "t/2"} and skipped == {"no_masked_equation": 1}


def test_generate_masked_equation_rows_fill_the_column(problems, tmp_path) -> None:
    """The fltt_masked_equation teacher's parsed equation is its rows' masked_equation (what
    the SFT stage reads with teacher "generate"); other strategies leave it null."""
    from distill.generate.config import GenerateConfig
    from distill.generate.core import ITEM_COLUMNS, rationale_rows

    items = [{**{c: p.get(c) for c in ITEM_COLUMNS}, "sample_idx": 0} for p in problems[:2]]
    calls = [[{"step": "equation", "completion": "Equation: x=N0+N1"}],
             [{"step": "equation", "completion": "Equation: x=N0+N1"}]]  # wrong for t/1
    masked = GenerateConfig(strategy="fltt_masked_equation", engine="hf", model="-")
    rows = rationale_rows(items, calls, masked)
    assert [(r["verdict"], r["masked_equation"]) for r in rows] == [
        ("correct", "x=N0+N1"), ("wrong", "x=N0+N1")]
    plain = GenerateConfig(strategy="fltt_equation", engine="hf", model="-")
    real = rationale_rows(items[:1], [[{"step": "equation", "completion": "x=3+4"}]], plain)
    assert [(real[0]["verdict"], real[0]["masked_equation"])] == [("correct", None)]
    to_table(rows + real, RATIONALE_SCHEMA)

    summary, examples = _sft(problems, tmp_path, rows + [{**real[0], "id": "t/2"}],
                             teacher="generate")
    assert [(e["problem_id"], e["target_text"]) for e in examples] == [("t/0", "+ N0 N1")]
    assert summary["skipped"] == {"no_equation": 2, "generate_no_masked_equation": 1}


def test_synthetic_rows_hand_over_the_masked_gold_as_a_column() -> None:
    from distill.data.synthetic import SyntheticConfig, generate

    rows = generate(SyntheticConfig(), "train", n=20)
    to_table(rows, PROBLEM_SCHEMA)
    for r in rows:
        assert r["masked_equation"].startswith("x=")
        assert "masked_equation" not in json.loads(r["meta"])
