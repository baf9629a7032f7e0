"""The sandbox: answer conventions, error kinds, the allow-list, the pool's lifecycle and order,
the fallback without namespaces, the Ray Data stage and the CLI. Hostile programs are in
test_sandbox_hostile.py."""

from __future__ import annotations

import json
import os
import signal
import time
import warnings
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.quantities import canonical
from distill.sandbox import (
    ERROR_KINDS,
    SandboxConfig,
    SandboxError,
    SandboxPool,
    SandboxWarning,
    _worker,
    run_program,
    run_programs,
)
from distill.sandbox.isolation import get_isolation, isolation_names, register_isolation
from distill.sandbox.result import answer_from_stdout, answer_from_value, build_result

TIMEOUT = 2.0


def namespaces_refused() -> str | None:
    return get_isolation("unshare").unavailable()


@pytest.fixture(scope="module")
def pool():
    """The strongest isolation this machine allows, AST check on: one worker of each kind."""
    with SandboxPool(workers=1, warmup=False, timeout_s=TIMEOUT) as p:
        yield p


# --------------------------------------------------------------------------------------------
# Answer conventions
# --------------------------------------------------------------------------------------------

CONVENTIONS = [
    ("ans = 3 * 4 + 6", "18", "ans"),
    ("answer = 72 / 5", "14.4", "answer"),
    ("result = 4 / 7", "4/7", "result"),  # a float that is the nearest float to 4/7
    ("from fractions import Fraction\nans = Fraction(4, 7)", "4/7", "ans"),
    ("from fractions import Fraction\nresult = Fraction(3, 8) * 64", "24", "result"),
    ("from decimal import Decimal\nans = Decimal('1.10') * 3", "3.3", "ans"),
    ("ans = -3", "-3", "ans"),
    ("ans = 0.125", "0.125", "ans"),
    ("ans = '$1,234'", "1234", "ans"),
    ("ans = 10**30", str(10**30), "ans"),
    ("import sympy\nans = sympy.Rational(22, 7)", "22/7", "ans"),
    ("import sympy as sp\nx = sp.symbols('x')\nans = sp.solve(sp.Eq(3*x + 12, 45), x)", "11", "ans"),
    ("import sympy\nans = sympy.Integer(5) / 2", "2.5", "ans"),
    ("import sympy\nans = sympy.Float(0.25)", "0.25", "ans"),
    ("import numpy as np\nans = np.int64(7) * 3", "21", "ans"),
    ("import numpy as np\nans = np.array([2.5])", "2.5", "ans"),
    ("def solution():\n    apples = 23\n    eaten = 5\n    return apples - eaten\n", "18", "solution()"),
    ("def solution():\n    return 1 / 3\n", "1/3", "solution()"),
    ("print('The answer is', 42)", "42", "printed"),
    ("x = 1 / 3\nprint(x)", "1/3", "printed"),
    # read as printed text by parse_answer, whose recovery rule does not reach this repr
    ("x = 2 / 3\nprint(x)", "0.6666666666666666", "printed"),
    ("print('total: 12 apples and 3 pears')", "3", "printed"),
    ("print(7)\nprint('done')", "7", "printed"),
    ("def solution():\n    print(5)\n", "5", "printed"),  # returns None: the printed number
    ("ans = None\nprint(9)", "9", "printed"),
    ("def answer():\n    return 1\nprint(6)", "6", "printed"),  # a function is not the answer
    ("ans = 1\nresult = 2", "1", "ans"),  # ans before answer before result
    ("result = 2\ndef solution():\n    return 3\n", "2", "result"),  # a variable before solution()
]


@pytest.mark.parametrize("code,answer,source", CONVENTIONS)
def test_answer_conventions(pool, code, answer, source):
    res = pool.run(code)
    assert res.ok, res
    assert res.error is None
    assert res.answer == answer
    assert res.source == source


def test_answers_are_canonical_strings_of_quantities(pool):
    values = [Fraction(18), Fraction(-3), Fraction(72, 5), Fraction(1, 8), Fraction(4, 7)]
    codes = [f"from fractions import Fraction\nans = Fraction({v.numerator}, {v.denominator})"
             for v in values]
    assert [r.answer for r in pool.run_many(codes)] == [canonical(v) for v in values]


def test_module_level_run_program_and_run_programs():
    res = run_program("ans = 6 * 7", timeout_s=3, memory_mb=256)
    assert (res.ok, res.answer) == (True, "42")
    out = run_programs(["ans = 1", "ans = 2", "1/0"], timeout_s=3, memory_mb=256)
    assert [r.answer for r in out] == ["1", "2", None]
    assert out[2].error == "runtime"


# --------------------------------------------------------------------------------------------
# Every error kind
# --------------------------------------------------------------------------------------------

ERRORS = [
    ("while True:\n    pass", "timeout"),
    ("x = bytearray(1 << 40)", "memory"),
    ("import os\nans = 1", "forbidden"),
    ("ans = = 1", "syntax"),
    ("ans = 1 / 0", "runtime"),
    ("x = 5", "no_answer"),
    ("ans = 'yes'", "no_answer"),
    ("ans = [1, 2]", "no_answer"),
    ("ans = float('nan')", "no_answer"),
    ("while True:\n    print('x' * 1000)", "output_limit"),
]


@pytest.mark.parametrize("code,kind", ERRORS)
def test_error_kinds(pool, code, kind):
    t = time.monotonic()
    res = pool.run(code)
    assert time.monotonic() - t < TIMEOUT + 1
    assert (res.ok, res.answer, res.error) == (False, None, kind), res
    assert res.detail
    assert kind in ERROR_KINDS


def test_output_is_capped_and_kept(pool):
    res = pool.run("print('hello')\nwhile True:\n    print('y' * 999)")
    assert res.error == "output_limit"
    assert res.stdout.startswith("hello\n")
    assert len(res.stdout) == pool.config.stdout_limit


def test_non_programs_and_long_programs_are_refused_without_running(pool):
    res = pool.run_many([None, 42, "#" * (pool.config.max_code_chars + 1)])
    assert [r.error for r in res] == ["syntax", "syntax", "syntax"]


def test_stdout_and_duration_are_reported(pool):
    res = pool.run("print('a')\nprint('b')\nans = 1")
    assert res.stdout == "a\nb\n"
    assert 0 < res.duration_s < TIMEOUT


# --------------------------------------------------------------------------------------------
# Pure parts: the allow-list, value description, answer reading
# --------------------------------------------------------------------------------------------

ALLOWED = SandboxConfig().allowed_imports


@pytest.mark.parametrize("code", [
    "import math\nans = math.sqrt(16)",
    "from fractions import Fraction",
    "import sympy as sp\nfrom sympy import Rational",
    "import numpy.linalg",
    "if __name__ == '__main__':\n    ans = 1",
    "class A:\n    def __init__(self):\n        self.x = 1\nans = A().x",
    "import math\nmath.sqrt = lambda x: -1\nans = 1",
    "import sympy.abc\nfrom sympy.abc import x\nans = sympy.abc.y",  # sympy's own abc
    "import numpy as np\nans = np.array([1, 2]).sum()",
])
def test_allow_list_accepts(code):
    assert _worker.check_program(code, ALLOWED) is None


REFUSED = [
    ("import os", "'os'"),
    ("import os.path", "'os.path'"),
    ("from subprocess import run", "'subprocess'"),
    ("import ctypes", "'ctypes'"),
    ("import importlib", "'importlib'"),
    ("import socket", "'socket'"),
    ("from . import x", "relative"),
    ("__import__('os')", "__import__"),
    ("eval('1')", "eval"),
    ("exec('x=1')", "exec"),
    ("compile('1', 'f', 'eval')", "compile"),
    ("open('/etc/passwd')", "open"),
    ("getattr(1, 'real')", "getattr"),
    ("().__class__.__base__.__subclasses__()", "__"),
    ("f = lambda: 0\nf.__globals__", "__globals__"),
    ("print(__builtins__)", "__builtins__"),
    ("g = (x for x in [])\ng.gi_frame.f_globals", "f_globals"),
    ("g = (x for x in [])\nframe = g.gi_frame", "gi_frame"),
    ("from sympy import __builtins__ as b\nb['eval']('1')", "__builtins__"),
    ("from math import sqrt as s, exec as e", "exec"),
    ("import sympy.__init__", "__init__"),
    # issue 11: module objects of modules that are not allowed, reached through allowed ones
    ("import typing\ntyping.sys.modules", "'sys'"),
    ("import random\nrandom._os.getcwd()", "'_os'"),
    ("import dataclasses\ndataclasses.builtins.open", "'builtins'"),
    ("import enum\nb = enum.bltns", "'bltns'"),
    ("from typing import sys", "'sys'"),
    ("import operator, typing\noperator.attrgetter('sys')(typing)", "attrgetter"),
    ("from operator import methodcaller", "methodcaller"),
    ("import numpy as np\nlib = np.ctypeslib", "ctypeslib"),
    ("import numpy as np\nnp.core._internal.ctypes", "ctypes"),
    ("import string\nstring.Formatter().get_field('0.sys', [1], {})", "get_field"),
]


@pytest.mark.parametrize("code,why", REFUSED)
def test_allow_list_refuses(code, why):
    reason = _worker.check_program(code, ALLOWED)
    assert reason is not None and why in reason


def test_allow_list_shortcut_is_sound():
    """needs_check() may skip the AST only for programs check_program would accept."""
    refused = [c for c, _ in REFUSED] + ["ｅｖａｌ('1')", "x = 1\nｂｒｅａｋｐｏｉｎｔ()"]
    for code in refused:
        assert _worker.needs_check(code), code
        assert _worker.check_program(code, ALLOWED) is not None, code
    assert not _worker.needs_check("a = 3\nb = 4\nans = a * b\n")
    for code in refused:  # setting allowed import lines aside must not hide anything either
        assert _worker.needs_check(code, ALLOWED), code
    sneaky = ["import math; import os", "import mathx", "import math \\\n, os",
              "from math import (sqrt,\n  pi)\nimport os", "from math import sqrt as open",
              "import sympy.__init__", "from sympy import __builtins__ as b"]
    for code in sneaky:
        assert _worker.needs_check(code, ALLOWED), code
    plain = ["import sympy as sp\nans = sp.Rational(1, 3)", "from fractions import Fraction",
             "import math, fractions  # comment\nans = math.pi", "from numpy.linalg import inv"]
    for code in plain:
        assert not _worker.needs_check(code, ALLOWED), code
        assert _worker.check_program(code, ALLOWED) is None, code


def test_allow_list_learns_the_module_attributes_of_the_installed_libraries():
    """What the worker runs after its preload: every name under which a loaded allowed module
    holds a module that is not allowed is refused (and the shortcut knows it)."""
    import dataclasses, enum, random, typing  # noqa: E401, F401

    import numpy  # noqa: F401
    import sympy  # noqa: F401

    _worker.extend_module_attrs(ALLOWED)
    assert {"sys", "_os", "builtins", "bltns", "ctypes"} <= _worker.MODULE_ATTRS
    assert "abc" not in _worker.MODULE_ATTRS  # sympy.abc is sympy's own module
    for code in ["import typing\ntyping.sys", "import random\nrandom._os"]:
        assert _worker.needs_check(code, ALLOWED)
        assert _worker.check_program(code, ALLOWED) is not None


def test_describe_value_covers_the_numeric_types():
    from decimal import Decimal

    import numpy as np
    import sympy as sp

    d = _worker.describe_value
    assert d(3) == ("int", "3")
    assert d(True) == ("str", "True")
    assert d(2.5) == ("float", "2.5")
    assert d(Fraction(1, 3)) == ("fraction", "1/3")
    assert d(Decimal("1.50")) == ("decimal", "1.50")
    assert d(np.float32(0.5)) == ("float", "0.5")
    assert d(np.array([[4]])) == ("int", "4")
    assert d(sp.Rational(2, 6)) == ("fraction", "1/3")
    assert d([sp.Integer(5)]) == ("int", "5")
    assert d(sp.sqrt(4)) == ("int", "2")
    assert d(sp.Symbol("x")) == ("str", "x")
    with pytest.raises(_worker._AnswerTooLong):
        d("9" * 5000, max_chars=4096)


@pytest.mark.parametrize("vtype,vtext,answer", [
    ("int", "18", "18"),
    ("fraction", "-8/6", "-4/3"),
    ("float", "0.3333333333333333", "1/3"),
    ("float", "14.4", "14.4"),
    ("decimal", "1E+3", "1000"),
    ("str", "3 1/2", "3.5"),
    ("str", "\\frac{4}{7}", "4/7"),
    ("str", "yes", None),
    ("float", "inf", None),
    ("int", "12abc", None),  # a forged report: not read as a number
    ("fraction", "1/0", None),
])
def test_answer_from_value(vtype, vtext, answer):
    assert answer_from_value(vtype, vtext)[0] == answer


@pytest.mark.parametrize("stdout,answer", [
    ("The answer is 5.\n", "5"),
    ("x = 2/3\n", "2/3"),
    ("step 1: 10\nstep 2: 20\n\n", "20"),
    ("total: 12 apples and 3 pears\nbye\n", "3"),
    ("0.1\n", "0.1"),
    ("no numbers here\n", None),
    ("", None),
])
def test_answer_from_stdout(stdout, answer):
    assert answer_from_stdout(stdout) == answer


def test_host_bounds_answers_whatever_the_worker_sent():
    """Issue 11: the host re-checks what a worker sends -- the answer's length, its size as a
    number (exponent, digits) -- and returns clear error kinds, quickly; text is valid UTF-8."""
    t = time.monotonic()
    cases = [
        ({"vtype": "decimal", "vtext": "1e999999999"}, "output_limit", "magnitude"),
        ({"vtype": "str", "vtext": "(" * 4000 + "4" + ")" * 4001}, "output_limit", "8002 characters"),
        ({"vtype": "int", "vtext": "9" * 5000}, "output_limit", "5000 characters"),
        ({"vtype": "fraction", "vtext": f"1/{2**13000}"}, "output_limit", "decimal expansion"),
    ]
    for reply, kind, why in cases:
        res = build_result({"source": "ans", **reply}, 1000, 4096)
        assert (res.ok, res.error) == (False, kind), res
        assert why in res.detail, res.detail
    assert time.monotonic() - t < 2.0  # Decimal('1e999999999') alone would stall for hours
    res = build_result({"stdout": "x\ud800y\n5\n", "detail": None}, 1000, 4096)
    assert (res.answer, res.stdout) == ("5", "x\ufffdy\n5\n")
    res.stdout.encode("utf-8")
    res = build_result({"vtype": "str", "vtext": "\udc80", "source": "ans"}, 1000, 4096)
    assert res.error == "no_answer" and "\ufffd" in res.detail
    res.detail.encode("utf-8")


# --------------------------------------------------------------------------------------------
# Config, registry
# --------------------------------------------------------------------------------------------


def test_config_forbids_unknown_keys_and_describes_fields():
    with pytest.raises(ValueError):
        SandboxConfig(timeout=3)
    with pytest.raises(ValueError):
        SandboxConfig(isolation="docker")
    for name, field in SandboxConfig.model_fields.items():
        assert field.description, name


def test_isolation_registry_lists_names_and_refuses_duplicates():
    assert {"bwrap", "unshare", "none"} <= set(isolation_names())
    with pytest.raises(KeyError, match="valid names: bwrap, none, unshare"):
        get_isolation("docker")
    with pytest.raises(ValueError, match="already registered"):
        register_isolation(get_isolation("none"))


def test_bwrap_is_started_as_the_unprivileged_uid_on_a_root_host(monkeypatch):
    """bwrap maps the sandbox to the uid that starts it: a root host starts it through the
    launcher as ``uid_base``; an unprivileged host starts it directly."""
    bwrap = get_isolation("bwrap")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    cmd = bwrap.wrap(["/usr/bin/true"], [("/usr", "dir")], 1, 4321)
    assert cmd[4].endswith("_bwrap_as_user.py"), cmd
    assert cmd[5:8] == ["4321", json.dumps([["/usr", "dir"]]), "--"], cmd
    assert os.path.basename(cmd[8]) == "bwrap" and cmd[-1] == "/usr/bin/true", cmd
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    cmd = bwrap.wrap(["/usr/bin/true"], [("/usr", "dir")], 1, 4321)
    assert os.path.basename(cmd[0]) == "bwrap", cmd


def test_bwrap_launcher_rebinds_only_what_a_foreign_uid_cannot_reach(tmp_path, monkeypatch):
    """A Python under a 0700 directory (``/root/.pyenv``) is re-bound under a tmpfs covering
    the top-most directory the sandbox uid cannot enter; reachable paths are left to bwrap."""
    from distill.sandbox import _bwrap_as_user as launcher

    # the folders above this test's tree are the machine's (pytest's own are 0700): they count
    # as enterable, so the answer depends only on the modes set below
    real = launcher.enterable_by_others
    monkeypatch.setattr(launcher, "enterable_by_others",
                        lambda path: real(path) or not Path(path).is_relative_to(tmp_path))
    tmp_path.chmod(0o755)
    python_lib = tmp_path / "home" / "py" / "lib"
    python_lib.mkdir(parents=True)
    (tmp_path / "home").chmod(0o700)
    (tmp_path / "home" / "py").chmod(0o700)  # below the top-most one: covered by it
    shared = tmp_path / "usr"
    shared.mkdir()
    binds = [(str(python_lib), "dir"), (str(shared), "dir"), ("/dev/null", "dev")]
    assert launcher.blocking_ancestor(str(python_lib)) == str(tmp_path / "home")
    assert launcher.blocking_ancestor(str(shared)) is None
    assert launcher.plan(binds) == {str(tmp_path / "home"): [(str(python_lib), "dir")]}


# --------------------------------------------------------------------------------------------
# Pool: concurrency, order, replacement, lifecycle
# --------------------------------------------------------------------------------------------


def test_run_programs_200_mixed_in_order(pool):
    codes, expected = [], []
    for i in range(200):
        k = i % 8
        if k == 0:
            codes.append(f"ans = {i} * 2"); expected.append((str(i * 2), None))
        elif k == 1:
            codes.append(f"import sympy\nans = sympy.Rational({i}, 4)")
            expected.append((canonical(Fraction(i, 4)), None))
        elif k == 2:
            codes.append(f"print({i})"); expected.append((str(i), None))
        elif k == 3:
            codes.append(f"def solution():\n    return {i} / 8\n")
            expected.append((canonical(Fraction(i, 8)), None))
        elif k == 4:
            codes.append(f"ans = {i} / 0"); expected.append((None, "runtime"))
        elif k == 5:
            codes.append("import os"); expected.append((None, "forbidden"))
        elif k == 6:
            codes.append(f"from fractions import Fraction\nresult = Fraction({i}, 3)")
            expected.append((canonical(Fraction(i, 3)), None))
        else:
            codes.append("x = 1"); expected.append((None, "no_answer"))
    results = pool.run_many(codes)
    assert [(r.answer, r.error) for r in results] == expected


def test_run_from_many_threads_at_once(pool):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda i: pool.run(f"ans = {i} + 1").answer, range(40)))
    assert got == [str(i + 1) for i in range(40)]


def test_a_dead_worker_is_replaced():
    with SandboxPool(workers=1, light_workers=False, warmup=False, timeout_s=TIMEOUT) as p:
        assert p.run("ans = 1").answer == "1"
        for pid in p.worker_pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        res = p.run("ans = 2")
        assert res.answer == "2" or res.error == "runtime"  # at most the in-flight one is lost
        assert p.run("ans = 3").answer == "3"


def test_a_hung_worker_is_replaced_after_the_grace_period():
    with SandboxPool(workers=1, light_workers=False, warmup=False, grace_s=0.5) as p:
        assert p.run("ans = 1").answer == "1"
        for pid in _tree(p.worker_pids()):
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:  # a program's child that finished meanwhile
                pass
        t = time.monotonic()
        res = p.run("ans = 2", timeout_s=0.5)
        assert res.error == "timeout" and "replaced" in res.detail
        assert time.monotonic() - t < 0.5 + 0.5 + 1
        assert p.run("ans = 3").answer == "3"


def test_a_worker_whose_limits_a_program_changed_is_replaced():
    """Issue 11: where nothing else stops a program from lowering its worker's limits (no
    namespaces, no seccomp, same uid), the worker notices after the program and is replaced:
    the next program does not inherit the lowered limit."""
    code = ("import os, resource\np = os.getppid()\n"
            "vsz = int(open('/proc/%d/statm' % p).read().split()[0]) * 4096\n"
            "resource.prlimit(p, resource.RLIMIT_AS, (vsz + (16 << 20),) * 2)\nans = 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        with SandboxPool(isolation="none", seccomp=False, ast_check=False, workers=1,
                         light_workers=False, warmup=False, timeout_s=TIMEOUT,
                         memory_mb=128) as p:
            first = p.worker_pids()
            assert p.run(code).answer == "1"
            res = p.run("x = bytearray(64 << 20)\nans = len(x) >> 20")
            assert (res.ok, res.answer) == (True, "64"), res
            assert p.worker_pids() != first


def test_closed_pool_refuses_and_leaves_no_process():
    p = SandboxPool(workers=1, warmup=False)
    p.start()
    launched = p.worker_pids()
    members = _tree(launched)
    assert len(members) >= 2 * len(launched)  # launcher + worker (+ its ready child)
    p.close()
    time.sleep(0.2)
    assert not [pid for pid in members if _alive(pid)]
    with pytest.raises(SandboxError):
        p.run("ans = 1")


def test_no_zombies_or_stray_processes_left_by_this_module(pool):
    pool.run_many(["ans = 1", "while True: pass", "x = bytearray(1 << 40)"], timeout_s=0.5)
    # a child is reaped just after its reply is sent: allow that moment, then none may remain
    deadline = time.monotonic() + 3
    while True:
        zombies = [pid for pid in _tree([os.getpid()])
                   if pid != os.getpid() and _state(pid) == "Z"]
        if not zombies or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not zombies


# --------------------------------------------------------------------------------------------
# Fallback without namespaces
# --------------------------------------------------------------------------------------------


def test_isolation_none_warns_loudly_and_reports_its_layers():
    with pytest.warns(SandboxWarning, match="WITHOUT NAMESPACES"):
        p = SandboxPool(isolation="none", workers=1, light_workers=False, warmup=False,
                        timeout_s=TIMEOUT)
        report = p.start()
    try:
        assert report.mode == "none"
        assert report.warnings and "WITHOUT NAMESPACES" in report.warnings[0]
        assert not any(layer.startswith("namespaces") for layer in report.layers)
        assert any(layer.startswith("seccomp") for layer in report.layers)
        assert any(layer.startswith("rlimits") for layer in report.layers)
        # the layers that remain still hold
        res = p.run_many(["ans = 2 + 2", "while True: pass", "x = bytearray(1 << 40)",
                          "while True:\n    print('x' * 1000)", "import os"])
        assert [r.answer for r in res] == ["4", None, None, None, None]
        assert [r.error for r in res] == [None, "timeout", "memory", "output_limit", "forbidden"]
    finally:
        p.close()


def test_auto_falls_back_when_namespaces_are_refused(monkeypatch):
    """Simulate a container that refuses namespaces: bwrap absent, unshare failing the way
    util-linux does there."""
    bwrap, unshare = get_isolation("bwrap"), get_isolation("unshare")
    monkeypatch.setattr(bwrap, "unavailable", lambda: "bwrap is not installed (simulated)")
    refuse = ["sh", "-c", "echo 'unshare: unshare failed: Operation not permitted' >&2; exit 1", "--"]
    real_wrap = unshare.wrap
    monkeypatch.setattr(unshare, "unavailable", lambda: None)
    monkeypatch.setattr(unshare, "wrap",
                        lambda argv, binds, mb, uid: refuse + real_wrap(argv, binds, mb, uid))
    with pytest.warns(SandboxWarning) as caught:
        p = SandboxPool(workers=1, light_workers=False, warmup=False, timeout_s=TIMEOUT)
        report = p.start()
    try:
        assert report.mode == "none"
        assert "bwrap" in report.skipped and "unshare" in report.skipped
        assert "Operation not permitted" in report.skipped["unshare"]
        assert any("Operation not permitted" in str(w.message) for w in caught)
        assert p.run("ans = 5").answer == "5"
    finally:
        p.close()
    with pytest.raises(SandboxError, match="unshare"):
        SandboxPool(isolation="unshare", workers=1, light_workers=False).start()


def test_a_pool_that_must_isolate_refuses_to_start_without_namespaces(monkeypatch):
    """On a cluster (require_namespaces, set by the pipeline) 'auto' never falls back to
    'none': with no namespace backend usable the pool refuses, naming the fixes; an explicit
    isolation 'none' is the config saying so, and still runs."""
    for name in ("bwrap", "unshare"):
        monkeypatch.setattr(get_isolation(name), "unavailable",
                            lambda name=name: f"{name} refused (simulated)")
    pool = SandboxPool(workers=1, light_workers=False, warmup=False, timeout_s=TIMEOUT,
                       require_namespaces=True)
    with pytest.raises(SandboxError) as refused:
        pool.start()
    pool.close()
    message = str(refused.value)  # every backend tried, in auto's order for this uid
    assert message.startswith("no namespace isolation works on this node (")
    assert "bwrap: bwrap refused (simulated)" in message
    assert "unshare: unshare refused (simulated)" in message
    assert "install bubblewrap" in message and "sandbox.isolation: none" in message
    with pytest.warns(SandboxWarning):
        explicit = SandboxPool(isolation="none", require_namespaces=True, workers=1,
                               light_workers=False, warmup=False, timeout_s=TIMEOUT)
        assert explicit.start().mode == "none"
    try:
        assert explicit.run("ans = 5").answer == "5"
    finally:
        explicit.close()


# --------------------------------------------------------------------------------------------
# Ray Data stage
# --------------------------------------------------------------------------------------------


@pytest.mark.ray
def test_ray_data_stage_executes_a_column(ray_local):
    import ray.data

    from distill.sandbox import execute_programs

    rows = [{"id": i, "program": code} for i, code in enumerate(
        ["ans = 2 + 3", "print(7)", "1/0", "import os", "while True: pass"])]
    ds = ray.data.from_items(rows)
    cfg = SandboxConfig(workers=1, light_workers=False, warmup=False, timeout_s=1.0)
    out = sorted(execute_programs(ds, cfg, num_cpus=1).take_all(), key=lambda r: r["id"])
    assert [r["exec_answer"] for r in out] == ["5", "7", None, None, None]
    assert [r["exec_error"] for r in out] == [None, None, "runtime", "forbidden", "timeout"]
    assert [bool(r["exec_ok"]) for r in out] == [True, True, False, False, False]
    assert out[1]["exec_stdout"] == "7\n"
    assert all(r["exec_duration_s"] >= 0 for r in out)


@pytest.mark.ray
def test_ray_data_stage_names_a_missing_column(ray_local):
    import ray.data

    from distill.sandbox import execute_programs

    ds = ray.data.from_items([{"code": "ans = 1"}])
    with pytest.raises(Exception, match="program"):
        execute_programs(ds, SandboxConfig(workers=1, light_workers=False, warmup=False)).take_all()


def test_udf_checks_its_column_at_the_door():
    from distill.sandbox import ExecutePrograms

    udf = ExecutePrograms(SandboxConfig(workers=1, light_workers=False, warmup=False),
                          column="code")
    try:
        with pytest.raises(KeyError, match="'code'.*program"):
            udf({"program": ["ans = 1"]})
        out = udf({"code": ["ans = 1", "ans = 'x'"]})
        assert list(out["exec_answer"]) == ["1", None]
        assert list(out["exec_error"]) == [None, "no_answer"]
    finally:
        udf.pool.close()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _cli(*args: str, input: str | None = None):
    from distill.sandbox.cli import sandbox_app

    return CliRunner().invoke(sandbox_app, list(args), input=input)


def test_cli_run_prints_the_answer_and_json(tmp_path: Path):
    prog = tmp_path / "p.py"
    prog.write_text("print('working')\nans = 6 * 7\n")
    res = _cli("run", str(prog))
    assert res.exit_code == 0, res.output
    assert "answer: 42" in res.output and "working" in res.output
    res = _cli("run", str(prog), "--json", "--timeout", "3", "--memory-mb", "128")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output.strip().splitlines()[-1])
    assert data["answer"] == "42" and data["ok"] is True and data["isolation"]


def test_cli_run_failure_exits_1(tmp_path: Path):
    prog = tmp_path / "loop.py"
    prog.write_text("while True:\n    pass\n")
    res = _cli("run", str(prog), "--timeout", "0.5")
    assert res.exit_code == 1
    assert "error: timeout" in res.output
    res = _cli("run", "-", input="import os\n")
    assert res.exit_code == 1 and "forbidden" in res.output
    assert _cli("run", str(tmp_path / "missing.py")).exit_code == 2


def test_cli_check_prints_layers_and_probes():
    res = _cli("check")
    assert res.exit_code == 0, res.output
    assert "isolation:" in res.output and "rlimits" in res.output
    assert "NOT HELD" not in res.output
    assert "open a host kernel setting (/proc/sys) for writing: held" in res.output
    assert "change the worker's limits: held" in res.output
    if namespaces_refused() is None:
        assert "namespaces:" in res.output
        # issue 11: the uid mapping and the /proc mode are reported
        cfg = SandboxConfig()
        if os.geteuid() == 0:
            assert (f"uids: sandbox uid 0 = host uid {cfg.uid_base} (worker), 1 = host uid "
                    f"{cfg.uid_base + 1} (programs)") in res.output, res.output
        assert "/proc: read-only" in res.output, res.output


def test_cli_check_says_how_many_workers_and_why(monkeypatch):
    from distill.sandbox import sizing

    monkeypatch.setattr(sizing, "cgroup_cpu_quota", lambda: (300000, 100000))
    res = _cli("check")
    assert res.exit_code == 0, res.output
    assert ("workers: 1 of each kind (heavy) in this check (config: workers=1); a pool with "
            "workers=auto here: 3 of each kind (cgroup quota: 300000/100000 us = 3 CPUs)"
            ) in res.output
    res = _cli("check", "--json")
    out = json.loads(res.stdout)
    assert (out["workers"], out["workers_reason"], out["kinds"]) == (1, "config: workers=1", ["heavy"])
    assert out["auto_workers"] == {"workers": 3, "source": "cgroup",
                                   "reason": "cgroup quota: 300000/100000 us = 3 CPUs"}


def test_cli_check_warns_loudly_without_namespaces():
    res = _cli("check", "--isolation", "none")
    assert res.exit_code == 0
    assert "WARNING" in res.output and "WITHOUT NAMESPACES" in res.output


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _ppid_map() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            out[int(name)] = int(stat[stat.rfind(")") + 2:].split()[1])
    return out


def _tree(roots: list[int]) -> list[int]:
    parents = _ppid_map()
    kids: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid in parents and pid not in out:
            out.append(pid)
            todo.extend(kids.get(pid, []))
    return out


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rfind(")") + 2:].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in ("gone", "Z", "X")
