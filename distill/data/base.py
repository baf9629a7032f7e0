"""The dataset loader interface, the registry, and where data files are looked for.

A loader turns the files of one dataset family, exactly as published, into Problem rows
(:func:`distill.records.make_problem`). Its contract:

* ``splits(data_dir)`` lists the split names whose files are present (``train``, ``valid``,
  ``test`` where the source defines them, ``all`` for a whole file).
* ``load(split, data_dir)`` returns a :class:`LoadResult`: every record that could become a row,
  and every one that could not as a :class:`Reject` with its reason. A bad record never stops a
  load and is never dropped silently: ``len(problems) + len(rejects)`` equals the records read.
* An unknown split raises :class:`UnknownSplitError` listing the splits that exist; a missing
  file raises :class:`DataNotFoundError` naming the path looked at.
* A loader whose dataset has a usual Hugging Face Hub copy sets ``hub`` (a
  :class:`distill.data.hub.HubSource`) and must define ``rows(split, entries)`` (checked when
  the class is defined), the half of its ``load`` that turns records into rows; :func:`distill.data.hub.load_hub` feeds it the Hub's
  rows, so both sources give the same ids, fields and rejects.

Data files are found under ``data_dir`` (the ``--data-dir`` option), else the
``MATHDISTILL_DATA_DIR`` environment variable, read when a load happens (never at import).
"""

from __future__ import annotations

import abc
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from distill.registry import Registry

if TYPE_CHECKING:
    from distill.data.hub import HubSource

DATA_DIR_ENV = "MATHDISTILL_DATA_DIR"


class DataError(Exception):
    """Base class of the data layer's user-facing errors."""


class UnknownDatasetError(DataError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class UnknownSplitError(DataError, ValueError):
    pass


class DataNotFoundError(DataError, FileNotFoundError):
    pass


@dataclass
class Reject:
    """A source record set aside, with why. ``raw`` keeps the record as read (nothing is lost)."""

    dataset: str
    split: str
    source: str  # the file it came from
    record: str  # where in that file: line number, array index or the record's id
    field: str  # the offending field, or "record" for a malformed record
    reason: str
    raw: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class LoadResult:
    problems: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def extend(self, other: "LoadResult") -> None:
        self.problems.extend(other.problems)
        self.rejects.extend(other.rejects)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else $MATHDISTILL_DATA_DIR, else ``./data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path("data")


class DatasetLoader(abc.ABC):
    """Base class of loaders. Subclasses set the class attributes and implement the two methods."""

    name: ClassVar[str]
    lang: ClassVar[str] = "en"
    description: ClassVar[str] = ""
    # Files relative to the data dir, for `data list` and error messages.
    layout: ClassVar[str] = ""
    # The dataset's usual Hugging Face Hub copy (None: it has none); see distill.data.hub.
    hub: ClassVar[HubSource | None] = None

    @abc.abstractmethod
    def splits(self, data_dir: Path) -> list[str]:
        """The split names whose files are present under ``data_dir``."""

    @abc.abstractmethod
    def load(self, split: str, data_dir: Path) -> LoadResult:
        """Every record of ``split`` as a Problem row or a Reject."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A loader with a ``hub`` source must have ``rows(split, entries) -> LoadResult``
        (records as read, from its files or its Hub copy -> rows and rejects; its ``load`` reads
        the files and calls it): checked when the class is defined, so ``load_hub`` can always
        call it."""
        super().__init_subclass__(**kwargs)
        if cls.hub is not None and not callable(getattr(cls, "rows", None)):
            raise TypeError(f"loader {cls.__name__} has a hub source but no rows(split, entries)")

    def source_folders(self) -> list[str]:
        """The folders (relative to the data dir) holding this dataset's files: the first
        component of every path in ``layout``."""
        return sorted(set(re.findall(r"(?:^|[\s,;(+])([\w.-]+)/", " " + self.layout)))

    def source_files(self, data_dir: Path) -> list[tuple[str, Path]]:
        """Every file under this dataset's folders, as (path relative to ``data_dir``, path):
        what a run keys its data stage on, so an edited or replaced file is never reused
        stale. A superset of what ``load`` reads is fine; missing folders give nothing."""
        files = []
        for folder in self.source_folders():
            root = data_dir / folder
            if root.is_dir():
                files += [(p.relative_to(data_dir).as_posix(), p)
                          for p in sorted(root.rglob("*")) if p.is_file()]
        return files

    def check_split(self, split: str, data_dir: Path) -> None:
        """Raise UnknownSplitError (listing what exists) unless ``split`` is present."""
        available = self.splits(data_dir)
        if split not in available:
            where = f" under {data_dir / self.name}" if not available else ""
            raise UnknownSplitError(
                f"dataset {self.name!r} has no split {split!r}; available: "
                f"{', '.join(available) if available else '(none found' + where + ')'}"
            )


# The loader classes by name; get_loader builds one. Unknown names raise UnknownDatasetError.
_REGISTRY: Registry[type[DatasetLoader]] = Registry("dataset", UnknownDatasetError)


def register_dataset(name: str) -> Callable[[type[DatasetLoader]], type[DatasetLoader]]:
    """Class decorator adding a loader under ``name``; registering a name twice raises."""
    return _REGISTRY.decorator(name)


def get_loader(name: str) -> DatasetLoader:
    """The loader registered as ``name``; an unknown name raises UnknownDatasetError, listing
    the valid ones."""
    _ensure_builtin_loaders()
    return _REGISTRY.get(name)()


def dataset_names() -> list[str]:
    _ensure_builtin_loaders()
    return _REGISTRY.names()


def _ensure_builtin_loaders() -> None:
    import distill.data.loaders  # noqa: F401  (registers the built-in loaders)
    import distill.data.synthetic  # noqa: F401  (registers "synthetic")


def read_json_file(path: Path) -> Any:
    """Parse a whole JSON file; a missing file raises DataNotFoundError naming it."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    with path.open(encoding="utf-8-sig") as f:
        return json.load(f)


def write_rejects(rejects: Iterable[Reject], path: Path) -> int:
    """Write rejects as JSON lines; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for r in rejects:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n
