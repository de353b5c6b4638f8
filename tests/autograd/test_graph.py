"""The graph as DOT text, and rendering: through the graphviz package when present, a clear error when not."""

from __future__ import annotations

import re
import shutil
import sys
import types

import pytest

from mlpkit.autograd import Value, render, to_dot
from mlpkit.errors import MissingDependencyError


def _graph() -> tuple[Value, Value, Value]:
    x, w = Value(2.0, label="x"), Value(-0.5, label="w|{1}")
    y = (w * x + 1.0).tanh()
    return x, w, y


def test_dot_has_one_box_per_value_one_oval_per_operation_and_an_edge_per_operand():
    x, w, y = _graph()
    y.backward()
    dot = to_dot(y, digits=3)
    assert dot.startswith("digraph autograd {\n") and dot.endswith("\n}")
    record = r'^  (v\d+) \[shape=record, label="\{(.*) \| data (\S+) \| grad (\S+)\}"\];$'
    boxes = re.findall(record, dot, re.M)
    ovals = re.findall(r'^  (v\d+)_op \[shape=ellipse, label="(.*)"\];$', dot, re.M)
    # x, w, w*x, +1, tanh: five Values; three operations (the constant 1 is folded into "+ 1").
    assert [(label, data, grad) for _, label, data, grad in boxes] == [
        ("x", "2.000", f"{w.data * (1 - y.data**2):.3f}"),
        ("w\\|\\{1\\}", "-0.500", f"{x.data * (1 - y.data**2):.3f}"),     # record characters escaped
        ("", "-1.000", f"{1 - y.data**2:.3f}"),
        ("", "0.000", f"{1 - y.data**2:.3f}"),
        ("", "0.000", "1.000"),
    ]
    assert [op for _, op in ovals] == ["*", "+ 1", "tanh"]
    edges = re.findall(r"^  (\w+) -> (\w+);$", dot, re.M)
    assert sorted(edges) == sorted([
        ("v0", "v2_op"), ("v1", "v2_op"), ("v2_op", "v2"),
        ("v2", "v3_op"), ("v3_op", "v3"),
        ("v3", "v4_op"), ("v4_op", "v4"),
    ])


def test_dot_draws_a_repeated_operand_twice():
    a = Value(3.0, label="a")
    dot = to_dot(a * a)
    assert dot.count("v0 -> v1_op;") == 2


def test_dot_of_a_non_value_names_it():
    with pytest.raises(TypeError, match=re.escape("to_dot() needs a Value, got list [1.0]")):
        to_dot([1.0])


def test_render_without_the_graphviz_package_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)                 # as if not installed
    message = "rendering an autograd graph needs graphviz, which is not installed: pip install graphviz"
    with pytest.raises(MissingDependencyError, match=f"^{re.escape(message)}$"):
        render(_graph()[2], tmp_path / "graph.svg")
    assert list(tmp_path.iterdir()) == []


class _FakeGraphviz(types.ModuleType):
    """Stands in for the graphviz package: records what it was asked to draw."""

    class ExecutableNotFound(RuntimeError):
        pass

    def __init__(self, *, has_dot: bool) -> None:
        super().__init__("graphviz")
        self.__spec__ = types.SimpleNamespace(name="graphviz")         # importlib.util.find_spec reads it
        self.calls: list[tuple[str, str]] = []
        fake = self

        class Source:
            def __init__(self, source: str) -> None:
                self.source = source

            def pipe(self, *, format: str) -> bytes:                   # graphviz's own keyword
                fake.calls.append((self.source, format))
                if not has_dot:
                    raise fake.ExecutableNotFound("failed to execute PosixPath('dot')")
                return f"<{format} image>".encode()

        self.Source = Source


@pytest.mark.parametrize(("name", "fmt"), [("graph.svg", "svg"), ("graph.PNG", "png")])
def test_render_pipes_the_dot_text_through_graphviz_in_the_suffix_format(tmp_path, monkeypatch, name, fmt):
    fake = _FakeGraphviz(has_dot=True)
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    y = _graph()[2]
    assert render(y, tmp_path / name) == tmp_path / name
    assert fake.calls == [(to_dot(y), fmt)]
    assert (tmp_path / name).read_bytes() == f"<{fmt} image>".encode()


def test_render_without_the_dot_program_says_to_install_graphviz(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", _FakeGraphviz(has_dot=False))
    with pytest.raises(MissingDependencyError, match=re.escape("needs Graphviz's dot program")):
        render(_graph()[2], tmp_path / "graph.svg")
    assert list(tmp_path.iterdir()) == []


def test_render_refuses_other_formats(tmp_path):
    with pytest.raises(ValueError, match=re.escape("fmt must be one of ['png', 'svg'], got 'pdf'")):
        render(_graph()[2], tmp_path / "graph.pdf")


def test_render_with_real_graphviz(tmp_path):
    pytest.importorskip("graphviz", reason="the graphviz package is not installed (pip install graphviz)")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not on PATH")
    path = render(_graph()[2], tmp_path / "graph.svg")
    assert "<svg" in path.read_text() and "tanh" in path.read_text()
