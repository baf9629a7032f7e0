"""What a stage's rows were computed from: the version of the code and the identity of files.

A run skips a stage only when nothing that changes its rows has changed (see
:mod:`distill.pipeline`). Two of those things are not in the config:

* the code: :func:`code_version` hashes the source of the stage's modules and of every module
  of this package they import, at any depth and from any place in a file (imports inside
  functions included), so an edit to the code a stage runs changes its version and an edit
  elsewhere does not;
* the input files: :func:`files_fingerprint` hashes the content of the files a stage reads
  (their names relative to where they were found, and their bytes), so a changed
  ``MATHDISTILL_DATA_DIR`` or an edited file is seen, and the same files found elsewhere are not.

:func:`git_version` is the commit the code came from, for the record only (a stage is never
keyed on it: a commit that touches only docs must not re-run a day of generation).
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Iterable

PACKAGE = "distill"
_ROOT = Path(__file__).resolve().parent  # the package folder


def _module_file(name: str) -> Path | None:
    """The source file of ``distill.x.y`` (module or package), None when there is none."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = _ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _parse(source: str, filename: str, attempts: int = 5) -> ast.Module:
    """``ast.parse``, again when CPython 3.11's parser trips over another thread's parse
    (``SystemError: AST constructor recursion depth mismatch``, python/cpython#106905: Ray
    Data's usage poller formats tracebacks, which parses, while a stage key is computed)."""
    for _ in range(attempts - 1):
        try:
            return ast.parse(source, filename=filename)
        except SystemError as e:
            if "recursion depth mismatch" not in str(e):
                raise
    return ast.parse(source, filename=filename)


def _imports_of(path: Path, module: str) -> set[str]:
    """Every ``distill`` module named by an import anywhere in ``path`` (``module`` is its
    dotted name, for relative imports), with the packages above each one."""
    tree = _parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1])
                prefix = f"{base}.{node.module}" if node.module else base
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)  # submodules
    found: set[str] = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            if _module_file(".".join(parts[:i])) is not None:
                found.add(".".join(parts[:i]))
    return found


@lru_cache(maxsize=None)
def module_closure(entries: tuple[str, ...]) -> tuple[Path, ...]:
    """The source files of ``entries`` and of every package module they import, transitively.

    An entry that names no module of this package raises ``ValueError`` (a typo would
    otherwise give a version that never changes)."""
    todo = list(entries)
    for name in todo:
        if _module_file(name) is None:
            raise ValueError(f"{name!r} is not a module of the {PACKAGE} package")
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        todo.extend(_imports_of(path, name) - seen.keys())
    return tuple(sorted(set(seen.values())))


def code_version(entries: Iterable[str]) -> str:
    """A short hash of the source of ``entries`` and everything of this package they import."""
    digest = hashlib.sha256()
    for path in module_closure(tuple(sorted(entries))):
        digest.update(path.relative_to(_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def files_fingerprint(files: Iterable[tuple[str, Path]]) -> str:
    """A short hash of files given as (name, path): the names and the bytes, in name order.

    The name is how the stage found the file (relative to the data folder, say), so the same
    files in another folder give the same fingerprint. A missing file hashes as missing."""
    digest = hashlib.sha256()
    for name, path in sorted(files, key=lambda f: f[0]):
        digest.update(name.encode() + b"\0")
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0file")
        except FileNotFoundError:
            digest.update(b"\0missing")
    return digest.hexdigest()[:16]


def git_version() -> str:
    """The git commit of the code (with '+dirty' for local changes), else the package version."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=_ROOT, capture_output=True, text=True, timeout=5,
            )
            return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mathdistill")
    except PackageNotFoundError:
        return "unknown"
