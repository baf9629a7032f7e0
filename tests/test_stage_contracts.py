"""Every stage declares the columns it needs (``NEEDS``) and the schema it writes (``WRITES``),
next to its wrapper, and checks its input on entry.

(a) The chain, statically: each stage's NEEDS are columns of the schema the stage before it
writes (Problem rows for search, generate, sft and evaluate; Rationale rows for sft's teacher
input; SFTExample rows for train).
(b) Each entry point, given rows that lack one needed column, raises a ValueError naming the
stage and that column before any Ray work (``ray.init`` is made to fail the test) and before
it writes anything.
(c) The generate stage's output store reads shards of an older schema: a nullable column the
shard lacks reads as null; a missing non-nullable or wrong-typed column fails naming the file
and the column.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill.data import stage as data_stage
from distill.evaluate import stage as evaluate_stage
from distill.generate import stage as generate_stage
from distill.records import (
    PROBLEM_SCHEMA,
    RATIONALE_SCHEMA,
    SFT_EXAMPLE_SCHEMA,
    make_problem,
    to_table,
)
from distill.search import stage as search_stage
from distill.sft import stage as sft_stage
from distill.train import stage as train_stage

STAGES = {"data": data_stage, "search": search_stage, "generate": generate_stage,
          "sft": sft_stage, "train": train_stage, "evaluate": evaluate_stage}


# ------------------------------------------------------------------------ (a) the chain
@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_declares_what_it_needs_and_writes(name: str) -> None:
    module = STAGES[name]
    assert isinstance(module.NEEDS, tuple) and all(isinstance(c, str) for c in module.NEEDS)
    assert len(set(module.NEEDS)) == len(module.NEEDS)
    assert module.WRITES is None or isinstance(module.WRITES, pa.Schema)


def test_the_written_schemas_are_the_records_schemas() -> None:
    assert data_stage.WRITES == PROBLEM_SCHEMA
    assert search_stage.WRITES == RATIONALE_SCHEMA
    assert generate_stage.WRITES == RATIONALE_SCHEMA
    assert sft_stage.WRITES == SFT_EXAMPLE_SCHEMA
    assert data_stage.NEEDS == ()  # the first stage reads source files, not rows


@pytest.mark.parametrize("consumer, needs, producer", [
    ("search", search_stage.NEEDS, data_stage.WRITES),
    ("generate", generate_stage.NEEDS, data_stage.WRITES),
    ("sft", sft_stage.NEEDS, data_stage.WRITES),
    ("sft (gold teacher)", sft_stage.NEEDS + sft_stage.GOLD_NEEDS, data_stage.WRITES),
    ("sft (search teacher)", sft_stage.TEACHER_NEEDS, search_stage.WRITES),
    ("sft (generate teacher)", sft_stage.TEACHER_NEEDS, generate_stage.WRITES),
    ("train", train_stage.NEEDS, sft_stage.WRITES),
    ("evaluate", evaluate_stage.NEEDS, data_stage.WRITES),
])
def test_each_stage_needs_only_what_the_stage_before_writes(consumer, needs, producer) -> None:
    missing = [c for c in needs if c not in producer.names]
    assert not missing, f"{consumer} needs {missing}, which its producer does not write"


def test_the_teacher_columns_sft_reads_are_rationale_columns() -> None:
    """Beyond TEACHER_NEEDS the SFT stage reads nullable target columns (absent -> null)."""
    for column in ("masked_equation", "program", "completion", "key_points"):
        assert RATIONALE_SCHEMA.field(column).nullable
    for column in sft_stage.TEACHER_NEEDS:
        assert not RATIONALE_SCHEMA.field(column).nullable


# -------------------------------------------------------------- (b) checked on entry
@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the stage starts Ray or hands Ray Data any work. An earlier test's
    session cluster may be up already (the full suite): then starting Ray is no longer the
    sign, so every Ray Data source (``from_*``, ``read_*``) fails the test too."""
    import ray
    import ray._private.worker as worker
    import ray.data

    def boom(*args, **kwargs):
        raise AssertionError("the stage used Ray before checking its input")

    was_up = ray.is_initialized()
    monkeypatch.setattr(ray, "init", boom)
    monkeypatch.setattr(worker, "init", boom)
    for name in dir(ray.data):
        if name.startswith(("from_", "read_")) and callable(getattr(ray.data, name)):
            monkeypatch.setattr(ray.data, name, boom)
    yield
    assert ray.is_initialized() == was_up


def _problem() -> dict:
    return make_problem(dataset="t", split="train", source_id=1, answer="12",
                        question="Tom has 3 boxes with 4 pens in each box. How many pens?",
                        equation="x=3*4")


def _without(row: dict, column: str) -> dict:
    return {k: v for k, v in row.items() if k != column}


def _raises_naming(stage: str, column: str):
    return pytest.raises(ValueError, match=rf"{stage}.*missing column\(s\) \[{column!r}\]")


@pytest.mark.parametrize("column", search_stage.NEEDS)
def test_search_checks_its_input_on_entry(column, no_ray, tmp_path) -> None:
    from distill.search.config import SearchConfig

    with _raises_naming("search", column):
        search_stage.search_dataset([_without(_problem(), column)], SearchConfig(),
                                    out_dir=tmp_path / "search")
    assert not (tmp_path / "search").exists()


@pytest.mark.parametrize("column", generate_stage.NEEDS)
def test_generate_checks_its_input_on_entry(column, no_ray, tmp_path) -> None:
    from distill.generate.config import GenerateConfig

    cfg = GenerateConfig(engine="openai", model="m", strategy="pot")
    with _raises_naming("generate", column):
        generate_stage.generate_dataset([_without(_problem(), column)], cfg, tmp_path / "gen")
    assert not (tmp_path / "gen").exists()  # not even stage.json


def _sft(problems, teacher, target, tmp_path):
    from distill.sft.config import SFTConfig

    return sft_stage.write_sft_stage(problems, teacher, target, SFTConfig(), ["1", "2", "100"],
                                     rationales_dir=tmp_path / "teacher", out=tmp_path / "sft")


@pytest.mark.parametrize("column", sft_stage.NEEDS + sft_stage.GOLD_NEEDS)
def test_sft_checks_the_problems_on_entry(column, no_ray, tmp_path) -> None:
    with _raises_naming("sft", column):
        _sft([_without(_problem(), column)], "gold", "equation_prefix", tmp_path)
    assert not (tmp_path / "sft").exists()


def _rationale(**kw) -> dict:
    row = {name: None for name in RATIONALE_SCHEMA.names}
    row.update(id="t/1", strategy="pot", source="m", sample_idx=0, verdict="correct", meta="{}",
               program="ans = 3 * 4", completion="```python\nans = 3 * 4\n```",
               masked_equation="x=N0*N1")
    row.update(kw)
    return row


@pytest.mark.parametrize("column", sft_stage.TEACHER_NEEDS)
def test_sft_checks_the_teacher_rows_on_entry(column, no_ray, tmp_path) -> None:
    folder = tmp_path / "teacher"
    folder.mkdir()
    pq.write_table(to_table([_rationale()], RATIONALE_SCHEMA), folder / "part-0.parquet")
    bad = to_table([_rationale()], RATIONALE_SCHEMA).drop_columns([column])
    pq.write_table(bad, folder / "part-1.parquet")
    with pytest.raises(ValueError, match=rf"sft .*part-1\.parquet.*\[{column!r}\]"):
        _sft([_problem()], "search", "equation_prefix", tmp_path)
    assert not (tmp_path / "sft").exists()


def test_sft_reads_teacher_rows_without_a_nullable_column(tmp_path) -> None:
    """A teacher file without a nullable target column (an older schema) reads as nulls."""
    folder = tmp_path / "teacher"
    folder.mkdir()
    table = to_table([_rationale()], RATIONALE_SCHEMA).drop_columns(["masked_equation"])
    pq.write_table(table, folder / "part-0.parquet")
    with pytest.raises(ValueError, match="no training examples"):
        _sft([_problem()], "search", "equation_prefix", tmp_path)
    summary = _sft([_problem()], "generate", "pot", tmp_path)
    assert summary["examples"] == 1


def _example() -> dict:
    return {"problem_id": "t/1", "stage": "solve", "source_text": "N0 * N1 ?",
            "target_text": "* N0 N1"}


@pytest.mark.parametrize("column", train_stage.NEEDS)
def test_train_checks_its_examples_on_entry(column, no_ray, tmp_path) -> None:
    from distill.train.config import TrainConfig

    with _raises_naming("train", column):
        train_stage.fit(TrainConfig(), [_without(_example(), column)], storage_path=tmp_path / "t")
    path = tmp_path / "examples.parquet"
    pq.write_table(to_table([_example()], SFT_EXAMPLE_SCHEMA).drop_columns([column]), path)
    with pytest.raises(ValueError, match=rf"train \(.*examples\.parquet\).*\[{column!r}\]"):
        train_stage.fit(TrainConfig(), path, storage_path=tmp_path / "t")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("column", evaluate_stage.NEEDS)
def test_evaluate_checks_its_sets_on_entry(column, no_ray, tmp_path) -> None:
    from distill.evaluate.config import EvaluateConfig

    sets = {"gsm8k:test": [_problem()], "broken": [_without(_problem(), column)]}
    with pytest.raises(ValueError, match=rf"evaluate set broken.*\[{column!r}\]"):
        evaluate_stage.evaluate_student(tmp_path / "student", sets, "equation_prefix",
                                        EvaluateConfig(), tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


# ------------------------------------------------------- (c) older generate shards
def _store_with(tmp_path, *tables: pa.Table):
    store = generate_stage.OutputStore(tmp_path / "gen")
    for seq, table in enumerate(tables):
        store.commit(table, 1, seq)
    return store


def test_a_shard_without_a_nullable_column_reads_it_as_null(tmp_path) -> None:
    old = to_table([_rationale(id="t/1")], RATIONALE_SCHEMA).drop_columns(["masked_equation"])
    new = to_table([_rationale(id="t/2")], RATIONALE_SCHEMA)
    # an older writer: int64 sample_idx and large strings (other widths of the same kinds)
    wide = to_table([_rationale(id="t/3")], RATIONALE_SCHEMA)
    wide = wide.set_column(wide.schema.get_field_index("sample_idx"), "sample_idx",
                           pa.array([0], pa.int64()))
    wide = wide.set_column(wide.schema.get_field_index("completion"), "completion",
                           wide.column("completion").cast(pa.large_string()))
    store = _store_with(tmp_path, old, new, wide)
    table = generate_stage.read_rationales(tmp_path / "gen")
    assert table.schema == RATIONALE_SCHEMA
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["t/1"]["masked_equation"] is None and rows["t/1"]["program"] == "ans = 3 * 4"
    assert rows["t/2"]["masked_equation"] == "x=N0*N1"
    assert rows["t/3"]["sample_idx"] == 0
    assert set(store.existing().rows) == {("t/1", "pot", 0), ("t/2", "pot", 0), ("t/3", "pot", 0)}
    # a later shard supersedes the old one's row; compacting rewrites it in the current schema
    store.commit(to_table([_rationale(id="t/1", program="ans = 12")], RATIONALE_SCHEMA), 2, 0)
    store.compact()
    assert generate_stage.read_rationales(tmp_path / "gen").to_pylist()[0]["program"] == "ans = 12"


@pytest.mark.parametrize("column", ["verdict", "id", "sample_idx"])
def test_a_shard_without_a_non_nullable_column_fails_naming_it(column, tmp_path) -> None:
    bad = to_table([_rationale()], RATIONALE_SCHEMA).drop_columns([column])
    _store_with(tmp_path, bad)
    with pytest.raises(generate_stage.ShardSchemaError,
                       match=rf"part-00001-000000\.parquet: no column {column!r}"):
        generate_stage.read_rationales(tmp_path / "gen")


@pytest.mark.parametrize("column, values, kind", [
    ("sample_idx", pa.array(["0"], pa.string()), "string"),
    ("tokens_in", pa.array([1.5], pa.float64()), "double"),
    ("completion", pa.array([[1]], pa.list_(pa.int64())), "list"),
    ("sample_idx", pa.array([2**40], pa.int64()), None),  # the right kind, but does not fit
])
def test_a_shard_with_a_wrong_typed_column_fails_naming_it(column, values, kind, tmp_path) -> None:
    bad = to_table([_rationale()], RATIONALE_SCHEMA)
    bad = bad.set_column(bad.schema.get_field_index(column), column, values)
    _store_with(tmp_path, bad)
    with pytest.raises(generate_stage.ShardSchemaError,
                       match=rf"part-00001-000000\.parquet: column {column!r}.*{kind or ''}"):
        generate_stage.read_rationales(tmp_path / "gen")
