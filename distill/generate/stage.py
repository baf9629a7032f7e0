"""The teacher-generation stage on Ray Data: Problem rows in, Rationale rows (Parquet) out.

Takes Problem rows (columns :data:`NEEDS`, checked on entry before anything is written or
sent to Ray) and a :class:`~distill.generate.config.GenerateConfig`; writes :data:`WRITES`
(:data:`distill.records.RATIONALE_SCHEMA`) rows keyed by (problem id, strategy, sample
index) and returns a summary.

Output layout under ``out_dir`` (a local folder or a pyarrow filesystem URI)::

    stage.json                      the run's fingerprint (what decides which rows and their content)
    rationales/part-RRRRR-SSSSSS.parquet   one shard per verified batch: run R, batch S
    summary.json                    the summary of the last run

Reading shards back (:meth:`OutputStore.read`): a shard written before a nullable column
of the schema existed (``masked_equation``) reads with that column null; a shard that lacks a
non-nullable column, or holds a column of another type, raises :class:`ShardSchemaError`
naming the file and the column.

How it resumes. Each verified batch is committed as its own shard, atomically (written under a
temporary name and renamed; an object store's single PUT is atomic by itself). A re-run reads
the keys already committed and asks the teacher only for the others, plus the rows whose
generation failed (the engine gave up after its retries: ``completion`` null); a later shard's
row replaces an earlier one with the same key, and at the end every superseded row is removed
from its shard, so the output holds each key once. A run killed at any point loses only the
batches in flight. A re-run with another fingerprint into the same folder is refused
(:class:`StageMismatchError`, naming what differs) rather than mixed: the config's
(:meth:`GenerateConfig.fingerprint`: model, strategy, samples, sampling, templates,
tolerance, ...), the problem set's (how many, and a digest of their ids, questions and
answers: another dataset, split or ``--limit`` differs) and, for program strategies, the
sandbox limits that decide verdicts. One run at a time per folder: two concurrent runs into
one folder are not guarded against.

Before a run the engine is checked once (``check_ready``: the openai engine asks its server
for ``/models``); a teacher that cannot be used raises
:class:`~distill.generate.engines.TeacherUnavailableError` before anything is sent. During a
run, ``config.stop_after_failures`` consecutive rows whose generation failed with the same
kind of error stop it early. A run that stopped early, or made no completion at all although
it had rows to make, raises :class:`GenerationFailedError` (its ``summary`` written first,
with ``generation_errors``: failed rows by error kind).

The pipeline: ``ray.data`` from the work items -> in-process engines (hf, openai): one
``map_batches`` actor pool, each actor building its engine (and a sandbox pool for PoT
programs) once, generating and verifying each batch; ``vllm``: one actor pool of engine
replicas (:func:`distill.generate.engines.vllm.run_dataset`; every round of a multi-call
strategy inside it), then a verify actor pool -> the driver commits each finished batch as it
streams out.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from distill.records import RATIONALE_SCHEMA, VERDICTS, require_columns, to_table
from distill.generate.config import GenerateConfig
from distill.generate.core import (
    ITEM_COLUMNS,
    REQUIRED_COLUMNS,
    rationale_rows,
    run_calls,
    work_items,
)
from distill.resources import StageResources, resources_or_default
from distill.storage import is_remote, run_location, write_whole

if TYPE_CHECKING:
    from distill.sandbox import SandboxConfig

__all__ = [
    "GenerateUDF",
    "GenerationFailedError",
    "NEEDS",
    "OutputStore",
    "ShardSchemaError",
    "StageMismatchError",
    "VerifyUDF",
    "generate_dataset",
    "read_rationales",
    "WRITES",
]

NEEDS: tuple[str, ...] = REQUIRED_COLUMNS  # the Problem columns generate_dataset reads
WRITES = RATIONALE_SCHEMA  # the rows it commits under rationales/

RATIONALES = "rationales"
STAGE_FILE = "stage.json"
SUMMARY_FILE = "summary.json"

ITEM_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("question", pa.string()),
    pa.field("answer", pa.string()),
    pa.field("answer_raw", pa.string()),
    pa.field("quantities", pa.list_(pa.string())),
    pa.field("masked_question", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("sample_idx", pa.int32()),
])
_KEY_COLUMNS = ["id", "strategy", "sample_idx", "completion"]


class StageMismatchError(ValueError):
    """The output folder holds rows made with another configuration."""


class ShardSchemaError(ValueError):
    """A committed shard cannot be read as :data:`WRITES`: it lacks a non-nullable column, or a
    column has another type (or nulls where the schema allows none)."""


def _castable(have: pa.DataType, want: pa.DataType) -> bool:
    """Whether a column of type ``have`` may stand for ``want``: the same type, or another
    width of the same kind (int64 for int32, large_string for string), cast losslessly."""
    if have == want:
        return True
    strings = (pa.types.is_string, pa.types.is_large_string)
    return any((pa.types.is_integer(have) and pa.types.is_integer(want),
                pa.types.is_floating(have) and pa.types.is_floating(want),
                any(k(have) for k in strings) and any(k(want) for k in strings)))


def conform_shard(table: pa.Table, where: str, columns: Sequence[str] | None = None) -> pa.Table:
    """``table`` (a shard as read) as :data:`WRITES` (only ``columns`` of it when given): a missing
    nullable column is all null; a missing non-nullable column, a column of another type, or
    nulls in a non-nullable column raise :class:`ShardSchemaError` naming ``where`` and the
    column. Columns the schema does not have are dropped."""
    fields = [WRITES.field(c) for c in (columns if columns is not None else WRITES.names)]
    arrays = []
    for f in fields:
        if f.name not in table.column_names:
            if not f.nullable:
                raise ShardSchemaError(f"{where}: no column {f.name!r} ({f.type}, not nullable) "
                                       "of the Rationale schema")
            arrays.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if col.type != f.type:
            if not (_castable(col.type, f.type) or (pa.types.is_null(col.type) and f.nullable)):
                raise ShardSchemaError(f"{where}: column {f.name!r} is {col.type}, the Rationale "
                                       f"schema has {f.type}")
            try:
                col = col.cast(f.type)  # safe: a value that does not fit raises
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise ShardSchemaError(f"{where}: column {f.name!r} ({col.type}) does not fit "
                                       f"{f.type}: {e}") from e
        if not f.nullable and col.null_count:
            raise ShardSchemaError(f"{where}: column {f.name!r} has {col.null_count} null(s); "
                                   "the Rationale schema allows none")
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class GenerationFailedError(RuntimeError):
    """The run stopped early, or made no completion although it had rows to make. ``summary``
    is the run's summary (also in ``summary.json``), failures counted by kind in
    ``generation_errors``."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


_SANDBOX_VERDICT_FIELDS = (
    "timeout_s", "memory_mb", "stdout_limit", "isolation", "ast_check", "allowed_imports",
    "seccomp", "scratch_mb", "fsize_mb", "nofile", "nproc", "max_code_chars", "max_answer_chars",
)


def problems_identity(problems: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The problem set's part of the fingerprint: how many, and a digest of every problem's id,
    question and gold answer (order-free), so another dataset, split or limit differs."""
    h = hashlib.sha256()
    for pid, question, answer, raw in sorted(
            (str(p["id"]), str(p["question"]), str(p.get("answer")), str(p.get("answer_raw")))
            for p in problems):
        h.update(json.dumps([pid, question, answer, raw], ensure_ascii=False).encode())
    return {"count": len(problems), "digest": h.hexdigest()[:16]}


def sandbox_identity(sandbox: SandboxConfig | None, config: GenerateConfig) -> dict[str, Any] | None:
    """The sandbox limits that decide a program's verdict (a timeout, a memory limit, what may
    be imported ...), for strategies whose output is a program; None otherwise. Pool sizes
    and start-up settings are left out: they change how fast programs run, not what they give."""
    from distill.generate.strategies import get_strategy

    if get_strategy(config.strategy).output != "program":
        return None
    if sandbox is None:
        from distill.sandbox import SandboxConfig

        sandbox = SandboxConfig()
    dumped = sandbox.model_dump(mode="json")
    return {k: dumped[k] for k in _SANDBOX_VERDICT_FIELDS if k in dumped}


def stage_fingerprint(config: GenerateConfig, problems: Sequence[Mapping[str, Any]],
                      sandbox: SandboxConfig | None) -> dict[str, Any]:
    """What a re-run into the same folder must match (see the module docstring)."""
    return {**config.fingerprint(), "problems": problems_identity(problems),
            "sandbox": sandbox_identity(sandbox, config)}


# --------------------------------------------------------------------------------- storage
def _difference(key: str, theirs: Mapping[str, Any], mine: Mapping[str, Any],
                labels: tuple[str | None, str | None] = (None, None)) -> str:
    if key not in theirs:
        return f"{key}: not recorded there (an older version made it), {mine.get(key)!r} now"
    a, b = theirs.get(key), mine.get(key)
    if key == "problems" and isinstance(a, dict) and isinstance(b, dict):
        there, now = (f"{label}: " if label else "" for label in labels)
        return (f"problems: {there}{a.get('count')} problems (digest {a.get('digest')}) there, "
                f"{now}{b.get('count')} (digest {b.get('digest')}) now -- another dataset, "
                "split or --limit")
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return "; ".join(f"{key}.{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in keys)
    return f"{key}: {a!r} there, {b!r} now"


@dataclass
class _Existing:
    """Committed rows: key -> (shard name, generation failed), latest shard winning."""

    rows: dict[tuple[str, str, int], tuple[str, bool]]
    superseded: dict[str, int]  # shard -> rows in it replaced by a later shard
    last_run: int


class OutputStore:
    """The stage's output folder (local or any pyarrow filesystem URI)."""

    def __init__(self, out_dir: Any):
        from pyarrow import fs as pafs

        where = run_location(out_dir)
        self.fs, self.root = ((where.fs, where.path) if is_remote(where)
                              else (pafs.LocalFileSystem(), os.path.abspath(where)))
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.uri = str(out_dir)
        self.shards_dir = f"{self.root}/{RATIONALES}"
        self._made = False

    def _ensure_dirs(self) -> None:
        if not self._made:
            self.fs.create_dir(self.shards_dir, recursive=True)
            self._made = True

    # -- small files
    def _write_bytes(self, path: str, data: bytes) -> None:
        self._ensure_dirs()
        write_whole(self.fs, path, data)

    def _read_json(self, name: str) -> dict[str, Any] | None:
        from pyarrow import fs as pafs

        path = f"{self.root}/{name}"
        if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with self.fs.open_input_stream(path) as f:
            return json.loads(f.read().decode())

    def write_json(self, name: str, obj: Any) -> None:
        self._write_bytes(f"{self.root}/{name}",
                          json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode())

    def check_fingerprint(self, config: GenerateConfig, fingerprint: dict[str, Any] | None = None,
                          problems_label: str | None = None) -> None:
        """Refuse a folder made with another fingerprint (default: the config's alone; the
        stage passes :func:`stage_fingerprint`); record it in a new folder."""
        mine = config.fingerprint() if fingerprint is None else fingerprint
        stored = self._read_json(STAGE_FILE)
        if stored is None:
            record = {"fingerprint": mine, "config": config.model_dump(mode="json")}
            if problems_label:
                record["problems"] = problems_label
            self.write_json(STAGE_FILE, record)
            return
        theirs = stored.get("fingerprint", {})
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            labels = (stored.get("problems"), problems_label)
            shown = "; ".join(_difference(k, theirs, mine, labels) for k in diff)
            raise StageMismatchError(
                f"{self.uri} holds rows generated with another configuration ({shown}); "
                "use another --out folder")

    # -- shards
    def shard_names(self) -> list[str]:
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.shards_dir, allow_not_found=True))
        return sorted(i.base_name for i in infos
                      if i.type == pafs.FileType.File and i.base_name.startswith("part-")
                      and i.base_name.endswith(".parquet"))

    def _read(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """One shard as :data:`WRITES` (``columns`` of it when given), through
        :func:`conform_shard`: a shard of an older schema reads with the columns it lacks
        null, when they are nullable."""
        path = f"{self.shards_dir}/{name}"
        wanted = columns if columns is not None else WRITES.names
        present = set(pq.read_schema(path, filesystem=self.fs).names)
        table = pq.read_table(path, columns=[c for c in wanted if c in present], filesystem=self.fs)
        return conform_shard(table, path, wanted)

    def existing(self) -> _Existing:
        rows: dict[tuple[str, str, int], tuple[str, bool]] = {}
        superseded: dict[str, int] = {}
        last_run = 0
        for name in self.shard_names():
            try:
                last_run = max(last_run, int(name.split("-")[1]))
            except (IndexError, ValueError):
                pass
            t = self._read(name, _KEY_COLUMNS)
            ids, strategies = t.column("id").to_pylist(), t.column("strategy").to_pylist()
            idx, completions = t.column("sample_idx").to_pylist(), t.column("completion").to_pylist()
            for key in zip(ids, strategies, idx, completions):
                k = (key[0], key[1], int(key[2]))
                if k in rows:
                    old = rows[k][0]
                    superseded[old] = superseded.get(old, 0) + 1
                rows[k] = (name, key[3] is None)
        return _Existing(rows, superseded, last_run)

    def commit(self, table: pa.Table, run: int, seq: int) -> str:
        """Write one shard atomically; returns its name."""
        self._ensure_dirs()
        name = f"part-{run:05d}-{seq:06d}.parquet"
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        self._write_bytes(f"{self.shards_dir}/{name}", buffer.getvalue().to_pybytes())
        return name

    def compact(self) -> int:
        """Remove rows replaced by a later shard (each key then occurs once); returns how many.
        Safe to kill: a shard is rewritten whole and renamed, and the later row stays."""
        state = self.existing()
        removed = 0
        for name, count in sorted(state.superseded.items()):
            t = self._read(name)
            keep = [i for i, k in enumerate(zip(t.column("id").to_pylist(), t.column("strategy").to_pylist(),
                                                t.column("sample_idx").to_pylist()))
                    if state.rows.get((k[0], k[1], int(k[2])), ("",))[0] == name]
            removed += t.num_rows - len(keep)
            if keep:
                run, seq = (int(x) for x in name[len("part-"):-len(".parquet")].split("-"))
                self.commit(t.take(keep), run, seq)
            else:
                self.fs.delete_file(f"{self.shards_dir}/{name}")
        if self.local:  # temporary files of a killed run
            from pyarrow import fs as pafs

            for info in self.fs.get_file_info(pafs.FileSelector(self.shards_dir, allow_not_found=True)):
                if info.base_name.startswith(".part-") and info.base_name.endswith(".tmp"):
                    self.fs.delete_file(info.path)
        return removed

    def read(self, keys: Iterable[tuple[str, str, int]] | None = None) -> pa.Table:
        """Every current row (latest shard wins), sorted by key; only ``keys`` when given."""
        state = self.existing()
        wanted = None if keys is None else set(keys)
        tables = []
        for name in sorted({s for s, _ in state.rows.values()}):
            t = self._read(name)
            keep = []
            for i, k in enumerate(zip(t.column("id").to_pylist(), t.column("strategy").to_pylist(),
                                      t.column("sample_idx").to_pylist())):
                key = (k[0], k[1], int(k[2]))
                if state.rows[key][0] == name and (wanted is None or key in wanted):
                    keep.append(i)
            tables.append(t.take(keep))
        if not tables:
            return WRITES.empty_table()
        table = pa.concat_tables(tables)  # each shard already read as WRITES
        return table.sort_by([("id", "ascending"), ("strategy", "ascending"), ("sample_idx", "ascending")])


def read_rationales(out_dir: str | os.PathLike) -> pa.Table:
    """The Rationale rows a generate stage wrote (each key once, sorted by key)."""
    return OutputStore(out_dir).read()


# --------------------------------------------------------------------------------- Ray UDFs
def _items_table(items: Sequence[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{c: it[c] for c in ITEM_COLUMNS} for it in items], schema=ITEM_SCHEMA)


class GenerateUDF:
    """``map_batches`` actor for in-process engines: builds the engine (and, for PoT, a sandbox
    pool) once; each batch is generated, parsed and verified here, so what leaves the actor is
    a finished batch of Rationale rows that the driver commits at once.

    ``config`` and ``sandbox`` cross into the actor as ``model_dump(mode="json")`` mappings
    (the one way every stage hands a config to its actors)."""

    def __init__(self, config: Mapping[str, Any], sandbox: Mapping[str, Any] | None = None):
        from distill.generate.engines import build_engine

        self.config = GenerateConfig.model_validate(dict(config))
        self.engine = build_engine(self.config)
        self.verifier = VerifyUDF(config, sandbox, chat=self.engine.chat)

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = [{c: r[c] for c in ITEM_COLUMNS} for r in batch.to_pylist()]
        calls = run_calls(items, self.engine, self.config)
        return self.verifier.rows(items, calls, self.engine.chat)


class VerifyUDF:
    """Parses and verifies generated items into Rationale rows; PoT programs go to this
    object's own sandbox pool, a batch at a time. A ``map_batches`` actor after the ``vllm``
    engine; inside :class:`GenerateUDF` for the in-process engines."""

    def __init__(self, config: Mapping[str, Any], sandbox: Mapping[str, Any] | None = None,
                 chat: bool | None = None):
        from distill.generate.strategies import get_strategy

        self.config = GenerateConfig.model_validate(dict(config))
        self.chat = chat
        self.pool = None
        if get_strategy(self.config.strategy).output == "program":
            from distill.sandbox import SandboxConfig, SandboxPool

            self.pool = SandboxPool(SandboxConfig.model_validate(dict(sandbox)) if sandbox
                                    else SandboxConfig())
            self.pool.start()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        items = [{c: r[c] for c in ITEM_COLUMNS} for r in rows]
        return self.rows(items, [json.loads(r["calls"]) for r in rows], self.chat)

    def rows(self, items: list[dict[str, Any]], calls: list[list[dict[str, Any]]],
             chat: bool | None) -> pa.Table:
        out = rationale_rows(items, calls, self.config, chat=chat,
                             run_programs=self.pool.run_many if self.pool is not None else None)
        table = to_table(out, WRITES)
        record_teacher_metrics(table, self.config)
        return table

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()


# -------------------------------------------------------------------------------- the stage
def failure_kinds(table: pa.Table) -> list[str | None]:
    """Per row: the kind of error its generation failed with
    (:func:`~distill.generate.engines.error_kind`), or None when it has a completion."""
    from distill.generate.engines import error_kind

    if table.num_rows == 0:
        return []
    out: list[str | None] = []
    for completion, meta in zip(table.column("completion").to_pylist(),
                                table.column("meta").to_pylist()):
        if completion is not None:
            out.append(None)
            continue
        calls = json.loads(meta or "{}").get("calls") or []
        failed = next((c.get("error") for c in calls if c.get("error")), None)
        out.append(error_kind(failed))
    return out


def record_teacher_metrics(table: pa.Table, config: GenerateConfig) -> None:
    """A verified batch's generations by status (``ok`` or the error kind) and the share the
    verifier kept (:mod:`distill.metrics`)."""
    from distill.metrics import record

    for status, n in Counter(k or "ok" for k in failure_kinds(table)).items():
        record("teacher_requests", n, engine=config.engine, status=status)
    if table.num_rows:
        verdicts = table.column("verdict").to_pylist()
        record("teacher_pass_rate", verdicts.count("correct") / len(verdicts),
               strategy=config.strategy)


def _counts(table: pa.Table) -> dict[str, Any]:
    verdicts = table.column("verdict").to_pylist() if table.num_rows else []
    counts = {v: verdicts.count(v) for v in VERDICTS}
    n = len(verdicts)
    kinds = Counter(k for k in failure_kinds(table) if k is not None)
    return {
        "rows": n,
        **counts,
        "pass_rate": round(counts["correct"] / n, 6) if n else 0.0,
        "generation_failed": sum(kinds.values()),
        "generation_errors": dict(kinds.most_common()),
        "tokens_in": int(sum(x or 0 for x in table.column("tokens_in").to_pylist())) if n else 0,
        "tokens_out": int(sum(x or 0 for x in table.column("tokens_out").to_pylist())) if n else 0,
    }


def _batches(items: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _pool_args(resources: StageResources | None) -> dict[str, Any]:
    """``map_batches`` keywords of an actor pool of this stage: ``concurrency`` actors (default
    1: a teacher engine or a sandbox pool per actor is heavy), each reserving what
    :meth:`StageResources.ray_args` says."""
    res = resources_or_default(resources)
    return res.map_batches_args(res.pool_size(default=1))


def _ray_batches(items: list[dict[str, Any]], config: GenerateConfig, sandbox: dict[str, Any],
                 resources: StageResources | None, verify_resources: StageResources | None):
    """Verified Rationale tables as they stream out of the Ray Data pipeline."""
    import ray.data

    from distill.generate.engines import get_engine_class

    cfg = config.model_dump(mode="json")
    size = config.batch_size
    engine_cls = get_engine_class(config.engine)
    if engine_cls.dataset_level:
        chat = engine_cls.resolve_chat(config)
        ds = ray.data.from_arrow([_items_table(b) for b in _batches(items, size)])
        ds = engine_cls.run_dataset(ds, config, chat, resources=resources)
        ds = ds.map_batches(VerifyUDF, fn_constructor_kwargs={"config": cfg, "sandbox": sandbox,
                                                              "chat": chat},
                            batch_size=size, batch_format="pyarrow",
                            **_pool_args(verify_resources))
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
        return
    ds = ray.data.from_arrow([_items_table(b) for b in _batches(items, size)])
    ds = ds.map_batches(
        GenerateUDF, fn_constructor_kwargs={"config": cfg, "sandbox": sandbox}, batch_size=size,
        batch_format="pyarrow", **_pool_args(resources),
    )
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")


def _local_batches(items: list[dict[str, Any]], config: GenerateConfig,
                   sandbox: dict[str, Any]):
    """The same pipeline in this process, without Ray (debugging, small runs)."""
    from distill.generate.engines import build_engine

    engine = build_engine(config)
    verifier = VerifyUDF(config.model_dump(mode="json"), sandbox, chat=engine.chat)
    try:
        for batch in _batches(items, config.batch_size):
            yield verifier.rows(batch, run_calls(batch, engine, config), engine.chat)
    finally:
        engine.close()
        if verifier.pool is not None:
            verifier.pool.close()


class _Streak:
    """Consecutive rows whose generation failed with one kind of error."""

    def __init__(self, limit: int | None):
        self.limit, self.kind, self.count = limit, None, 0

    def add(self, kinds: Iterable[str | None]) -> str | None:
        """Feed rows' failure kinds in commit order; the reason to stop, once reached."""
        for kind in kinds:
            if kind is None:
                self.kind, self.count = None, 0
                continue
            self.count = self.count + 1 if kind == self.kind else 1
            self.kind = kind
        if self.limit is not None and self.kind is not None and self.count >= self.limit:
            return (f"stopped early: the last {self.count} rows failed with the same error "
                    f"({self.kind}; stop_after_failures is {self.limit})")
        return None


def generate_dataset(
    problems: Iterable[Mapping[str, Any]],
    config: GenerateConfig,
    out_dir: str | os.PathLike,
    *,
    resources: StageResources | None = None,
    verify_resources: StageResources | None = None,
    sandbox: SandboxConfig | None = None,
    progress: Callable[[str], None] | None = None,
    local: bool = False,
    problems_label: str | None = None,
) -> dict[str, Any]:
    """Generate, verify and commit Rationale rows for ``problems`` (``config.samples`` per
    problem) into ``out_dir``; returns the summary (also written to ``summary.json``).

    ``resources`` / ``verify_resources`` (:class:`distill.resources.StageResources`: the
    pipeline's ``ray.resources.generate`` / ``.verify``): CPUs, GPUs and memory per actor and
    the number of actors (``concurrency``, default 1). In-process engines (hf, openai) verify
    inside their generation actors, so a kill loses at most the batches those actors hold; for
    the vllm engine ``resources`` describe one engine replica (see
    :func:`distill.generate.engines.vllm.processor_config`) and ``verify_resources`` the
    verify actors after it. ``sandbox`` (the pipeline's ``sandbox`` section; default
    ``SandboxConfig()``): how PoT programs are run, one pool per verify actor; its limits are
    part of the fingerprint. ``problems_label`` (e.g. ``gsm8k:train, first 100``) is recorded
    in ``stage.json`` for people reading it. Ray must be initialised by the caller unless
    ``local`` (one process, no Ray; in-process engines only).

    Raises ValueError naming the :data:`NEEDS` columns the problems lack (before anything is
    written), :class:`StageMismatchError` (the folder holds another fingerprint),
    :class:`~distill.generate.engines.TeacherUnavailableError` (the engine's check before the
    run failed) and :class:`GenerationFailedError` (stopped early, or no completion made).

    Summary: ``rows`` (rows of these problems now in the output), ``correct``, ``wrong``,
    ``error``, ``unparsable``, ``pass_rate``, ``tokens_in``, ``tokens_out`` (over those rows),
    ``generation_failed`` (rows whose generation failed; the next run retries them) and
    ``generation_errors`` (those rows by error kind), ``generated`` (rows made by this run),
    ``completed`` (rows made by this run with a completion), ``reused`` (rows already there),
    ``stopped`` (why the run stopped early, or None), ``rows_per_s`` (rows made by this run
    per second of this run), ``elapsed_s``.
    """
    problems = list(problems)
    if problems:
        require_columns(problems[0].keys(), NEEDS, "generate")
    from distill.sandbox import SandboxConfig as _SandboxConfig
    from distill.generate.engines import get_engine_class

    if config.prompts_dir and "://" not in config.prompts_dir and os.path.isdir(config.prompts_dir):
        # actors may run in another working directory
        config = config.model_copy(update={"prompts_dir": os.path.abspath(config.prompts_dir)})
    sandbox = sandbox or _SandboxConfig()
    store = OutputStore(out_dir)
    store.check_fingerprint(config, stage_fingerprint(config, problems, sandbox), problems_label)
    before = store.existing()
    done = {k for k, (_, failed) in before.rows.items() if not failed}
    items = work_items(problems, config.samples, config.strategy, skip=done)
    requested = [(p["id"], config.strategy, k) for p in problems for k in range(config.samples)]
    reused = sum(1 for k in requested if k in done)
    say = progress or (lambda _m: None)
    say(f"generate: {len(requested)} rows requested, {reused} already done, {len(items)} to generate "
        f"({config.strategy}, {config.engine}:{config.model})")
    run = before.last_run + 1
    t0 = time.perf_counter()
    generated = completed = 0
    counts = {v: 0 for v in VERDICTS}
    stopped: str | None = None
    if items:
        check = getattr(get_engine_class(config.engine), "check_ready", None)
        if check is not None:
            check(config)
        box = sandbox.model_dump(mode="json")
        source = _local_batches(items, config, box) if local else _ray_batches(
            items, config, box, resources, verify_resources)
        streak = _Streak(config.stop_after_failures)
        try:
            for seq, table in enumerate(source):
                if table.num_rows == 0:
                    continue
                store.commit(table.cast(WRITES), run, seq)
                kinds = failure_kinds(table)
                generated += table.num_rows
                completed += sum(1 for k in kinds if k is None)
                for v in table.column("verdict").to_pylist():
                    counts[v] += 1
                rate = generated / max(time.perf_counter() - t0, 1e-9)
                say(f"generate: {generated}/{len(items)} rows ({rate:.2f} rows/s) "
                    + ", ".join(f"{v} {n}" for v, n in counts.items())
                    + (f", generation failed {generated - completed}" if generated > completed else ""))
                stopped = streak.add(kinds)
                if stopped:
                    say(f"generate: {stopped}")
                    break
        finally:
            source.close()  # a stopped run releases its actors here
    elapsed = time.perf_counter() - t0
    store.compact()
    summary = {
        **_counts(store.read(requested)),
        "generated": generated,
        "completed": completed,
        "reused": reused,
        "stopped": stopped,
        "rows_per_s": round(generated / elapsed, 3) if generated and elapsed > 0 else 0.0,
        "elapsed_s": round(elapsed, 3),
        "strategy": config.strategy,
        "engine": config.engine,
        "model": config.model,
        "samples": config.samples,
    }
    store.write_json(SUMMARY_FILE, summary)
    if stopped or (items and not completed):
        errors = ", ".join(f"{k} x{n}" for k, n in summary["generation_errors"].items()) or "none"
        why = stopped or f"no completion was made for any of the {len(items)} rows to generate"
        raise GenerationFailedError(
            f"generate: {why}; generation errors: {errors} (the rows' error column has the "
            f"details; a re-run retries the failed rows)", summary)
    return summary
