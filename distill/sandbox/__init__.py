"""Run untrusted Python -- Program-of-Thought rationales, student outputs, HTTP requests -- and
read its answer.

API
---
``run_program(code, *, timeout_s=5.0, memory_mb=512) -> ExecResult`` and
``run_programs(codes, *, timeout_s, memory_mb) -> list[ExecResult]`` (results in input order)
run on a process-wide :class:`SandboxPool` built from ``SandboxConfig()``; build your own pool
(``with SandboxPool(config) as pool: pool.run_many(codes)``) to choose the configuration.
:class:`~distill.sandbox.stage.ExecutePrograms` / :func:`execute_programs` map a column of
programs in a Ray Dataset. ``ExecResult`` has ``ok``, ``answer`` (the canonical string of
:func:`distill.quantities.canonical`: ``18``, ``14.4``, ``4/7``), ``error`` (one of
``timeout``, ``memory``, ``forbidden``, ``syntax``, ``runtime``, ``no_answer``,
``output_limit``), ``detail``, ``source``, ``stdout`` (capped) and ``duration_s``.

Answer conventions, first match wins: a module-level ``ans``, ``answer`` or ``result`` that is
not None and not a function; else ``solution()`` is called (inside the time limit) and its
return value taken unless it is None; else the last number printed (the last printed line that
holds a number: read whole by ``parse_answer``, else its last quantity). Values: ``int``,
``float`` (read as ``parse_answer`` reads floats: ``0.3333333333333333`` is 1/3),
``Fraction``, ``Decimal``, numpy scalars and size-1 arrays, sympy ``Integer``/``Rational``/
``Float`` and real sympy numbers (``sqrt(2)`` as a float), one-element lists/tuples (what
``sympy.solve`` returns), and numeric strings (``"$1,234"``). ``True``/``False``, ``None``,
longer lists and non-numeric text give ``no_answer``.

Error kinds: ``syntax`` (does not parse, is not text, or is longer than ``max_code_chars``);
``forbidden`` (refused by the AST allow-list, or the program died of EPERM/EACCES/EROFS from an
OS layer); ``timeout`` (wall clock or CPU limit); ``memory`` (MemoryError or killed for memory);
``output_limit`` (more than ``stdout_limit`` characters printed, an answer longer than
``max_answer_chars`` -- checked again on the host --, a number beyond ``1e+-400`` or with more
than 4,300 digits (:class:`distill.quantities.QuantityTooLarge`), or the scratch/file-size
quota: ENOSPC/EFBIG); ``runtime`` (any other exception, or a crash); ``no_answer`` (ran, but
no usable answer). Text in results is valid UTF-8 (lone surrogates become U+FFFD).

How a program runs
------------------
A pool starts ``workers`` *heavy* workers (sympy and numpy pre-imported and warmed up) and as
many *light* ones (standard library only); ``workers`` defaults to auto: the CPUs the process
running the pool was given -- Ray's assignment inside a Ray worker, else the cgroup quota, else
the CPU affinity -- resolved when the pool starts (:mod:`distill.sandbox.sizing`). A program
that mentions a heavy module goes to a heavy worker, every other one to a light worker (forking
a small interpreter costs several times less on the same CPU). Each worker is one ``python -I -S`` started once inside the isolation
backend. Per program it forks a child, already restricted before the program arrives: own
session; only /dev/null on fds 0-2 plus its two pipes; a fresh IPC namespace; its own uid (see
below) and no capability; a fresh scratch directory as cwd; the seccomp filter. The child
parses, vets (``ast_check``) and runs the program, reports once and exits, so nothing it did --
globals, patched builtins or modules, threads, files, SysV IPC, environment -- exists for the
next program; the worker itself never runs program code. A report counts only once the child
has exited (one that reports and keeps running is killed at its deadline: ``timeout``). The
worker enforces the wall clock (SIGKILL), then kills everything left in its pid namespace and
wipes the scratch area (any depth, any path length) before it forks the next child; if the
scratch area could not be emptied or the worker's own limits, CPU affinity or priority changed,
it answers and stops, and the host starts a new one. The host replaces a worker that dies,
hangs (no reply within ``timeout_s + grace_s``) or breaks the protocol, and re-queues the
programs it had queued.

Isolation layers, strongest first (``mathdistill sandbox check`` prints those in force):

* Namespaces (``isolation``: auto tries unshare, then bwrap, then none when the host is root;
  bwrap first otherwise): user, mount, pid, net, ipc, uts. The filesystem is a read-only
  minimal root -- ``/usr``, ``/lib*``, ``/bin``, ``/sbin``, ``/etc/ld.so.cache``, the Python
  installation and its site-packages, five /dev nodes, the sandbox's own read-only ``/proc`` --
  plus a private size-limited tmpfs ``/tmp`` (the scratch area); nothing else of the host
  exists inside (no home directories, no repository, no ``/etc/shadow``, no other process). No
  network: an empty network namespace (bwrap brings up its own loopback, unshare leaves it
  down); the host's loopback is unreachable.
* uids. ``unshare`` (the worker calls unshare(2) itself; no external binary): on a root host
  the sandbox's uid 0 (the worker) is host uid ``uid_base`` and its uid 1 (every program) is
  ``uid_base + 1`` -- never host root, so host-global files checked against host root
  (``/proc/sys``) are not writable, and a program has no rights over its worker (no signal,
  ``prlimit``, renice, CPU pinning, ptrace, ``F_SETOWN`` delivery). On an unprivileged host the
  one uid it owns is mapped and programs share it with the worker (seccomp then refuses those
  controls). ``bwrap`` maps the uid that starts it, so a root host starts it as host uid
  ``uid_base`` (``_bwrap_as_user.py``: Python directories that uid cannot reach, under
  ``/root``, are re-bound in a private mount namespace first), never as root; programs share
  the worker's uid (seccomp refuses the same-uid controls).
* ``/proc``: unshare mounts it read-only with ``subset=pid`` (processes only: no
  ``/proc/sys``, ``/proc/sysrq-trigger``, ...; the whole of it read-only on kernels before
  5.8); bwrap's ``/proc`` is remounted read-only (its ``/proc/sys`` is read-only already).
* seccomp (x86_64): fork/vfork/clone of processes, execve, socket/socketpair/connect/bind,
  ptrace and process_vm_*, mount/umount/pivot_root/chroot/unshare/setns and the new mount API,
  bpf, perf_event_open, userfaultfd, io_uring, keyrings, kexec/modules/reboot/swap, SysV IPC
  and POSIX message queues, and kill/tgkill/tkill (a program signals no process, itself
  included); prlimit64, setpriority, sched_set*, ioprio_set, migrate/move_pages unless they
  name the caller itself; fcntl F_SETOWN/F_SETSIG/F_SETOWN_EX and ioctl FIOSETOWN/SIOCSPGRP;
  denied with EPERM.
* No capabilities in programs. The worker keeps, in its own user namespace only, what it needs
  to run programs under their uid and clean up after them (DAC_OVERRIDE, FOWNER, KILL,
  SETUID, SETGID, SYS_ADMIN for the per-program IPC namespace); a program loses them all with
  its uid change (and drops what is left); securebits and no_new_privs keep them from coming
  back through an execve. Without a program uid (bwrap, unprivileged host) the worker drops
  them all.
* rlimits: CPU seconds (``timeout_s`` rounded up + 1), address space (``memory_mb`` on top of
  the pre-imported interpreter), processes (enforced for the program uid; not by Linux for host
  root -- ``none`` --: seccomp is the wall there), file size, open files, no core dumps; the worker's own are set hard and checked after every program.
* The wall clock, kept by the worker: at ``timeout_s`` the program and everything it left are
  SIGKILLed; the host gives the worker ``grace_s`` more and then replaces it.
* The environment: programs see HOME/TMPDIR (the scratch area), LANG and PATH; the worker was
  started with nothing from the host's environment.
* The AST allow-list (``ast_check``): imports only from ``allowed_imports``; no ``eval``,
  ``exec``, ``compile``, ``open``, ``__import__``, ``getattr``, ``attrgetter``..., no dunder
  names or attributes (imported names included), no attribute named like a module object that
  an allowed module re-exports (``typing.sys``, ``random._os``, ``dataclasses.builtins``,
  ``enum.bltns``, numpy's ``ctypes``; the worker learns the list from its preloaded modules).
  Defence in depth only, not a wall: library functions that evaluate strings
  (``sympy.parse_expr``/``sympify``) and modules imported later walk past it, which the tests
  show, and every hostile case is also run with it off.
* Answers are bounded on the host as well: length (``max_answer_chars``), exponent (+-400) and
  digits (4,300) are checked before a value is computed, and parsing is O(n log n).

Where namespaces are refused (some containers) ``auto`` falls back to ``none`` with a loud
warning (``SandboxWarning``, logged, and in ``sandbox check``); naming a backend makes it
required (``SandboxError`` when it cannot start).

What it protects against
------------------------
Infinite loops and sleeps, fork bombs, memory bombs, deep recursion, huge output, filling the
disk (tmpfs quota, RLIMIT_FSIZE), writing or reading host files, reading the host's or another
process's environment, network access (loopback included), starting processes (os.system,
subprocess, Popen found through ``__subclasses__``, ``__import__``, importlib, exec, ctypes),
ignoring SIGTERM, double-forked ``setsid`` daemons and lingering threads, poisoning later
programs by patching builtins or modules, and killing or tracing the worker.

Contained, per isolation mode (the hostile suite, tests/test_sandbox_hostile.py, runs each):

=====================================================  ========  =======  ====================
                                                       unshare   bwrap    none
=====================================================  ========  =======  ====================
host files (read/write), other processes, environment  yes       yes      environment only
network, host loopback, abstract unix sockets          yes       yes      seccomp only
host kernel settings (/proc/sys), sysrq                yes       yes      no (root host)
sandbox uid is host root                               never     never    as host user
the worker (prlimit, renice, signals, ptrace, F_SETOWN) uid+secc  seccomp  seccomp
the next program (files, SysV IPC, deep dirs, limits)  yes       yes*     yes* (no IPC ns)
an early report + keep running; answers stalling host  yes       yes      yes
=====================================================  ========  =======  ====================

``yes*``: SysV IPC is refused by seccomp (the IPC namespace is per worker); without seccomp
(x86_64 only) it would carry over. "uid+secc": held by the separate program uid and by
seccomp, each alone.

What it does not protect against
--------------------------------
* ``none`` as root: programs can open host-global ``/proc/sys`` files for writing (seccomp,
  rlimits and the AST check still hold).
* Kernel exploits: the wall is the Linux kernel (namespaces, seccomp); a kernel bug reachable
  through the allowed syscalls escapes all of it. For hostile users at scale, run workers in a
  VM-grade sandbox (gVisor, Firecracker) as well.
* In ``none`` mode (no namespaces), programs can read every file the host user can, and write
  them (seccomp, rlimits and the AST check still hold; the AST check refuses ``open``).
* Side channels and resource contention: a program may burn its full CPU and memory allowance
  and slow its neighbours; timing and cache side channels are not addressed.
* Information inside the sandbox: the Python installation, site-packages and system libraries
  are readable (they are not secret); a program learns the library versions.
* Correctness of the answer: a program may print or return anything; the sandbox only reads it.
* seccomp is x86_64 only; elsewhere fork/exec are stopped by the pid namespace and rlimits only
  (a warning says so).
"""

from distill.sandbox.config import SandboxConfig
from distill.sandbox.pool import (
    IsolationReport,
    SandboxError,
    SandboxPool,
    SandboxWarning,
    default_pool,
    run_program,
    run_programs,
)
from distill.sandbox.result import ERROR_KINDS, ExecResult
from distill.sandbox.sizing import PoolSize, pool_size, resolve_workers
from distill.sandbox.stage import ExecutePrograms, execute_programs

__all__ = [
    "ERROR_KINDS",
    "ExecResult",
    "ExecutePrograms",
    "IsolationReport",
    "PoolSize",
    "SandboxConfig",
    "SandboxError",
    "SandboxPool",
    "SandboxWarning",
    "default_pool",
    "execute_programs",
    "pool_size",
    "resolve_workers",
    "run_program",
    "run_programs",
]
