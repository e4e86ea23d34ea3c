"""The package's import graph: scanner -> engines -> train -> core, and no circles (issue 29).

Read from the source with ast, so function-level imports count too: a lazy import that closes a
circle still couples the modules and breaks the moment someone hoists it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"core": 0, "train": 1, "engines": 2, "scanner": 3}


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for package in LAYERS:
        for path in (ROOT / "dfscan" / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "dfscan.engines.onnx_model" in graph["dfscan.engines.export"]  # a module-level import
    assert "dfscan.engines.export" in graph["dfscan.engines.onnx_cache"]  # a function-level one


def test_imports_point_down_the_layers():
    upward = [(m, t) for m, ts in import_graph().items() for t in ts
              if LAYERS[t.split(".")[1]] > LAYERS[m.split(".")[1]]]
    assert upward == []


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_imports_no_other_layer():
    graph = import_graph()
    assert {m for m in graph if m.startswith("dfscan.core.")} >= {"dfscan.core.errors", "dfscan.core.labels"}
    assert all(t.startswith("dfscan.core") for m, ts in graph.items() if m.startswith("dfscan.core") for t in ts)


def test_python_dash_m_dfscan_and_the_lazy_api():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "dfscan", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "0.1.0" in r.stdout, r.stderr
    code = ("import sys, dfscan; assert 'torch' not in sys.modules and 'dfscan.scanner.pipeline' not in sys.modules; "
            "from dfscan.scanner.pipeline import scan, ScanOptions; assert dfscan.scan is scan and dfscan.ScanOptions is ScanOptions; "
            "print(dfscan.__version__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0", r.stderr
