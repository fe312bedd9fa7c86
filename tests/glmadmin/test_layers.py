"""Apps depend one way: monitoring -> inference -> alerts -> glmadmin (the README's layering rule).

The import graph is read from the source with ast, imports inside functions included (a deferred
import is still a dependency), migrations and tests left out. The project package's roof
(urls.py, asgi.py, celery.py) mounts the apps and may import them.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["glmadmin", "alerts", "inference", "monitoring"]  # lowest first
RANK = {app: rank for rank, app in enumerate(LAYERS)}
ROOF = {"glmadmin.urls", "glmadmin.asgi", "glmadmin.celery"}


def module_files() -> dict[str, Path]:
    found = {}
    for app in LAYERS:
        for path in (ROOT / app).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod.
            targets.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names)
    found = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                  if source not in ROOF and RANK[target.split(".")[0]] > RANK[source.split(".")[0]])


def test_the_apps_import_no_module_in_a_circle():
    assert cycles(import_graph()) == []


def test_no_app_imports_a_layer_above_it():
    assert upward(import_graph()) == []


def test_the_graph_sees_deferred_and_relative_imports(tmp_path, monkeypatch):
    # The checks above are only as good as the graph: a circle held together by an import inside a
    # function, and an upward relative import, must both be seen.
    app = tmp_path / "alerts"
    (app / "sub").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "sub" / "__init__.py").write_text("")
    (app / "a.py").write_text("from .sub import b\n")
    (app / "sub" / "b.py").write_text("def f():\n    from alerts import a\n    from monitoring.x import y\n")
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "monitoring" / "__init__.py").write_text("")
    (tmp_path / "monitoring" / "x.py").write_text("y = 1\n")
    for layer in ("glmadmin", "inference"):
        (tmp_path / layer).mkdir()
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    graph = import_graph()
    assert cycles(graph) == [["alerts.a", "alerts.sub.b"]]
    assert upward(graph) == ["alerts.sub.b -> monitoring.x"]


@pytest.mark.parametrize("app", LAYERS)
def test_every_app_is_in_the_graph(app):
    assert any(name.split(".")[0] == app for name in import_graph())
