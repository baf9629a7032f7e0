"""The `mathdistill` CLI as a user runs it (typer's runner, real loaders, fixtures or real data)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distill.cli import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result


def test_help_lists_every_command() -> None:
    out = invoke("--help").output
    for cmd in ("run", "data", "config", "sandbox", "search", "generate"):
        assert cmd in out
    data_help = invoke("data", "--help").output
    for cmd in ("list", "show", "stats", "export"):
        assert cmd in data_help


def test_data_list_names_every_registered_dataset(tmp_path: Path) -> None:
    from distill.data import dataset_names

    result = invoke("data", "list", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    for name in dataset_names():
        assert name in result.output
    assert {"gsm8k", "mawps", "math23k", "svamp", "asdiv", "asdiv-a", "multiarith", "addsub",
            "singleeq", "weak12k", "math500", "synthetic"} <= set(dataset_names())


def test_unknown_dataset_and_split_are_clear_errors(tmp_path: Path, fixtures_dir: Path) -> None:
    result = invoke("data", "show", "nosuch", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "unknown dataset 'nosuch'" in result.output
    assert "gsm8k" in result.output  # lists the valid names
    result = invoke("data", "show", "synthetic", "--split", "dev")
    assert result.exit_code == 2
    assert "no split 'dev'" in result.output and "train" in result.output


def test_show_synthetic_as_json() -> None:
    result = invoke("data", "show", "synthetic", "--split", "test", "-n", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(rows) == 2 and all(r["id"].startswith("synthetic/") for r in rows)


def test_show_a_user_file_with_column_mapping(tmp_path: Path) -> None:
    f = tmp_path / "mine.jsonl"
    f.write_text(
        json.dumps({"q": "Ann has 3 pens and buys 4 more. How many pens?", "a": "7"}) + "\n"
        + "{not json\n"
    )
    result = invoke("data", "show", str(f), "--columns", "question=q,answer=a", "--json")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("{")]
    row = json.loads(lines[0])
    assert row["answer"] == "7" and row["quantities"][:2] == ["3", "4"]
    assert "1 record(s) rejected" in result.output


def test_export_writes_parquet_rejects_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("data", "export", "synthetic", "--split", "train", "--split", "test",
                    "--limit", "50", "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {"train": 50, "test": 50}
    table = pq.read_table(out / "train")
    assert table.num_rows == 50 and "masked_question" in table.column_names
    assert (out / "rejects.jsonl").exists()


def test_export_decontaminates_against_an_eval_set(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    ev = tmp_path / "eval.jsonl"
    f.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in
                         [("Ann has 3 pens. She buys 4. How many?", "7"),
                          ("Bob has 5 cups, breaks 2. How many left?", "3")]))
    ev.write_text(json.dumps({"question": "Bob has 5 cups,  breaks 2. How many left ?", "answer": "3"}) + "\n")
    out = tmp_path / "out"
    result = invoke("data", "export", str(f), "--out", str(out),
                    "--decontaminate-against", f"{ev}:all")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {"all": 1}
    assert summary["decontamination"]["all"]["removed"] == 1
    removed = [json.loads(line) for line in (out / "decontaminated.jsonl").read_text().splitlines()]
    assert removed[0]["question"].startswith("Bob")


def test_config_validate_reports_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata:\n  trian: []\n")
    result = invoke("config", "validate", str(bad))
    assert result.exit_code == 2
    assert "bad.yaml: data.trian: unknown key" in result.output


@pytest.mark.shared_data
def test_stats_json_on_real_mawps(shared_data_dir: Path) -> None:
    result = invoke("data", "stats", "mawps", "--data-dir", str(shared_data_dir), "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["splits"] == {"all": 2373, "train": 1898, "valid": 237, "test": 238}
    assert stats["rejects"] == 0
    assert stats["gold_equation_agreement"] >= 0.98
    assert stats["quantity_coverage"] >= 0.98


@pytest.mark.shared_data
def test_readme_export_decontaminates_mawps_train_against_test(shared_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mawps"
    result = invoke("data", "export", "mawps", "--split", "train", "--out", str(out),
                    "--decontaminate-against", "mawps:test", "--data-dir", str(shared_data_dir))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["decontamination"]["train"]["removed"] == 27  # duplicates of test questions
    assert summary["splits"] == {"train": 1898 - 27}
    assert pq.read_table(out / "train").num_rows == 1871
    assert len((out / "decontaminated.jsonl").read_text().splitlines()) == 27


@pytest.mark.shared_data
def test_readme_show_gsm8k(shared_data_dir: Path) -> None:
    result = invoke("data", "show", "gsm8k", "--split", "test", "-n", "2", "--data-dir", str(shared_data_dir))
    assert result.exit_code == 0, result.output
    assert result.output.count("--- gsm8k/test-") == 2 and "answer: 18" in result.output
