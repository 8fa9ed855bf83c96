"""Imports in layers: every module under nasflow/ is parsed with `ast` (module-level,
function-level and TYPE_CHECKING imports alike), the imports are folded into a graph of
units (top-level modules and subpackages, with a few leaf modules as units of their own),
and the graph must have no cycles and respect LAYERS: a unit imports only units below it."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nasflow"

#: leaf modules that are units of their own (they import nothing above them, and modules of
#: their parent's layer and below import them): the op registry, the DDP helpers
SPLIT_UNITS = ("spaces.ops", "train.distributed")

#: bottom to top; a unit may import only units listed before it
LAYERS = [
    "nasflow",            # the package's __init__
    "errors",
    "loaders",            # checked readers of user files (YAML, JSON, records, shapes)
    "io",                 # atomic writes, checkpoints, load_weights (over the loaders)
    "params",
    "data",               # the dataset registry and loaders (imports params)
    "spaces.ops",
    "genotype",
    "nets",
    "spaces",             # the space registry: supernets, standalone nets (nets), genotypes
    "metrics",
    "train.distributed",
    "methods",
    "config",             # RunConfig: params + method / space registries + dataset names
    "train",
    "tracking",
    "report",
    "analysis",
    "pipeline",
    "cli",
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported nasflow module, line) for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "nasflow"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "nasflow":
                continue
            for alias in node.names:  # `from nasflow.x import y`: the module x.y if it is one
                sub = f"{module}.{alias.name}"
                out.append((sub if sub in MODULES else module, node.lineno))
    return out


def unit(module: str) -> str:
    rest = module.split(".", 1)[1] if "." in module else ""
    for split in SPLIT_UNITS:
        if rest == split or rest.startswith(split + "."):
            return split
    return rest.split(".")[0] if rest else "nasflow"


def unit_graph() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> ["module:line -> module", ...]"""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, path in MODULES.items():
        for target, line in imports(name, path):
            a, b = unit(name), unit(target)
            if a != b:
                edges[(a, b)].append(f"{name}:{line} -> {target}")
    return edges


def cycles(nodes: set[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    succ = defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_layer():
    units = {unit(m) for m in MODULES}
    missing = sorted(units - set(LAYERS))
    assert not missing, f"add {missing} to LAYERS in tests/test_layers.py"


def test_no_import_cycles_between_units():
    graph = unit_graph()
    found = cycles({unit(m) for m in MODULES}, set(graph))
    detail = []
    for comp in found:
        detail += [f"  {a} -> {b}: {', '.join(graph[(a, b)][:3])}"
                   for a, b in sorted(graph) if a in comp and b in comp]
    assert not found, "import cycles between units " + "; ".join(map(str, found)) + ":\n" \
        + "\n".join(detail)


def test_imports_follow_the_layers():
    rank = {u: i for i, u in enumerate(LAYERS)}
    upward = [f"{a} -> {b}: {', '.join(where[:3])}"
              for (a, b), where in sorted(unit_graph().items())
              if a in rank and b in rank and rank[b] > rank[a]]
    assert not upward, "imports against the layer order (LAYERS):\n" + "\n".join(upward)


def test_no_cycles_inside_the_pipeline_package():
    mods = {m for m in MODULES if m.startswith("nasflow.pipeline.")}
    edges = {(m, t) for m in mods for t, _ in imports(m, MODULES[m]) if t in mods and t != m}
    assert not cycles(mods, edges)


@pytest.mark.parametrize("module", ["nasflow.pipeline", "nasflow.params"])
def test_light_modules_import_no_torch(module):
    """Snakemake imports nasflow.pipeline on every invocation (dry runs, lint): no torch."""
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0
