"""Files a run writes once and must never leave half written: atomic text, JSON lines and
Parquet writes (a temporary file beside the target, then one rename), and reading JSON lines
back. Used by the pipeline (its manifest) and the rounds (refinement, FDD) for the files that
make them resumable. Each takes a local ``Path`` or a :class:`distill.storage.RemotePath`; on an
object store a single PUT is already atomic, so the file is written directly. Standard library
and pyarrow only."""

from __future__ import annotations

import json
from typing import Any, Iterable

from distill.storage import StoragePath, is_remote

__all__ = ["read_jsonl", "write_atomic", "write_jsonl", "write_parquet_once"]


def write_atomic(path: StoragePath, text: str) -> None:
    """``text`` at ``path``, atomically (a kill never leaves half a file)."""
    if is_remote(path):
        path.write_text(text)  # written whole (distill.storage.write_whole)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_jsonl(path: StoragePath, rows: Iterable[Any]) -> None:
    """One JSON object per line at ``path``, atomically."""
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: StoragePath) -> list[Any]:
    """The rows :func:`write_jsonl` wrote."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_parquet_once(path: StoragePath, rows: list[dict[str, Any]], schema: Any) -> None:
    """``rows`` as a Parquet file of ``schema`` at ``path``, atomically; a file already there
    is kept (what a resumed step wrote before)."""
    import pyarrow.parquet as pq

    from distill.records import to_table

    if path.is_file():
        return
    if is_remote(path):  # written whole: one PUT (or a rename on a file:// URI)
        import pyarrow as pa

        buffer = pa.BufferOutputStream()
        pq.write_table(to_table(rows, schema), buffer)
        path.write_bytes(buffer.getvalue().to_pybytes())
        return
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(to_table(rows, schema), tmp)
    tmp.replace(path)
