"""Benchmark: the sandbox pool against a fresh interpreter per program.

Generates N realistic Program-of-Thought programs (seeded: the same programs every run) --
arithmetic over a few named quantities, small loops, fractions, ``solution()`` functions, printed
answers, ``math`` calls, and sympy equation solving in about one program in six -- and runs them

1. through ``distill.sandbox.run_programs`` with every isolation layer this machine allows
   (the pool is started, and its start-up time reported, before timing begins; the CPU time of
   the host process, the workers and the programs is measured too), and
2. through the baseline: one ``subprocess.run([sys.executable, file], timeout=...)`` per
   program, as many at a time as the pool has workers of one kind; on every program, or with
   ``--baseline-sample K`` on a seeded random subset whose rate is extrapolated (the output
   says so).

Every sandbox answer is checked against the value the generator computed (exact, canonical).
Prints programs/s for both, the ratio, p50/p99 latency, the active layers, and a final JSON line.

    .venv/bin/python bench/sandbox.py [--n 2000] [--baseline-sample K] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

from distill.quantities import canonical
from distill.sandbox import SandboxConfig, SandboxPool

NAMES = [
    ("apples", "oranges"), ("boys", "girls"), ("red_marbles", "blue_marbles"),
    ("pages_monday", "pages_tuesday"), ("cookies", "brownies"), ("cars", "trucks"),
    ("adult_tickets", "child_tickets"), ("pencils", "erasers"),
]


def _dec(x: Fraction) -> str:
    """A terminating fraction written as the decimal literal a model would write."""
    s = canonical(x)
    assert "/" not in s
    return s


def gen_program(rng: random.Random) -> tuple[str, Fraction]:
    """One program and the exact answer it must give."""
    kind = rng.choices(
        ["vars", "loop", "fraction", "solution", "printed", "math", "percent", "while",
         "listcomp", "sympy_solve", "sympy_rational"],
        weights=[14, 10, 9, 14, 10, 7, 8, 6, 6, 10, 6],
    )[0]
    a_name, b_name = rng.choice(NAMES)
    a, b = rng.randint(3, 90), rng.randint(2, 60)
    if kind == "vars":
        price = Fraction(rng.randint(5, 400), 4)
        code = (f"{a_name} = {a}\n{b_name} = {b}\nprice = {_dec(price)}\n"
                f"total_items = {a_name} + {b_name}\ntotal_cost = total_items * price\n"
                f"ans = total_cost\n")
        return code, (a + b) * price
    if kind == "loop":
        weeks = rng.randint(3, 12)
        code = (f"savings = {a}\nfor week in range(1, {weeks + 1}):\n    savings += {b} * week\n"
                f"ans = savings\n")
        return code, Fraction(a + b * weeks * (weeks + 1) // 2)
    if kind == "fraction":
        p, q = rng.randint(1, 7), rng.choice([3, 4, 6, 8, 9, 12])
        code = (f"from fractions import Fraction\nwhole = {a * q}\npart = Fraction({p}, {q})\n"
                f"eaten = whole * part\nresult = whole - eaten\n")
        return code, Fraction(a * q) - Fraction(a * q) * Fraction(p, q)
    if kind == "solution":
        cost = rng.randint(2, 9)
        code = (
            "def solution():\n"
            f'    """{a_name} starts at {a * cost + b}; spends {a} times {cost}."""\n'
            f"    money_initial = {a * cost + b}\n"
            f"    count = {a}\n"
            f"    unit_cost = {cost}\n"
            "    money_spent = count * unit_cost\n"
            "    money_left = money_initial - money_spent\n"
            "    result = money_left\n"
            "    return result\n"
        )
        return code, Fraction(b)
    if kind == "printed":
        code = (f"{a_name} = {a}\n{b_name} = {b}\ndifference = {a_name} - {b_name}\n"
                f"total = {a_name} * 2 + difference\nprint('The answer is', total)\n")
        return code, Fraction(a * 2 + a - b)
    if kind == "math":
        per_box = rng.randint(4, 12)
        code = (f"import math\nitems = {a * b}\nper_box = {per_box}\n"
                f"boxes = math.ceil(items / per_box)\nans = boxes\n")
        return code, Fraction(-(-(a * b) // per_box))
    if kind == "percent":
        pct = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50])
        price = rng.randint(10, 300)
        code = (f"original_price = {price}\ndiscount_percent = {pct}\n"
                f"discount = original_price * discount_percent / 100\n"
                f"final_price = original_price - discount\nans = round(final_price, 2)\n")
        return code, Fraction(price) - Fraction(price * pct, 100)
    if kind == "while":
        target = a * 10 + b
        code = (f"height = 0\ndays = 0\nwhile height < {target}:\n    height += {b}\n"
                f"    days += 1\nans = days\n")
        return code, Fraction(-(-target // b))
    if kind == "listcomp":
        n = rng.randint(3, 8)
        prices = [rng.randint(1, 40) for _ in range(n)]
        code = (f"prices = {prices}\nquantities = [{a % 5 + 1}] * len(prices)\n"
                f"answer = sum(p * q for p, q in zip(prices, quantities))\n")
        return code, Fraction(sum(prices) * (a % 5 + 1))
    if kind == "sympy_solve":
        k = rng.randint(2, 9)
        c = k * rng.randint(2, 40) + b
        code = (f"import sympy as sp\nx = sp.symbols('x')\n"
                f"equation = sp.Eq({k} * x + {b}, {c})\n"
                f"ans = sp.solve(equation, x)[0]\n")
        return code, Fraction(c - b, k)
    # sympy_rational
    p, q = rng.randint(1, 9), rng.choice([3, 7, 9, 11])
    code = (f"from sympy import Rational, simplify\nshare = Rational({p}, {q})\n"
            f"total = {a}\nresult = simplify(total * share + {b})\n")
    return code, Fraction(a * p, q) + b


def generate(n: int, seed: int = 0) -> list[tuple[str, Fraction]]:
    rng = random.Random(seed)
    return [gen_program(rng) for _ in range(n)]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def _tree_cpu_s(root_pids: list[int]) -> float:
    """CPU seconds used by these processes, their descendants and their reaped children."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        stats[int(name)] = fields
        children.setdefault(int(fields[1]), []).append(int(name))
    total, todo, seen = 0.0, list(root_pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        f = stats[pid]
        total += sum(int(x) for x in f[11:15]) / tick  # utime stime cutime cstime
        todo.extend(children.get(pid, []))
    return total


def run_baseline(codes: list[str], timeout_s: float, parallel: int) -> tuple[float, list[float], int]:
    """Wall time, per-program latencies and timeouts of one fresh interpreter per program."""
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        paths = []
        for i, code in enumerate(codes):
            p = Path(tmp) / f"p{i}.py"
            p.write_text(code)
            paths.append(p)

        def one(path: Path) -> float:
            t = time.perf_counter()
            try:
                subprocess.run([sys.executable, str(path)], timeout=timeout_s,
                               capture_output=True, cwd=tmp, check=False)
            except subprocess.TimeoutExpired:
                timeouts.append(path.name)
            return time.perf_counter() - t

        timeouts: list[str] = []

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=parallel) as ex:
            lat = list(ex.map(one, paths))
        return time.perf_counter() - t0, lat, len(timeouts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--baseline-sample", type=int, default=None,
                    help="run the baseline on K random programs only (default: all)")
    ap.add_argument("--workers", type=int, default=None, help="workers of each kind (default: auto, the CPUs this process may use)")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    programs = generate(args.n, args.seed)
    codes = [c for c, _ in programs]
    expected = [canonical(v) for _, v in programs]
    cfg = SandboxConfig(timeout_s=args.timeout,
                        **({"workers": args.workers} if args.workers else {}))
    load_before = os.getloadavg()

    t = time.perf_counter()
    pool = SandboxPool(cfg)
    report = pool.start()
    startup_s = time.perf_counter() - t

    cpu0 = _tree_cpu_s(pool.worker_pids()) + sum(os.times()[:2])
    t = time.perf_counter()
    results = pool.run_many(codes)
    sandbox_s = time.perf_counter() - t
    cpu_per_program = (_tree_cpu_s(pool.worker_pids()) + sum(os.times()[:2]) - cpu0) / args.n
    wrong = [(i, r.answer, r.error, r.detail, expected[i]) for i, r in enumerate(results)
             if r.answer != expected[i]]
    exec_lat = [r.duration_s for r in results]
    sympy_lat = [r.duration_s for c, r in zip(codes, results) if "sympy" in c]
    plain_lat = [r.duration_s for c, r in zip(codes, results) if "sympy" not in c]

    # end-to-end latency of one program at a time (the HTTP endpoint's case)
    rng = random.Random(args.seed + 1)
    sample_idx = sorted(rng.sample(range(args.n), min(args.baseline_sample or args.n, args.n)))
    single_lat = []
    for i in sample_idx:
        t1 = time.perf_counter()
        pool.run(codes[i])
        single_lat.append(time.perf_counter() - t1)
    pool.close()

    base_s, base_lat, base_timeouts = run_baseline([codes[i] for i in sample_idx], args.timeout, report.workers)
    load_after = os.getloadavg()

    sandbox_rate = args.n / sandbox_s
    base_rate = len(sample_idx) / base_s
    out = {
        "programs": args.n,
        "sympy_programs": sum("sympy" in c for c in codes),
        "isolation": report.mode,
        "layers": report.layers,
        "workers_per_kind": report.workers,
        "pool_startup_s": round(startup_s, 2),
        "sandbox_programs_per_s": round(sandbox_rate, 1),
        "sandbox_cpu_ms_per_program": round(cpu_per_program * 1000, 2),
        "sandbox_exec_p50_ms": round(percentile(exec_lat, 50) * 1000, 2),
        "sandbox_exec_p99_ms": round(percentile(exec_lat, 99) * 1000, 2),
        "sandbox_exec_p50_ms_without_sympy": round(percentile(plain_lat, 50) * 1000, 2),
        "sandbox_exec_p50_ms_with_sympy": round(percentile(sympy_lat, 50) * 1000, 2),
        "sandbox_single_call_p50_ms": round(percentile(single_lat, 50) * 1000, 2),
        "sandbox_single_call_p99_ms": round(percentile(single_lat, 99) * 1000, 2),
        "baseline_sample": len(sample_idx),
        "baseline_parallel": report.workers,
        "baseline_programs_per_s": round(base_rate, 1),
        "baseline_p50_ms": round(percentile(base_lat, 50) * 1000, 2),
        "baseline_p99_ms": round(percentile(base_lat, 99) * 1000, 2),
        "baseline_timeouts": base_timeouts,
        "speedup": round(sandbox_rate / base_rate, 1),
        "wrong_answers": len(wrong),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }
    print(f"isolation: {report.mode}")
    for layer in report.layers:
        print(f"  - {layer}")
    for w in report.warnings:
        print(f"  WARNING: {w}")
    print(f"pool start-up: {startup_s:.2f} s ({report.workers} heavy + "
          f"{report.workers if cfg.light_workers else 0} light workers)")
    print(f"sandbox run_programs: {args.n} programs ({out['sympy_programs']} with sympy) in "
          f"{sandbox_s:.2f} s = {sandbox_rate:.1f} programs/s; in-sandbox time p50 "
          f"{out['sandbox_exec_p50_ms']} ms, p99 {out['sandbox_exec_p99_ms']} ms; CPU "
          f"{out['sandbox_cpu_ms_per_program']} ms per program (host, workers and programs)")
    print(f"  in-sandbox p50 without sympy {out['sandbox_exec_p50_ms_without_sympy']} ms, with "
          f"sympy {out['sandbox_exec_p50_ms_with_sympy']} ms")
    print(f"sandbox run_program one at a time ({len(sample_idx)} programs): p50 "
          f"{out['sandbox_single_call_p50_ms']} ms, p99 {out['sandbox_single_call_p99_ms']} ms")
    scope = (f"all {args.n} programs" if len(sample_idx) == args.n else
             f"{len(sample_idx)}-program random sample, rate extrapolated to all {args.n}")
    print(f"baseline subprocess.run per program ({scope}, {report.workers} at a time): "
          f"{base_rate:.1f} "
          f"programs/s; p50 {out['baseline_p50_ms']} ms, p99 {out['baseline_p99_ms']} ms; "
          f"{base_timeouts} hit the {args.timeout:g} s timeout")
    print(f"speed-up: {out['speedup']}x   wrong answers: {len(wrong)}   load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} CPUs")
    for w in wrong[:5]:
        print("  wrong:", w)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
