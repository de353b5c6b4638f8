"""The import rules of the design map, checked over every import in the package.

Data flows one way (docs/design.md): foundation -> data -> model (engine | blocks | models) ->
train -> evaluate -> edge. A module may import its own layer and the layers before it, never a
later one; ``data``, ``engine`` and ``blocks`` never import each other. Every ``import`` statement
counts, including those inside functions (a lazy import is still a dependency), except those
under ``if TYPE_CHECKING:``. The torch-free promise is checked too: the modules that
``import mlpkit`` and the NumPy path load never import torch, at any depth.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mlpkit"

# Layer of each module, by the longest matching prefix; lower numbers come first in the flow.
LAYERS: dict[str, int] = {
    "mlpkit": 0,  # __init__: the version only
    "mlpkit.errors": 0,
    "mlpkit._checks": 0,
    "mlpkit._io": 0,
    "mlpkit._optional": 0,
    "mlpkit._provenance": 0,
    "mlpkit.spec": 0,
    "mlpkit.data": 1,
    "mlpkit.engine": 2,
    "mlpkit.blocks": 2,
    "mlpkit.models": 2,
    "mlpkit.autograd": 2,
    "mlpkit.torch_engine": 2,
    "mlpkit.train": 3,
    "mlpkit.evaluate": 4,
    "mlpkit.config": 5,
    "mlpkit.sklearn": 5,
    "mlpkit.experiments": 5,
    "mlpkit.tasks": 5,
    "mlpkit.rundir": 5,
    "mlpkit.run": 5,
    "mlpkit.logs": 5,
    "mlpkit.compare": 5,
    "mlpkit.spectrum": 5,
    "mlpkit.export": 5,
    "mlpkit.runtime": 5,
    "mlpkit.tune": 5,
    "mlpkit.cli": 5,
    "mlpkit.__main__": 5,
}
SIBLINGS_APART = ("mlpkit.data", "mlpkit.engine", "mlpkit.blocks")
"""Packages of the first layers that never import each other."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[str, int] | None:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        return None
    prefix = max(matches, key=len)
    return prefix, LAYERS[prefix]


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every mlpkit import in ``path``, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_lines(tree)
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from mlpkit.train import checkpoint` imports a module: resolve each name that is one.
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists()
                found.append((node.lineno, candidate if is_module else base))
    return [(line, name) for line, name in found if name == "mlpkit" or name.startswith("mlpkit.")]


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert [module_name(p) for p in SOURCES if layer_of(module_name(p)) is None] == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_up_the_flow(path: Path) -> None:
    here = module_name(path)
    own_prefix, own_layer = layer_of(here)  # type: ignore[misc]
    wrong = []
    for line, target in imports_of(path):
        found = layer_of(target)
        assert found is not None, f"{path.name}:{line} imports {target}, which has no layer in LAYERS"
        prefix, layer = found
        if layer > own_layer:
            wrong.append(f"line {line}: {here} (layer {own_layer}) imports {target} (layer {layer})")
        elif prefix != own_prefix and own_prefix in SIBLINGS_APART and prefix in SIBLINGS_APART:
            wrong.append(f"line {line}: {here} imports {target}; {own_prefix} and {prefix} stay apart")
    assert wrong == []


def test_the_rules_catch_a_downward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The checker itself: a data module importing the trainer is reported, a lazy import too.
    fake = PACKAGE / "data" / "idx.py"
    source = "def f():\n    from mlpkit.train.loop import EpochTrainer\n    return EpochTrainer\n"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source if self == fake else "")
    assert imports_of(fake) == [(2, "mlpkit.train.loop")]
    message = r"line 2: mlpkit.data.idx \(layer 1\) imports mlpkit.train.loop"
    with pytest.raises(AssertionError, match=message):
        test_imports_point_up_the_flow(fake)


TORCH_FREE = [
    "mlpkit",
    "mlpkit.data",
    "mlpkit.engine",
    "mlpkit.train",
    "mlpkit.evaluate",
    "mlpkit.sklearn",
    "mlpkit.cli",
    "mlpkit.run",
    "mlpkit._provenance",
]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_the_numpy_path_never_imports_torch(module: str) -> None:
    if not (PACKAGE.parent / Path(*module.split("."))).with_suffix(".py").exists() and not (
        PACKAGE.parent / Path(*module.split(".")) / "__init__.py"
    ).exists():
        pytest.fail(f"{module} is listed as torch-free but does not exist")
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", f"import {module} imported torch"


def _import_graph() -> dict[str, set[str]]:
    modules = {module_name(p) for p in SOURCES}

    def owner(target: str) -> str:  # `mlpkit.train.loop.EpochTrainer`-style names end at a module
        while target not in modules and "." in target:
            target = target.rpartition(".")[0]
        return target

    return {
        module_name(p): {owner(t) for _, t in imports_of(p)} - {module_name(p)} for p in SOURCES
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan 1972), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_two_modules_import_each_other_even_lazily() -> None:
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
