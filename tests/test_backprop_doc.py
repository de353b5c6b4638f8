"""docs/backprop.md cannot drift from the code: its worked example is recomputed, its links resolve.

The worked example's block of ``name = value`` lines is parsed from the page, and every number in
it is recomputed twice, by the NumPy engine's layers (each ``backward`` called by hand, so each
intermediate delta is the engine's own) and by the scalar autograd (each intermediate Value's
``grad``). A printed number passes when it is the true value rounded to the digits printed. The
page's prose may only quote numbers of the block, and every link to the source names a function
or method that exists in the linked file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from mlpkit.autograd import mse_loss
from mlpkit.autograd.convert import mlp_from_state_dict
from mlpkit.engine import SGD, MSELoss, Sigmoid, build_mlp
from mlpkit.engine.network import Sequential
from mlpkit.spec import MLPSpec

DOC = Path(__file__).resolve().parents[1] / "docs" / "backprop.md"
TEXT = DOC.read_text(encoding="utf-8")
MARKER = "<!-- worked example:"
NUMBER = re.compile(r"-?\d+\.\d+|-?\d+")
GIVEN = ("x", "W1", "b1", "W2", "b2", "t", "lr")
COMPUTED = (
    "z1", "h", "z2", "O", "E", "dE_dO", "dO_dz2", "delta2", "dW2", "db2", "dE_dh", "dh_dz1", "delta1", "dW1",
    "db1", "W2_new", "b2_new", "W1_new", "b1_new", "E_new",
)


def worked_example(text: str) -> tuple[dict[str, object], dict[str, list[str]]]:
    """The block after the marker: name -> value, and name -> its numbers as printed."""
    start = text.index(MARKER)
    block = re.search(r"^```text\n(.*?)^```$", text[start:], re.DOTALL | re.MULTILINE)
    assert block is not None, "no ```text block after the worked-example marker"
    values: dict[str, object] = {}
    printed: dict[str, list[str]] = {}
    for line in block.group(1).splitlines():
        code = line.split("#", 1)[0].strip()
        if not code:
            continue
        name, sep, literal = code.partition("=")
        assert sep, f"not a 'name = value' line: {line!r}"
        name = name.strip()
        assert name not in values, f"{name} is given twice"
        values[name] = ast.literal_eval(literal.strip())
        printed[name] = NUMBER.findall(literal)
    return values, printed


VALUES, PRINTED = worked_example(TEXT)


def test_the_block_is_found_and_parsed():
    text = f"intro\n{MARKER} x -->\n```text\n# a comment\na = [1.5, -2]   # why\nb = 0.25\n```\n"
    assert worked_example(text) == ({"a": [1.5, -2], "b": 0.25}, {"a": ["1.5", "-2"], "b": ["0.25"]})


def test_the_block_states_the_given_values_and_every_computed_one():
    assert list(VALUES) == [*GIVEN, *COMPUTED]


def _given() -> dict[str, np.ndarray]:
    return {name: np.asarray(VALUES[name], dtype=np.float64) for name in GIVEN}


def _state(g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The page's W[j][k] (from j to k) is the engine's (in, out) layout; files hold (out, in)."""
    return {"0.weight": g["W1"].T, "0.bias": g["b1"], "2.weight": g["W2"].T, "2.bias": g["b2"]}


SPEC = MLPSpec(2, (2,), 2, activation="sigmoid")


def engine_numbers() -> dict[str, np.ndarray]:
    """Every quantity of the block from the engine's layers, one forward and backward call at a time."""
    g = _given()
    base = build_mlp(SPEC, rng=np.random.default_rng(0), dtype=np.float64)
    base.load_state_dict(_state(g))
    linear1, sigmoid1, linear2 = base.layers
    sigmoid2 = Sigmoid()                                               # the page's outputs are sigmoids too
    net = Sequential(linear1, sigmoid1, linear2, sigmoid2)
    loss = MSELoss()                                                   # mean over 2 outputs = ½ Σ (O − t)²
    x, t = g["x"][None, :], g["t"][None, :]                            # a batch of one
    out: dict[str, np.ndarray] = {}
    z1 = linear1.forward(x)                                            # (1, 2) each, as a batch
    h = sigmoid1.forward(z1)
    z2 = linear2.forward(h)
    o = sigmoid2.forward(z2)
    out["E"] = np.float64(loss.forward(o, t))
    de_do = loss.backward()
    delta2 = sigmoid2.backward(de_do)
    de_dh = linear2.backward(delta2)
    delta1 = sigmoid1.backward(de_dh)
    linear1.backward(delta1)
    ones = np.ones((1, 2))                                             # ones · J = the derivative itself
    rows = {"z1": z1, "h": h, "z2": z2, "O": o, "dE_dO": de_do, "dO_dz2": sigmoid2.backward(ones),
            "delta2": delta2, "dE_dh": de_dh, "dh_dz1": sigmoid1.backward(ones), "delta1": delta1}
    out |= {name: row[0] for name, row in rows.items()}
    out["dW2"], out["db2"] = linear2.weight.grad.copy(), linear2.bias.grad.copy()
    out["dW1"], out["db1"] = linear1.weight.grad.copy(), linear1.bias.grad.copy()
    SGD([p for layer in (linear1, linear2) for p in layer.parameters().values()], lr=float(g["lr"])).step()
    out["W1_new"], out["b1_new"] = linear1.weight.data, linear1.bias.data
    out["W2_new"], out["b2_new"] = linear2.weight.data, linear2.bias.data
    out["E_new"] = np.float64(loss.forward(net.forward(x), t))
    return out


def scalar_numbers() -> dict[str, np.ndarray]:
    """Every quantity of the block from the scalar autograd: the grads of its intermediate Values."""
    g = _given()
    net = mlp_from_state_dict(SPEC, _state(g))
    hidden, output = net.layers
    h = hidden(g["x"].tolist())
    z1 = [unit.parents[0] for unit in h]                               # the sum node under each sigmoid
    z2 = output(h)
    o = [z.sigmoid() for z in z2]
    e = mse_loss([o], [g["t"].tolist()])
    e.backward()
    data = lambda values: np.array([v.data for v in values])           # noqa: E731
    grad = lambda values: np.array([v.grad for v in values])           # noqa: E731
    weights = lambda layer, field: np.array([[getattr(w, field) for w in row] for row in layer.weight]).T  # noqa: E731
    out = {
        "z1": data(z1), "h": data(h), "z2": data(z2), "O": data(o), "E": np.float64(e.data),
        "dE_dO": grad(o), "dO_dz2": data(o) * (1 - data(o)), "delta2": grad(z2), "dE_dh": grad(h),
        "dh_dz1": data(h) * (1 - data(h)), "delta1": grad(z1),
        "dW2": weights(output, "grad"), "db2": grad(output.bias),
        "dW1": weights(hidden, "grad"), "db1": grad(hidden.bias),
    }
    lr = float(g["lr"])
    for p in net.parameters():
        p.data -= lr * p.grad
    out |= {"W1_new": weights(hidden, "data"), "b1_new": data(hidden.bias),
            "W2_new": weights(output, "data"), "b2_new": data(output.bias)}
    out["E_new"] = np.float64(mse_loss([[z.sigmoid() for z in net(g["x"].tolist())]], [g["t"].tolist()]).data)
    return out


def _assert_printed_digits_are_right(name: str, computed: np.ndarray) -> None:
    printed = PRINTED[name]
    flat = np.asarray(computed, dtype=np.float64).reshape(-1)
    assert len(printed) == flat.size, f"{name}: {len(printed)} numbers printed, {flat.size} computed"
    for text, value in zip(printed, flat, strict=True):
        decimals = len(text.partition(".")[2])
        # Half a unit of the last printed digit: the printed number is the value correctly rounded.
        tolerance = 0.5 * 10.0**-decimals * (1 + 1e-9)
        assert abs(float(text) - value) <= tolerance, f"{name}: printed {text}, computed {value!r}"


@pytest.mark.parametrize("name", COMPUTED)
def test_every_number_of_the_worked_example_is_the_engines(name):
    _assert_printed_digits_are_right(name, engine_numbers()[name])


@pytest.mark.parametrize("name", COMPUTED)
def test_every_number_of_the_worked_example_is_the_scalar_autograds(name):
    _assert_printed_digits_are_right(name, scalar_numbers()[name])


def test_the_formulas_of_the_page_give_the_same_numbers():
    # Sections 3 and 4 as written, with NumPy: (O − t) O (1 − O), hᵀ δ, δ W2ᵀ ⊙ h (1 − h), xᵀ δ.
    g, e = _given(), engine_numbers()
    o, h = e["O"], e["h"]
    delta2 = (o - g["t"]) * o * (1 - o)
    delta1 = (delta2 @ g["W2"].T) * h * (1 - h)
    np.testing.assert_allclose(delta2, e["delta2"], rtol=1e-14)
    np.testing.assert_allclose(np.outer(h, delta2), e["dW2"], rtol=1e-14)
    np.testing.assert_allclose(delta1, e["delta1"], rtol=1e-14)
    np.testing.assert_allclose(np.outer(g["x"], delta1), e["dW1"], rtol=1e-14)


def _section(title_start: str) -> str:
    start = TEXT.index(f"\n## {title_start}")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end != -1 else len(TEXT)]


def test_the_prose_quotes_only_numbers_of_the_block():
    section = _section("7.")
    block_start = section.index("```text")
    prose = section[:block_start] + section[section.index("```", block_start + 3) + 3 :]
    quoted = {n.lstrip("-") for n in re.findall(r"(?<![\w.])-?\d+\.\d{5,}", prose)}   # five decimals or more
    in_block = {n.lstrip("-") for numbers in PRINTED.values() for n in numbers}
    assert quoted, "the worked example's prose quotes no number"
    assert quoted <= in_block, f"not in the block: {sorted(quoted - in_block)}"


LINK = re.compile(r"\[`([\w.]+)`\]\((\.\./src/[\w/]+\.py)\)")


def _defined_names(path: Path) -> set[str]:
    """``name`` of every module-level function and class, ``Class.method`` of every method."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{item.name}" for item in node.body if isinstance(item, ast.FunctionDef)}
    return names


def test_every_code_link_names_a_function_of_the_linked_file():
    links = LINK.findall(TEXT)
    assert len(links) >= 15
    for name, target in links:
        path = (DOC.parent / target).resolve()
        assert path.is_file(), f"{target} does not exist"
        assert name in _defined_names(path), f"{name} is not defined in {target}"


def test_each_equation_links_the_engine_and_the_autograd_function_that_computes_it():
    linked = {name for name, _ in LINK.findall(TEXT)}
    assert {
        "Value.backward", "Sequential.backward",                                  # the chain rule
        "MSELoss.backward", "Sigmoid.backward", "Value.sigmoid", "mse_loss",      # one perceptron
        "Linear.backward_params", "Linear.backward",                              # dW = xᵀ δ, δ Wᵀ
        "SoftmaxCrossEntropyLoss.backward", "cross_entropy_loss",                 # softmax − onehot
    } <= linked
