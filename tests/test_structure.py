"""The structure of src/cnnlab (docs/design.md, "Parts and the imports they may make"): which
part may import which, no import cycles, small files and functions, a docstring on every
package saying what it holds and may import. Read from the source with `ast`, so imports inside
functions count as much as those at the top of a module."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnlab"

#: every part and the parts it may import (lower parts never import higher ones)
ALLOWED: dict[str, set[str]] = {
    "core": set(), "files": set(), "runtime": set(), "init": set(), "metrics": set(),
    "schedules": set(),
    "shapes": {"core"},
    "kernels": {"core", "runtime"},
    "layers": {"core", "runtime", "kernels", "shapes", "init"},
    "losses": {"core"},
    "param_groups": {"core", "schedules"},
    "clip": {"core", "schedules"},
    "optim": {"core", "schedules", "param_groups", "kernels", "clip"},
    "data": {"core", "files", "runtime"},
    "io": {"core", "files", "layers", "data"},
    "zoo": {"core", "layers", "data", "io"},
    "distributed": {"core"},
    "testing": {"core"},
    "train": {"core", "files", "runtime", "data", "layers", "losses", "optim", "metrics", "io",
              "distributed"},
    "viz": {"core", "files", "runtime", "data", "layers", "losses", "metrics", "io", "train"},
    "cli": {"cnnlab", "core", "files", "runtime", "shapes", "data", "layers", "losses", "optim",
            "schedules", "metrics", "io", "zoo", "train", "viz", "distributed"},
    "__main__": {"cli"},
    "cnnlab": {"core", "runtime", "data", "layers", "losses", "optim", "io", "zoo", "train", "viz",
               "distributed", "testing"},
}


def module_name(path: Path) -> str:
    parts = ("cnnlab", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else "cnnlab"


@functools.cache
def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported cnnlab module, line, inside a function) for every import statement."""
    tree = ast.parse(MODULES[module].read_text())
    found = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                # `from a import b` imports the module a.b when there is one, else a
                names = [f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in MODULES
                         else child.module for a in child.names]
            found.extend((n, child.lineno, in_function) for n in names if n.split(".")[0] == "cnnlab")
            visit(child, inner)

    visit(tree, False)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    return {m: {target for target, _, _ in imports(m) if target != m} for m in MODULES}


def test_every_import_goes_to_an_allowed_part():
    wrong = [f"{m}:{line} imports {target} ({part(m)} may import {sorted(ALLOWED[part(m)])})"
             for m in MODULES for target, line, _ in imports(m)
             if part(target) != part(m) and part(target) not in ALLOWED[part(m)]]
    assert wrong == []


def test_there_is_no_import_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for target in sorted(edges[m]):
            if state.get(target) == "open":
                cycles.append(" → ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_cnnlab_import_hides_inside_a_function():
    # function-level imports of cnnlab modules existed to dodge cycles; the parts now import
    # each other one way, at the top (heavy third-party libraries may still load lazily)
    hidden = [f"{m}:{line} imports {target}" for m in MODULES
              for target, line, inside in imports(m) if inside]
    assert hidden == []


def test_the_lower_parts_never_import_the_upper_ones():
    upper = {"io", "train", "viz", "cli"}
    for m in MODULES:
        if part(m) in {"data", "layers", "kernels", "core"}:
            assert not {part(t) for t in graph()[m]} & upper, m


def test_files_stay_short():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_functions_stay_short():
    long = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if (n := node.end_lineno - node.lineno + 1) > 60:
                    long.append(f"{m}.{node.name}: {n} lines")
    assert long == []


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py"))
def test_every_package_says_what_it_holds_and_may_import(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    assert len(doc) > 80 and "import" in doc, package


def test_every_part_is_known():
    assert {part(m) for m in MODULES} <= set(ALLOWED)
