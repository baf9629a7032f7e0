"""The package's shape: every stage package imports without Ray, torch, transformers or vLLM
(the pure core stays light), and the packages under distill/ and serve/ import each other without cycles,
the shared layer never reaching up into a stage."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "distill"
SERVE = REPO_ROOT / "serve"  # the serving stage sits at the top level, as the design asks

STAGE_PACKAGES = ["data", "search", "generate", "sft", "train", "evaluate", "refine", "fdd",
                  "sandbox"]
HEAVY = ["ray", "torch", "transformers", "vllm"]

# The shared layer: modules every stage may use, which themselves use no stage.
SHARED = {"records", "quantities", "grading", "equations", "configbase", "devices", "provenance",
          "sandbox", "resources", "registry", "fileio"}
# Stages and what drives them (the pipeline, the CLI, the whole-run config).
STAGES = {"data", "search", "generate", "sft", "train", "evaluate", "refine", "fdd", "serve",
          "pipeline", "cli", "config", "runreport"}


# ------------------------------------------------------------------- imports without Ray
@pytest.mark.parametrize("stage", STAGE_PACKAGES)
def test_stage_package_imports_without_heavy_dependencies(stage: str) -> None:
    code = (f"import sys, distill.{stage}\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"import distill.{stage} failed:\n{proc.stderr}"
    loaded = proc.stdout.strip()
    assert not loaded, f"import distill.{stage} pulled in {loaded} (import them lazily, where used)"


@pytest.mark.parametrize("module", ["serve.config", "serve.api", "serve.solver", "serve.app",
                                    "serve.llm_route",
                                    "serve.cli", "serve.schema_check"])
def test_serving_core_imports_without_heavy_dependencies(module: str) -> None:
    """Only serve.deployments (the Ray wrapper) imports Ray; the rest stays light."""
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"import {module} failed:\n{proc.stderr}"
    assert not proc.stdout.strip(), f"import {module} pulled in {proc.stdout.strip()}"


# ----------------------------------------------------------------------- the import graph
def _node_of_module(dotted: str) -> str | None:
    """distill.search.stage -> 'search'; distill.config -> 'config'; outside distill -> None.
    Every command-line module (``distill/cli.py``, ``cli_common.py`` and each stage's
    ``cli.py``) is the one outer node 'cli': a stage's command lives in its folder but sits
    above the whole-run config, which it reads."""
    parts = dotted.split(".")
    if parts[0] not in ("distill", "serve"):
        return None
    if parts[-1] in ("cli", "cli_common"):
        return "cli"
    if parts[0] == "serve":
        return "serve"
    return parts[1] if len(parts) > 1 else "distill"


def _module_of_file(path: Path) -> list[str]:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return parts


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    """Every import node, module-level and inside functions, but not under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    """The dotted modules an import statement names (absolute; `from X import a` also tries X.a)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = _module_of_file(path)
        if path.name != "__init__.py":
            package = package[:-1]
        base = package[: len(package) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    if module == "distill":  # `from distill import records`: the names are the modules
        return [f"distill.{alias.name}" for alias in node.names]
    return [module]


def import_graph() -> dict[tuple[str, str], list[str]]:
    """(importer node, imported node) -> every import making that edge, as 'file:line'."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted([*PACKAGE.rglob("*.py"), *SERVE.rglob("*.py")]):
        src = _node_of_module(".".join(_module_of_file(path)))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            for target in _targets(node, path):
                dst = _node_of_module(target)
                if dst is None or dst == src or dst == "distill":
                    continue
                edges[(src, dst)].append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    for where in edges.values():
        where.sort(key=lambda s: (s.split(":")[0], int(s.split(":")[1])))
    return dict(edges)


def simple_cycles(edges) -> list[list[str]]:
    """Every elementary cycle, each once, starting from its smallest node."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    cycles: list[list[str]] = []

    def walk(start: str, node: str, path: list[str], seen: set[str]) -> None:
        for nxt in sorted(succ[node]):
            if nxt == start:
                cycles.append(path[:])
            elif nxt > start and nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                walk(start, nxt, path, seen)
                path.pop()
                seen.discard(nxt)

    for start in sorted(succ):
        walk(start, start, [start], {start})
    return cycles


def _describe(edge: tuple[str, str], edges) -> str:
    where = edges[edge]
    more = f" (+{len(where) - 1} more: {', '.join(where[1:4])}{', ...' if len(where) > 4 else ''})"
    return f"    {edge[0]} -> {edge[1]}: {where[0]}{more if len(where) > 1 else ''}"


def test_the_graph_sees_the_packages() -> None:
    edges = import_graph()
    nodes = {n for edge in edges for n in edge}
    assert {"data", "search", "generate", "serve", "records", "quantities"} <= nodes, sorted(nodes)


def test_no_import_cycles_between_packages() -> None:
    edges = import_graph()
    cycles = simple_cycles(edges)
    in_cycles = sorted({(a, b) for c in cycles for a, b in zip(c, c[1:] + c[:1])})
    report = [f"{len(cycles)} import cycle(s) between distill's packages:"]
    report += ["    " + " -> ".join(c + c[:1]) for c in cycles]
    report += ["made of these edges (importer -> imported: the imports making it, file:line):"]
    report += [_describe(e, edges) for e in in_cycles]
    assert not cycles, "\n".join(report)


def test_the_shared_layer_imports_no_stage() -> None:
    edges = import_graph()
    bad = sorted(e for e in edges if e[0] in SHARED and e[1] in STAGES)
    assert not bad, ("the shared layer imports stage packages:\n"
                     + "\n".join(_describe(e, edges) for e in bad))
