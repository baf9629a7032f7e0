"""Namespace backends for the sandbox workers: bwrap, unshare (util-linux) and none.

A backend turns the worker's command line into the command that starts it inside its
namespaces (one launch per *worker*, never per program) and says whether it can run here.
They are registered by name (:func:`register_isolation`, :func:`get_isolation`); the pool walks
``AUTO_ORDER`` for ``isolation="auto"``.

What every backend exposes to the worker (and so to programs): the system directories
(``/usr``, ``/lib*``, ``/bin``, ``/sbin``), ``/etc/ld.so.cache``, the Python installation and its
site-packages, ``/dev/{null,zero,full,random,urandom}``, a ``/proc`` of the sandbox's own pid
namespace and a size-limited tmpfs ``/tmp``; everything read-only but ``/tmp``. Nothing else of
the host (no home directories, no repository, no ``/etc/shadow``) exists inside.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from typing import Protocol

from distill.registry import Registry
from distill.sandbox.config import SandboxConfig

__all__ = [
    "AUTO_ORDER",
    "IsolationBackend",
    "get_isolation",
    "isolation_names",
    "register_isolation",
    "sandbox_binds",
]

AUTO_ORDER = ("bwrap", "unshare", "none")
DEFAULT_UID_BASE: int = SandboxConfig.model_fields["uid_base"].default
# A root host: the unshare backend maps the sandbox to unprivileged host uids and runs programs
# under a uid of their own; bwrap (started as uid_base) gives programs the worker's uid.
AUTO_ORDER_ROOT = ("unshare", "bwrap", "none")


def auto_order() -> tuple[str, ...]:
    """The backends ``isolation="auto"`` tries, strongest first, for this process's uid."""
    return AUTO_ORDER_ROOT if os.geteuid() == 0 else AUTO_ORDER
_SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")
_DEV_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_PROBE_TIMEOUT_S = 10.0


class IsolationBackend(Protocol):
    """How a worker is launched inside (or without) namespaces."""

    name: str
    #: The namespace layers this backend sets up, for the report.
    namespaces: tuple[str, ...]
    #: True when the worker must build its own read-only root (unshare does not do it).
    worker_builds_root: bool

    def unavailable(self) -> str | None:
        """None when this backend can start workers here, else why not."""

    def wrap(self, argv: list[str], binds: list[tuple[str, str]], scratch_mb: int,
             uid_base: int) -> list[str]:
        """The command that runs ``argv`` inside this backend's namespaces; ``uid_base`` is the
        unprivileged host uid a root host runs the sandbox as (``SandboxConfig.uid_base``)."""


_REGISTRY: Registry[IsolationBackend] = Registry("isolation backend", KeyError)


def register_isolation(backend: IsolationBackend) -> IsolationBackend:
    """Add ``backend`` under ``backend.name``; a second one with the same name raises."""
    return _REGISTRY.register(backend.name, backend)


def get_isolation(name: str) -> IsolationBackend:
    """The backend registered as ``name``; an unknown name raises KeyError."""
    return _REGISTRY.get(name)


def isolation_names() -> list[str]:
    return _REGISTRY.names()


# --------------------------------------------------------------------------------------------
# What the sandbox sees
# --------------------------------------------------------------------------------------------


def python_paths() -> tuple[list[str], list[str]]:
    """(directories the interpreter needs, site-packages directories to put on sys.path)."""
    need = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
            os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]
    site_dirs: list[str] = []
    paths = sysconfig.get_paths()
    for key in ("purelib", "platlib"):
        if paths.get(key):
            site_dirs.append(paths[key])
    for p in sys.path:
        if p and ("site-packages" in p or "dist-packages" in p) and os.path.isdir(p):
            site_dirs.append(p)
    for key in ("stdlib", "platstdlib"):
        if paths.get(key):
            need.append(paths[key])
    site_dirs = list(dict.fromkeys(os.path.realpath(p) for p in site_dirs if os.path.isdir(p)))
    return need + site_dirs, site_dirs


@functools.lru_cache(maxsize=1)
def sandbox_binds() -> tuple[tuple[str, str], ...]:
    """``(host path, kind)`` pairs to expose read-only; kind is dir, file, symlink or dev.
    Sorted so that parents come first; a path under an exposed directory is not repeated."""
    out: dict[str, str] = {}
    for p in _SYSTEM_DIRS:
        if os.path.islink(p):
            out[p] = "symlink"
        elif os.path.isdir(p):
            out[p] = "dir"
    for p in _SYSTEM_FILES:
        if os.path.islink(p):
            out[p] = "symlink"
        elif os.path.isfile(p):
            out[p] = "file"
    dirs, _ = python_paths()
    for p in dirs:
        if os.path.isdir(p):
            out.setdefault(os.path.realpath(p), "dir")
    for p in _DEV_NODES:
        if os.path.exists(p):
            out[p] = "dev"
    kept: list[tuple[str, str]] = []
    for path in sorted(out, key=lambda s: (s.count("/"), s)):
        kind = out[path]
        if kind != "symlink" and any(
            k == "dir" and (path + "/").startswith(p.rstrip("/") + "/") and p != path
            for p, k in kept
        ):
            continue
        if kind != "symlink" and _under_symlink(path, kept):
            continue
        kept.append((path, kind))
    return tuple(sorted(kept))


def _under_symlink(path: str, kept: list[tuple[str, str]]) -> bool:
    """A real path below an exposed symlink (``/lib64/x`` when ``/lib64 -> usr/lib64``) is
    reached through the link's target, which must be exposed itself."""
    return any(k == "symlink" and path.startswith(p + "/") for p, k in kept)


def _run_probe(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=_PROBE_TIMEOUT_S, env={"PATH": "/usr/bin:/bin"},
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{cmd[0]}: {e}"
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        return f"{' '.join(cmd[:3])} ...: {msg[-1] if msg else f'exit status {proc.returncode}'}"
    return None


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


class BwrapIsolation:
    """bubblewrap: builds the minimal root itself; the worker runs as pid 1 of its namespace.

    bwrap maps the sandbox to the uid that starts it. On a root host it is therefore started
    through ``_bwrap_as_user.py`` as host uid ``uid_base`` (the unprivileged uid the unshare
    backend gives its workers), never as root; Python installations that uid could not reach
    (under ``/root``) are made reachable in a private mount namespace first."""

    name = "bwrap"
    namespaces = ("user", "mount", "pid", "net", "ipc", "uts", "cgroup")
    worker_builds_root = False

    def binary(self) -> str | None:
        return shutil.which("bwrap")

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one instance, one probe per process
    def unavailable(self) -> str | None:
        exe = self.binary()
        if exe is None:
            return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
        return _run_probe(self.wrap(["/bin/true" if os.path.exists("/bin/true") else
                                     "/usr/bin/true"], list(sandbox_binds()), 1,
                                    DEFAULT_UID_BASE))

    def wrap(self, argv: list[str], binds: list[tuple[str, str]], scratch_mb: int,
             uid_base: int) -> list[str]:
        cmd = [os.path.realpath(self.binary() or "bwrap"), "--die-with-parent", "--new-session", "--unshare-all",
               "--as-pid-1", "--cap-drop", "ALL",
               # The scratch tmpfs first: an exposed path under /tmp (a venv or checkout there)
               # is then bound on top of it instead of being hidden by it.
               "--size", str(int(scratch_mb) << 20), "--tmpfs", "/tmp"]
        for path, kind in binds:
            if kind == "symlink":
                cmd += ["--symlink", os.readlink(path), path]
            elif kind == "dev":
                cmd += ["--dev-bind", path, path]
            else:
                cmd += ["--ro-bind", path, path]
        # /proc read-only as a whole (bwrap makes /proc/sys read-only already): no program
        # writes the worker's oom_score_adj, coredump_filter or comm
        cmd += ["--proc", "/proc", "--remount-ro", "/proc", "--remount-ro", "/", "--chdir", "/",
                "--"]
        if os.geteuid() == 0:
            cmd = as_unprivileged_user(cmd, binds, uid_base)
        return cmd + argv


def as_unprivileged_user(cmd: list[str], binds: list[tuple[str, str]], uid: int) -> list[str]:
    """``cmd`` (a root host's bwrap command) started as host ``uid`` instead of root."""
    launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bwrap_as_user.py")
    return [os.path.realpath(sys.executable), "-I", "-S", "-B", launcher, str(int(uid)),
            json.dumps([list(b) for b in binds]), "--", *cmd]


_NS_PROBE = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
flags = [int(f) for f in sys.argv[1:]]
why = []
for f in flags:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(f) == 0 else 10 + ctypes.get_errno())
    st = os.waitpid(pid, 0)[1]
    code = os.waitstatus_to_exitcode(st)
    if code == 0:
        sys.exit(0)
    why.append(os.strerror(code - 10) if code >= 10 else f"status {code}")
print("unshare(2) refused: " + "; ".join(why), file=sys.stderr)
sys.exit(1)
"""
_ALL_NS = 0x10000000 | 0x20000 | 0x20000000 | 0x40000000 | 0x8000000 | 0x4000000
_ALL_NS_NO_USER = _ALL_NS & ~0x10000000


class UnshareIsolation:
    """The unshare(2) system call, made by the worker itself (no external binary): new user
    (the sandbox's uid 0 is host uid ``uid_base``, its programs' uid 1 is ``uid_base + 1``;
    an unprivileged host maps only its own uid), mount, pid, net, ipc and uts namespaces; the
    worker builds its read-only root, pivots into it and mounts a read-only, processes-only
    /proc. See ``_worker.launch``."""

    name = "unshare"
    worker_builds_root = True

    @property
    def namespaces(self) -> tuple[str, ...]:
        return ("user", "mount", "pid", "net", "ipc", "uts")

    @functools.lru_cache(maxsize=1)  # noqa: B019
    def unavailable(self) -> str | None:
        flags = [_ALL_NS] + ([_ALL_NS_NO_USER] if os.geteuid() == 0 else [])
        return _run_probe([os.path.realpath(sys.executable), "-I", "-S", "-c", _NS_PROBE,
                           *map(str, flags)])

    def wrap(self, argv: list[str], binds: list[tuple[str, str]], scratch_mb: int,
             uid_base: int) -> list[str]:
        return list(argv)


class NoIsolation:
    """No namespaces: rlimits, seccomp, capabilities, the wall clock, an empty environment and
    the AST check only. Programs can read (and, as the same user, write) the host's files."""

    name = "none"
    namespaces: tuple[str, ...] = ()
    worker_builds_root = False

    def unavailable(self) -> str | None:
        return None

    def wrap(self, argv: list[str], binds: list[tuple[str, str]], scratch_mb: int,
             uid_base: int) -> list[str]:
        return list(argv)


register_isolation(BwrapIsolation())
register_isolation(UnshareIsolation())
register_isolation(NoIsolation())
