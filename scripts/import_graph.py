"""Measure the shape of the authmw package from its imports.

Prints the number of modules, import edges (module -> module inside authmw, type-checking-only
imports included), import layers (the longest chain of imports, cycles collapsed), the import
cycles, and the lines of Python. Run: ``.venv/bin/python scripts/import_graph.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node) & modules:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def _layers(graph: grimp.ImportGraph, modules: set[str], cycles: list[list[str]]) -> int:
    """The longest import chain, counting modules, with each cycle collapsed to one node."""
    group = {m: m for m in modules}
    for cycle in cycles:
        for member in cycle:
            group[member] = cycle[0]
    deps: dict[str, set[str]] = {g: set() for g in set(group.values())}
    for module in modules:
        for nxt in graph.find_modules_directly_imported_by(module) & modules:
            if group[nxt] != group[module]:
                deps[group[module]].add(group[nxt])
    depth: dict[str, int] = {}

    def height(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((height(d) for d in deps[node]), default=0)
        return depth[node]

    return max(height(n) for n in deps)


def main() -> None:
    """Print the figures."""
    graph = grimp.build_graph("authmw", include_external_packages=False)
    modules = set(graph.modules)
    edges = sum(len(graph.find_modules_directly_imported_by(m) & modules) for m in modules)
    cycles = _cycles(graph, modules)
    root = Path(__file__).resolve().parent.parent / "authmw"
    files = sorted(root.rglob("*.py"))
    lines = sum(len(f.read_text().splitlines()) for f in files)
    print(f"modules: {len(modules)}")
    print(f"import edges: {edges}")
    print(f"import layers: {_layers(graph, modules, cycles)}")
    print(f"cycles: {len(cycles)}")
    for cycle in cycles:
        print("  " + " <-> ".join(cycle))
    print(f"python files: {len(files)}, lines: {lines}")
    sizes = sorted(((len(f.read_text().splitlines()), f) for f in files), reverse=True)
    largest = ", ".join(f"{f.relative_to(root)} ({n})" for n, f in sizes[:5])
    print(f"largest files: {largest}")


if __name__ == "__main__":
    main()
