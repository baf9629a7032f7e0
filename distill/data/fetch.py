"""``mathdistill data fetch``: download a registered dataset's files from where they are
published, into the layout its loader reads, each checked against a recorded SHA-256.

The table of files is ``distill/data/upstream.tsv`` (:func:`upstream_files`): per file, the
datasets that read it, where it goes under the data folder, the GitHub repository, the commit it
is pinned to, the path there (and the member, for a file inside a zip archive), its size and
SHA-256. A file is fetched from ``<base>/<repository>/<commit>/<path>`` where ``<base>`` is
``https://raw.githubusercontent.com`` or ``$MATHDISTILL_FETCH_BASE_URL`` (a mirror with the same
layout; the tests' loopback server).

Contract of :func:`fetch` (per file, independently; one failure never stops the others):

* A file already present with the recorded checksum is left alone (``present``). One that
  differs is never overwritten unless ``force`` (``differs``: refused, the user's file kept).
* The download goes to ``<file>.part`` beside the target; an interrupted download (a dropped
  connection, a short body) is resumed from the bytes already there with an HTTP ``Range``
  request (or restarted when the server ignores ranges), up to ``retries`` times, and a
  ``.part`` left by an earlier interrupted fetch is resumed the same way.
* Only a complete file whose size and SHA-256 match is moved into place (an atomic rename): a
  wrong checksum leaves nothing at the target and removes the ``.part`` (``bad checksum``).
  A 404 or another HTTP error is reported with the URL (``not found`` / ``http error``).
* A member of a zip archive is extracted from the downloaded archive, checked, and moved into
  place; the archive (a ``.part`` file this fetch made) is removed afterwards.

Nothing else under the data folder is touched. Licences: :data:`LICENCES` says, per dataset,
the licence its upstream repository states (or that it states none) and what it asks of users;
:func:`licence_lines` gives what ``data fetch`` prints after fetching.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from distill.data.base import DataError

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "FetchResult",
    "LICENCES",
    "UpstreamFile",
    "fetch",
    "fetchable_datasets",
    "licence_lines",
    "upstream_files",
]

BASE_URL_ENV = "MATHDISTILL_FETCH_BASE_URL"
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
_TABLE = Path(__file__).with_name("upstream.tsv")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class UpstreamFile:
    """One published file: where it goes (``file``, relative to the data folder) and where it
    comes from. ``member``: the file inside the zip archive at ``path`` ("" for a plain file);
    ``size`` and ``sha256`` are those of the file written."""

    datasets: tuple[str, ...]
    file: str
    repository: str
    commit: str
    path: str
    member: str
    size: int
    sha256: str

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.repository}/{self.commit}/{self.path}"


@dataclass
class FetchResult:
    """What happened to one file: ``status`` is ``wrote``, ``present``, ``differs``,
    ``bad checksum``, ``not found`` or ``http error``; ``detail`` says more (the URL, the
    checksums). ``ok``: the file is in place with its recorded checksum."""

    file: str
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("wrote", "present")


# What each dataset's upstream repository says about its licence (checked in the repositories;
# "none stated" where neither a LICENSE file nor the README gives one) and, where it asks for
# something, what: printed by `data fetch`.
LICENCES: dict[str, str] = {
    "gsm8k": "MIT (openai/grade-school-math, Copyright (c) 2021 OpenAI): keep the copyright "
             "and permission notice (gsm8k/LICENSE) with copies",
    "svamp": "MIT (arkilpatel/SVAMP, Copyright (c) 2021 Arkil Patel): keep the copyright and "
             "permission notice (svamp/LICENSE) with copies",
    "mawps": "MIT (LYH-YF/MWPToolkit, Copyright (c) 2021 Singapore Management University): "
             "keep the notice (mawps/LICENSE.MWPToolkit) with copies",
    "math23k": "none stated upstream (qinzhuowu/MWPGen, 2003pro/Graph2Tree); cite Wang et al., "
               "EMNLP 2017 (Math23K)",
    "asdiv": "none stated upstream (chaochun/nlu-asdiv-dataset); cite Miao et al., ACL 2020",
    "asdiv-a": "none stated upstream (chaochun/nlu-asdiv-dataset); cite Miao et al., ACL 2020",
    "multiarith": "none stated upstream (kojima-takeshi188/zero_shot_cot); cite Roy & Roth, "
                  "EMNLP 2015",
    "addsub": "none stated upstream (kojima-takeshi188/zero_shot_cot); cite Hosseini et al., "
              "EMNLP 2014",
    "singleeq": "none stated upstream (kojima-takeshi188/zero_shot_cot); cite Koncel-Kedziorski "
                "et al., TACL 2015",
    "weak12k": "none stated upstream (pass-lin/CMCTS); only its valid and test files are "
               "published there (no train split)",
    "math500": "none stated upstream (pass-lin/CMCTS); MATH (Hendrycks et al., 2021) is MIT; "
               "the subset is Lightman et al., 2023",
}


def upstream_files(table: Path = _TABLE) -> list[UpstreamFile]:
    """The rows of the upstream table (``#`` lines are comments). A malformed row raises
    DataError naming its line."""
    rows: list[UpstreamFile] = []
    with table.open(encoding="utf-8") as f:
        lines = [(n, line) for n, line in enumerate(f, start=1) if not line.startswith("#")]
    reader = csv.DictReader((line for _, line in lines), delimiter="\t")
    for (lineno, _), rec in zip(lines[1:], reader):
        try:
            rows.append(UpstreamFile(
                datasets=tuple(d.strip() for d in rec["datasets"].split(",")),
                file=rec["file"], repository=rec["repository"], commit=rec["commit"],
                path=rec["path"], member=rec["member"] or "", size=int(rec["bytes"]),
                sha256=rec["sha256"].lower()))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{table}: line {lineno}: malformed row ({e})") from None
    return rows


def fetchable_datasets(files: Iterable[UpstreamFile] | None = None) -> list[str]:
    """The datasets the table has files for, sorted."""
    files = upstream_files() if files is None else files
    return sorted({d for f in files for d in f.datasets})


def files_of(dataset: str, files: Iterable[UpstreamFile] | None = None) -> list[UpstreamFile]:
    """The table's files for ``dataset``; a dataset it has none for raises DataError listing
    those it has."""
    files = upstream_files() if files is None else list(files)
    mine = [f for f in files if dataset in f.datasets]
    if not mine:
        raise DataError(f"no upstream files are recorded for dataset {dataset!r}; `data fetch` "
                        f"knows: {', '.join(fetchable_datasets(files))}")
    return mine


def licence_lines(datasets: Iterable[str]) -> list[str]:
    """``<dataset>: licence <what upstream states>`` for each dataset, in order."""
    return [f"{d}: licence {LICENCES[d]}" for d in datasets if d in LICENCES]


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _HTTPFailure(Exception):
    """A response that retrying will not mend (404, 403, ...)."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _download(url: str, part: Path, retries: int, timeout: float,
              sleep: Callable[[float], None]) -> None:
    """Fill ``part`` with the whole body at ``url``, resuming from what ``part`` holds.
    Raises _HTTPFailure for an HTTP error status, OSError when every attempt was cut."""
    attempts = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "mathdistill-fetch"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                resumed = response.status == 206
                length = response.headers.get("Content-Length")
                expected = (have if resumed else 0) + int(length) if length is not None else None
                with part.open("ab" if resumed else "wb") as out:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
            got = part.stat().st_size
            if expected is not None and got < expected:
                raise ConnectionError(f"connection closed after {got} of {expected} bytes")
            return
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # the .part already holds the whole body
                return
            status = "not found" if e.code == 404 else "http error"
            raise _HTTPFailure(status, f"{url}: HTTP {e.code} {e.reason}") from None
        except (OSError, http.client.HTTPException) as e:  # cut, refused, timed out
            attempts += 1
            if attempts > retries:
                raise OSError(f"{url}: download failed after {attempts} attempt(s): "
                              f"{getattr(e, 'reason', e)}") from None
            sleep(min(2.0 ** attempts, 30.0))


def _fetch_one(spec: UpstreamFile, data_dir: Path, base_url: str, force: bool, retries: int,
               timeout: float, sleep: Callable[[float], None]) -> FetchResult:
    target = data_dir / spec.file
    if target.is_file():
        have = _sha256_of(target)
        if have == spec.sha256:
            return FetchResult(spec.file, "present", "sha256 ok")
        if not force:
            return FetchResult(spec.file, "differs", f"sha256 {have}, expected {spec.sha256}; "
                               "kept as it is (--force replaces it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    url = spec.url(base_url)
    download = target.with_name(target.name + (".zip.part" if spec.member else ".part"))
    try:
        _download(url, download, retries, timeout, sleep)
    except _HTTPFailure as e:
        return FetchResult(spec.file, e.status, e.detail)
    except OSError as e:  # the .part stays: the next fetch resumes it
        return FetchResult(spec.file, "http error", str(e))
    written = download
    if spec.member:
        written = target.with_name(target.name + ".part")
        try:
            with zipfile.ZipFile(download) as archive, archive.open(spec.member) as src, \
                    written.open("wb") as out:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    out.write(chunk)
        except (zipfile.BadZipFile, KeyError) as e:
            download.unlink()
            written.unlink(missing_ok=True)
            return FetchResult(spec.file, "bad checksum", f"{url}: not a zip archive holding "
                               f"{spec.member} ({e}); removed")
        download.unlink()
    size, digest = written.stat().st_size, _sha256_of(written)
    if (size, digest) != (spec.size, spec.sha256):
        written.unlink()
        return FetchResult(spec.file, "bad checksum", f"{url}: got {size} bytes, sha256 "
                           f"{digest}; expected {spec.size} bytes, sha256 {spec.sha256}; "
                           "nothing written")
    os.replace(written, target)
    return FetchResult(spec.file, "wrote", f"{size:,} bytes, sha256 ok, from {url}")


def fetch(dataset: str, data_dir: Path, *, force: bool = False,
          base_url: str | None = None, files: Iterable[UpstreamFile] | None = None,
          retries: int = 3, timeout: float = 60.0,
          sleep: Callable[[float], None] = time.sleep) -> list[FetchResult]:
    """Fetch every upstream file of ``dataset`` into ``data_dir`` (see the module docstring);
    one :class:`FetchResult` per file, in table order. ``base_url``: default
    ``$MATHDISTILL_FETCH_BASE_URL``, else :data:`DEFAULT_BASE_URL`. ``files``: the table
    (default :func:`upstream_files`)."""
    base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return [_fetch_one(spec, Path(data_dir), base, force, retries, timeout, sleep)
            for spec in files_of(dataset, files)]
