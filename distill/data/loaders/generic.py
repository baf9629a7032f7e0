"""A user's own problem file: JSON lines, a JSON array of objects, CSV or Parquet.

:func:`load_file` maps the file's columns onto the Problem fields with ``columns`` (keys
``question``, ``answer``, ``id``, ``equation``; values the file's column names) and returns a
:class:`LoadResult` under one split (``all`` unless told). Without a mapping it uses the columns
named ``question`` and ``answer``, plus ``id`` and ``equation`` when the file has them. Without an
id column a row's id is its 0-based row index. Columns not mapped go to ``meta``. A mapped column
the file does not have raises :class:`MissingColumnError` naming it and listing the file's
columns; a row lacking a value is a reject like in every other loader.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from distill.data.base import DataError, DataNotFoundError, LoadResult
from distill.data.loaders._common import (
    Entry,
    RowBuilder,
    dump,
    not_object,
    read_id,
    read_json_array,
    read_jsonl,
    require,
)

ROLES = ("question", "answer", "id", "equation")
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
           ".parquet": "parquet", ".pq": "parquet"}


class MissingColumnError(DataError, ValueError):
    """A column the mapping names is not in the file."""


def load_file(
    path: str | os.PathLike,
    columns: Mapping[str, str] | None = None,
    dataset: str | None = None,
    lang: str | None = None,
    *,
    split: str = "all",
    format: str | None = None,
    require_numeric_answer: bool = True,
) -> LoadResult:
    """Every row of the file at ``path`` as a Problem row (dataset ``dataset``, default the file
    stem) or a Reject.

    ``format`` is ``jsonl``, ``json``, ``csv`` or ``parquet`` (default: from the suffix).
    ``lang`` is ``en`` / ``zh`` (default: detected per question). With
    ``require_numeric_answer=False`` non-numeric answers (LaTeX, names) load with answer=None.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    fmt = format or FORMATS.get(path.suffix.lower())
    if fmt not in set(FORMATS.values()):
        raise DataError(f"{path}: cannot tell the format (suffix {path.suffix!r}); use one of "
                        f"{', '.join(sorted(FORMATS))} or pass format= jsonl|json|csv|parquet")
    entries, file_columns = _read(path, fmt)

    if columns is None:
        mapping = {"question": "question", "answer": "answer"}
        mapping.update({c: c for c in ("id", "equation") if c in file_columns})
    else:
        unknown = sorted(set(columns) - set(ROLES))
        if unknown:
            raise ValueError(f"columns: unknown key(s) {unknown}; the keys are {', '.join(ROLES)}")
        if "question" not in columns:
            raise ValueError("columns: a mapping needs a 'question' entry")
        mapping = dict(columns)
    if file_columns is not None:
        for role, col in mapping.items():
            if col not in file_columns:
                raise MissingColumnError(
                    f"{path}: column {col!r} (mapped to {role}) is not in the file; its columns "
                    f"are: {', '.join(file_columns) or '(none)'}"
                )

    out = RowBuilder(dataset or path.stem, split, lang,
                     {role: col for role, col in mapping.items() if role != "id"})
    mapped = set(mapping.values())

    def fields(rec: dict[str, Any]) -> dict[str, Any]:
        return {
            "question": require(rec, mapping["question"]),
            "answer": require(rec, mapping["answer"]) if "answer" in mapping else None,
            "equation": rec.get(mapping["equation"]) if "equation" in mapping else None,
            "require_numeric_answer": require_numeric_answer,
            "meta": {k: v for k, v in rec.items() if k not in mapped},
        }

    for index, entry in enumerate(entries):
        if "id" in mapping:
            out.add(entry, lambda rec: read_id(rec.get(mapping["id"]), mapping["id"]), fields)
        else:
            out.add(entry, lambda rec, i=index: str(i), fields)
    return out.result


def _read(path: Path, fmt: str) -> tuple[list[Entry], list[str] | None]:
    """The file's records as entries, and its column names (for JSON every key seen; None when
    no record parsed, so there is nothing to check a mapping against)."""
    if fmt in ("jsonl", "json"):
        entries = list(read_jsonl(path)) if fmt == "jsonl" else read_json_array(path)
        seen: dict[str, None] = {}
        for e in entries:
            if isinstance(e.record, dict):
                seen.update(dict.fromkeys(e.record))
        parsed = any(isinstance(e.record, dict) for e in entries)
        return entries, list(seen) if parsed else None
    if fmt == "csv":
        return _read_csv(path)
    return _read_parquet(path)


def _read_csv(path: Path) -> tuple[list[Entry], list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        try:
            rows = list(_csv_rows(f))
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise DataError(f"{path}: empty CSV file (no header row)")
    (_, header), body = rows[0], rows[1:]
    if len(set(header)) != len(header):
        raise DataError(f"{path}: repeated column names in the header: {header}")
    entries = []
    for index, (lineno, row) in enumerate(body):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(row)
        entry = Entry(path, f"line {lineno}", buf.getvalue(), pos=index)
        if len(row) != len(header):
            entry.error = f"has {len(row)} fields, the header has {len(header)}"
        else:
            entry.record = {k: (v if v != "" else None) for k, v in zip(header, row)}
        entries.append(entry)
    return entries, header


def _csv_rows(f: io.TextIOBase) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row starts, fields) for every non-blank row."""
    reader = csv.reader(f)
    start = 1
    for row in reader:
        if row:
            yield start, row
        start = reader.line_num + 1


def _read_parquet(path: Path) -> tuple[list[Entry], list[str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    entries = [not_object(Entry(path, f"row {i}", dump(rec), record=rec, pos=i))
               for i, rec in enumerate(table.to_pylist())]
    return entries, table.column_names
