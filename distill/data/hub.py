"""Reading a registered dataset from its usual Hugging Face Hub repository instead of local files.

A loader that has a Hub copy declares it as data: its class attribute ``hub`` is a
:class:`HubSource` (repository, config, which Hub splits make each of our splits, and how a Hub
row maps onto the record shape of the local file). :func:`load_hub` reads those rows through
``datasets.load_dataset`` and hands them, as :class:`~distill.data.loaders._common.Entry`
objects, to the loader's own ``rows`` -- the code that turns the local file's records into rows
-- so ids, fields and rejects are those of the local files made of the same records:

* ``Entry.source`` is ``hf://<repo>@<revision or 'default'>/<config or 'default'>/<hub split>``;
* ``Entry.where`` is ``index N`` (the row's 0-based index in that Hub split);
* ``Entry.raw`` is the row as JSON text, ``Entry.record`` the row mapped by ``to_record``;
* ``Entry.pos`` is what the local reader gives the same record (``N + 1``, a line number, when
  the local file is JSON lines; ``N``, an array index, when it is a JSON array).

``datasets`` is imported only here, when a Hub source is read (``pip install
'mathdistill[hub]'``). The Hub cache is the library's own (``HF_HOME`` / ``HF_DATASETS_CACHE``;
a ``cache_dir`` is passed only when a caller gives one), ``HF_DATASETS_OFFLINE=1`` /
``HF_HUB_OFFLINE=1`` work as usual, and ``revision`` (a commit sha, tag or branch; None = the
repository's default branch) is passed through. What the library raises -- unknown repository,
revision or split, no network, offline without a cached copy -- becomes a :class:`DataError`
naming the repository.

``$MATHDISTILL_HUB_ROOT`` (read when a load happens): a folder holding local copies of Hub
dataset repositories as ``<owner>/<name>/`` (e.g. made by ``huggingface-cli download
openai/gsm8k --repo-type dataset --local-dir $MATHDISTILL_HUB_ROOT/openai/gsm8k``). When it is
set, ``load_dataset`` reads the copy there (its README's ``configs:`` and its data files, as
the Hub would) and never the network; a repository missing from it is an error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping

from distill.data.base import (
    DataError,
    DataNotFoundError,
    LoadResult,
    UnknownSplitError,
    dataset_names,
    get_loader,
)

if TYPE_CHECKING:
    from distill.data.loaders._common import Entry

HUB_ROOT_ENV = "MATHDISTILL_HUB_ROOT"
INSTALL_HINT = "pip install 'mathdistill[hub]'"
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubSource:
    """Where a dataset's Hub copy is and how its rows map onto the local record shape.

    ``splits``: our split -> the Hub splits whose rows, concatenated in that order, make it.
    ``to_record``: one Hub row (a dict) -> the record as the local file holds it; it only
    reshapes (renames, drops derived columns, restores a type) and never raises: a bad value is
    left for the loader to reject, as it would be in the local file. ``positions``: how the
    local reader numbers records, so that ids built from positions agree.
    """

    repo: str
    config: str | None  # None: the repository's default config
    splits: Mapping[str, tuple[str, ...]]
    to_record: Callable[[dict[str, Any]], Any] = dict
    positions: Literal["line", "index"] = "index"

    def url(self, revision: str | None, hub_split: str) -> str:
        """``hf://<repo>@<revision or 'default'>/<config or 'default'>/<hub split>``."""
        return f"hf://{self.repo}@{revision or 'default'}/{self.config or 'default'}/{hub_split}"

    def describe(self) -> str:
        """``openai/gsm8k (config main; splits train, test)``, for listings and messages."""
        return (f"{self.repo} (config {self.config or 'default'}; splits "
                f"{', '.join(self.splits)})")


def hub_datasets() -> dict[str, HubSource]:
    """Every registered dataset that has a Hub source, by name."""
    return {name: src for name in dataset_names()
            if (src := getattr(get_loader(name), "hub", None)) is not None}


def hub_source(name: str) -> HubSource:
    """The Hub source of dataset ``name``; a dataset without one raises DataError naming the
    datasets that have one (an unknown name raises UnknownDatasetError)."""
    source = getattr(get_loader(name), "hub", None)
    if source is None:
        have = ", ".join(hub_datasets()) or "(none)"
        raise DataError(f"dataset {name!r} has no Hugging Face Hub source (source: hub); "
                        f"datasets with one: {have}. Read it from local files (source: local).")
    return source


def hub_location(repo: str) -> str:
    """What ``load_dataset`` is given for ``repo``: the repository id, or its local copy under
    ``$MATHDISTILL_HUB_ROOT`` when that is set (missing there: DataNotFoundError)."""
    root = os.environ.get(HUB_ROOT_ENV)
    if not root:
        return repo
    local = Path(root).expanduser() / repo
    if not local.is_dir():
        raise DataNotFoundError(f"{local}: no such folder ({HUB_ROOT_ENV} is set, so Hub "
                                f"dataset {repo!r} is read from a local copy there)")
    return str(local)


def load_hub(name: str, split: str, revision: str | None = None,
             cache_dir: str | None = None) -> LoadResult:
    """Every record of split ``split`` of dataset ``name``, read from its Hub copy, as a row or
    a reject -- by the loader's own ``rows``, as for its local files."""
    loader = get_loader(name)
    source = hub_source(name)
    if split not in source.splits:
        raise UnknownSplitError(f"dataset {name!r} has no split {split!r} on the Hub "
                                f"({source.repo}); available: {', '.join(source.splits)}")
    return loader.rows(split, hub_entries(source, split, revision, cache_dir))


def hub_entries(source: HubSource, split: str, revision: str | None = None,
                cache_dir: str | None = None) -> Iterator[Entry]:
    """The rows of our split ``split`` from the Hub, as entries (see the module docstring)."""
    # not at module level: the loaders import HubSource from here
    from distill.data.loaders._common import Entry, dump

    offset = 1 if source.positions == "line" else 0
    for hub_split in source.splits[split]:
        url = source.url(revision, hub_split)
        for i, row in enumerate(_load_split(source, hub_split, revision, cache_dir)):
            yield Entry(url, f"index {i}", dump(row), record=source.to_record(dict(row)),
                        pos=i + offset)


def _load_split(source: HubSource, hub_split: str, revision: str | None,
                cache_dir: str | None) -> Any:
    """``datasets.load_dataset`` for one Hub split; its errors as DataError naming the repo."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"reading {source.repo} from the Hugging Face Hub needs the `datasets` "
                        f"package: {INSTALL_HINT}") from None
    location = hub_location(source.repo)
    kwargs: dict[str, Any] = {"split": hub_split, "revision": revision}
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    what = (f"Hub dataset {source.repo} (config {source.config or 'default'}, split {hub_split}, "
            f"revision {revision or 'default'})")
    try:
        return datasets.load_dataset(location, source.config, **kwargs)
    except ConnectionError as e:
        if _offline():
            raise DataError(f"{what} is not in the local cache and offline mode is on "
                            "(HF_DATASETS_OFFLINE / HF_HUB_OFFLINE): load it once online, or "
                            "unset offline mode") from None
        raise DataError(f"{what}: could not reach the Hugging Face Hub ({e})") from None
    except Exception as e:  # unknown repo/revision/config/split, unreadable files, HTTP errors
        raise DataError(f"{what}: {type(e).__name__}: {e}") from None


def _offline() -> bool:
    """Whether ``datasets`` runs offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE), as it decided
    when imported; ``HF_HUB_OFFLINE`` is the name since datasets 2.x's late releases."""
    try:
        import datasets.config as config
    except ImportError:
        return False
    return bool(getattr(config, "HF_HUB_OFFLINE", getattr(config, "HF_DATASETS_OFFLINE", False)))


# --------------------------------------------------------------------------- stage identity


def hub_inputs(name: str, revision: str | None) -> list[tuple[str, Path]]:
    """What a run keys its data stage on for a Hub source, as (name, path) pairs like
    :func:`distill.data.stage.input_files`' files.

    The first pair's name is the source's identity -- ``hub:<repo>@<revision as given or
    'default'>/<config>#<resolved commit or 'unresolved'>`` -- and its path is the empty
    ``os.devnull`` (it has no bytes of its own). With ``$MATHDISTILL_HUB_ROOT`` set, the local
    copy's files follow (``hub:<repo>/<file>``), so an edited copy re-runs the stage."""
    source = hub_source(name)
    root = os.environ.get(HUB_ROOT_ENV)
    files: list[tuple[str, Path]] = []
    if root:
        local = Path(root).expanduser() / source.repo
        if local.is_dir():
            files = [(f"hub:{source.repo}/{p.relative_to(local).as_posix()}", p)
                     for p in sorted(local.rglob("*")) if p.is_file()]
        commit = "local-copy"
    else:
        commit = resolve_commit(source.repo, revision) or "unresolved"
    identity = (f"hub:{source.repo}@{revision or 'default'}/{source.config or 'default'}"
                f"#{commit}")
    return [(identity, Path(os.devnull)), *files]


def resolve_commit(repo: str, revision: str | None) -> str | None:
    """The commit sha ``revision`` of dataset ``repo`` names on the Hub, if it can be known:
    a full sha as given; online, what the Hub says; offline or unreachable, the commit the Hub
    cache last fetched for it (``refs/<revision or main>``); else None. Never raises (the load
    itself reports an unknown repository or revision)."""
    if revision and _SHA.fullmatch(revision):
        return revision
    try:
        import datasets  # noqa: F401  (without it the load fails anyway, saying so)
        from huggingface_hub import HfApi, constants
    except ImportError:
        return None
    if not _offline():
        try:
            return HfApi().dataset_info(repo, revision=revision, timeout=10).sha
        except Exception:  # unreachable, unknown: fall back to the cache
            pass
    ref = (Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}" / "refs"
           / (revision or "main"))
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None
