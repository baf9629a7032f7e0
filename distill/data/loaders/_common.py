"""What every loader shares: reading the published file shapes record by record, and one rule for
turning records into Problem rows or Rejects.

Readers yield :class:`Entry` objects (a record as parsed, or why it could not be parsed, plus
where it sits in its file and its text as read). :class:`RowBuilder` turns entries into rows
through :func:`distill.records.make_problem`; any :class:`RecordError` becomes a
:class:`Reject`, so ``len(problems) + len(rejects)`` always equals the entries fed in. Duplicate
source ids within one load are kept: the first keeps its id, later ones get ``<id>#2``,
``<id>#3``, ... (in file order, so deterministic) and ``meta.duplicate_of`` names the first. A
rejected record's id counts too, so fixing a bad record never renames the rows after it.

Positions in Reject.record read ``line N`` (1-based, text files) or ``index N`` (0-based, JSON
arrays and Hub splits).

A loader keeps "records from files" (a reader) apart from "records -> rows" (its ``rows``), so
its Hub copy (:mod:`distill.data.hub`) is turned into rows by the same code.
"""

from __future__ import annotations

import abc
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

from distill.data.base import (
    DataError,
    DataNotFoundError,
    DatasetLoader,
    LoadResult,
    Reject,
    UnknownSplitError,
    resolve_data_dir,
)
from distill.records import RecordError, make_problem


@dataclass
class Entry:
    """One record as read from ``source`` (a file, or a Hub split's ``hf://`` address, see
    :mod:`distill.data.hub`): parsed (``record``) or not (``error`` says why)."""

    source: Path | str
    where: str
    raw: str
    record: Any = None
    error: str | None = None
    pos: int = 0  # the line number (text files) or array index (JSON arrays) in ``where``


def dump(obj: Any) -> str:
    """A parsed record back as JSON text (for Reject.raw when the original bytes are gone)."""
    return json.dumps(obj, ensure_ascii=False, default=str)


def require(record: Mapping[str, Any], key: str) -> Any:
    """``record[key]``; absent, null or a blank string raises RecordError naming ``key``."""
    value = record.get(key)
    if value is None:
        raise RecordError(key, "missing")
    if isinstance(value, str) and not value.strip():
        raise RecordError(key, "empty")
    return value


def read_id(value: Any, field: str) -> str:
    """A record's id as text: strings and integers only (a float or a list is not an id)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        if value is None:
            raise RecordError(field, "missing")
        raise RecordError(field, f"expected a string or integer id, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RecordError(field, "empty")
    return text


def rest(record: Mapping[str, Any], consumed: Iterable[str]) -> dict[str, Any]:
    """The record's fields other than ``consumed`` (they go to ``meta``)."""
    used = set(consumed)
    return {k: v for k, v in record.items() if k not in used}


def mwp_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """Row fields of an MWPToolkit-style record (MAWPS, Math23K): ``original_text``, ``ans``,
    ``equation``; everything else goes to meta."""
    return {
        "question": require(rec, "original_text"),
        "answer": require(rec, "ans"),
        "equation": rec.get("equation"),
        "meta": rest(rec, ("id", "original_text", "ans", "equation")),
    }


def read_text(path: Path) -> str:
    """A data file's text; a missing file or one that is not UTF-8 is a clear error naming it."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None


def not_object(entry: Entry) -> Entry:
    """Mark an entry whose JSON value is not an object as unreadable."""
    if entry.error is None and not isinstance(entry.record, dict):
        entry.error = f"expected a JSON object, got {type(entry.record).__name__}"
        entry.record = None
    return entry


# --------------------------------------------------------------------------- readers


def read_jsonl(path: Path) -> Iterator[Entry]:
    """One entry per non-blank line; a line that is not UTF-8 or not JSON is an error entry."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    with path.open("rb") as f:
        for lineno, data in enumerate(f, start=1):
            if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Entry(path, f"line {lineno}", data.decode("utf-8", "replace").strip(),
                            error=f"not UTF-8: {e.reason} at byte {e.start}", pos=lineno)
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield Entry(path, f"line {lineno}", line.rstrip("\r\n"),
                            error=f"malformed JSON: {e.msg} (column {e.colno})", pos=lineno)
                continue
            yield not_object(Entry(path, f"line {lineno}", line.rstrip("\r\n"), record=record,
                                   pos=lineno))


def load_json(path: Path) -> Any:
    """A whole JSON document. Missing file -> DataNotFoundError; unparsable -> DataError."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    try:
        with path.open(encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); the file "
            "is one JSON document, so no record in it can be read"
        ) from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None


def read_json_array(path: Path) -> list[Entry]:
    """One entry per element of a file holding a JSON array of objects."""
    doc = load_json(path)
    if not isinstance(doc, list):
        raise DataError(
            f"{path}: expected a JSON array of records, got a JSON {type(doc).__name__}"
        )
    return [not_object(Entry(path, f"index {i}", dump(rec), record=rec, pos=i))
            for i, rec in enumerate(doc)]


_RESYNC = re.compile(r"^\{", re.M)
_WS = re.compile(r"\s*")


def read_concatenated_json(path: Path) -> list[Entry]:
    """JSON objects written one after another (not an array), as Math_23K.json is.

    An object that does not parse becomes an error entry holding its text up to the next ``{`` at
    the start of a line, where reading resumes. A JSON array met at the top level (the same
    records written as an array) gives one entry per element.
    """
    text = read_text(path)
    decoder = json.JSONDecoder()
    entries: list[Entry] = []
    pos, line, counted = 0, 1, 0
    while True:
        pos = _WS.match(text, pos).end()
        if pos >= len(text):
            return entries
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            nxt = _RESYNC.search(text, pos + 1)
            end = nxt.start() if nxt else len(text)
            reason = f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})"
            entries.append(Entry(path, f"line {line}", text[pos:end].rstrip(), error=reason,
                                 pos=line))
        else:
            if isinstance(record, list):  # the same records published as one JSON array
                entries.extend(not_object(Entry(path, f"line {line}, index {i}", dump(rec),
                                                record=rec, pos=line))
                               for i, rec in enumerate(record))
            else:
                entries.append(not_object(Entry(path, f"line {line}", text[pos:end],
                                                record=record, pos=line)))
        pos = end


# --------------------------------------------------------------------------- rows


class RowBuilder:
    """Entries -> LoadResult for one (dataset, split)."""

    def __init__(self, dataset: str, split: str, lang: str | None,
                 source_fields: Mapping[str, str] | None = None):
        self.dataset, self.split, self.lang = dataset, split, lang
        # make_problem names the Problem field it objects to; rejects name the source's field.
        self.source_fields = dict(source_fields or {})
        self.result = LoadResult()
        self._taken: set[str] = set()
        self._copies: dict[str, int] = {}

    def reject(self, source: Path | str, where: str, field: str, reason: str, raw: str) -> None:
        self.result.rejects.append(
            Reject(self.dataset, self.split, str(source), where, field, reason, raw)
        )

    def _unique(self, sid: str) -> tuple[str, str | None]:
        """``sid`` if unused in this load, else the next free ``sid#k`` and the id it copies."""
        if sid not in self._taken:
            self._taken.add(sid)
            self._copies[sid] = 1
            return sid, None
        k = self._copies[sid]
        while True:
            k += 1
            candidate = f"{sid}#{k}"
            if candidate not in self._taken:
                break
        self._copies[sid] = k
        self._taken.add(candidate)
        return candidate, sid

    def add(
        self,
        entry: Entry,
        id_of: Callable[[Any], str],
        fields_of: Callable[[Any], dict[str, Any]],
    ) -> None:
        """Build one row from ``entry`` or record why not.

        ``id_of(record)`` gives the source id; ``fields_of(record)`` the keyword arguments of
        make_problem other than dataset/split/source_id/lang (``question``, ``answer``, and
        optionally ``equation``, ``meta``, ``require_numeric_answer``, and ``answer_raw`` to
        override the row's answer_raw when the loader passed a cleaned answer). Both raise
        RecordError for a record that cannot become a row.
        """
        if entry.error is not None:
            self.reject(entry.source, entry.where, "record", entry.error, entry.raw)
            return
        try:
            sid, first = self._unique(id_of(entry.record))
            fields = fields_of(entry.record)
            meta = dict(fields.pop("meta", None) or {})
            if first is not None:
                meta["duplicate_of"] = f"{self.dataset}/{first}"
            answer_raw = fields.pop("answer_raw", None)
            row = make_problem(dataset=self.dataset, split=self.split, source_id=sid,
                               lang=self.lang, meta=meta, **fields)
        except RecordError as e:
            field = self.source_fields.get(e.field, e.field)
            self.reject(entry.source, entry.where, field, e.reason, entry.raw)
            return
        if answer_raw is not None:
            row["answer_raw"] = answer_raw
        self.result.problems.append(row)


# --------------------------------------------------------------------------- loader base


class SplitFilesLoader(DatasetLoader):
    """A loader whose splits are fixed files under the data dir.

    Subclasses set ``split_files`` (split -> files relative to the data dir, all needed) or
    override :meth:`split_paths`, and implement :meth:`read`. :meth:`load` resolves the split:
    a name the dataset does not define raises UnknownSplitError (listing the splits present); a
    defined split whose file is absent raises DataNotFoundError naming the path.
    """

    split_files: ClassVar[dict[str, tuple[str, ...]]] = {}

    def split_paths(self, data_dir: Path) -> dict[str, list[Path]]:
        """Every split the dataset defines, with the files it needs, in display order."""
        return {s: [data_dir / f for f in files] for s, files in self.split_files.items()}

    def splits(self, data_dir: Path | str | None) -> list[str]:
        data_dir = resolve_data_dir(data_dir)
        return [s for s, paths in self.split_paths(data_dir).items()
                if all(p.is_file() for p in paths)]

    def load(self, split: str, data_dir: Path | str | None) -> LoadResult:
        data_dir = resolve_data_dir(data_dir)
        defined = self.split_paths(data_dir)
        if split not in defined:
            self.check_split(split, data_dir)
            raise AssertionError("unreachable: a present split is always a defined one")
        missing = [p for p in defined[split] if not p.is_file()]
        if missing:
            raise DataNotFoundError(
                f"{', '.join(map(str, missing))}: no such file (dataset {self.name!r}, split "
                f"{split!r}; expected layout under the data dir: {self.layout})"
            )
        return self.read(split, data_dir)

    def check_split(self, split: str, data_dir: Path | str | None) -> None:
        """As the base class, but the message also says which files a defined split lacks, or
        which layout was expected when no split is present."""
        data_dir = resolve_data_dir(data_dir)
        available = self.splits(data_dir)
        if split in available:
            return
        defined = self.split_paths(data_dir)
        msg = f"dataset {self.name!r} has no split {split!r}"
        if split in defined:
            missing = ", ".join(str(p) for p in defined[split] if not p.is_file())
            msg += f" under {data_dir} (missing: {missing})"
        if available:
            msg += f"; available: {', '.join(available)}"
        else:
            msg += (f"; it defines {', '.join(defined)} and none is present under {data_dir} "
                    f"(expected: {self.layout})")
        raise UnknownSplitError(msg)

    @abc.abstractmethod
    def read(self, split: str, data_dir: Path) -> LoadResult:
        """Every record of ``split`` (its files exist) as a row or a reject."""

    # Problem field -> the source field it comes from, for the ``field`` of rejects.
    source_fields: ClassVar[dict[str, str]] = {}

    def builder(self, split: str) -> RowBuilder:
        return RowBuilder(self.name, split, self.lang, self.source_fields)
