"""A scalar with reverse-mode automatic differentiation: the first rung below the engine.

Reverse-mode differentiation of a computation graph is backpropagation (Rumelhart, Hinton &
Williams, "Learning representations by back-propagating errors", Nature 323, 1986); Griewank &
Walther, *Evaluating Derivatives* (2nd ed., SIAM 2008), ch. 3, give the general algorithm used here.

Every operation on :class:`Value` returns a new Value that remembers its inputs (its *parents*)
and, computed right beside the forward value, the local derivative of the result with respect to
each parent. :meth:`Value.backward` then visits the graph once, from the output back to the
leaves, in a topological order, and applies the chain rule

    dL/dparent += dL/dnode * dnode/dparent

at every edge. The order is found with an explicit stack, not recursion, so a chain of any depth
works (Python's recursion limit is about 1,000 frames).

A plain ``int`` or ``float`` operand is a constant: it is folded into the operation and gets no
node, so the graph holds only what can carry a gradient. Pure Python; no NumPy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = ["Value", "backward"]


def _describe(obj: object) -> str:
    """``"str 'a'"``: the type's name and the value, for error messages."""
    return f"{type(obj).__name__} {obj!r}"


def _constant(other: object, op: str) -> float:
    """A number operand as float, or a TypeError naming the operand's type and value.

    ``bool`` is refused although Python counts it as an int: ``x * (y > 0)`` is almost always a
    mistake for ``relu`` here, and a silent 0 or 1 would hide it.
    """
    if isinstance(other, numbers.Real) and not isinstance(other, bool):
        return float(other)
    raise TypeError(
        f"unsupported operand for Value {op}: {_describe(other)}; a Value combines with int, float "
        "or another Value"
    )


class Value:
    """One float in a computation graph, with the gradient of the graph's output with respect to it.

    Parameters
    ----------
    data : int or float
        The value.
    label : str
        A name shown by :func:`~mlpkit.autograd.to_dot` (e.g. ``"w0"``).

    Attributes
    ----------
    data : float
    grad : float
        dL/d(this value) after ``L.backward()``; 0.0 before. Leaves (Values made by the user,
        such as weights) accumulate over several ``backward()`` calls, as in torch; call
        :meth:`~mlpkit.autograd.MLP.zero_grad` (or set ``grad = 0.0``) between steps.
    op : str
        The operation that made this value (``"*"``, ``"tanh"``, ...), ``""`` for a leaf.

    Examples
    --------
    >>> x, w, b = Value(2.0), Value(-3.0), Value(1.0)
    >>> y = (w * x + b).tanh()
    >>> y.backward()
    >>> round(y.data, 6), round(w.grad, 6), round(x.grad, 6)   # dy/dw = x (1 - y²), dy/dx = w (1 - y²)
    (-0.999909, 0.000363, -0.000545)
    """

    __slots__ = ("_local_grads", "_parents", "data", "grad", "label", "op")

    def __init__(self, data: float, *, label: str = "") -> None:
        if isinstance(data, bool) or not isinstance(data, numbers.Real):
            raise TypeError(f"Value holds an int or a float, got {_describe(data)}")
        self.data = float(data)
        self.grad = 0.0
        self.label = label
        self.op = ""
        self._parents: tuple[Value, ...] = ()
        self._local_grads: tuple[float, ...] = ()

    @classmethod
    def _node(cls, data: float, parents: tuple[Value, ...], local_grads: tuple[float, ...], op: str) -> Value:
        """The result of an operation: its value, its parents and d(result)/d(parent) for each."""
        # Bypasses __init__: the operands were checked already, and a forward pass makes
        # thousands of nodes.
        out = cls.__new__(cls)
        out.data = data
        out.grad = 0.0
        out.label = ""
        out.op = op
        out._parents = parents
        out._local_grads = local_grads
        return out

    @property
    def parents(self) -> tuple[Value, ...]:
        """The Values this one was computed from (empty for a leaf)."""
        return self._parents

    @property
    def local_grads(self) -> tuple[float, ...]:
        """d(self)/d(parent) for each parent, computed by the forward pass."""
        return self._local_grads

    def __repr__(self) -> str:
        name = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data!r}, grad={self.grad!r}{name})"

    # -- arithmetic: the forward value, then the local derivative with respect to each operand --------

    def __add__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            return Value._node(self.data + other.data, (self, other), (1.0, 1.0), "+")
        c = _constant(other, "+")
        return Value._node(self.data + c, (self,), (1.0,), f"+ {c:g}")

    def __radd__(self, other: float) -> Value:
        return self + other                                   # c + x = x + c

    def __neg__(self) -> Value:
        return Value._node(-self.data, (self,), (-1.0,), "neg")

    def __sub__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            return Value._node(self.data - other.data, (self, other), (1.0, -1.0), "-")
        c = _constant(other, "-")
        return Value._node(self.data - c, (self,), (1.0,), f"- {c:g}")

    def __rsub__(self, other: float) -> Value:
        c = _constant(other, "-")
        return Value._node(c - self.data, (self,), (-1.0,), f"{c:g} -")     # d(c − x)/dx = −1

    def __mul__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            # d(ab)/da = b, d(ab)/db = a; for x * x both edges lead to x and add up to 2x.
            return Value._node(self.data * other.data, (self, other), (other.data, self.data), "*")
        c = _constant(other, "*")
        return Value._node(self.data * c, (self,), (c,), f"* {c:g}")

    def __rmul__(self, other: float) -> Value:
        return self * other

    def __truediv__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            if other.data == 0.0:
                raise ZeroDivisionError(f"division by a Value of 0.0: {self.data!r} / {other!r}")
            q = self.data / other.data                        # d(a/b)/da = 1/b, d(a/b)/db = −a/b² = −q/b
            return Value._node(q, (self, other), (1.0 / other.data, -q / other.data), "/")
        c = _constant(other, "/")
        if c == 0.0:
            raise ZeroDivisionError(f"division of {self!r} by the constant 0")
        return Value._node(self.data / c, (self,), (1.0 / c,), f"/ {c:g}")

    def __rtruediv__(self, other: float) -> Value:
        c = _constant(other, "/")
        if self.data == 0.0:
            raise ZeroDivisionError(f"division by a Value of 0.0: {c!r} / {self!r}")
        q = c / self.data
        return Value._node(q, (self,), (-q / self.data,), f"{c:g} /")          # d(c/x)/dx = −c/x²

    def __pow__(self, exponent: float) -> Value:
        """``x ** p`` for a constant exponent ``p``; ``d(x^p)/dx = p x^(p−1)``."""
        if isinstance(exponent, Value):
            raise TypeError(
                f"unsupported operand for Value **: the exponent must be an int or a float, got "
                f"{_describe(exponent)}; write (p * x.log()).exp() for x ** p with p a Value"
            )
        p = _constant(exponent, "**")
        x = self.data
        if x == 0.0 and p < 0:
            raise ZeroDivisionError(f"0.0 cannot be raised to the negative power {p:g} ({self!r})")
        if x < 0 and not p.is_integer():
            raise ValueError(f"a negative Value ({x!r}) to the non-integer power {p:g} is not a real number")
        if p == 0.0:
            local = 0.0
        elif x == 0.0 and p < 1:
            local = math.inf                                  # the slope of x^p, 0 < p < 1, is vertical at 0
        else:
            local = p * x ** (p - 1)
        return Value._node(x**p, (self,), (local,), f"** {p:g}")

    # -- functions ---------------------------------------------------------------------------------

    def exp(self) -> Value:
        """``e^x``; its derivative is itself: reuse the forward output."""
        try:
            e = math.exp(self.data)
        except OverflowError:
            message = f"exp({self.data!r}) overflows a float (the largest is about exp(709.78))"
            raise OverflowError(message) from None
        return Value._node(e, (self,), (e,), "exp")

    def log(self) -> Value:
        """Natural logarithm, ``d(ln x)/dx = 1/x``; defined for positive values only."""
        if self.data <= 0.0:
            raise ValueError(f"log is defined for positive values only, got {self.data!r} ({self!r})")
        return Value._node(math.log(self.data), (self,), (1.0 / self.data,), "log")

    def tanh(self) -> Value:
        """``tanh x``; ``d tanh/dx = 1 − tanh²``: reuse the forward output."""
        t = math.tanh(self.data)
        return Value._node(t, (self,), (1.0 - t * t,), "tanh")

    def sigmoid(self) -> Value:
        """``σ(x) = 1 / (1 + e^{−x})``; ``dσ/dx = σ(1 − σ)``, from the forward pass's ``e = e^{−|x|}``.

        ``exp`` is only taken of ``−|x| <= 0``, so large ``|x|`` cannot overflow. With that ``e``,
        ``σ(1 − σ) = e / (1 + e)²`` for either sign of x, which keeps the slope's digits in the
        tails where ``σ`` itself rounds to 1 (at x = 40, ``σ(1 − σ)`` would give 0 instead of 4e-18).
        """
        x = self.data
        e = math.exp(-abs(x))                                 # in (0, 1]
        s = 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)
        return Value._node(s, (self,), (e / ((1.0 + e) * (1.0 + e)),), "sigmoid")

    def relu(self) -> Value:
        """``max(x, 0)``; the derivative is 1 for x > 0 and 0 otherwise (0 at x = 0, as torch)."""
        x = self.data
        return Value._node(x if x > 0 else 0.0, (self,), (1.0 if x > 0 else 0.0,), "relu")

    @staticmethod
    def sum(terms: Iterable[Value | float]) -> Value:
        """``Σ terms`` as one node, whose local derivative is 1 for every Value term.

        Python's ``sum`` would build a chain of additions as deep as the number of terms; one
        node per sum keeps a neuron's graph two levels deep whatever its fan-in.

        Examples
        --------
        >>> a, b = Value(1.5), Value(2.0)
        >>> s = Value.sum([a, b, 0.5, a])
        >>> s.backward()
        >>> s.data, a.grad, b.grad
        (5.5, 2.0, 1.0)
        """
        parents: list[Value] = []
        constant = 0.0
        total = 0.0
        for term in terms:
            if isinstance(term, Value):
                parents.append(term)
                total += term.data
            else:
                constant += _constant(term, "sum")
        op = "sum" if constant == 0.0 else f"sum + {constant:g}"
        return Value._node(total + constant, tuple(parents), (1.0,) * len(parents), op)

    # -- reverse mode ------------------------------------------------------------------------------

    def backward(self) -> None:
        """Fill ``grad`` of every Value this one depends on with d(self)/d(that value).

        The graph's inner nodes are reset and recomputed on each call; leaves add to their
        ``grad``, so two calls without zeroing give twice the gradient (torch's rule).
        """
        order = topological_order(self)
        for node in order:
            if node._parents:
                node.grad = 0.0
        self.grad += 1.0                                      # dL/dL
        for node in reversed(order):                          # every node after all that use it
            g = node.grad
            for parent, local in zip(node._parents, node._local_grads, strict=True):
                parent.grad += local * g                      # the chain rule, one edge at a time


def topological_order(root: Value) -> list[Value]:
    """Every Value ``root`` depends on, each after all of its parents, ``root`` last.

    Depth-first search with an explicit stack, so that the depth of the graph is limited by memory,
    not by Python's recursion limit. A node is appended when it is popped the second time, i.e.
    after all its parents were finished (post-order).

    Examples
    --------
    >>> a = Value(1.0, label="a")
    >>> b = a * 2
    >>> c = a + b
    >>> [v.label or v.op for v in topological_order(c)]
    ['a', '* 2', '+']
    """
    order: list[Value] = []
    visited: set[Value] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if node in visited:
            continue
        visited.add(node)
        stack.append((node, True))
        stack.extend((parent, False) for parent in node._parents if parent not in visited)
    return order


def backward(output: object) -> None:
    """``output.backward()`` if ``output`` is a Value, else an error that says what to do instead.

    Raises
    ------
    ValueError
        For a list or tuple of Values (e.g. a network's outputs): the gradient of a vector is a
        Jacobian, not what backpropagation computes; reduce the outputs to one loss first.
    TypeError
        For anything else, naming its type and value.
    """
    if isinstance(output, Value):
        output.backward()
        return
    if isinstance(output, list | tuple) and all(isinstance(v, Value) for v in output):
        raise ValueError(
            f"backward() needs a scalar output (one Value), got a {type(output).__name__} of "
            f"{len(output)} Values; reduce them to one loss first, e.g. mse_loss or cross_entropy_loss"
        )
    raise TypeError(f"backward() needs a Value, got {_describe(output)}")
