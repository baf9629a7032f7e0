"""The sandbox's typed configuration (nested into the pipeline config as ``sandbox``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distill.configbase import StrictModel

DEFAULT_ALLOWED_IMPORTS = (
    "math", "cmath", "fractions", "decimal", "numbers", "statistics", "itertools", "functools",
    "operator", "collections", "heapq", "bisect", "re", "string", "random", "datetime",
    "calendar", "time", "typing", "dataclasses", "enum", "copy", "sympy", "numpy", "mpmath",
    "scipy",
)
DEFAULT_PRELOAD = ("math", "cmath", "fractions", "decimal", "statistics", "itertools",
                   "functools", "collections", "re", "random", "datetime", "numpy", "sympy")

Isolation = Literal["auto", "bwrap", "unshare", "none"]


class SandboxConfig(StrictModel):
    """How untrusted programs are run: limits, pool size and isolation layers."""


    timeout_s: float = Field(5.0, gt=0, le=600, description="Wall-clock limit per program, seconds "
                             "(the CPU-time rlimit is this rounded up plus one).")
    memory_mb: int = Field(512, ge=16, description="Address space a program may add on top of "
                           "the pre-imported interpreter (RLIMIT_AS), MiB.")
    workers: int | None = Field(None, ge=1, le=256,
                                description="Pre-started workers of each kind (heavy, light) in "
                                "the pool. None (auto): resolved when the pool starts, in the "
                                "process that runs the programs, from the CPUs that process was "
                                "given -- a Ray worker's assigned CPUs, else the cgroup CPU quota, "
                                "else the CPU affinity (see distill.sandbox.sizing).")
    stdout_limit: int = Field(65536, ge=256, description="Characters of stdout kept; printing "
                              "more ends the program with error 'output_limit'.")
    isolation: Isolation = Field("auto", description="Namespace layer: 'auto' takes the strongest "
                                 "that works (bwrap, then unshare, then none with a loud "
                                 "warning); naming one makes it required.")
    require_namespaces: bool = Field(
        False, description="With isolation 'auto', never fall back to running programs "
        "without namespaces: a pool that cannot isolate refuses to start. The pipeline sets it "
        "when it joins a Ray cluster (under `ray job submit`, or ray.address set), where "
        "programs run on nodes nobody watches; an explicit isolation 'none' still runs (with "
        "its warning).")
    ast_check: bool = Field(True, description="Refuse programs that import outside "
                            "allowed_imports or touch eval/exec/open/dunders (defence in depth; "
                            "the OS layers hold without it).")
    allowed_imports: tuple[str, ...] = Field(DEFAULT_ALLOWED_IMPORTS, description="Top-level "
                                             "modules a program may import (with ast_check).")
    preload: tuple[str, ...] = Field(DEFAULT_PRELOAD, description="Modules imported once per "
                                     "worker before forking (those not installed are skipped).")
    seccomp: bool = Field(True, description="Install the seccomp filter in each program "
                          "(x86_64; no fork/exec/socket/ptrace/mount/...). Off only for tests "
                          "of the layers beneath it.")
    scratch_mb: int = Field(64, ge=1, description="Size of the private tmpfs scratch area "
                            "(namespace modes), MiB.")
    fsize_mb: int = Field(16, ge=1, description="Largest file a program may write (RLIMIT_FSIZE), MiB.")
    nofile: int = Field(64, ge=8, description="Open files per program (RLIMIT_NOFILE).")
    nproc: int = Field(64, ge=1, description="Processes/threads (RLIMIT_NPROC; not enforced "
                       "by the kernel for host root, where seccomp blocks fork instead).")
    max_code_chars: int = Field(200_000, ge=1, description="Longer programs are refused "
                                "(error 'syntax') without being started.")
    max_answer_chars: int = Field(4096, ge=16, description="Longest answer text accepted "
                                  "(longer: 'output_limit').")
    uid_base: int = Field(1_879_048_192, ge=1, le=4_294_967_000, description="Host uids of "
                          "the sandbox when the host is root: unshare runs the worker as host uid "
                          "uid_base and its programs as uid_base + 1, bwrap runs both as "
                          "uid_base (never host root). Both must belong to nobody else on the "
                          "host.")
    startup_timeout_s: float = Field(60.0, gt=0, description="Time a worker may take to start "
                                     "(imports and warm-up included).")
    grace_s: float = Field(2.0, gt=0, description="Extra time the host waits for a worker's "
                           "reply beyond timeout_s before it replaces the worker.")
    light_workers: bool = Field(True, description="Also start as many light workers "
                                "(standard library only) and send them the programs that do not "
                                "mention a heavy module (sympy, numpy, ...): forking a small "
                                "interpreter is several times cheaper.")
    warmup: bool = Field(True, description="Run a few sympy calls in each worker before "
                         "forking, so programs do not pay for sympy's lazy imports.")

    def on_a_cluster(self) -> "SandboxConfig":
        """This config where programs run on nodes nobody watches (a Ray cluster): isolation
        'auto' must isolate (``require_namespaces``); a named isolation, 'none' included,
        stays as it is."""
        if self.isolation != "auto" or self.require_namespaces:
            return self
        return self.model_copy(update={"require_namespaces": True})
