"""Value: each operation's derivative by hand and by central differences; backward's rules; errors."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from mlpkit.autograd import Value, backward, topological_order
from mlpkit.autograd.value import topological_order as value_topological_order

EPS = 1e-6                                                             # central differences: error O(EPS²)


def central_difference(f, x: float, eps: float = EPS) -> float:
    """(f(x + ε) − f(x − ε)) / 2ε for f taking and returning floats through Values."""
    return (f(Value(x + eps)).data - f(Value(x - eps)).data) / (2 * eps)


def grad_of(f, x: float) -> float:
    v = Value(x)
    f(v).backward()
    return v.grad


# (id, f, point, hand-derived df/dx at the point). Points stay away from kinks and singularities.
UNARY = [
    ("add_const", lambda v: v + 2.5, 0.7, 1.0),
    ("radd_const", lambda v: 2.5 + v, 0.7, 1.0),
    ("sub_const", lambda v: v - 2.5, 0.7, 1.0),
    ("rsub_const", lambda v: 2.5 - v, 0.7, -1.0),
    ("mul_const", lambda v: v * -3.0, 0.7, -3.0),
    ("rmul_const", lambda v: -3.0 * v, 0.7, -3.0),
    ("div_const", lambda v: v / 4.0, 0.7, 0.25),
    ("rdiv_const", lambda v: 2.0 / v, 0.5, -2.0 / 0.25),              # d(c/x)/dx = −c/x²
    ("neg", lambda v: -v, 0.7, -1.0),
    ("square", lambda v: v**2, -1.5, 2 * -1.5),
    ("cube", lambda v: v**3, -1.5, 3 * 1.5**2),
    ("sqrt", lambda v: v**0.5, 2.0, 0.5 / math.sqrt(2.0)),
    ("reciprocal", lambda v: v**-1, 2.0, -1 / 4.0),
    ("self_product", lambda v: v * v, 1.3, 2 * 1.3),                  # both edges lead to v
    ("self_sum", lambda v: v + v, 1.3, 2.0),
    ("self_quotient", lambda v: (v + 1.0) / v, 2.0, -1.0 / 4.0),     # (x+1)/x = 1 + 1/x
    ("exp", lambda v: v.exp(), 0.7, math.exp(0.7)),
    ("log", lambda v: v.log(), 0.7, 1 / 0.7),
    ("tanh", lambda v: v.tanh(), 0.7, 1 - math.tanh(0.7) ** 2),
    ("sigmoid", lambda v: v.sigmoid(), 0.7, math.exp(-0.7) / (1 + math.exp(-0.7)) ** 2),
    ("sigmoid_negative", lambda v: v.sigmoid(), -3.0, math.exp(3.0) / (1 + math.exp(3.0)) ** 2),
    ("relu_positive", lambda v: v.relu(), 0.7, 1.0),
    ("relu_negative", lambda v: v.relu(), -0.7, 0.0),
    ("sum", lambda v: Value.sum([v, 2.0, v * 3.0]), 0.7, 4.0),
    ("composite", lambda v: ((v * v + 1.0).log() * v.tanh()).exp(), 0.4, None),
]


@pytest.mark.parametrize(("f", "x", "hand"), [pytest.param(*c[1:], id=c[0]) for c in UNARY])
def test_derivative_equals_hand_derived_value_and_central_differences(f, x, hand):
    analytic = grad_of(f, x)
    assert analytic == pytest.approx(central_difference(f, x), rel=1e-7, abs=1e-9)
    if hand is not None:
        assert analytic == pytest.approx(hand, rel=1e-14, abs=1e-15)


def test_composite_derivative_by_hand():
    # f = exp(log(x² + 1) tanh x); f' = f (2x/(x² + 1) tanh x + log(x² + 1)(1 − tanh² x)).
    x = 0.4
    f = math.exp(math.log(x * x + 1) * math.tanh(x))
    hand = f * (2 * x / (x * x + 1) * math.tanh(x) + math.log(x * x + 1) * (1 - math.tanh(x) ** 2))
    assert grad_of(UNARY[-1][1], x) == pytest.approx(hand, rel=1e-14)


BINARY = [
    ("add", lambda a, b: a + b, (1.0, 1.0)),
    ("sub", lambda a, b: a - b, (1.0, -1.0)),
    ("mul", lambda a, b: a * b, ("b", "a")),
    ("div", lambda a, b: a / b, None),
]


@pytest.mark.parametrize(("f", "hand"), [pytest.param(*c[1:], id=c[0]) for c in BINARY])
def test_binary_operations_give_each_operand_its_partial_derivative(f, hand):
    a_val, b_val = 1.7, -0.6
    a, b = Value(a_val), Value(b_val)
    f(a, b).backward()
    numeric_a = central_difference(lambda v: f(v, Value(b_val)), a_val)
    numeric_b = central_difference(lambda v: f(Value(a_val), v), b_val)
    assert (a.grad, b.grad) == pytest.approx((numeric_a, numeric_b), rel=1e-7)
    if hand is None:                                                   # d(a/b) = (1/b, −a/b²)
        hand = (1 / b_val, -a_val / b_val**2)
    hand = tuple({"a": a_val, "b": b_val}.get(h, h) for h in hand)
    assert (a.grad, b.grad) == pytest.approx(hand, rel=1e-15)


def test_forward_values_by_hand():
    x = Value(2.0)
    assert (x + 1).data == 3.0 and (1 - x).data == -1.0 and (x * x).data == 4.0 and (3 / x).data == 1.5
    assert (x**3).data == 8.0 and x.relu().data == 2.0 and (-x).relu().data == 0.0
    assert x.exp().data == math.exp(2.0) and x.log().data == math.log(2.0) and x.tanh().data == math.tanh(2.0)
    assert Value(0.0).sigmoid().data == 0.5


def test_sigmoid_does_not_overflow_at_large_inputs():
    # exp(1000) overflows a float; the stable form only exponentiates −|x|.
    for x, expected, slope in ((1000.0, 1.0, 0.0), (-1000.0, 0.0, 0.0), (40.0, 1.0, math.exp(-40.0))):
        v = Value(x)
        s = v.sigmoid()
        s.backward()
        assert s.data == expected
        assert v.grad == pytest.approx(slope, rel=1e-6, abs=1e-300)


def test_relu_derivative_at_zero_is_zero_as_in_torch():
    assert grad_of(lambda v: v.relu(), 0.0) == 0.0


def test_power_edge_cases():
    assert grad_of(lambda v: v**0, 0.0) == 0.0                       # x⁰ = 1 everywhere
    assert grad_of(lambda v: v**0.5, 0.0) == math.inf                # vertical tangent, as torch
    assert grad_of(lambda v: v**2, -3.0) == -6.0                      # integer power of a negative number
    with pytest.raises(ValueError, match=re.escape("a negative Value (-8.0) to the non-integer power 0.5")):
        Value(-8.0) ** 0.5
    with pytest.raises(ZeroDivisionError, match=re.escape("0.0 cannot be raised to the negative power -1")):
        Value(0.0) ** -1


def test_backward_of_a_10000_deep_chain_does_not_hit_the_recursion_limit():
    assert sys.getrecursionlimit() < 10_000
    x = Value(0.3)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0                                           # two nodes a step: 20,001 deep
    y.backward()
    assert y.data == pytest.approx(0.3 * 1.0001**10_000, rel=1e-12)
    assert x.grad == pytest.approx(1.0001**10_000, rel=1e-12)         # d/dx of x·a^n is a^n


def test_shared_subexpression_gets_the_gradient_of_every_use():
    # y = a·b + a, with a used twice: dy/da = b + 1, dy/db = a.
    a, b = Value(3.0), Value(-2.0)
    c = a * b
    y = c + a
    y.backward()
    assert (a.grad, b.grad, c.grad, y.grad) == (-1.0, 3.0, 1.0, 1.0)


def test_leaves_accumulate_over_calls_and_inner_nodes_are_recomputed():
    x = Value(2.0)
    h = x * x                                                          # an inner node
    y = h * 3.0
    y.backward()
    assert (x.grad, h.grad) == (12.0, 3.0)
    y.backward()                                                       # torch's rule: leaves add up
    assert (x.grad, h.grad) == (24.0, 3.0)
    x.grad = 0.0
    y.backward()
    assert x.grad == 12.0


def test_topological_order_puts_every_node_after_its_parents():
    a, b = Value(1.0, label="a"), Value(2.0, label="b")
    c = a * b
    d = c + a
    e = d.tanh() * c
    order = topological_order(e)
    assert order[-1] is e and len(order) == len({id(v) for v in order}) == 6   # a, b, c, d, tanh, e
    position = {id(v): i for i, v in enumerate(order)}
    for node in order:
        assert all(position[id(p)] < position[id(node)] for p in node.parents)
    assert value_topological_order is topological_order


def test_a_node_records_its_parents_and_local_derivatives():
    a, b = Value(3.0), Value(4.0)
    c = a * b
    assert c.parents == (a, b) and c.local_grads == (4.0, 3.0) and c.op == "*"
    d = a * 2.0                                                        # a constant is folded into the op
    assert d.parents == (a,) and d.local_grads == (2.0,) and d.op == "* 2"
    assert a.parents == () and a.op == ""


def test_repr_names_data_grad_and_label():
    assert repr(Value(1.5, label="w")) == "Value(data=1.5, grad=0.0, label='w')"
    assert repr(Value(2)) == "Value(data=2.0, grad=0.0)"


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (lambda v: v + "a",
         "unsupported operand for Value +: str 'a'; a Value combines with int, float or another Value"),
        (lambda v: "a" + v, "unsupported operand for Value +: str 'a'"),
        (lambda v: v * [1.0], "unsupported operand for Value *: list [1.0]"),
        (lambda v: v - None, "unsupported operand for Value -: NoneType None"),
        (lambda v: None - v, "unsupported operand for Value -: NoneType None"),
        (lambda v: v / "2", "unsupported operand for Value /: str '2'"),
        (lambda v: 1j / v, "unsupported operand for Value /: complex 1j"),
        (lambda v: v * True, "unsupported operand for Value *: bool True"),
        (lambda v: v ** "2", "unsupported operand for Value **: str '2'"),
        (lambda v: v ** Value(2.0),
         "the exponent must be an int or a float, got Value Value(data=2.0, grad=0.0)"),
        (lambda v: Value.sum([v, "x"]), "unsupported operand for Value sum: str 'x'"),
    ],
    ids=["add", "radd", "mul_list", "sub_none", "rsub_none", "div_str", "rdiv_complex", "mul_bool", "pow_str",
         "pow_value", "sum_str"],
)
def test_an_unsupported_operand_is_a_type_error_naming_its_type_and_value(operation, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        operation(Value(1.0))


@pytest.mark.parametrize("bad", ["1.0", None, True, [1.0], 1j])
def test_a_value_holds_only_a_real_number(bad):
    message = f"Value holds an int or a float, got {type(bad).__name__} {bad!r}"
    with pytest.raises(TypeError, match=re.escape(message)):
        Value(bad)


@pytest.mark.parametrize("x", [0.0, -2.5])
def test_log_of_a_non_positive_value_names_the_value(x):
    with pytest.raises(ValueError, match=re.escape(f"log is defined for positive values only, got {x!r}")):
        Value(x).log()


def test_division_by_zero_names_both_operands():
    zero = "Value(data=0.0, grad=0.0)"
    with pytest.raises(ZeroDivisionError, match=re.escape(f"division by a Value of 0.0: 1.0 / {zero}")):
        Value(1.0) / Value(0.0)
    with pytest.raises(ZeroDivisionError, match=re.escape(f"division by a Value of 0.0: 2.0 / {zero}")):
        2.0 / Value(0.0)
    message = "division of Value(data=1.0, grad=0.0) by the constant 0"
    with pytest.raises(ZeroDivisionError, match=re.escape(message)):
        Value(1.0) / 0


def test_exp_overflow_names_the_value():
    with pytest.raises(OverflowError, match=re.escape("exp(710.0) overflows a float")):
        Value(710.0).exp()


def test_backward_on_several_outputs_asks_for_a_loss():
    outputs = [Value(1.0), Value(2.0), Value(3.0)]
    message = (
        "backward() needs a scalar output (one Value), got a list of 3 Values; "
        "reduce them to one loss first, e.g. mse_loss or cross_entropy_loss"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        backward(outputs)
    with pytest.raises(ValueError, match=re.escape("got a tuple of 2 Values")):
        backward(tuple(outputs[:2]))


@pytest.mark.parametrize("bad", [3.0, "loss", None, [1.0, 2.0]])
def test_backward_on_a_non_value_names_its_type_and_value(bad):
    message = f"backward() needs a Value, got {type(bad).__name__} {bad!r}"
    with pytest.raises(TypeError, match=re.escape(message)):
        backward(bad)


def test_backward_function_on_a_value_is_the_method():
    x = Value(3.0)
    backward(x * x)
    assert x.grad == 6.0


def test_the_core_imports_no_numpy():
    # The scalar core teaches with the standard library only; NumPy stays in autograd.convert.
    code = "import sys, mlpkit.autograd; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
