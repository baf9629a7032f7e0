"""The pool of pre-started sandbox workers and the ``run_program(s)`` entry points.

Each worker is one interpreter started once inside the chosen isolation backend (see
:mod:`distill.sandbox.isolation`) and forks a child per program (see
:mod:`distill.sandbox._worker`). There are two kinds, ``workers`` of each: *heavy* workers have
sympy and numpy imported (and warmed up), *light* ones only the standard library; a program that
mentions a heavy module goes to a heavy worker (a routing choice, not a security one).

One host thread per worker starts it (bwrap's ``--die-with-parent`` follows the starting
*thread*), keeps up to ``_PIPELINE`` programs queued in its stdin so it never waits for the host,
reads the replies in order -- each within ``timeout_s + grace_s`` -- and replaces a worker that
dies, hangs or breaks the protocol, putting the programs queued behind the failed one back in the
queue. Everything coming back from a worker is validated: its body was written by the program's
process. The first worker decides the backend (``auto``: bwrap, unshare, none) and its verified
layers become the pool's :class:`IsolationReport`.

How many workers: ``SandboxConfig.workers`` when set, else (auto) what the process calling
:meth:`SandboxPool.start` was given -- Ray's CPUs for a Ray worker, else the cgroup quota, else
the CPU affinity (:mod:`distill.sandbox.sizing`). It is resolved at start, in the process that
runs the programs, never at config-build time; the report's ``workers`` / ``workers_reason`` say
what was chosen and why, and the pool logs it once.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill import framing
from distill.sandbox import protocol
from distill.sandbox.config import SandboxConfig
from distill.sandbox.isolation import (
    auto_order,
    get_isolation,
    python_paths,
    sandbox_binds,
)
from distill.sandbox.result import ExecResult, build_result
from distill.sandbox.sizing import PoolSize, pool_size

__all__ = [
    "IsolationReport",
    "SandboxError",
    "SandboxPool",
    "SandboxWarning",
    "default_pool",
    "run_program",
    "run_programs",
]

log = logging.getLogger(__name__)

_WORKER_SOURCE = Path(__file__).with_name("_worker.py")
# What the worker uses from the package, which does not exist inside the sandbox: sent as source
# text with the worker's own; name in the worker's globals -> file.
_WORKER_MODULES = {"framing": Path(framing.__file__), "protocol": Path(protocol.__file__)}
# Reads the first frame by hand (framing.py arrives inside it), makes a module object of each
# file in "modules" and runs the worker with them and its config in its globals.
_BOOTSTRAP = """\
import json, os, struct
def _r(n):
    b = b''
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            raise SystemExit(3)
        b += c
    return b
_m = json.loads(_r(struct.unpack('!I', _r(4))[0]))
_g = {'__name__': '__sandbox_worker__', 'CONFIG': _m['config']}
for _k, (_f, _s) in _m['modules'].items():
    _g[_k] = type(os)(_k)
    exec(compile(_s, _f, 'exec'), vars(_g[_k]))
exec(compile(_m['source'], 'distill/sandbox/_worker.py', 'exec'), _g)
"""
# The worker's whole environment: nothing of the host's. (It sets the BLAS thread counts for
# itself before importing numpy, then leaves programs four neutral variables.)
_WORKER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class SandboxError(RuntimeError):
    """The sandbox could not start (no backend works, or the one asked for does not)."""


class SandboxWarning(UserWarning):
    """Programs run with fewer isolation layers than the strongest kind (no namespaces)."""


@dataclass
class IsolationReport:
    """Which isolation is active, what each layer is, and what was skipped and why; and how many
    workers of each kind the pool runs (``workers``) and why that many (``workers_reason``:
    ``config: workers=4``, ``ray: 2 CPUs assigned``, ``cgroup quota: ...``, ``cpu affinity: ...``;
    see :mod:`distill.sandbox.sizing`)."""

    mode: str
    layers: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    verified: dict[str, Any] = field(default_factory=dict)
    workers: int = 0
    workers_reason: str = ""
    kinds: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "layers": self.layers, "skipped": self.skipped,
                "warnings": self.warnings, "verified": self.verified,
                "workers": self.workers, "workers_reason": self.workers_reason,
                "kinds": self.kinds}


# --------------------------------------------------------------------------------------------
# One worker process, seen from the host
# --------------------------------------------------------------------------------------------


def _worker_first_frame(config: dict[str, Any]) -> dict[str, Any]:
    """What the bootstrap reads: the modules the worker needs (name -> [file name for
    tracebacks, source]), the worker's source and its config."""
    root = Path(framing.__file__).parents[1]
    return {"modules": {name: [path.relative_to(root).as_posix(), path.read_text(encoding="utf-8")]
                        for name, path in _WORKER_MODULES.items()},
            "source": _WORKER_SOURCE.read_text(encoding="utf-8"), "config": config}


class _Worker:
    def __init__(self, cmd: list[str], config: dict[str, Any], startup_timeout_s: float) -> None:
        self.scratch_dir = config.get("scratch_dir")
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(_WORKER_ENV), close_fds=True, start_new_session=True, cwd="/",
        )
        threading.Thread(target=self._drain_stderr, daemon=True,
                         name=f"sandbox-stderr-{self.proc.pid}").start()
        self.to_fd = self.proc.stdin.fileno()
        self.from_fd = self.proc.stdout.fileno()
        try:
            framing.write_json(self.to_fd, _worker_first_frame(config))
            hello = json.loads(self._read_frame(time.monotonic() + startup_timeout_s))
        except TimeoutError:
            self.kill()
            raise SandboxError(f"the sandbox worker did not start within {startup_timeout_s:g} s"
                               f"{self._stderr_hint()}") from None
        except (EOFError, OSError, ValueError) as e:
            self.kill()
            raise SandboxError(f"the sandbox worker failed to start: {e}{self._stderr_hint()}") from None
        if "fatal" in hello:
            self.kill()
            raise SandboxError(str(hello["fatal"]))
        self.layers: dict[str, Any] = hello.get("layers", {})

    def _read_frame(self, deadline: float) -> bytes:
        """The worker's next frame (:func:`distill.framing.read_frame`, errors worded for it)."""
        try:
            return framing.read_frame(self.from_fd, deadline)
        except EOFError:
            raise EOFError("the sandbox worker exited") from None
        except ValueError as e:
            raise ValueError(f"sandbox worker sent {e}") from None

    def _drain_stderr(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(line)
            log.debug("sandbox worker %d: %s", self.proc.pid, line)

    def _stderr_hint(self) -> str:
        time.sleep(0.05)
        tail = [ln for ln in self.stderr_tail if ln.strip()]
        return f" ({tail[-1]})" if tail else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, req_id: int, code: str, timeout_s: float, memory_mb: int,
             ast_check: bool) -> None:
        head = protocol.REQ_HEAD.pack(req_id, timeout_s, memory_mb, ast_check)
        framing.write_frame(self.to_fd, head + code.encode("utf-8", "surrogatepass"))

    def receive(self, timeout_s: float) -> dict[str, Any]:
        """The next reply as a dict for :func:`build_result` (plus ``id``); the body comes from
        the sandboxed child and is validated like any untrusted input."""
        raw = self._read_frame(time.monotonic() + timeout_s)
        head = protocol.REPLY_HEAD
        if len(raw) < head.size:
            raise ValueError(f"sandbox worker sent a {len(raw)}-byte frame")
        req_id, duration, status = head.unpack_from(raw)
        retire, status = bool(status & protocol.RETIRE), status & ~protocol.RETIRE
        body = raw[head.size:]
        if status == 0:
            try:
                reply = json.loads(body)
            except ValueError:
                reply = None
            if not isinstance(reply, dict):
                reply = {"kind": "runtime", "detail": "the program's report was malformed"}
        elif status < len(protocol.WORKER_KINDS):
            reply = {"kind": protocol.WORKER_KINDS[status],
                     "detail": body.decode("utf-8", "replace")}
        else:
            raise ValueError(f"unknown reply status {status}")
        reply["id"], reply["duration_s"] = req_id, duration
        reply["retire"] = retire
        return reply

    def kill(self, graceful: bool = False) -> None:
        """Stop the worker and everything it started, leaving nothing to be reaped by init.

        Graceful: close its stdin and give it a moment (it kills and reaps its children, then
        exits). Otherwise, or when that fails: SIGKILL the worker itself first -- in a
        namespace it is pid 1, so the kernel kills and reaps everything inside, and the
        launcher (unshare/bwrap) then exits on its own -- and the launcher last."""
        proc = self.proc
        if graceful and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=2.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            for pid in _descendants(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped launcher could not reap them
            except OSError:
                pass
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.kill()
                proc.wait()
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self.scratch_dir:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)


def _descendants(root: int) -> list[int]:
    """Pids below ``root``, parents before children."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
        except OSError:
            continue
        kids.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(name))
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


# --------------------------------------------------------------------------------------------
# The pool
# --------------------------------------------------------------------------------------------


class _Job:
    __slots__ = ("code", "done", "memory_mb", "result", "timeout_s")

    def __init__(self, code: Any, timeout_s: float, memory_mb: int) -> None:
        self.code, self.timeout_s, self.memory_mb = code, timeout_s, memory_mb
        self.result: ExecResult | None = None
        self.done = threading.Event()


_STOP = object()
# Programs sent to a worker ahead of its replies. Deeper queues save more hand-offs but put
# more programs back in the queue when a worker is replaced.
_PIPELINE = 4
_PIPE_BUDGET = 48 * 1024  # below the 64 KiB of a Linux pipe
_LIVE_POOLS: weakref.WeakSet[SandboxPool] = weakref.WeakSet()


class SandboxPool:
    """A pool of sandbox workers. Thread-safe; a context manager; closed at exit.

    ``SandboxPool(config)`` or ``SandboxPool(timeout_s=2, workers=4, ...)`` (keywords override
    fields of ``config``). Workers start on :meth:`start` or on the first program; their number
    (``config.workers``, or auto) is resolved there, in the calling process (:attr:`size`).
    """

    def __init__(self, config: SandboxConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else SandboxConfig()
        if overrides:
            base = SandboxConfig.model_validate({**base.model_dump(), **overrides})
        self.config = base
        self._lock = threading.Lock()
        self._kinds = ("heavy", "light") if base.light_workers else ("heavy",)
        self._queues: dict[str, queue.SimpleQueue] = {k: queue.SimpleQueue() for k in self._kinds}
        self._workers: dict[str, list[_Worker | None]] = {k: [] for k in self._kinds}
        self._threads: list[threading.Thread] = []
        heavy = sorted(m for m in set(base.preload) | set(base.allowed_imports)
                       if m not in sys.stdlib_module_names)
        self._heavy_re = re.compile(r"\b(?:" + "|".join(map(re.escape, heavy)) + r")\b") if heavy else None
        self._report: IsolationReport | None = None
        self._size: PoolSize | None = None
        self._backend = None
        self._owner_pid = 0
        self._ids = itertools.count(1)
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> SandboxPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def size(self) -> PoolSize | None:
        """How many workers of each kind this pool runs and why; None until it starts."""
        return self._size

    @property
    def report(self) -> IsolationReport:
        """The isolation in force (starts the pool when needed)."""
        self.start()
        assert self._report is not None
        return self._report

    def start(self) -> IsolationReport:
        with self._lock:
            if self._closed:
                raise SandboxError("this sandbox pool is closed")
            if self._report is not None and self._owner_pid == os.getpid():
                return self._report
            if self._owner_pid and self._owner_pid != os.getpid():
                self._forget_after_fork()
            # Every worker is started by the thread that serves it, for as long as the pool
            # lives: bwrap's --die-with-parent and the workers' own parent-death signal follow
            # the *thread* that forked them, so a short-lived starter thread would kill them.
            self._size = size = pool_size(self.config.workers)
            n = size.workers
            self._workers = {k: [None] * n for k in self._kinds}
            first = (self._kinds[-1], 0)  # a light worker starts fastest; it picks the backend
            slots = [first] + [(k, i) for k in self._kinds for i in range(n) if (k, i) != first]
            ready = {slot: threading.Event() for slot in slots}
            errors: dict[tuple[str, int], BaseException] = {}
            self._threads = [threading.Thread(target=self._serve, args=(k, i, ready[(k, i)], errors),
                                              daemon=True, name=f"sandbox-{k}-{i}")
                             for k, i in slots]
            self._threads[0].start()
            ready[first].wait()
            if first in errors:
                self._threads = []
                raise errors[first]
            for t in self._threads[1:]:
                t.start()
            for slot in slots[1:]:
                ready[slot].wait()
            self._owner_pid = os.getpid()
            _LIVE_POOLS.add(self)
            log.info("sandbox pool: %d worker%s of each kind (%s) -- %s; isolation %s",
                     n, "" if n == 1 else "s", ", ".join(self._kinds), size.reason,
                     self._report.mode if self._report else "?")
            return self._report  # type: ignore[return-value]

    def _forget_after_fork(self) -> None:
        # a forked copy of a started pool: the workers and threads belong to the parent
        self._workers = {k: [] for k in self._kinds}
        self._threads, self._report = [], None
        self._queues = {k: queue.SimpleQueue() for k in self._kinds}

    def _choose_backend(self, kind: str) -> _Worker:
        cfg = self.config
        names = auto_order() if cfg.isolation == "auto" else (cfg.isolation,)
        if cfg.isolation == "auto" and cfg.require_namespaces:
            names = tuple(n for n in names if n != "none")
        skipped: dict[str, str] = {}
        for name in names:
            backend = get_isolation(name)
            why = backend.unavailable()
            if why is None:
                self._backend = backend
                try:
                    worker = self._spawn(kind)
                except SandboxError as e:
                    why = str(e)
                else:
                    self._report = self._make_report(backend, worker, skipped)
                    return worker
            skipped[name] = why
            if cfg.isolation != "auto":
                raise SandboxError(f"isolation {name!r} is not available here: {why}")
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        if cfg.require_namespaces:
            raise SandboxError(
                f"no namespace isolation works on this node ({why}), and a run on a cluster "
                "does not run untrusted programs without it: install bubblewrap in the image "
                "or allow unprivileged user namespaces in the pod (see cluster/README.md), or "
                "set sandbox.isolation: none to run them unisolated")
        raise SandboxError(f"no sandbox backend could start: {why}")

    def _worker_config(self, kind: str) -> dict[str, Any]:
        cfg = self.config
        backend = self._backend
        _, site_dirs = python_paths()
        preload = [m for m in cfg.preload if not cfg.ast_check or m in cfg.allowed_imports]
        if kind == "light":
            preload = [m for m in preload if m in sys.stdlib_module_names]
        out = {
            "mode": backend.name,
            "launch": backend.worker_builds_root,
            "uid_base": cfg.uid_base,
            "binds": [list(b) for b in sandbox_binds()],
            "scratch_mb": cfg.scratch_mb,
            "scratch_dir": None,
            "sys_path": site_dirs,
            "preload": preload,
            "warmup": cfg.warmup and kind == "heavy",
            "stdout_limit": cfg.stdout_limit,
            "max_answer_chars": cfg.max_answer_chars,
            "allowed_imports": list(cfg.allowed_imports),
            "seccomp": cfg.seccomp,
            "nofile": cfg.nofile,
            "nproc": cfg.nproc,
            "fsize_mb": cfg.fsize_mb,
            "host_pidns": os.readlink("/proc/self/ns/pid"),
        }
        if backend.name == "none":
            out["scratch_dir"] = tempfile.mkdtemp(prefix="mathdistill-sandbox-")
        return out

    def _spawn(self, kind: str) -> _Worker:
        backend = self._backend
        wcfg = self._worker_config(kind)
        python = os.path.realpath(sys.executable)
        argv = [python, "-I", "-S", "-B", "-c", _BOOTSTRAP]
        cmd = backend.wrap(argv, list(sandbox_binds()), self.config.scratch_mb,
                           self.config.uid_base)
        try:
            return _Worker(cmd, wcfg, self.config.startup_timeout_s)
        except BaseException:
            if wcfg["scratch_dir"]:
                shutil.rmtree(wcfg["scratch_dir"], ignore_errors=True)
            raise

    def _make_report(self, backend, worker: _Worker, skipped: dict[str, str]) -> IsolationReport:
        cfg = self.config
        v = worker.layers
        layers: list[str] = []
        layers.append(f"uids: {v.get('uid_mapping')}")
        if v.get("program_uid_separate"):
            layers.append("programs: own uid (no signal, prlimit, renice, ptrace or F_SETOWN "
                          "over the worker), no capabilities"
                          + (", a fresh IPC namespace each" if v.get("fresh_ipc") else ""))
        else:
            layers.append("programs: the worker's uid, no capabilities (seccomp refuses the "
                          "same-uid controls over other processes and SysV IPC)")
        layers.append(f"/proc: {v.get('proc')}")
        if backend.namespaces:
            layers.append(f"namespaces: {', '.join(backend.namespaces)} ({backend.name})")
            net = v.get("network")
            layers.append(f"network: none (own network namespace; {net})")
            layers.append(
                "filesystem: read-only minimal root (system and Python directories only); "
                f"private {cfg.scratch_mb} MiB tmpfs /tmp as scratch, wiped after each program"
            )
            layers.append("processes: own pid namespace; everything but the worker is killed "
                          "after each program")
        if v.get("seccomp"):
            layers.append("seccomp: fork/exec/socket/ptrace/mount/namespaces/kill/SysV IPC "
                          "denied; prlimit/renice/affinity/F_SETOWN only on the caller itself")
        if v.get("caps_dropped"):
            layers.append("capabilities: all dropped, no_new_privs")
        nproc_note = (" (processes: not enforced for host root)"
                      if os.geteuid() == 0 and not v.get("program_uid_separate")
                      and v.get("uid_map") in (None, [[0, 0, 4294967295]], [[0, 0, 1]]) else "")
        layers.append(f"rlimits: cpu {cfg.timeout_s:g}+1 s, address space +{cfg.memory_mb} MiB, "
                      f"file size {cfg.fsize_mb} MiB, open files {cfg.nofile}, processes "
                      f"{cfg.nproc}{nproc_note}, no core")
        layers.append("wall clock: the program and every process it left are SIGKILLed at "
                      "timeout_s")
        if v.get("env_clean"):
            layers.append("environment: empty (HOME/TMPDIR=scratch, LANG, PATH)")
        if cfg.ast_check:
            layers.append("ast check: import allow-list; no eval/exec/open/__import__/dunders")
        warns: list[str] = []
        if backend.name == "none":
            why = "; ".join(f"{k}: {r}" for k, r in skipped.items()) or "isolation='none' was asked for"
            warns.append(
                "SANDBOX RUNNING WITHOUT NAMESPACES (" + why + "). Programs can read the "
                "host's files and, as this user, write them; only rlimits, seccomp, dropped "
                "capabilities, the wall clock, an empty environment and the AST check stand "
                "between them and the host."
            )
        if not v.get("seccomp"):
            warns.append("seccomp is not active (only x86_64 is supported, or it was turned off)"
                         ": fork and exec are limited by rlimits only")
        for w in warns:
            log.warning(w)
            warnings.warn(w, SandboxWarning, stacklevel=4)
        size = self._size
        return IsolationReport(mode=backend.name, layers=layers, skipped=skipped,
                               warnings=warns, verified=dict(v),
                               workers=size.workers if size else 0,
                               workers_reason=size.reason if size else "",
                               kinds=list(self._kinds))

    def close(self) -> None:
        """Stop the threads and kill every worker (and everything inside its namespaces)."""
        with self._lock:
            self._closed = True
            if self._owner_pid != os.getpid():
                return
            # workers first: their serving threads must outlive them (see start)
            live = [w for ws in self._workers.values() for w in ws if w is not None]
            stoppers = [threading.Thread(target=w.kill, kwargs={"graceful": True}, daemon=True)
                        for w in live]
            for t in stoppers:
                t.start()
            for t in stoppers:
                t.join()
            for workers in self._workers.values():
                workers[:] = [None] * len(workers)
            for k in self._kinds:
                for _ in range(len(self._workers[k])):
                    self._queues[k].put(_STOP)
            for t in self._threads:
                t.join(timeout=self.config.timeout_s + self.config.grace_s + 5)
            self._threads = []
            _LIVE_POOLS.discard(self)

    def worker_pids(self) -> list[int]:
        """Host pids of the live workers' launch processes (unshare/bwrap/python)."""
        return [w.proc.pid for ws in self._workers.values() for w in ws
                if w is not None and w.alive()]

    # ---- running -------------------------------------------------------------------------
    def _serve(self, kind: str, slot: int, ready: threading.Event,
               errors: dict[tuple[str, int], BaseException]) -> None:
        """One worker's thread: starts the worker, keeps up to ``_PIPELINE`` programs queued in
        its pipe (so it never waits for us between programs) and hands out the replies in
        order; replaces the worker when it fails."""
        try:
            if self._backend is None:
                self._workers[kind][slot] = self._choose_backend(kind)
            else:
                self._workers[kind][slot] = self._spawn(kind)
        except SandboxError as e:
            if self._backend is None or self._report is None:
                errors[(kind, slot)] = e
                ready.set()
                return
            log.warning("sandbox %s worker %d did not start: %s", kind, slot, e)  # retried later
        except BaseException as e:  # noqa: BLE001
            errors[(kind, slot)] = e
            ready.set()
            return
        ready.set()
        q = self._queues[kind]
        inflight: collections.deque[tuple[_Job, int, int]] = collections.deque()
        queued_bytes = 0  # an upper bound of what sits unread in the worker's stdin pipe
        pending: _Job | None = None
        stop = False
        while True:
            while not stop and len(inflight) < _PIPELINE:
                if pending is not None:
                    job, pending = pending, None
                else:
                    try:
                        job = q.get() if not inflight else q.get_nowait()
                    except queue.Empty:
                        break
                if job is _STOP:
                    stop = True
                    break
                size = 6 * len(job.code) + 256 if isinstance(job.code, str) else 256
                if inflight and queued_bytes + size > _PIPE_BUDGET:
                    # would block us in write() while the worker may block writing a reply
                    pending = job
                    break
                try:
                    req_id = self._send(kind, slot, job)
                except BaseException as e:  # noqa: BLE001 - a job always gets a result
                    job.result = ExecResult.failure("runtime", f"sandbox: {type(e).__name__}: {e}")
                    job.done.set()
                    continue
                if req_id is None:
                    job.done.set()  # answered without running (not a program)
                else:
                    inflight.append((job, req_id, size))
                    queued_bytes += size
            if not inflight:
                if stop:
                    return
                continue
            job, req_id, size = inflight.popleft()
            queued_bytes -= size
            try:
                job.result = self._receive(kind, slot, job, req_id)
            except BaseException as e:  # noqa: BLE001
                job.result = ExecResult.failure("runtime", f"sandbox: {type(e).__name__}: {e}")
            if self._workers[kind][slot] is None:
                # the worker was replaced: the programs queued behind this one never ran
                for other, _, _ in inflight:
                    q.put(other)
                inflight.clear()
                queued_bytes = 0
            job.done.set()

    def _send(self, kind: str, slot: int, job: _Job) -> int | None:
        cfg = self.config
        if self._closed:
            job.result = ExecResult.failure("runtime", "the sandbox pool was closed")
            return None
        if not isinstance(job.code, str):
            job.result = ExecResult.failure("syntax", f"not a program ({type(job.code).__name__})")
            return None
        if len(job.code) > cfg.max_code_chars:
            job.result = ExecResult.failure(
                "syntax", f"program of {len(job.code)} characters (limit {cfg.max_code_chars})")
            return None
        workers = self._workers[kind]
        worker = workers[slot]
        if worker is None or not worker.alive():
            if worker is not None:
                worker.kill()
            workers[slot] = None
            worker = workers[slot] = self._spawn(kind)
        req_id = next(self._ids)
        worker.send(req_id, job.code, job.timeout_s, job.memory_mb, cfg.ast_check)
        return req_id

    def _receive(self, kind: str, slot: int, job: _Job, req_id: int) -> ExecResult:
        cfg = self.config
        worker = self._workers[kind][slot]
        t0 = time.monotonic()
        if worker is None:
            return ExecResult.failure("runtime", "the sandbox worker was replaced")
        try:
            reply = worker.receive(job.timeout_s + cfg.grace_s)
        except TimeoutError:
            self._replace(kind, slot)
            return ExecResult.failure("timeout", "the worker did not answer in time; replaced",
                                      time.monotonic() - t0)
        except (EOFError, OSError, ValueError) as e:
            self._replace(kind, slot)
            return ExecResult.failure("runtime", f"the sandbox worker died ({e}); replaced",
                                      time.monotonic() - t0)
        if reply.get("id") != req_id:
            self._replace(kind, slot)
            return ExecResult.failure("runtime", "sandbox protocol error; worker replaced",
                                      time.monotonic() - t0)
        if reply.pop("retire"):
            # the program changed its worker (limits, scheduling, a scratch area it could not
            # empty): the worker stopped after answering; the next program gets a new one
            self._replace(kind, slot)
        return build_result(reply, cfg.stdout_limit, cfg.max_answer_chars)

    def _replace(self, kind: str, slot: int) -> None:
        """Drop a failed worker (killed in the background, so the caller gets its answer now);
        the slot's next program starts a new one."""
        workers = self._workers[kind]
        worker, workers[slot] = workers[slot], None
        if worker is not None:
            threading.Thread(target=worker.kill, daemon=True, name="sandbox-reaper").start()

    def _kind_for(self, code: Any) -> str:
        """Which workers get a program: only a routing choice (a light worker can still import
        anything the allow-list permits, just slower), not a security decision."""
        if len(self._kinds) == 1 or not isinstance(code, str):
            return self._kinds[0]
        if self._heavy_re is not None and self._heavy_re.search(code):
            return "heavy"
        return "light"

    def run(self, code: str, *, timeout_s: float | None = None,
            memory_mb: int | None = None) -> ExecResult:
        """Run one program (see :func:`run_program`); limits None: the pool config's."""
        return self.run_many([code], timeout_s=timeout_s, memory_mb=memory_mb)[0]

    def run_many(self, codes: Iterable[str], *, timeout_s: float | None = None,
                 memory_mb: int | None = None) -> list[ExecResult]:
        """Run programs on all workers at once; results in the order of ``codes``. Limits None:
        the pool config's ``timeout_s`` / ``memory_mb``."""
        self.start()
        t = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        m = int(memory_mb if memory_mb is not None else self.config.memory_mb)
        if t <= 0 or m <= 0:
            raise ValueError("timeout_s and memory_mb must be positive")
        t0 = time.perf_counter()
        jobs = [_Job(code, t, m) for code in codes]
        for job in jobs:
            self._queues[self._kind_for(job.code)].put(job)
        for job in jobs:
            job.done.wait()
        results: list[ExecResult] = [job.result for job in jobs]  # type: ignore[misc]
        _record_metrics(results, time.perf_counter() - t0)
        return results


def _record_metrics(results: Sequence[ExecResult], seconds: float) -> None:
    """A batch's programs by outcome (``ok`` or the error kind) and its rate
    (:mod:`distill.metrics`)."""
    from distill.metrics import record

    for outcome, n in collections.Counter("ok" if r.ok else r.error for r in results).items():
        record("sandbox_programs", n, outcome=outcome)
    if results and seconds > 0:
        record("sandbox_programs_per_s", len(results) / seconds)


@atexit.register
def _close_all() -> None:
    for pool in list(_LIVE_POOLS):
        try:
            pool.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


# --------------------------------------------------------------------------------------------
# Module-level entry points on a shared pool
# --------------------------------------------------------------------------------------------

_DEFAULT_LOCK = threading.Lock()
_DEFAULT_POOLS: dict[str, SandboxPool] = {}


def default_pool(config: SandboxConfig | None = None) -> SandboxPool:
    """The process-wide pool for ``config`` (default: ``SandboxConfig()``), started lazily."""
    cfg = config if config is not None else SandboxConfig()
    key = cfg.model_dump_json()
    with _DEFAULT_LOCK:
        pool = _DEFAULT_POOLS.get(key)
        if pool is None or pool._closed:
            pool = _DEFAULT_POOLS[key] = SandboxPool(cfg)
        return pool


def run_program(code: str, *, timeout_s: float | None = None, memory_mb: int | None = None,
                config: SandboxConfig | None = None) -> ExecResult:
    """Run one untrusted program in the sandbox and read its answer.

    ``timeout_s`` / ``memory_mb`` override the limits for this program; None (the default)
    takes them from ``config`` (default ``SandboxConfig()``: 5 s, 512 MiB).

    The answer is, in order: a module-level ``ans``, ``answer`` or ``result`` (not None, not a
    function); else the return value of a ``solution()`` function; else the last number
    printed. See :class:`~distill.sandbox.result.ExecResult` for what comes back.
    """
    return default_pool(config).run(code, timeout_s=timeout_s, memory_mb=memory_mb)


def run_programs(codes: Sequence[str], *, timeout_s: float | None = None,
                 memory_mb: int | None = None,
                 config: SandboxConfig | None = None) -> list[ExecResult]:
    """:func:`run_program` for many programs, through the pool's workers in parallel (limits
    None: ``config``'s)."""
    return default_pool(config).run_many(codes, timeout_s=timeout_s, memory_mb=memory_mb)
