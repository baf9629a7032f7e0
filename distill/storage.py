"""Where a run's files live: a local folder (a laptop, or a shared mount every node sees) or an
object store (``s3://bucket/prefix``, ``gs://bucket/prefix``, any URI ``pyarrow.fs`` resolves).

:func:`run_location` turns what the user gave (``--run-dir``, ``run_dir:``) into a path object:
a :class:`pathlib.Path` for a local folder, a :class:`RemotePath` for a URI. ``RemotePath`` has
the part of ``Path``'s interface a run uses (``/``, ``name``, ``parent``, ``exists``,
``is_file``, ``is_dir``, ``iterdir``, ``glob``, ``mkdir``, ``read_text``/``write_text``,
``read_bytes``/``write_bytes``, ``open``, ``unlink``, ``replace``), so stage code is written once
for both; ``str()`` of it is its URI, which Ray Data, Ray Train and ``pyarrow.parquet`` resolve
themselves. The few operations ``Path`` has no method for go through this module:
:func:`rmtree`, :func:`local_copy` (a folder Hugging Face can load), :func:`upload_dir`.

Object stores have no rename: ``replace`` copies, and a single ``write_*`` is one PUT, which is
atomic (readers see the whole object or none); on a local filesystem named by a URI
(``file://``) it is a temporary file and a rename (:func:`write_whole`, also what the
generation stage's shards use), so :func:`distill.fileio.write_atomic` writes any
``RemotePath`` directly. Credentials and endpoints come from the environment the way ``pyarrow.fs``
reads them (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL`` for an S3-compatible server such as
MinIO, ``GOOGLE_APPLICATION_CREDENTIALS``); a job on a cluster passes them to every node in its
runtime environment's ``env_vars``. Standard library and pyarrow only.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import posixpath
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

__all__ = ["RemotePath", "StorageError", "StoragePath", "is_remote", "is_uri", "local_copy",
           "rmtree", "run_location", "upload_dir", "write_whole"]


class StorageError(ValueError):
    """An object-store location that cannot be opened (unknown scheme, no such bucket, no
    credentials, unreachable endpoint)."""


def is_uri(location: str | os.PathLike) -> bool:
    """Whether ``location`` names an object store (``scheme://…``) rather than a local path."""
    return "://" in str(location)


class RemotePath:
    """A file or folder on a ``pyarrow.fs`` filesystem, named by its URI (see the module doc).

    Folders are prefixes: ``mkdir`` writes nothing an object store needs, ``is_dir`` is true
    when anything lies under the prefix, ``iterdir`` lists the direct children."""

    def __init__(self, uri: str, *, _fs: Any = None, _path: str | None = None) -> None:
        uri = uri.rstrip("/")
        if _fs is None:
            import pyarrow as pa
            import pyarrow.fs as pafs

            try:
                _fs, _path = pafs.FileSystem.from_uri(uri)
            except (OSError, pa.ArrowException) as e:
                raise StorageError(
                    f"{uri}: cannot open this storage location ({e}); check the URI, and the "
                    "credentials and endpoint the environment gives pyarrow (AWS_*, "
                    "GOOGLE_APPLICATION_CREDENTIALS)") from None
        self._uri, self.fs, self.path = uri, _fs, (_path or "").rstrip("/")

    # -- naming
    def __str__(self) -> str:
        return self._uri

    def __repr__(self) -> str:
        return f"RemotePath({self._uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other._uri == self._uri

    def __hash__(self) -> int:
        return hash(self._uri)

    def __truediv__(self, part: str | os.PathLike) -> RemotePath:
        part = str(part).strip("/")
        return RemotePath(f"{self._uri}/{part}", _fs=self.fs, _path=f"{self.path}/{part}")

    def joinpath(self, *parts: str) -> RemotePath:
        out = self
        for p in parts:
            out = out / p
        return out

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def parent(self) -> RemotePath:
        if "/" not in self.path:  # the bucket is its own parent, as "/" is
            return self
        cut = len(self.name) + 1
        return RemotePath(self._uri[:-cut], _fs=self.fs, _path=self.path[:-cut])

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def relative_to(self, other: RemotePath) -> str:
        if not (self.path + "/").startswith(other.path + "/"):
            raise ValueError(f"{self} is not under {other}")
        return self.path[len(other.path) + 1:]

    def absolute(self) -> RemotePath:
        return self

    resolve = absolute

    # -- what is there
    def _type(self) -> Any:
        return self.fs.get_file_info(self.path).type

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() == pafs.FileType.Directory

    def iterdir(self) -> Iterator[RemotePath]:
        import pyarrow.fs as pafs

        if not self.is_dir():
            raise FileNotFoundError(f"{self}: no such folder")
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=False))
        for info in sorted(infos, key=lambda i: i.path):
            yield self / posixpath.basename(info.path.rstrip("/"))

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """The paths under this folder matching ``pattern`` (``*`` within one level, as
        ``Path.glob`` without ``**``)."""
        import pyarrow.fs as pafs

        if not self.is_dir():
            return
        depth = pattern.count("/") + 1
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=depth > 1))
        for info in sorted(infos, key=lambda i: i.path):
            rel = info.path[len(self.path) + 1:].rstrip("/")
            if rel.count("/") + 1 == depth and fnmatch.fnmatchcase(rel, pattern):
                yield self / rel

    # -- reading and writing
    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        if self.is_file():
            raise FileExistsError(f"{self} is a file")
        self.fs.create_dir(self.path, recursive=True)

    def read_bytes(self) -> bytes:
        try:
            with self.fs.open_input_stream(self.path) as f:
                return f.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self}: no such file") from None

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        write_whole(self.fs, self.path, data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    @contextlib.contextmanager
    def open(self, mode: str = "r", encoding: str | None = "utf-8") -> Iterator[Any]:
        """Read (``r``/``rb``) or write (``w``/``wb``) the file; a write is uploaded once, when
        the block ends without an error."""
        if mode in ("r", "rb"):
            data = self.read_bytes()
            yield (io.BytesIO(data) if mode == "rb"
                   else io.StringIO(data.decode(encoding or "utf-8")))
        elif mode in ("w", "wb"):
            buf = io.BytesIO() if mode == "wb" else io.StringIO()
            yield buf
            value = buf.getvalue()
            self.write_bytes(value if mode == "wb" else value.encode(encoding or "utf-8"))
        else:
            raise ValueError(f"RemotePath.open: mode {mode!r} (r, rb, w, wb)")

    def unlink(self, missing_ok: bool = False) -> None:
        if not self.is_file():
            if missing_ok:
                return
            raise FileNotFoundError(f"{self}: no such file")
        self.fs.delete_file(self.path)

    def replace(self, target: RemotePath) -> RemotePath:
        self.fs.move(self.path, target.path)  # a copy then a delete on object stores
        return target


def write_whole(fs: Any, path: str, data: bytes) -> None:
    """``data`` at ``path`` on the pyarrow filesystem ``fs``, all of it or nothing: on a local
    filesystem a hidden temporary file beside the target (``.<name>.<hex>.tmp``), then a rename;
    on an object store one PUT, which readers see whole or not at all."""
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        folder, name = posixpath.split(path)
        fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    else:
        with fs.open_output_stream(path) as f:
            f.write(data)


#: A run's path: local, or on an object store.
StoragePath = Path | RemotePath


def is_remote(path: Any) -> bool:
    return isinstance(path, RemotePath)


def run_location(location: str | os.PathLike) -> StoragePath:
    """``location`` as a path object: :class:`RemotePath` for a URI, else a local ``Path``."""
    if isinstance(location, RemotePath):
        return location
    return RemotePath(str(location)) if is_uri(location) else Path(location)


def rmtree(path: StoragePath) -> None:
    """Delete the folder ``path`` and everything under it (nothing when it is missing)."""
    if isinstance(path, RemotePath):
        if path.exists():
            path.fs.delete_dir(path.path)
    elif path.exists():
        shutil.rmtree(path)


@contextlib.contextmanager
def local_copy(location: str | os.PathLike) -> Iterator[Path]:
    """A local folder holding ``location``'s files: the folder itself when it is local, else a
    temporary download removed when the block ends."""
    if not is_uri(location):
        yield Path(location)
        return
    import pyarrow.fs as pafs

    remote = run_location(location)
    with tempfile.TemporaryDirectory(prefix="mathdistill-") as tmp:
        pafs.copy_files(remote.path, tmp, source_filesystem=remote.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        yield Path(tmp)


def upload_dir(local: str | os.PathLike, target: StoragePath) -> None:
    """Copy the local folder ``local`` to ``target`` (a local copy when ``target`` is local)."""
    if isinstance(target, RemotePath):
        import pyarrow.fs as pafs

        target.mkdir(parents=True, exist_ok=True)  # a file:// URI needs the folder
        pafs.copy_files(str(Path(local).absolute()), target.path,
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=target.fs)
    else:
        shutil.copytree(local, target, dirs_exist_ok=True)
