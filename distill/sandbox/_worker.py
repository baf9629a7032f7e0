"""The sandbox worker: lives inside the isolation layers and forks one child per program.

Standard library only. The host never imports this file to run it: it sends the source over the
worker's stdin to a short bootstrap (``python -I -S -B -c <bootstrap>``), together with the
source of :mod:`distill.framing` and :mod:`distill.sandbox.protocol`, which the bootstrap turns
into the module objects ``framing`` and ``protocol`` in this file's globals; so the worker needs
nothing from the repository once its minimal root is built. Tests import it for the pure parts
(:func:`check_program`, :func:`describe_value`); it then imports those two modules as usual.

Protocol on fds 0 (in) and 1 (out): :mod:`distill.framing` frames (a 4-byte big-endian length +
payload) carrying the messages of :mod:`distill.sandbox.protocol`:

* host -> worker, first frame (JSON): ``{"modules": ..., "source": <this file>, "config":
  {...}}`` (read by the bootstrap); the worker answers ``{"hello": ...}`` with the layers it set
  up and verified, or ``{"fatal": reason}`` when a layer it was asked for could not be set up.
* then, per program, binary frames (the hot path stays out of JSON in the worker):
  host -> worker ``REQ_HEAD`` (id, timeout_s, memory_mb, ast_check) + the code in UTF-8;
  worker -> host ``REPLY_HEAD`` (id, duration_s, status) + body, where status 0 means the body
  is the child's JSON report (``kind``, ``detail``, ``source``, ``vtype``, ``vtext``,
  ``stdout``, ``stdout_over``; parsed by the host, never by the worker) and status k > 0 means
  the worker ended the program itself with error ``WORKER_KINDS[k]`` and the body is the detail.
  A child reports to the worker in one frame on its fd 3 (that JSON report); it gets its
  request unframed on fd 4, up to EOF.

Set-up, once: (unshare mode) build the read-only minimal root and pivot into it; import the
preloaded modules and warm sympy up; set the programs' environment (four neutral variables);
drop every capability for good (securebits, no_new_privs); become undumpable (children can
neither ptrace us nor open /proc/<us>/fd); lower the rlimits that hold for us too (file size,
open files, processes, core); verify the layers from inside with a probe child; freeze the GC.

Per program: the *next* child is forked ahead of time (while the host is busy) and restricts
itself before any program exists: own session, /dev/null on fds 0-2, the result pipe on 3 and
the request pipe on 4 and nothing else, a fresh scratch directory as cwd, the seccomp filter
(no fork/exec/socket/ptrace/mount/namespace/kill...). When a request arrives it gets it, lowers
its CPU and address-space limits, parses (and, with ``ast_check``, vets) and runs the program,
writes one length-prefixed JSON report and ``_exit``\\s: a child never returns to the worker's
code. The worker enforces the wall clock, answers the host, then kills every other process left
in its pid namespace (or, without one, re-parented orphans), wipes the scratch area and forks
the next child, so every program starts from the same state.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import errno
import gc
import io
import json
import math
import os
import platform
import re
import resource
import select
import signal
import socket
import stat
import sys
import time

if __name__ != "__sandbox_worker__":
    # imported on the host (tests). Inside the sandbox, where ``distill`` is not importable,
    # the bootstrap has already put these two in our globals: module objects made from the
    # same files' source text, sent by the host with ours (see distill/sandbox/pool.py)
    from distill import framing
    from distill.sandbox import protocol

# --------------------------------------------------------------------------------------------
# The AST allow-list (defence in depth: the OS layers are the wall)
# --------------------------------------------------------------------------------------------

FORBIDDEN_NAMES = frozenset({
    "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "breakpoint", "input", "help", "memoryview", "exit", "quit",
    # attribute access by string, past the attribute checks below
    "attrgetter", "methodcaller", "ctypeslib", "load_library",
})
FORBIDDEN_ATTRS = frozenset({
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame", "gi_code", "cr_frame",
    "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "mro", "format_map",
    "system", "popen", "spawn", "fork", "execv", "execve", "load_module", "exec_module",
    "attrgetter", "methodcaller", "get_field", "get_value", "ctypeslib", "load_library",
})
# Names under which allowed modules hold module objects of modules that are not allowed
# (``typing.sys``, ``random._os``, ``dataclasses.builtins``, ``enum.bltns``, numpy's
# ``ctypes``): refused as attributes and as names imported ``from`` an allowed module. The
# worker adds what its own preloaded modules hold (:func:`extend_module_attrs`).
MODULE_ATTRS = {
    "_locale", "_os", "_random", "_sre", "_string", "_sys", "_thread", "ast", "bltns",
    "builtins", "contextlib", "copyreg", "ctypes", "inspect", "io", "keyword", "kw",
    "linecache", "os", "pickle", "platform", "shutil", "struct", "subprocess", "sys",
    "tempfile", "textwrap", "timeit", "types", "unicodedata", "warnings", "weakref", "posix",
    "importlib", "marshal", "gc", "signal", "socket", "resource", "fcntl", "mmap", "pty",
    "runpy", "code", "codeop", "multiprocessing", "threading", "pathlib", "glob", "sysconfig",
    "site", "zipimport", "_posixsubprocess", "_ctypes", "_imp", "_io", "nt",
}
ALLOWED_DUNDER_NAMES = frozenset({"__name__", "__doc__"})
# Every construct check_program refuses needs one of these in the source text: the keyword
# ``import``, ``__`` (any dunder), or a refused name or attribute spelled out. So ASCII source
# without any of them passes, and its AST need not be built (it is the costliest part of a small
# program in a fresh child). Non-ASCII source is always checked: identifiers are NFKC-normalised,
# so fullwidth ``ｅｖａｌ`` is ``eval``.
def _may_be_refused() -> re.Pattern:
    return re.compile(
        "|".join(["import", "__"] + sorted(map(re.escape, FORBIDDEN_NAMES | FORBIDDEN_ATTRS))
                 + [r"\b(?:%s)\b" % "|".join(sorted(map(re.escape, MODULE_ATTRS)))])
    )


_MAY_BE_REFUSED = _may_be_refused()


def extend_module_attrs(allowed_imports) -> None:
    """Add to :data:`MODULE_ATTRS` every name under which a loaded module of an allowed package
    holds a module of a package that is not allowed (run once in the worker, after the
    preload, so the list matches the installed versions)."""
    global _MAY_BE_REFUSED
    allowed = set(allowed_imports)
    module_type = type(sys)
    found = set()
    # a name that is also a submodule of an allowed package (``sympy.abc``) stays usable
    own = {n.rpartition(".")[2] for n in sys.modules if n.partition(".")[0] in allowed}
    for name, mod in list(sys.modules.items()):
        if mod is None or name.partition(".")[0] not in allowed:
            continue
        try:
            items = list(vars(mod).items())
        except TypeError:
            continue
        for key, value in items:
            if (isinstance(value, module_type) and isinstance(key, str) and key.isidentifier()
                    and not _is_dunder(key) and key not in own
                    and str(getattr(value, "__name__", "")).partition(".")[0] not in allowed):
                found.add(key)
    if not found <= MODULE_ATTRS:
        MODULE_ATTRS.update(found)
        _MAY_BE_REFUSED = _may_be_refused()


_IMPORT_LINES: dict[tuple[str, ...], re.Pattern] = {}


def _import_lines(allowed_imports) -> re.Pattern:
    """One-line imports of allowed modules, strictly spelled: ``import sympy as sp``, ``import
    math, fractions``, ``from fractions import Fraction``. Submodule parts start with a letter
    (no dunders); the names a ``from`` line imports are captured, to be scanned like the rest."""
    key = tuple(sorted(allowed_imports))
    pat = _IMPORT_LINES.get(key)
    if pat is None:
        mod = r"(?:%s)(?:\.[A-Za-z]\w*)*" % "|".join(map(re.escape, key))
        one = mod + r"(?:[ \t]+as[ \t]+\w+)?"
        pat = re.compile(
            r"^[ \t]*(?:import[ \t]+%s(?:[ \t]*,[ \t]*%s)*|from[ \t]+%s[ \t]+import[ \t]+"
            r"(?P<names>[\w \t,]+?))[ \t]*(?:#[^\n]*)?$" % (one, one, mod),
            re.MULTILINE,
        )
        _IMPORT_LINES[key] = pat
    return pat


def needs_check(code: str, allowed_imports=()) -> bool:
    """False only when :func:`check_program` is sure to accept ``code``: ASCII source in which,
    once the one-line imports of allowed modules are set aside (the names a ``from`` line
    imports are kept), none of the substrings a refused construct needs appears. A line that
    only looks like an import (inside a string) can hide nothing: strings do not run."""
    if not code.isascii():
        return True
    if allowed_imports and "import" in code:
        code = _import_lines(allowed_imports).sub(lambda m: m.group("names") or "", code)
    return _MAY_BE_REFUSED.search(code) is not None


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def check_program(tree_or_code, allowed_imports) -> str | None:
    """Why a program is refused by the allow-list, or None when it passes.

    Refused: importing a module whose top-level package is not in ``allowed_imports``, relative
    imports, the names in ``FORBIDDEN_NAMES`` (``eval``, ``exec``, ``open``, ``__import__``,
    ``getattr``, ``attrgetter`` ...), any dunder name other than ``__name__``/``__doc__``
    (``__builtins__``, ``__loader__`` ...), any dunder attribute (``x.__class__``,
    ``f.__globals__``, ``__subclasses__``), frame/code attributes (``f_globals``, ``gi_frame``
    ...), and attributes (or ``from`` imports) named like the module objects that allowed
    modules re-export (:data:`MODULE_ATTRS`: ``typing.sys``, ``random._os``, ``enum.bltns``).
    Defence in depth, not a wall: a library function that evaluates text (``sympy.sympify``)
    or a module imported later may still reach more; the OS layers are the wall.
    """
    tree = tree_or_code if isinstance(tree_or_code, ast.AST) else ast.parse(tree_or_code)
    allowed = set(allowed_imports)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] not in allowed:
                    return f"import of {alias.name!r} (allowed: {', '.join(sorted(allowed))})"
                if any(_is_dunder(p) for p in parts):
                    return f"import of {alias.name!r}"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                return "relative import"
            parts = (node.module or "").split(".")
            if parts[0] not in allowed:
                return f"import from {node.module!r} (allowed: {', '.join(sorted(allowed))})"
            if any(_is_dunder(p) for p in parts):
                return f"import from {node.module!r}"
            for alias in node.names:  # from sympy import __builtins__ as b
                if (_is_dunder(alias.name) or alias.name in FORBIDDEN_NAMES
                        or alias.name in MODULE_ATTRS):
                    return f"import of name {alias.name!r} from {node.module!r}"
        elif isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES:
                return f"use of {node.id!r}"
            if _is_dunder(node.id) and node.id not in ALLOWED_DUNDER_NAMES:
                return f"use of {node.id!r}"
        elif isinstance(node, ast.Attribute):
            if _is_dunder(node.attr) or node.attr in FORBIDDEN_ATTRS:
                return f"access to attribute {node.attr!r}"
            if node.attr in MODULE_ATTRS:
                return f"access to attribute {node.attr!r} (a module that is not allowed)"
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            continue
    return None


# --------------------------------------------------------------------------------------------
# Answers: the child turns the program's value into (type, text); the host canonicalises
# --------------------------------------------------------------------------------------------

ANSWER_NAMES = ("ans", "answer", "result")


class _AnswerTooLong(Exception):
    pass


def describe_value(v, max_chars: int = 4096, _depth: int = 0):
    """``(vtype, vtext)`` for an answer value: vtype is int, fraction, float, decimal or str.

    One-element lists/tuples (``sympy.solve`` results) and size-1 numpy arrays are unwrapped;
    numpy scalars, sympy Integer/Rational/Float and real sympy numbers (``sqrt(2)``) are read as
    numbers. Anything else is sent as ``str(v)`` for the host to parse (or reject).
    """
    if _depth > 4:
        return "str", _cap(str(v), max_chars)
    rec = lambda x: describe_value(x, max_chars, _depth + 1)
    if isinstance(v, bool):
        return "str", str(v)
    if isinstance(v, (list, tuple)) and len(v) == 1:
        return rec(v[0])
    if isinstance(v, int):
        try:
            text = str(int(v))
        except ValueError as e:  # more digits than int->str allows
            raise _AnswerTooLong(str(e)) from None
        return "int", _cap(text, max_chars)
    if isinstance(v, float):
        return "float", repr(float(v))
    mod = type(v).__module__ or ""
    if mod == "fractions" or type(v).__name__ == "Fraction":
        try:
            return "fraction", _cap(f"{int(v.numerator)}/{int(v.denominator)}", max_chars)
        except ValueError as e:
            raise _AnswerTooLong(str(e)) from None
    if mod == "decimal":
        return "decimal", _cap(str(v), max_chars)
    if mod.startswith("numpy"):
        np = sys.modules.get("numpy")
        if np is not None:
            if isinstance(v, np.ndarray) and v.size == 1:
                return rec(v.reshape(-1)[0].item())
            if isinstance(v, np.generic):
                return rec(v.item())
    if mod.startswith("sympy"):
        sp = sys.modules.get("sympy")
        if sp is not None and isinstance(v, sp.Basic):
            if v.is_Integer:
                return rec(int(v))
            if v.is_Rational:
                try:
                    return "fraction", _cap(f"{int(v.p)}/{int(v.q)}", max_chars)
                except ValueError as e:
                    raise _AnswerTooLong(str(e)) from None
            if v.is_Float:
                return "float", repr(float(v))
            if v.is_number and v.is_real:
                return "float", repr(float(v))
            return "str", _cap(str(v), max_chars)
    if isinstance(v, complex) and v.imag == 0:
        return "float", repr(v.real)
    if isinstance(v, str):
        return "str", _cap(v, max_chars)
    return "str", _cap(str(v), max_chars)


def _cap(text: str, max_chars: int) -> str:
    if len(text) > max_chars:
        raise _AnswerTooLong(f"answer of {len(text)} characters (limit {max_chars})")
    return text


def _pick_answer(g: dict):
    """(source, value) by the documented conventions; value None means "use what was printed"."""
    for name in ANSWER_NAMES:
        if name in g:
            v = g[name]
            if v is not None and not callable(v) and type(v).__name__ != "module":
                return name, v
    sol = g.get("solution")
    if callable(sol):
        v = sol()
        if v is not None:
            return "solution()", v
    return "printed", None


# --------------------------------------------------------------------------------------------
# Running one program (in the child)
# --------------------------------------------------------------------------------------------


class _OutputLimit(BaseException):
    """Raised from print() when stdout passes its cap; a BaseException so ``except Exception``
    in the program does not swallow it (a bare ``except:`` may, but the flag stays set)."""


class _CappedText(io.TextIOBase):
    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.limit = limit
        self.over = False

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - self.n
        if len(s) > room:
            if room > 0:
                self.parts.append(s[:room])
            self.n = self.limit
            self.over = True
            raise _OutputLimit
        self.parts.append(s)
        self.n += len(s)
        return len(s)

    def getvalue(self) -> str:
        return "".join(self.parts)


_FORBIDDEN_ERRNOS = {errno.EPERM, errno.EACCES, errno.EROFS}
_QUOTA_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", 122)}


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError) and exc.errno in _FORBIDDEN_ERRNOS:
        return "forbidden"
    if isinstance(exc, OSError) and exc.errno in _QUOTA_ERRNOS:
        return "output_limit"
    return "runtime"


def _short(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:  # noqa: BLE001 - a hostile __str__
        text = type(exc).__name__
    return text[:500]


_REPORT_KEYS = ("kind", "detail", "source", "vtype", "vtext", "stdout", "stdout_over")


def encode_report(report: dict) -> bytes:
    """The report as JSON, written out directly: a fresh child pays in page faults for every
    object json.dumps builds on the way."""
    enc = json.encoder.encode_basestring  # the C encoder; non-ASCII stays UTF-8
    parts = []
    for key in _REPORT_KEYS:
        v = report.get(key)
        if v is None:
            parts.append(f'"{key}":null')
        elif v is True or v is False:
            parts.append(f'"{key}":{"true" if v else "false"}')
        else:
            parts.append(f'"{key}":{enc(str(v))}')
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


def run_code(code: str, ast_check: bool, allowed_imports, stdout_limit: int,
             max_answer_chars: int = 4096) -> dict:
    """Parse, vet and run one program in *this* process; the report the host turns into an
    ExecResult. Only ever called in a sacrificial child (or in tests)."""
    out = _CappedText(stdout_limit)
    report = {"kind": None, "detail": None, "source": None, "vtype": None, "vtext": None}
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = out, _CappedText(4096), io.StringIO("")
    try:
        _run_into(report, code, ast_check, allowed_imports, max_answer_chars)
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
    if out.over:
        report.update(kind="output_limit", detail=f"more than {stdout_limit} characters printed")
    report["stdout"] = out.getvalue()
    report["stdout_over"] = out.over
    return report


def _run_into(report: dict, code: str, ast_check: bool, allowed_imports, max_answer_chars: int):
    try:
        try:
            if ast_check and needs_check(code, allowed_imports):
                tree = ast.parse(code, "<program>", "exec")
                why = check_program(tree, allowed_imports)
                if why is not None:
                    report.update(kind="forbidden", detail=f"refused by the allow-list: {why}")
                    return
                codeobj = compile(tree, "<program>", "exec")
            else:
                codeobj = compile(code, "<program>", "exec")
        except (SyntaxError, ValueError) as e:  # ValueError: NUL bytes
            report.update(kind="syntax", detail=_short(e))
            return
        g = {"__name__": "__main__", "__builtins__": builtins}
        exec(codeobj, g)
        source, value = _pick_answer(g)
        report["source"] = source
        if value is not None:
            report["vtype"], report["vtext"] = describe_value(value, max_answer_chars)
    except _OutputLimit:
        pass
    except _AnswerTooLong as e:
        report.update(kind="output_limit", detail=str(e)[:500])
    except SystemExit as e:
        if e.code not in (None, 0):
            report.update(kind="runtime", detail=f"SystemExit: {e.code!r}"[:500])
    except BaseException as e:  # noqa: BLE001 - everything the program raises is reported
        report.update(kind=_error_kind(e), detail=_short(e))


# --------------------------------------------------------------------------------------------
# Kernel interfaces (ctypes on libc; the worker is trusted code, the child loses them)
# --------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
MNT_DETACH = 2
_MNT_OPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                  "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
                  "strictatime": MS_STRICTATIME}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 4, 22, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 36, 38, 47
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def _describe_uid_map(uid_map) -> str:
    """The mapping of our uid, for the report (bwrap and none modes)."""
    if not uid_map:
        return "no user namespace information"
    uid = os.getuid()
    for inside, outside, count in uid_map:
        if inside <= uid < inside + count:
            host = outside + uid - inside
            if [inside, outside, count] == [0, 0, 4294967295]:
                return f"no user namespace: host uid {uid}" + (" (HOST ROOT)" if uid == 0 else "")
            return (f"sandbox uid {uid} = host uid {host}" + (" (HOST ROOT)" if host == 0 else "")
                    + "; programs share the worker's uid")
    return f"uid {uid} is not mapped"


def _describe_proc(mode: str) -> str:
    if mode == "none":
        return "the host's /proc"
    try:
        ro = bool(os.statvfs("/proc").f_flag & os.ST_RDONLY)
    except OSError:
        return "not mounted"
    if not os.path.isdir("/proc/sys"):
        return ("read-only" if ro else "writable") + ", processes only (no /proc/sys)"
    try:
        sys_ro = bool(os.statvfs("/proc/sys").f_flag & os.ST_RDONLY)
    except OSError:
        sys_ro = False
    return ("read-only" if ro else "writable") + (" (/proc/sys read-only)" if sys_ro else
                                                  " (/proc/sys WRITABLE)")


def _errcheck(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()
    _errcheck(_libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _prctl(option: int, a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> int:
    return _libc.prctl(option, a, b, c, d)


def _fork() -> int:
    r"""libc fork() without CPython's at-fork machinery (interpreter re-initialisation, the
    random/threading/logging hooks): about a hundred page faults less per program. Sound only
    because the worker is single-threaded and holds no lock at this point; a child never
    returns to the worker's code (it runs one program and ``_exit``\s)."""
    pid = _libc.fork()
    if pid < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"fork: {os.strerror(e)}")
    return pid


def _mountinfo() -> list[tuple[str, int]]:
    """(mount point, per-mount flags to keep on remount) for every mount we can see."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode("latin-1", "surrogateescape").decode("unicode_escape")
            flags = 0
            for opt in fields[5].split(","):
                flags |= _MNT_OPT_FLAGS.get(opt, 0)
            out.append((point, flags))
    return out


def _remount_ro_under(path: str) -> None:
    for point, flags in _mountinfo():
        if point == path or point.startswith(path.rstrip("/") + "/"):
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def _pick_newroot(binds) -> str:
    sources = [b[0] for b in binds]
    for cand in ("/mnt", "/media", "/srv", "/opt", "/var/tmp", "/tmp", "/home"):
        if os.path.isdir(cand) and not os.path.islink(cand) and not any(
            s == cand or s.startswith(cand + "/") for s in sources
        ):
            return cand
    raise OSError(errno.ENOENT, "no directory to build the sandbox root on")


CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000


def _unshare(flags: int) -> None:
    _errcheck(_libc.unshare(flags), "unshare")


def _write_proc(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def open_binds(binds) -> list:
    """Open every path to expose (``O_PATH``; symlinks are read) while still running as the
    launching uid: :func:`mount_root` binds them from these descriptors, so the directories
    above them need not be searchable by the namespace's uid (a Python under ``/root``)."""
    sources = []
    for src, kind in binds:
        if kind == "symlink":
            sources.append((src, kind, os.readlink(src)))
        else:
            sources.append((src, kind, os.open(src, os.O_PATH | os.O_CLOEXEC)))
    return sources


def mount_root(sources, scratch_mb: int, binds) -> str:
    """Build the minimal root under a fresh tmpfs (the bound paths read-only, a few /dev nodes,
    a size-limited tmpfs /tmp); returns its path. :func:`enter_root` mounts /proc and pivots.
    Both tmpfs roots belong to the namespace's root (``uid=0,gid=0`` there)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    newroot = _pick_newroot(binds)
    _mount("tmpfs", newroot, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755,uid=0,gid=0")
    # The scratch tmpfs first: an exposed path under /tmp (a venv or checkout there) is then
    # bound on top of it instead of being hidden by it.
    os.makedirs(newroot + "/tmp", exist_ok=True)
    _mount("tmpfs", newroot + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={int(scratch_mb)}m,nr_inodes=4096,mode=1777,uid=0,gid=0")
    for src, kind, how in sources:
        dst = newroot + src
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        if kind == "symlink":
            os.symlink(how, dst)
            continue
        if kind == "dir":
            os.makedirs(dst, exist_ok=True)
        else:
            open(dst, "w").close()
        _mount(f"/proc/self/fd/{how}", dst, None, MS_BIND | MS_REC)
        os.close(how)
        _remount_ro_under(dst)
    os.makedirs(newroot + "/proc", exist_ok=True)
    return newroot


def enter_root(newroot: str) -> str:
    """Mount /proc of our pid namespace -- read-only, and only the processes (``subset=pid``:
    no /proc/sys, /proc/sysrq-trigger, ...) where the kernel allows it, else the whole of it
    read-only -- pivot into ``newroot`` and make the root read-only. Returns the /proc mode."""
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
    try:
        _mount("proc", newroot + "/proc", "proc", flags, "subset=pid")
        proc_mode = "read-only, processes only (subset=pid: no /proc/sys)"
    except OSError:
        _mount("proc", newroot + "/proc", "proc", flags)
        proc_mode = "read-only (/proc/sys included)"
    os.chdir(newroot)
    nr = _SYS_PIVOT_ROOT.get(platform.machine())
    if nr is not None:
        _errcheck(_libc.syscall(nr, b".", b"."), "pivot_root")
        _errcheck(_libc.umount2(b".", MNT_DETACH), "umount old root")
    else:
        os.chroot(".")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return proc_mode


def launch(cfg: dict, close_in_launchers: list[int]) -> dict:
    """(unshare mode) Enter the sandbox's namespaces; returns, in the process that becomes the
    worker (pid 1 of its own pid namespace), what was set up.

    Three processes: the one the host started (L, on the host's side: it only writes the uid
    map and waits), its child (C: new user and mount namespaces, builds the root, then new
    pid/net/ipc/uts namespaces) and C's child, the worker (pid 1 there). The user namespace maps
    its uid 0 (the worker) to host uid ``uid_base`` and its uid 1 (the programs) to
    ``uid_base + 1`` when the host is root (L writes the map); an unprivileged host maps its own
    uid to 0 only, and programs then share the worker's uid. Never host root: sysctls and
    other host-global files are checked against the host's uid 0, which is not mapped here.
    Without user namespaces (refused) a root host still gets the mount/pid/net/ipc/uts ones;
    the worker is then host root and programs run as host uid ``uid_base + 1``."""
    base = int(cfg["uid_base"])
    host_uid, host_gid = os.geteuid(), os.getegid()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid:  # L
        os.close(ready_w)
        os.close(go_r)
        msg = os.read(ready_r, 1)
        try:
            if msg == b"u":
                if host_uid == 0:
                    maps = (f"0 {base} 2\n", f"0 {base} 2\n")
                else:
                    _write_proc(f"/proc/{pid}/setgroups", "deny")
                    maps = (f"0 {host_uid} 1\n", f"0 {host_gid} 1\n")
                _write_proc(f"/proc/{pid}/uid_map", maps[0])
                _write_proc(f"/proc/{pid}/gid_map", maps[1])
            if msg:
                os.write(go_w, b"g")
        except OSError as e:
            sys.stderr.write(f"sandbox launcher: writing the uid map failed: {e}\n")
        os.close(go_w)
        for fd in close_in_launchers:
            os.close(fd)
        _, st = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(st) & 0x7F if os.WIFEXITED(st) else 1)
    # C
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.close(ready_r)
    os.close(go_w)
    try:
        _unshare(CLONE_NEWUSER | CLONE_NEWNS)
        userns = True
    except OSError:
        if host_uid != 0:
            raise
        _unshare(CLONE_NEWNS)  # a root host whose user namespaces are refused
        userns = False
    os.write(ready_w, b"u" if userns else b"n")
    os.close(ready_w)
    if os.read(go_r, 1) != b"g":
        raise OSError(errno.EPERM, "the launcher could not write the uid map")
    os.close(go_r)
    binds = [tuple(b) for b in cfg["binds"]]
    sources = open_binds(binds)  # still as the launching uid (see there)
    "".encode("unicode_escape")  # imports the codec _mountinfo needs while stdlib is reachable
    if userns:
        # become the namespace's root (host uid_base, or the unprivileged host's own uid)
        if host_uid == 0:
            os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    newroot = mount_root(sources, cfg["scratch_mb"], binds)
    _unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change above
    pid = os.fork()
    if pid:  # C: waits for the worker, nothing else
        for fd in close_in_launchers:
            os.close(fd)
        _, st = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(st) & 0x7F if os.WIFEXITED(st) else 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    proc_mode = enter_root(newroot)
    if userns and host_uid == 0:
        program = (1, 1)
        where = f"sandbox uid 0 = host uid {base} (worker), 1 = host uid {base + 1} (programs)"
    elif userns:
        program = None
        where = f"sandbox uid 0 = host uid {host_uid} (unprivileged host: one uid, shared by " \
                "the worker and its programs)"
    else:
        program = (base + 1, base + 1)
        where = f"no user namespace: worker is host root, programs host uid {base + 1}"
    return {"proc": proc_mode, "program_ids": program, "uid_mapping": where, "userns": userns}


# ---- seccomp ---------------------------------------------------------------------------------

_AUDIT_ARCH_X86_64 = 0xC000003E
_X86_64 = {
    "clone": 56, "clone3": 435,
    "deny": [
        62, 234,  # kill tgkill: a program signals nobody (abort() still ends it)
        57, 58, 59, 322,  # fork vfork execve execveat
        41, 53, 42, 43, 49, 50, 288,  # socket socketpair connect accept bind listen accept4
        101, 310, 311, 440, 312,  # ptrace process_vm_readv/writev process_madvise kcmp
        165, 166, 155, 161, 272, 308,  # mount umount2 pivot_root chroot unshare setns
        428, 429, 430, 431, 432, 433, 442,  # open_tree move_mount fs* mount_setattr
        200, 424, 434, 438, 129, 297,  # tkill pidfd_* rt_(tg)sigqueueinfo
        321, 298, 323, 425, 426, 427,  # bpf perf_event_open userfaultfd io_uring_*
        248, 249, 250, 246, 320, 175, 313, 176, 169, 167, 168, 163,  # keys kexec modules reboot swap acct
        164, 227, 159, 305, 170, 171, 172, 173, 303, 304, 179, 212, 153, 103, 134, 133, 259,
        # SysV IPC and POSIX message queues: state that would outlive the program
        29, 30, 31, 67, 64, 65, 66, 220, 68, 69, 70, 71, 240, 241, 242, 243, 244, 245,
    ],
    # Same-uid controls over another process (the worker, when it shares the program's uid:
    # bwrap, an unprivileged host): denied unless they name the caller itself (0).
    # (syscall, argument index): prlimit64, setpriority, sched_setaffinity, sched_setparam,
    # sched_setscheduler, sched_setattr, ioprio_set, migrate_pages, move_pages.
    "self_only": [(302, 0), (141, 1), (203, 0), (142, 0), (144, 0), (314, 0), (251, 1),
                  (256, 0), (279, 0)],
    # (syscall, argument index, value): fcntl F_SETOWN / F_SETSIG / F_SETOWN_EX and ioctl
    # FIOSETOWN / SIOCSPGRP -- a signal delivered to another process without kill().
    "arg_deny": [(72, 1, 8), (72, 1, 10), (72, 1, 15), (16, 1, 0x8901), (16, 1, 0x8902)],
}
_CLONE_THREAD = 0x00010000
_RET_ALLOW, _RET_ERRNO, _RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
_LD, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_supported() -> bool:
    return platform.machine() == "x86_64"


def _seccomp_program() -> list[tuple[int, int, int, int]]:
    t = _X86_64
    eperm = _RET_ERRNO | errno.EPERM
    p = [
        (_LD, 0, 0, 4),  # arch
        (_JEQ, 1, 0, _AUDIT_ARCH_X86_64),
        (_RET, 0, 0, _RET_KILL),
        (_LD, 0, 0, 0),  # syscall number
        (_JGE, 0, 1, 0x40000000),  # the x32 ABI
        (_RET, 0, 0, eperm),
    ]
    for nr in t["deny"]:
        p += [(_JEQ, 0, 1, nr), (_RET, 0, 0, eperm)]
    for nr, arg in t["self_only"]:  # A = nr on entry and on exit of each block
        p += [(_JEQ, 0, 3, nr), (_LD, 0, 0, 16 + 8 * arg), (_JEQ, 1, 0, 0), (_RET, 0, 0, eperm),
              (_LD, 0, 0, 0)]
    for nr, arg, value in t["arg_deny"]:
        p += [(_JEQ, 0, 3, nr), (_LD, 0, 0, 16 + 8 * arg), (_JEQ, 0, 1, value),
              (_RET, 0, 0, eperm), (_LD, 0, 0, 0)]
    p += [(_JEQ, 0, 1, t["clone3"]), (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS)]  # libc falls back
    # clone: threads only
    p += [(_JEQ, 0, 4, t["clone"]), (_LD, 0, 0, 16), (_JSET, 0, 1, _CLONE_THREAD),
          (_RET, 0, 0, _RET_ALLOW), (_RET, 0, 0, eperm), (_LD, 0, 0, 0)]
    p.append((_RET, 0, 0, _RET_ALLOW))
    return p


class SeccompFilter:
    """The filter, built once in the worker; each child installs it (no_new_privs, which the
    kernel requires first, is already set by the worker and inherited)."""

    def __init__(self) -> None:
        prog = _seccomp_program()
        self.arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
        self.fprog = _SockFprog(len(prog), self.arr)
        self.addr = ctypes.addressof(self.fprog)

    def install(self) -> None:
        _errcheck(_prctl(PR_SET_SECCOMP, 2, self.addr), "seccomp")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_HDR = _CapHeader(0x20080522, 0)
_CAP_DATA = (_CapData * 2)()
PR_SET_SECUREBITS = 28
# NOROOT, NO_SETUID_FIXUP, NO_CAP_AMBIENT_RAISE and KEEP_CAPS off, each locked: root gets no
# capabilities back from an execve (the bounding set in one call instead of one per capability).
_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80


# What a worker that runs its programs under another uid keeps, in its own user namespace only
# (its programs lose them all when they change uid): CAP_DAC_OVERRIDE and CAP_FOWNER (wipe what
# a program left), CAP_KILL (kill what it left), CAP_SETGID/CAP_SETUID (a program's child
# becomes the program uid), CAP_SYS_ADMIN (a fresh IPC namespace per program).
WORKER_CAPS = (1 << 1) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 21)
# Same, but with CAP_NO_SETUID_FIXUP off (locked): a uid change away from root clears the caps.
_SECUREBITS_KEEP = 0x01 | 0x02 | 0x08 | 0x20 | 0x40 | 0x80


def drop_capabilities(keep: int = 0) -> None:
    """Drop every capability but ``keep`` (a mask of the low 32), for good: securebits, the
    bounding set, no ambient ones. With ``keep`` the uid-change fix-up stays on, so a child that
    changes to a non-root uid loses what is left."""
    if _prctl(PR_SET_SECUREBITS, _SECUREBITS_KEEP if keep else _SECUREBITS) != 0:
        keep = 0
    for cap in range(64):  # no CAP_SETPCAP: then we hold nothing worth dropping either
        if not (keep >> cap) & 1 and _prctl(PR_CAPBSET_DROP, cap) != 0:
            break
    _prctl(PR_CAP_AMBIENT, 4)  # PR_CAP_AMBIENT_CLEAR_ALL
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = keep
    _errcheck(_libc.capset(ctypes.byref(_CAP_HDR), ctypes.byref(data)), "capset")


def clear_capabilities() -> None:
    _errcheck(_libc.capset(ctypes.byref(_CAP_HDR), ctypes.byref(_CAP_DATA)), "capset")


def _statm_vsz() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


def _static_limits(cfg: dict) -> list:
    return [
        (resource.RLIMIT_FSIZE, cfg["fsize_mb"] << 20, cfg["fsize_mb"] << 20),
        (resource.RLIMIT_NOFILE, cfg["nofile"], cfg["nofile"]),
        (resource.RLIMIT_NPROC, cfg["nproc"], cfg["nproc"]),
        (resource.RLIMIT_CORE, 0, 0),
    ]


def _program_limits(timeout_s: float, memory_mb: int, base_vsz: int) -> list:
    """CPU seconds and address space; ``base_vsz`` is the worker's address space at fork time,
    so ``memory_mb`` is what the program may add to the pre-imported interpreter."""
    cpu = math.ceil(timeout_s) + 1
    vsz = base_vsz + (int(memory_mb) << 20)
    return [(resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, vsz, vsz)]


def _set_limits(limits: list) -> None:
    """Lower soft and hard limits (irreversible for the child)."""
    for which, soft, hard in limits:
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


# --------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------


class Worker:
    def __init__(self, cfg: dict, proto_in: int, proto_out: int, devnull: int) -> None:
        self.cfg = cfg
        self.proto_in, self.proto_out, self.devnull = proto_in, proto_out, devnull
        self.mode = cfg["mode"]
        self.own_pidns = False
        self.scratch_base = "/tmp" if self.mode != "none" else cfg["scratch_dir"]
        self.base_vsz = 0
        self.seq = 0
        self.layers: dict[str, object] = {}
        self.seccomp: SeccompFilter | None = None
        self.seccomp_ok = False
        self.ready: tuple[int, int, int] | None = None
        self.since_statm = 0
        self.worker_uid, self.worker_gid = os.getuid(), os.getgid()
        launched = cfg.get("launched") or {}
        ids = launched.get("program_ids")
        self.program_ids: tuple[int, int] | None = tuple(ids) if ids else None
        self.fresh_ipc = False
        self.state0 = None
        self.scratch_keep: set[str] = set()

    # ---- setup ---------------------------------------------------------------------------
    def setup(self) -> str | None:
        cfg = self.cfg
        for p in cfg["sys_path"]:
            if p not in sys.path:
                sys.path.append(p)
        try:
            self.own_pidns = os.readlink("/proc/self/ns/pid") != cfg["host_pidns"]
        except OSError:
            self.own_pidns = False
        if self.mode != "none" and not self.own_pidns:
            return "no private pid namespace"
        if self.mode == "none":
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        if cfg["seccomp"] and seccomp_supported():
            self.seccomp = SeccompFilter()
        self._preload()
        extend_module_attrs(cfg["allowed_imports"])
        # The programs' environment, set once here and inherited: four neutral variables (the
        # host started us with nothing of its own either).
        os.environ.clear()
        os.environ.update(HOME=self.scratch_base, TMPDIR=self.scratch_base, LANG="C.UTF-8",
                          PATH="/usr/bin:/bin")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write fails with EFBIG instead
        # Root setup is done: the worker needs no capability from here on (it kills and deletes
        # only what runs and is written as its own uid), so it drops them all once and every
        # child inherits nothing, with no way back (securebits, no_new_privs).
        keep = WORKER_CAPS if self.program_ids is not None else 0
        try:
            drop_capabilities(keep)
        except OSError as e:
            return f"dropping capabilities failed: {e}"
        # A fresh IPC namespace per program (SysV IPC and POSIX queues die with it): the worker
        # keeps CAP_SYS_ADMIN in its own user namespace for this only.
        self.fresh_ipc = self.mode != "none" and self.program_ids is not None
        _errcheck(_prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
        _prctl(PR_SET_DUMPABLE, 0)  # children may not ptrace us or open /proc/<us>/fd
        # limits that hold for the worker as well, set once and inherited by every child
        _set_limits(_static_limits(cfg))
        os.umask(0o077)
        self.layers = self._verify()
        if self.mode != "none" and not self.layers.get("root_readonly"):
            return "the root filesystem is writable inside the sandbox"
        if cfg["seccomp"] and not self.layers.get("seccomp"):
            return f"seccomp was asked for but is not active ({self.layers.get('probe_error')})"
        if self.program_ids is not None and not self.layers.get("program_uid_separate"):
            return f"programs do not run under their own uid ({self.layers.get('probe_error')})"
        gc.collect()
        gc.freeze()  # fewer copy-on-write faults in the children
        self.base_vsz = _statm_vsz()
        self.state0 = self._state()
        self.scratch_keep = set(os.listdir(self.scratch_base))
        self._prefork()
        return None

    @staticmethod
    def _state():
        """What a program must not be able to change about the worker (else it is replaced):
        its limits, CPU affinity and priority."""
        lims = tuple(resource.getrlimit(r) for r in (
            resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_DATA, resource.RLIMIT_FSIZE,
            resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC, resource.RLIMIT_STACK,
            resource.RLIMIT_CORE, resource.RLIMIT_MEMLOCK))
        return lims, frozenset(os.sched_getaffinity(0)), os.getpriority(os.PRIO_PROCESS, 0)

    def changed(self, wipe_failures: int) -> str | None:
        """Why this worker must be replaced before another program runs, or None."""
        if wipe_failures:
            return f"{wipe_failures} entries of the scratch area could not be removed"
        try:
            left = set(os.listdir(self.scratch_base)) - self.scratch_keep
        except OSError as e:
            return f"scratch area unreadable: {e}"
        if left:
            return f"the scratch area was not emptied ({len(left)} entries left)"
        if self._state() != self.state0:
            return "the worker's limits or scheduling changed"
        return None

    def _preload(self) -> None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"  # one program, one thread: no BLAS thread pools to fork
        loaded, missing = [], []
        for name in self.cfg["preload"]:
            try:
                __import__(name)
                loaded.append(name)
            except Exception:  # noqa: BLE001 - an allowed module that is not installed
                missing.append(name)
        if self.cfg.get("warmup") and "sympy" in sys.modules:
            try:
                sp = sys.modules["sympy"]
                x = sp.Symbol("x")
                sp.solve(sp.Eq(2 * x + 3, 11), x)
                sp.simplify(sp.Rational(1, 3) + sp.sqrt(4) * x - x)
                sp.nsimplify(0.5)
                str(sp.Rational(7, 3) * 3)
            except Exception:  # noqa: BLE001 - warm-up is an optimisation only
                pass
        if "numpy" in sys.modules:
            try:
                np = sys.modules["numpy"]
                float(np.mean(np.array([1.0, 2.0, 3.0])))
            except Exception:  # noqa: BLE001
                pass
        self.preloaded, self.missing = loaded, missing

    def _verify(self) -> dict:
        """What actually holds, measured from inside (reported by ``sandbox check``)."""
        launched = self.cfg.get("launched") or {}
        out: dict[str, object] = {"mode": self.mode, "pid": os.getpid(),
                                  "own_pidns": self.own_pidns, "preloaded": self.preloaded,
                                  "missing": self.missing}
        try:
            with open("/proc/self/uid_map") as f:
                out["uid_map"] = [list(map(int, ln.split())) for ln in f if ln.strip()]
        except OSError:
            out["uid_map"] = None
        out["uid_mapping"] = launched.get("uid_mapping") or _describe_uid_map(out["uid_map"])
        out["proc"] = launched.get("proc") or _describe_proc(self.mode)
        out["fresh_ipc"] = self.fresh_ipc
        try:
            out["root_readonly"] = bool(os.statvfs("/").f_flag & os.ST_RDONLY)
        except OSError:
            out["root_readonly"] = False
        try:
            s = socket.create_connection(("127.0.0.1", 9), timeout=0.2)
            s.close()
            out["network"] = "loopback reachable"
        except OSError as e:
            if e.errno == errno.ENETUNREACH:
                out["network"] = "no route, loopback down"
            elif e.errno == errno.ECONNREFUSED:
                out["network"] = "own loopback only" if self.mode != "none" else "host loopback"
            else:
                out["network"] = str(e)
        out.update(self._probe_child())
        self.seccomp_ok = bool(out.get("seccomp"))
        return out

    def _probe_child(self) -> dict:
        """Fork a child with every per-program restriction and see which ones hold."""
        self.base_vsz = _statm_vsz()
        r, w = os.pipe()
        scratch = self._new_scratch()
        pid = _fork()
        if pid == 0:
            res: dict = {}
            try:
                os.close(r)
                self._restrict(scratch, w)
                _set_limits(_program_limits(2.0, 64, self.base_vsz))
                res["seccomp"] = self.seccomp_ok
                with open("/proc/self/status") as f:
                    caps = {ln.split(":")[0]: int(ln.split()[1], 16) for ln in f
                            if ln.startswith(("CapEff", "CapPrm", "CapInh", "CapAmb"))}
                res["caps_dropped"] = not any(caps.values()) and len(caps) == 4
                res["program_uid"] = os.getuid()
                res["program_uid_separate"] = (os.getuid() != self.worker_uid
                                               and os.getgid() != self.worker_gid)
                try:
                    p = os.fork()
                    if p == 0:
                        os._exit(0)
                    res["fork_blocked"] = False
                except OSError:
                    res["fork_blocked"] = True
                try:
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
                    res["socket_blocked"] = False
                except OSError:
                    res["socket_blocked"] = True
                target = "/etc/hostname" if os.path.exists("/etc/hostname") else "/probe"
                try:
                    with open(target, "a"):
                        pass
                    res["system_files_writable"] = True
                except OSError:
                    res["system_files_writable"] = False
                with open(os.path.join(scratch, "probe"), "w") as f:
                    f.write("ok")
                res["scratch_writable"] = True
                res["env_clean"] = sorted(os.environ) == ["HOME", "LANG", "PATH", "TMPDIR"]
                try:
                    with open("/proc/self/environ", "rb") as f:
                        res["env_clean"] &= b"OPENBLAS" not in f.read()
                except OSError:
                    pass
            except BaseException as e:  # noqa: BLE001
                res["probe_error"] = _short(e)
            try:
                framing.write_json(3, res)
            finally:
                os._exit(0)
        os.close(w)
        try:
            res = framing.read_json(r)
        except (EOFError, ValueError) as e:
            res = {"probe_error": f"probe child died: {e}"}
        os.close(r)
        self._finish(pid, time.monotonic() + 5)
        return res

    # ---- per program ------------------------------------------------------------------------
    def _new_scratch(self) -> str:
        """The next program's scratch directory; the child creates it, as the program's uid."""
        self.seq += 1
        return os.path.join(self.scratch_base, f"run-{self.seq}")

    def _restrict(self, scratch: str, result_fd: int, request_fd: int = -1) -> None:
        """Everything a child does to itself before it may see a program: its own session,
        fds 0-2 on /dev/null, 3 = result pipe, 4 = request pipe, nothing else; a fresh IPC
        namespace; the program uid (no rights over the worker: no signals, prlimit, renice,
        ptrace, F_SETOWN delivery) and no capability left; cwd = a new scratch directory; the
        seccomp filter. Environment and the static rlimits come from the worker already (see
        :meth:`setup`)."""
        if self.mode == "none":
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # in a namespace the kernel does this
        os.setsid()
        if result_fd != 3:
            os.dup2(result_fd, 3)
        if request_fd >= 0 and request_fd != 4:
            os.dup2(request_fd, 4)
        for fd in (0, 1, 2):
            os.dup2(self.devnull, fd)
        os.closerange(5 if request_fd >= 0 else 4, 1 << 20)
        if self.fresh_ipc:
            _unshare(CLONE_NEWIPC)
        if self.program_ids is not None:
            uid, gid = self.program_ids
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)  # the capabilities go with the uid change
        clear_capabilities()
        os.mkdir(scratch, 0o700)
        os.chdir(scratch)
        if self.seccomp is not None:
            self.seccomp.install()  # raises (fail closed) when asked for and refused
            self.seccomp_ok = True

    def _child(self, scratch: str, w: int, rq: int) -> None:
        """A pre-forked child: restrict, wait for one request on fd 4 (``REQ_HEAD`` + code, then
        EOF), run it, report on fd 3 (length-prefixed JSON)."""
        try:
            try:
                self._restrict(scratch, w, rq)
                setup_error = None
            except BaseException as e:  # noqa: BLE001
                setup_error = f"sandbox setup failed: {_short(e)}"
            chunks = []
            while True:
                chunk = os.read(4, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            raw = b"".join(chunks)
            if len(raw) < protocol.REQ_HEAD.size:
                os._exit(0)  # the worker closed the pipe without a program: not needed
            _, timeout_s, memory_mb, ast_check = protocol.REQ_HEAD.unpack_from(raw)
            if setup_error is None:
                try:
                    _set_limits(_program_limits(timeout_s, memory_mb, self.base_vsz))
                    code = raw[protocol.REQ_HEAD.size:].decode("utf-8", "surrogatepass")
                except BaseException as e:  # noqa: BLE001
                    setup_error = f"sandbox setup failed: {_short(e)}"
            del raw, chunks
            if setup_error is not None:
                report = {"kind": "runtime", "detail": setup_error}
            else:
                report = run_code(code, bool(ast_check), self.cfg["allowed_imports"],
                                  self.cfg["stdout_limit"], self.cfg["max_answer_chars"])
            framing.write_frame(3, encode_report(report))
        finally:
            os._exit(0)

    def _prefork(self) -> None:
        """Fork and restrict the next child now, while we would otherwise wait for a request."""
        scratch = self._new_scratch()
        r, w = os.pipe()
        rq_r, rq_w = os.pipe()
        pid = _fork()
        if pid == 0:
            os.close(r)
            os.close(rq_w)
            self._child(scratch, w, rq_r)
        os.close(w)
        os.close(rq_r)
        self.ready = (pid, r, rq_w)

    def run(self, raw_req: bytes) -> tuple[bytes, int, float]:
        """Run one program (a raw request); returns (reply frame payload, child pid, reap
        deadline). The child may still be exiting: :meth:`_finish` must run before the next."""
        req_id, timeout_s, _, _ = protocol.REQ_HEAD.unpack_from(raw_req)
        if self.ready is None:
            self._prefork()
        pid, r, rq_w = self.ready
        self.ready = None
        cap = 6 * self.cfg["stdout_limit"] + 8 * self.cfg["max_answer_chars"] + 65536
        t0 = time.monotonic()
        try:
            framing.write_all(rq_w, raw_req)  # not framed: the child reads up to EOF
        except OSError:  # the waiting child is gone; the reply below says so
            pass
        os.close(rq_w)
        deadline = t0 + timeout_s
        report = None
        timed_out = too_big = False
        try:
            report = framing.read_frame(r, deadline, cap)
        except TimeoutError:
            timed_out = True
        except ValueError:
            too_big = True
        except EOFError:
            pass  # no result: the child died (see below)
        os.close(r)
        lingered = False
        if report is not None:
            # a result counts only once the program has exited: one that reports and keeps
            # running is stopped at its deadline, and the next program's clock starts after it
            status = self._exited_by(pid, deadline)
            if status is None:
                timed_out = lingered = True
            else:
                pid = 0
        duration = time.monotonic() - t0
        if timed_out or too_big:
            self._kill(pid)
        if lingered:
            return self._reply(req_id, duration, "timeout",
                               f"still running after its report; killed after {timeout_s:g} s"
                               " wall clock"), pid, 0.0
        if timed_out:
            return self._reply(req_id, duration, "timeout",
                               f"killed after {timeout_s:g} s wall clock"), pid, 0.0
        if too_big:
            return self._reply(req_id, duration, "output_limit",
                               "result larger than the output cap"), pid, 0.0
        if report is None:
            # no result: the child died; its status says how
            status = self._finish(pid, deadline)
            sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
            if sig == signal.SIGXCPU:
                reply = self._reply(req_id, duration, "timeout", "CPU time limit")
            elif sig == signal.SIGKILL:
                reply = self._reply(req_id, duration, "memory", "killed by SIGKILL (out of memory?)")
            else:
                what = f"killed by {signal.Signals(sig).name}" if sig else "exited"
                reply = self._reply(req_id, duration, "runtime", f"program {what} without a result")
            return reply, 0, 0.0
        return protocol.REPLY_HEAD.pack(req_id, duration, 0) + report, pid, deadline

    @staticmethod
    def _exited_by(pid: int, deadline: float):
        """The child's wait status once it has exited, or None when it is still running at
        ``deadline``."""
        pidfd: int | None = None  # opened on the first wait: most children have exited by then
        try:
            while True:
                try:
                    got, st = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    return 0
                if got:
                    return st
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if pidfd is None:
                    try:
                        pidfd = os.pidfd_open(pid)
                    except OSError:
                        pidfd = -1
                if pidfd >= 0:
                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(min(left, 0.0005))
        finally:
            if pidfd is not None and pidfd >= 0:
                os.close(pidfd)

    @staticmethod
    def _reply(req_id: int, duration: float, kind: str, detail: str) -> bytes:
        return (protocol.REPLY_HEAD.pack(req_id, duration, protocol.WORKER_KINDS.index(kind))
                + detail.encode())

    @staticmethod
    def _kill(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def _finish(self, pid: int, deadline: float):
        """Reap the child (killing it at ``deadline``), kill whatever it left, wipe scratch."""
        status = self._reap(pid, deadline) if pid else None
        self.wipe_failures = self._cleanup()
        self.since_statm += 1
        if self.since_statm >= 64:  # our own size barely moves; reading it costs page faults
            self.since_statm = 0
            self.base_vsz = _statm_vsz() or self.base_vsz
        return status

    def _reap(self, pid: int, deadline: float):
        got, st = os.waitpid(pid, os.WNOHANG)  # usually gone by now: the reply was sent first
        if got:
            return st
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        try:
            while True:
                try:
                    got, st = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    return None
                if got:
                    return st
                left = deadline - time.monotonic()
                if left <= 0:
                    self._kill(pid)
                    return os.waitpid(pid, 0)[1]
                if pidfd >= 0:
                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(min(left, 0.0005))
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def _cleanup(self) -> int:
        """Kill whatever the program left behind and wipe the scratch area; returns how many
        entries could not be removed."""
        for _ in range(100):
            if self.own_pidns:
                try:
                    os.kill(-1, signal.SIGKILL)  # everyone in our namespace but us (and pid 1)
                except ProcessLookupError:
                    break  # nobody else exists (the usual case): nothing to reap either
            elif not self.seccomp_ok or not self.seccomp:
                self._kill_descendants()
            reaped = False
            while True:
                try:
                    got, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if not got:
                    break
                reaped = True
            if not reaped and not self._has_children():
                break
            time.sleep(0.001)
        return self._wipe(self.scratch_base)

    def _has_children(self) -> bool:
        if self.own_pidns:
            try:
                os.kill(-1, 0)
                return True
            except ProcessLookupError:
                return False
        if self.seccomp_ok and self.seccomp:
            return False  # nothing can fork: the reaped child was the only one
        return bool(self._children())

    def _children(self) -> list[int]:
        me = str(os.getpid())
        kids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat_line = f.read().decode("latin-1")
            except OSError:
                continue
            if stat_line[stat_line.rfind(")") + 2:].split()[1] == me:
                kids.append(int(name))
        return kids

    def _kill_descendants(self) -> None:
        for pid in self._children():
            self._kill(pid)

    @staticmethod
    def _wipe(base: str) -> int:
        """Empty the scratch area; returns how many entries could not be removed. Only the
        scratch filesystem is touched: a directory on another device is a read-only bind (a venv
        or checkout under /tmp) and is left alone, and the directories leading to it are
        emptied but kept. A program may have chmod-ed its files away from us, so permissions
        are given back first."""
        try:
            os.chmod(base, 0o1777 if base == "/tmp" else 0o700)
            device = os.lstat(base).st_dev
        except OSError:
            return 1
        return _wipe_tree(base, device)

    def serve(self) -> None:
        while True:
            try:
                raw = framing.read_frame(self.proto_in)
            except (EOFError, OSError, ValueError):
                return
            pid, deadline = 0, 0.0
            try:
                reply, pid, deadline = self.run(raw)
            except Exception as e:  # noqa: BLE001 - the worker lives on; the host sees the error
                head = protocol.REQ_HEAD
                req_id = head.unpack_from(raw)[0] if len(raw) >= head.size else 0
                reply = self._reply(req_id, 0.0, "runtime", f"worker: {_short(e)}")
            why = None
            try:
                self._finish(pid, deadline)
                why = self.changed(self.wipe_failures)
            except Exception as e:  # noqa: BLE001
                why = f"cleanup failed: {_short(e)}"
            if why is not None:
                # this worker's state is no longer the one every program must start from: the
                # host replaces it (and re-queues what it had sent after this program)
                reply = bytearray(reply)
                reply[protocol.REPLY_HEAD.size - 1] |= protocol.RETIRE
                sys.stderr.write(f"sandbox worker retiring: {why}\n")
            framing.write_frame(self.proto_out, reply)
            if why is not None:
                return
            self._prefork()


def _wipe_tree(base: str, device: int) -> int:
    """Remove everything under ``base`` that lives on ``device``, never crossing a mount point;
    returns how many entries could not be removed (directories leading to a mount point stay,
    emptied, and are not counted). Walks by ``chdir``, one directory at a time: any depth and
    any path length (a tree below a path longer than PATH_MAX included), no descriptor held
    per level, no recursion."""
    try:
        os.chdir(base)
    except OSError:
        return 1
    failures = 0
    names: list[str] = []  # the directories we are in, below base
    skip: list[set[str]] = [set()]  # per level: entries to leave (mount points and failures)
    try:
        while True:
            entered = False
            try:
                entries = [e.name for e in os.scandir(".")]
            except OSError:
                entries = []
                failures += 1
            for name in entries:
                if name in skip[-1]:
                    continue
                try:
                    st = os.lstat(name)
                    if not stat.S_ISDIR(st.st_mode):
                        os.unlink(name)
                        continue
                    if st.st_dev != device:
                        skip[-1].add(name)  # a bind mount of the host: not ours to empty
                        continue
                    try:
                        os.rmdir(name)  # the usual case: an empty directory
                        continue
                    except OSError:
                        pass
                    try:
                        os.chmod(name, 0o700)
                    except OSError:
                        pass
                    os.chdir(name)
                except OSError:
                    skip[-1].add(name)
                    failures += 1
                    continue
                names.append(name)
                skip.append(set())
                entered = True
                break
            if entered:
                continue
            if not names:
                break
            name = names.pop()
            inner = skip.pop()
            os.chdir("..")
            if inner and all(n in inner for n in os.listdir(name)):
                skip[-1].add(name)  # it leads to a mount point (or to a failure, counted)
                try:  # entering chmod-ed it 0700: programs (their own uid) must still pass
                    os.chmod(name, 0o755)
                except OSError:
                    pass
                continue
            try:
                os.rmdir(name)
            except OSError:
                skip[-1].add(name)
                failures += 1
    finally:
        os.chdir("/")
    return failures


def main(cfg: dict) -> None:
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if cfg.get("launch"):
        try:
            cfg["launched"] = launch(cfg, [proto_in, proto_out])
        except Exception as e:  # noqa: BLE001 - in C or the worker-to-be: report and leave
            framing.write_json(proto_out,
                               {"fatal": f"entering the sandbox's namespaces failed: {_short(e)}"})
            os._exit(1)
    worker = Worker(cfg, proto_in, proto_out, devnull)
    try:
        fatal = worker.setup()
    except Exception as e:  # noqa: BLE001
        fatal = f"worker setup failed: {_short(e)}"
    if fatal:
        framing.write_json(proto_out, {"fatal": fatal})
        return
    framing.write_json(proto_out, {"hello": True, "layers": worker.layers})
    worker.serve()
    if worker.ready is not None:  # stdin closed: leave nothing behind for init to reap
        pid, _, rq_w = worker.ready
        os.close(rq_w)  # the waiting child sees EOF and exits
        worker._finish(pid, time.monotonic() + 1.0)


if __name__ == "__sandbox_worker__":
    main(CONFIG)  # noqa: F821 - injected by the bootstrap
