"""The import graph of blender_serve and deployments: one-way between the packages, and no module
pair importing each other (imports inside functions count too: they are dependencies all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("blender_serve", "deployments")


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (``from a import b`` counts a.b when that is a module)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in mods else node.module
                           for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in mods and t != name}
        graph[name] = edges
    return graph


def test_no_two_modules_import_each_other():
    graph = import_graph()
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, ())})
    assert pairs == [], f"modules importing each other: {pairs}"


def test_the_library_never_imports_the_serving_layer():
    graph = import_graph()
    offenders = {a: sorted(t for t in targets if t.startswith("deployments"))
                 for a, targets in graph.items() if a.startswith("blender_serve")}
    assert not any(offenders.values()), offenders


def test_the_graph_is_read_for_real():
    graph = import_graph()  # guards the two tests above against an empty or blind graph
    assert "blender_serve.loading" in graph["blender_serve.ranker.checkpoint"]
    assert "blender_serve.pipeline" in graph["deployments.serving"]
    assert "blender_serve.local_models" in graph["blender_serve.loading"]  # a function-level import
