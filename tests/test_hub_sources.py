"""Hugging Face Hub sources of the dataset loaders, offline.

Each test builds small copies of the Hub repositories, laid out as they are on the Hub (README
``configs:``, Parquet / JSON-lines data files), under ``$MATHDISTILL_HUB_ROOT``; the real
``datasets.load_dataset`` reads them there. The same records are written in the local files'
format, so the two sources can be compared row for row. Offline mode is on throughout and the
datasets cache is a temporary folder: nothing here touches the network or ~/.cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.data.base import DataError, UnknownSplitError, get_loader
from distill.data.config import DataConfig, DataSource
from distill.data.hub import HUB_ROOT_ENV, hub_inputs, load_hub
from distill.provenance import files_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

GSM8K_README = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*
  - split: test
    path: main/test-*
---
# GSM8K (test copy)
"""
SVAMP_README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---
# SVAMP (test copy)
"""

GSM8K_TRAIN = [
    {"question": "Tom has 3 bags of 4 apples. How many apples?",
     "answer": "3 * 4 = <<3*4=12>>12\n#### 12"},
    {"question": "A bad one with no final answer line.", "answer": "It is 5."},  # reject
    {"question": "Mia earns $1,000 a week and spends $80. How much is left?",
     "answer": "1000 - 80 = <<1000-80=920>>920\n#### 920"},
]
GSM8K_TEST = [
    {"question": "Sam reads 20 pages a day for 3 days. How many pages?",
     "answer": "20 * 3 = <<20*3=60>>60\n#### 60"},
    {"question": "", "answer": "#### 3"},  # reject: empty question
    {"question": "A farm has 7 cows and buys 8 more. How many cows?",
     "answer": "7 + 8 = 15\n#### many"},  # reject: not a number
]
MATH500_TEST = [
    {"problem": "Compute $2+3$.", "solution": "It is $\\boxed{5}$.", "answer": "5",
     "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Convert $(0,3)$ to polar coordinates.", "solution": "...",
     "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"},  # LaTeX answer: kept with answer=None
    {"problem": "What is $10/4$?", "solution": "...", "answer": "\\frac{5}{2}",
     "subject": "Algebra", "level": 1, "unique_id": None},  # reject: no unique_id
]


def _svamp(i: str, body: str, question: str, equation: str, answer: float | None) -> dict:
    return {"ID": i, "Body": body, "Question": question, "Equation": equation,
            "Answer": answer, "Type": "Subtraction"}


SVAMP_TRAIN = [
    _svamp("chal-1", "Jack had 8 pens and gave away 3.", "How many pens does he have now?",
           "( 8.0 - 3.0 )", 5.0),
    _svamp("chal-2", "There are 76 birds and 25 fly away.", "How many birds are left?",
           "( 76.0 - 25.0 )", 51.0),
    _svamp("chal-3", "A shop had 40 apples and sold 12.", "How many apples remain?",
           "( 40.0 - 12.0 )", 29.0),  # the gold equation disagrees with the answer
]
SVAMP_TEST = [
    _svamp("chal-4", "Lucy had 9 stickers and got 6 more.", "How many stickers does she have?",
           "( 9.0 + 6.0 )", 15.0),
    _svamp("chal-5", "A box holds 30 eggs and 7 break.", "How many eggs are whole?",
           "( 30.0 - 7.0 )", None),  # reject: no answer
]


def _parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _svamp_hub_row(rec: dict) -> dict:
    return {**rec, "question_concat": f"{rec['Body']} {rec['Question']}"}


@pytest.fixture()
def hub_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hub copies of openai/gsm8k, HuggingFaceH4/MATH-500 and ChilleD/SVAMP, read through
    $MATHDISTILL_HUB_ROOT, with offline mode on and a temporary datasets cache."""
    datasets = pytest.importorskip("datasets")
    root = tmp_path / "hub"
    gsm8k = root / "openai" / "gsm8k"
    (gsm8k / "main").mkdir(parents=True)
    (gsm8k / "README.md").write_text(GSM8K_README)
    _parquet(gsm8k / "main" / "train-00000-of-00001.parquet", GSM8K_TRAIN)
    _parquet(gsm8k / "main" / "test-00000-of-00001.parquet", GSM8K_TEST)
    math500 = root / "HuggingFaceH4" / "MATH-500"  # as on the Hub: one test.jsonl, no configs
    _jsonl(math500 / "test.jsonl", MATH500_TEST)
    (math500 / "README.md").write_text("---\npretty_name: MATH-500\n---\n# MATH-500\n")
    svamp = root / "ChilleD" / "SVAMP"
    (svamp / "data").mkdir(parents=True)
    (svamp / "README.md").write_text(SVAMP_README)
    _parquet(svamp / "data" / "train-00000-of-00001.parquet", [_svamp_hub_row(r) for r in SVAMP_TRAIN])
    _parquet(svamp / "data" / "test-00000-of-00001.parquet", [_svamp_hub_row(r) for r in SVAMP_TEST])
    monkeypatch.setenv(HUB_ROOT_ENV, str(root))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")
    return root


@pytest.fixture()
def local_dir(tmp_path: Path) -> Path:
    """The same records as the Hub copies, in the local files' formats."""
    data = tmp_path / "data"
    _jsonl(data / "gsm8k" / "train.jsonl", GSM8K_TRAIN)
    _jsonl(data / "gsm8k" / "test.jsonl", GSM8K_TEST)
    _jsonl(data / "math500" / "test.jsonl", MATH500_TEST)
    (data / "svamp").mkdir(parents=True)
    (data / "svamp" / "SVAMP.json").write_text(json.dumps(SVAMP_TRAIN + SVAMP_TEST, indent=1))
    return data


def _same_load(name: str, local_split: str, hub_split: str, data_dir: Path) -> None:
    local = get_loader(name).load(local_split, data_dir)
    hub = load_hub(name, hub_split)
    assert hub.problems == local.problems  # same ids, questions, answers, equations, meta
    assert [(r.field, r.reason) for r in hub.rejects] == [(r.field, r.reason) for r in local.rejects]
    for h, lo in zip(hub.rejects, local.rejects):  # the Hub row holds the record (and more)
        assert json.loads(lo.raw).items() <= json.loads(h.raw).items()
    assert all(r.source.startswith("hf://") and r.record.startswith("index ") for r in hub.rejects)
    assert local.rejects, "each copy holds a bad record"


@pytest.mark.parametrize("name, local_split, hub_split", [
    ("gsm8k", "train", "train"),
    ("gsm8k", "test", "test"),
    ("math500", "test", "test"),
    ("svamp", "all", "all"),
])
def test_hub_rows_equal_local_rows(hub_root: Path, local_dir: Path, name: str,
                                   local_split: str, hub_split: str) -> None:
    _same_load(name, local_split, hub_split, local_dir)


def test_gsm8k_hub_ids_are_row_indexes_and_rejects_say_where(hub_root: Path) -> None:
    res = load_hub("gsm8k", "test")
    assert [r["id"] for r in res.problems] == ["gsm8k/test-0"]
    assert [(r.source, r.record, r.field) for r in res.rejects] == [
        ("hf://openai/gsm8k@default/main/test", "index 1", "question"),
        ("hf://openai/gsm8k@default/main/test", "index 2", "answer"),
    ]
    assert json.loads(res.rejects[0].raw) == GSM8K_TEST[1]


def test_math500_keeps_latex_answers_and_rejects_a_missing_id(hub_root: Path) -> None:
    res = load_hub("math500", "test")
    by_id = {r["id"]: r for r in res.problems}
    assert by_id["math500/test/prealgebra/1.json"]["answer"] == "5"
    latex = by_id["math500/test/precalculus/807.json"]
    assert latex["answer"] is None and latex["answer_raw"].startswith("\\left(")
    assert [(r.field, r.reason) for r in res.rejects] == [("unique_id", "missing")]


def test_svamp_hub_splits_partition_all(hub_root: Path) -> None:
    train, test, everything = (load_hub("svamp", s) for s in ("train", "test", "all"))
    assert [r["id"] for r in everything.problems] == [
        r["id"] for r in train.problems + test.problems]
    assert [r["id"] for r in train.problems] == ["svamp/chal-1", "svamp/chal-2", "svamp/chal-3"]
    assert train.problems[0]["answer_raw"] == "5.0"  # the float of SVAMP.json
    assert "question_concat" not in json.loads(train.problems[0]["meta"])
    assert [(r.source, r.field) for r in everything.rejects] == [
        ("hf://ChilleD/SVAMP@default/default/test", "Answer")]


@pytest.mark.parametrize("answer, expect", [(27, 27.0), ("27", 27.0), ("4.50", 4.5),
                                            ("n/a", "n/a"), (None, None), (2.5, 2.5)])
def test_svamp_hub_record_restores_the_float_answer(answer, expect) -> None:
    from distill.data.loaders.svamp import hub_record

    rec = hub_record({"ID": "x", "Answer": answer, "question_concat": "q"})
    assert rec == {"ID": "x", "Answer": expect}


def test_stats_on_the_hub_copy_equal_stats_on_local_files(hub_root: Path, local_dir: Path) -> None:
    local = runner.invoke(app, ["data", "stats", "svamp", "--data-dir", str(local_dir), "--json"])
    assert local.exit_code == 0, local.output
    hub = runner.invoke(app, ["data", "stats", "svamp", "--source", "hub", "--split", "all",
                              "--json"])
    assert hub.exit_code == 0, hub.output
    a, b = json.loads(local.stdout), json.loads(hub.stdout)
    assert (a["source"], b["source"], b["revision"]) == ("local", "hub", None)
    for key in ("splits", "rejects", "problems_with_equation", "gold_equation_agreement",
                "quantity_coverage", "disagreements", "uncovered"):
        assert a[key] == b[key], key
    assert a["splits"] == {"all": 4} and a["rejects"] == 1
    assert a["gold_equation_agreement"] == 0.75  # chal-3's equation disagrees
    every = runner.invoke(app, ["data", "stats", "svamp", "--source", "hub", "--json"])
    assert json.loads(every.stdout)["splits"] == {"all": 4, "train": 3, "test": 1}


def test_show_and_export_read_the_hub(hub_root: Path, tmp_path: Path) -> None:
    shown = runner.invoke(app, ["data", "show", "gsm8k", "--source", "hub", "--split", "train",
                                "--json", "-n", "5"])
    assert shown.exit_code == 0, shown.output
    assert [json.loads(line)["id"] for line in shown.stdout.splitlines()] == [
        "gsm8k/train-0", "gsm8k/train-2"]
    out = tmp_path / "export"
    exported = runner.invoke(app, ["data", "export", "gsm8k", "--source", "hub", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {"train": 2, "test": 1} and summary["rejects"] == 3
    assert pq.read_table(out / "train").num_rows == 2


def test_search_reads_its_problems_from_the_hub(hub_root: Path, tmp_path: Path) -> None:
    """Every command taking --data takes --source hub (search here; evaluate and generate share
    the same option and loading)."""
    out = tmp_path / "search"
    result = runner.invoke(app, ["search", "--data", "svamp", "--source", "hub", "--split", "all",
                                 "--local", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["dataset"] == "svamp:all" and summary["problems"] == 4  # as data stats counts


def test_data_list_names_the_hub_repositories() -> None:
    listed = runner.invoke(app, ["data", "list"]).output
    assert "hub: openai/gsm8k (config main; splits train, test)" in listed
    assert "hub: HuggingFaceH4/MATH-500" in listed and "hub: ChilleD/SVAMP" in listed


def test_revision_is_passed_through(hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[dict] = []
    real = datasets.load_dataset

    def spy(path, name=None, **kwargs):  # records the call, then loads for real
        calls.append({"path": path, "name": name, **kwargs})
        return real(path, name, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    res = load_hub("gsm8k", "test", revision="v1.2")
    assert calls == [{"path": str(hub_root / "openai" / "gsm8k"), "name": "main", "split": "test",
                      "revision": "v1.2"}]  # and no cache_dir: the library's own cache
    assert res.rejects[0].source == "hf://openai/gsm8k@v1.2/main/test"

    calls.clear()
    shown = runner.invoke(app, ["data", "show", "svamp", "--source", "hub", "--revision",
                                "5e0bf1e", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [(c["split"], c["revision"]) for c in calls] == [("train", "5e0bf1e"), ("test", "5e0bf1e")]

    calls.clear()
    from distill.data.stage import load_source

    load_source(DataSource(name="math500", split="test", source="hub", revision="main"),
                DataConfig())
    assert [(c["name"], c["revision"]) for c in calls] == [(None, "main")]


def test_a_changed_revision_changes_the_data_stage_inputs(hub_root: Path) -> None:
    from distill.data.stage import input_files

    def inputs(revision: str | None) -> list[tuple[str, Path]]:
        return input_files(DataConfig(eval=[DataSource(name="gsm8k", split="test", source="hub",
                                                        revision=revision)]))

    v1, v2, default = inputs("v1"), inputs("v2"), inputs(None)
    assert dict(v1)["hub:openai/gsm8k@v1/main#local-copy"] == Path(os.devnull)
    assert "hub:openai/gsm8k@default/main#local-copy" in dict(default)
    assert "hub:openai/gsm8k/main/test-00000-of-00001.parquet" in dict(v1)
    assert len({files_fingerprint(f) for f in (v1, v2, default)}) == 3
    # an edited local copy re-runs the stage too
    before = files_fingerprint(v1)
    _parquet(hub_root / "openai" / "gsm8k" / "main" / "test-00000-of-00001.parquet", GSM8K_TEST[:1])
    assert files_fingerprint(inputs("v1")) != before


def test_stage_identity_without_a_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    from huggingface_hub import constants

    monkeypatch.delenv(HUB_ROOT_ENV, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # no Hub to ask
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    sha = "5e0bf1e5e7c0e9c4bc39180d224f41f3f801b7ef"
    assert hub_inputs("svamp", sha) == [(f"hub:ChilleD/SVAMP@{sha}/default#{sha}", Path(os.devnull))]
    name, _ = hub_inputs("gsm8k", None)[0]
    assert name == "hub:openai/gsm8k@default/main#unresolved"
    # offline, the commit the Hub cache last fetched for the branch
    ref = tmp_path / "hub-cache" / "datasets--openai--gsm8k" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("e53f048856ff4f594e959d75785d2c2d37b678ee")
    name, _ = hub_inputs("gsm8k", None)[0]
    assert name == "hub:openai/gsm8k@default/main#e53f048856ff4f594e959d75785d2c2d37b678ee"


def test_offline_without_a_cached_copy_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MATHDISTILL_"))}
    env.update(HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"),
               PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "distill.cli", "data", "show", "gsm8k", "--source", "hub",
         "--split", "test"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "openai/gsm8k" in proc.stderr and "not in the local cache" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hub_errors_name_the_repository(hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (hub_root / "HuggingFaceH4" / "MATH-500" / "test.jsonl").rename(
        hub_root / "HuggingFaceH4" / "MATH-500" / "train.jsonl")  # the copy lacks split test
    with pytest.raises(DataError, match=r"HuggingFaceH4/MATH-500 .*split test.*Unknown split"):
        load_hub("math500", "test")
    with pytest.raises(UnknownSplitError, match="no split 'valid' on the Hub.*train, test"):
        load_hub("gsm8k", "valid")
    monkeypatch.setenv(HUB_ROOT_ENV, str(hub_root / "elsewhere"))
    result = runner.invoke(app, ["data", "show", "gsm8k", "--source", "hub"])
    assert result.exit_code == 2 and "openai/gsm8k" in result.output
    assert "Traceback" not in result.output


def test_a_loader_with_a_hub_source_must_build_rows_from_entries() -> None:
    from distill.data.hub import HubSource
    from distill.data.loaders._common import SplitFilesLoader

    with pytest.raises(TypeError, match="has a hub source but no rows"):
        class NoRows(SplitFilesLoader):  # noqa: F841
            hub = HubSource("someone/x", None, {"all": ("train",)})

            def read(self, split, data_dir):
                raise AssertionError("never called")


def test_a_dataset_without_a_hub_source_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="'mawps' has no Hugging Face Hub source.*gsm8k, math500, svamp"):
        load_hub("mawps", "all")
    result = runner.invoke(app, ["data", "show", "mawps", "--source", "hub"])
    assert result.exit_code == 2
    assert "has no Hugging Face Hub source" in result.output and "svamp" in result.output
    result = runner.invoke(app, ["data", "stats", "math23k", "--source", "hub"])
    assert result.exit_code == 2 and "math23k" in result.output


def test_without_datasets_installed_the_error_says_how_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(DataError, match=r"pip install 'mathdistill\[hub\]'"):
        load_hub("gsm8k", "test")


def test_config_accepts_source_hub_and_revision() -> None:
    from distill.config import ConfigError, validate_config

    src = DataSource(name="gsm8k", split="test", source="hub", revision="v1")
    assert (src.source, src.revision, src.label) == ("hub", "v1", "gsm8k:test")
    assert DataSource(name="gsm8k").source == "local"
    cfg = validate_config({"eval": [{"name": "svamp", "split": "all", "source": "hub"}]},
                          DataConfig, "data.yaml")
    assert cfg.eval[0].source == "hub" and cfg.eval[0].revision is None
    with pytest.raises(ConfigError, match="cannot be combined with path"):
        validate_config({"train": [{"name": "mine", "path": "mine.jsonl", "source": "hub"}]},
                        DataConfig, "data.yaml")
    with pytest.raises(ConfigError, match="revision: applies to source: hub only"):
        validate_config({"train": [{"name": "gsm8k", "revision": "v1"}]}, DataConfig, "data.yaml")
    with pytest.raises(ConfigError, match="source"):
        validate_config({"train": [{"name": "gsm8k", "source": "web"}]}, DataConfig, "data.yaml")


def test_cli_rejects_hub_for_a_file_and_revision_without_hub(tmp_path: Path) -> None:
    f = tmp_path / "mine.jsonl"
    f.write_text('{"question": "Tom has 3 apples and gets 2. How many?", "answer": 5}\n')
    result = runner.invoke(app, ["data", "show", str(f), "--source", "hub"])
    assert result.exit_code == 2 and "is a file" in result.output
    result = runner.invoke(app, ["data", "show", "gsm8k", "--revision", "v1"])
    assert result.exit_code == 2 and "--revision applies to --source hub only" in result.output


@pytest.mark.shared_data
def test_real_gsm8k_records_load_the_same_from_a_hub_copy(
        shared_data_dir: Path, hub_root: Path, tmp_path: Path) -> None:
    lines = (shared_data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    records = [json.loads(line) for line in lines]
    _parquet(hub_root / "openai" / "gsm8k" / "main" / "test-00000-of-00001.parquet", records)
    local = tmp_path / "real"
    _jsonl(local / "gsm8k" / "test.jsonl", records)
    res = load_hub("gsm8k", "test")
    assert len(res.problems) == 40 and not res.rejects
    assert res.problems == get_loader("gsm8k").load("test", local).problems
    assert res.problems[0]["answer"] == "18"
