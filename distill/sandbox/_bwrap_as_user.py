"""Start bubblewrap as an unprivileged uid from a root host (run as a script, before bwrap).

bwrap maps the sandbox to the uid that starts it, so bwrap started by root makes the sandbox
host root. This launcher makes it start as ``uid`` instead:

1. a private mount namespace of its own (nothing of it reaches the host);
2. every directory to expose that ``uid`` could not reach (a Python under ``/root``, mode 0700)
   is made reachable *in that namespace only*: the top-most ancestor that ``uid`` cannot enter
   is covered with a small read-only tmpfs of 0755 directories, and the exposed paths under it
   are bind-mounted back onto it from descriptors opened before it was covered;
3. all groups dropped, gid and uid set to ``uid`` (root's capabilities go with it);
4. ``exec`` of the bwrap command line, which then creates its own user namespace mapping only
   ``uid``: never host root.

Usage: ``python -I -S _bwrap_as_user.py UID BINDS_JSON -- BWRAP_ARGV...`` where BINDS_JSON is
the list of ``[path, kind]`` pairs bwrap will expose. Runs on the host side, outside the
sandbox; it only reads host paths and mounts in its own namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys

CLONE_NEWNS = 0x20000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(_libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def enterable_by_others(path: str) -> bool:
    """True when a uid that owns nothing and belongs to no group can traverse ``path``."""
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


def blocking_ancestor(path: str) -> str | None:
    """The top-most proper ancestor of ``path`` that a foreign uid cannot enter, or None."""
    parts = path.strip("/").split("/")[:-1]
    current = ""
    for part in parts:
        current += "/" + part
        if not enterable_by_others(current):
            return current
    return None


def plan(binds: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Blocking ancestor -> the exposed (path, kind) pairs below it that must be re-bound."""
    out: dict[str, list[tuple[str, str]]] = {}
    for path, kind in binds:
        if kind not in ("dir", "file"):
            continue
        top = blocking_ancestor(path)
        if top is not None:
            out.setdefault(top, []).append((path, kind))
    if "/" in out:
        raise OSError("the root directory is not enterable by other users")
    return out


def reach(uid_binds: dict[str, list[tuple[str, str]]]) -> None:
    """Make every planned path reachable in this (private) mount namespace."""
    for top, items in sorted(uid_binds.items()):
        items = sorted(items, key=lambda item: item[0].count("/"))  # parents before children
        fds = [(path, kind, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path, kind in items]
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for path, kind, fd in fds:
            parent = os.path.dirname(path)
            os.makedirs(parent, mode=0o755, exist_ok=True)
            if kind == "dir":
                os.makedirs(path, mode=0o755, exist_ok=True)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            os.close(fd)
        _mount(None, top, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def main(argv: list[str]) -> None:
    uid = int(argv[1])
    binds = [tuple(b) for b in json.loads(argv[2])]
    if argv[3] != "--" or len(argv) < 5:
        raise SystemExit("usage: _bwrap_as_user.py UID BINDS_JSON -- BWRAP_ARGV...")
    todo = plan(binds)
    if todo:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        reach(todo)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # root's capabilities are gone from here on
    os.execv(argv[4], argv[4:])


if __name__ == "__main__":
    try:
        main(sys.argv)
    except OSError as e:
        sys.stderr.write(f"starting bwrap as an unprivileged uid failed: {e}\n")
        raise SystemExit(1) from None
