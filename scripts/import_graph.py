"""Measure gpunn's import graph: modules, internal imports, imports that run upward, cycles.

    python scripts/import_graph.py              # the working tree's gpunn/
    python scripts/import_graph.py --rev 9a47494   # any commit, read with git show (the flat layout too)

Every ``import gpunn...`` / ``from gpunn... import`` / relative import in every module is
counted, those inside functions included (they are marked "lazy").  An import runs upward
when the importing module's layer is below the imported one's, by the house plan's order
(foundation < compute < nn < training < saving, data < network < explain, bench < faces <
the package root); modules of the flat layout are placed by the wing they moved to
(:data:`FLAT_NAMES`).  A cycle is a strongly connected component of more than one module.

The module graph (:func:`graph`) is also what tests/test_layers.py checks for cycles.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

#: Layer of each wing, bottom up; a module's wing is its first name below ``gpunn``.
LAYERS = {
    "errors": 0, "limits": 0, "files": 0, "memory": 0, "safe_npz": 0, "_version": 0,
    "compute": 1, "nn": 2, "training": 3, "saving": 4, "data": 4, "network": 5,
    "explain": 6, "bench": 6, "cli": 7, "sklearn": 7, "playground": 7, "__main__": 7,
}
ROOT_LAYER = 8  # gpunn/__init__.py imports the public names from every layer
#: Where each module of the flat layout (before commit e1c0475) went.
FLAT_NAMES = {
    "peers": "bench", "bench": "bench", "cli_data": "cli", "cli_explain": "cli", "cli_export": "cli",
    "cli": "cli", "cli_model": "cli", "cli_types": "cli", "cli_progress": "cli", "backend": "compute",
    "cuda_kernels": "compute", "dense": "compute", "host_kernels": "compute", "kernel_source": "compute",
    "ops": "compute", "data": "data", "download": "data", "datasets": "data", "idx": "data",
    "userdata": "data", "landscape": "explain", "plotting": "explain", "explain": "explain",
    "explain_text": "explain", "labels": "nn", "losses": "nn", "preprocessing": "nn", "metadata": "saving",
    "io": "saving", "onnx_export": "saving", "autotune": "training", "callbacks": "training",
    "cuda_graph": "training", "device_step": "training", "diagnosis": "training", "distributed": "training",
    "train": "training", "optim": "training", "trajectory": "training",
}


def read_sources(repo: Path, rev: str | None) -> dict[str, str]:
    """``{module name: source}`` for every gpunn/**/*.py, from the tree or from commit ``rev``."""
    if rev is None:
        return {_module_name(p.relative_to(repo)): p.read_text(encoding="utf-8")
                for p in sorted((repo / "gpunn").rglob("*.py"))}
    names = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", rev, "gpunn"],
                           check=True, capture_output=True, text=True).stdout.split()
    return {_module_name(Path(name)): subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{name}"], check=True,
                                                     capture_output=True, text=True).stdout
            for name in names if name.endswith(".py")}


def _module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(module: str, source: str, modules: set[str]) -> list[tuple[str, bool]]:
    """``(imported gpunn module, inside a function?)`` for each gpunn-internal import in ``source``."""
    is_package = any(m.startswith(module + ".") for m in modules) or module == "gpunn"
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def visit(node, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((_known(alias.name, modules), lazy) for alias in child.names
                             if alias.name.split(".")[0] == "gpunn")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] != "gpunn":
                    continue
                targets = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else _known(base, modules)
                           for alias in child.names}
                found.extend((target, lazy) for target in sorted(targets))
            visit(child, inner)

    visit(ast.parse(source), False)
    return [(target, lazy) for target, lazy in found if target and target != module]


def _known(name: str, modules: set[str]) -> str | None:
    """The longest prefix of ``name`` that is a module of the tree."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT_LAYER
    wing = parts[1]
    return LAYERS.get(wing, LAYERS.get(FLAT_NAMES.get(wing, ""), ROOT_LAYER))


def graph(sources: dict[str, str]) -> dict[str, list[tuple[str, bool]]]:
    """``{module: [(imported module, lazy), ...]}`` over the given sources."""
    modules = set(sources)
    return {module: imports(module, source, modules) for module, source in sources.items()}


def cycles(edges: dict[str, list[tuple[str, bool]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    adjacency = {m: sorted({t for t, _ in targets if t in edges}) for m, targets in edges.items()}

    def strongconnect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in adjacency[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(adjacency):
        if v not in index:
            strongconnect(v)
    return found


def report(sources: dict[str, str]) -> dict:
    edges = graph(sources)
    statements = [(m, t, lazy) for m, targets in edges.items() for t, lazy in targets]
    distinct = {(m, t) for m, t, _ in statements}
    upward = sorted({(m, t) for m, t, _ in statements if layer(m) < layer(t)})
    # the package root gpunn/__init__ runs before every submodule; a submodule importing it is upward too
    return {
        "modules": len(sources),
        "imports (statements)": len(statements),
        "  of which inside functions": sum(lazy for *_, lazy in statements),
        "module edges (distinct)": len(distinct),
        "upward imports (distinct edges)": len(upward),
        "cycles (SCCs > 1 module)": len(cycles(edges)),
        "_upward": upward,
        "_cycles": cycles(edges),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="a git commit to measure instead of the working tree")
    parser.add_argument("--repo", default=Path(__file__).resolve().parents[1], type=Path)
    parser.add_argument("--verbose", action="store_true", help="list the upward imports and the cycles")
    args = parser.parse_args(argv)
    result = report(read_sources(args.repo, args.rev))
    print(f"| {args.rev or 'working tree'} | |\n|---|---|")
    for key, value in result.items():
        if not key.startswith("_"):
            print(f"| {key.strip()} | {value} |")
    if args.verbose:
        for importer, imported in result["_upward"]:
            print(f"upward: {importer} -> {imported}")
        for component in result["_cycles"]:
            print("cycle:", " ".join(component))
    return 0


if __name__ == "__main__":
    sys.exit(main())
