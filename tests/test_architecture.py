"""The architecture the folders promise: no import cycles among the project's modules (lazy
imports inside functions count too), model/ never imports Qt, and the window never imports
model/training/."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "gui")


def project_modules() -> dict[str, Path]:
    modules = {"main": ROOT / "main.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported_names(name: str, path: Path, modules=()) -> set[str]:
    """Every module `name` imports anywhere in its file, resolved to absolute names. `from
    package import submodule` imports the submodule; the package counts only where a name
    imported from it is not one of `modules`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = {f"{base}.{alias.name}" for alias in node.names}
            found.update(names)
            if not names <= set(modules):
                found.add(base)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {m for m in imported_names(name, path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(node, path):
        state[node] = 1
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                found.append(path[path.index(child):] + [child])
            elif child not in state:
                visit(child, [*path, child])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_walker_sees_relative_lazy_and_package_imports():
    graph = import_graph()
    assert "model.task" in graph["model.fast"]  # from ..task import ... at the top
    assert "model.fast.tiles" in graph["model.fast.rows"]  # from . import threads, tiles
    assert "model.fast" not in graph["model.fast.rows"]
    assert "model.fast" in graph["gui.model_loading"]  # from model.fast import warm_up, lazily
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_model_never_imports_qt():
    for name, path in project_modules().items():
        if name.startswith("model"):
            qt = {m for m in imported_names(name, path) if m.split(".")[0] in ("PySide6", "PyQt6")}
            assert not qt, f"{name} imports {qt}"


def test_the_window_never_imports_the_training_package():
    for name, path in project_modules().items():
        if name.startswith("gui"):
            training = {m for m in imported_names(name, path) if m.startswith("model.training")}
            assert not training, f"{name} imports {training}"
