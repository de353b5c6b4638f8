"""Neuron, Layer, MLP and the two losses: values and gradients by hand, the engine's names, training."""

from __future__ import annotations

import math
import random
import re

import pytest

from mlpkit.autograd import MLP, Layer, Neuron, Value, Vector, cross_entropy_loss, mse_loss
from mlpkit.spec import MLPSpec


def test_neuron_computes_f_of_b_plus_w_dot_x_and_its_gradients_by_hand():
    n = Neuron(2, activation="tanh", rng=random.Random(0))
    n.weight[0].data, n.weight[1].data, n.bias.data = 0.5, -1.0, 0.25
    x = [Value(2.0), Value(0.5)]
    y = n(x)
    z = 0.25 + 0.5 * 2.0 - 1.0 * 0.5                                   # 0.75
    assert y.data == pytest.approx(math.tanh(z), rel=1e-15)
    y.backward()
    slope = 1 - math.tanh(z) ** 2                                      # tanh'(z)
    # dy/dw_j = x_j f'(z), dy/db = f'(z), dy/dx_j = w_j f'(z).
    assert [w.grad for w in n.weight] == pytest.approx([2.0 * slope, 0.5 * slope], rel=1e-15)
    assert n.bias.grad == pytest.approx(slope, rel=1e-15)
    assert [xj.grad for xj in x] == pytest.approx([0.5 * slope, -1.0 * slope], rel=1e-15)


@pytest.mark.parametrize("fan_in", [1, 4, 49])
def test_initial_weights_lie_within_one_over_sqrt_fan_in_and_biases_are_zero(fan_in):
    layer = Layer(fan_in, 30, rng=random.Random(1))
    weights = [w.data for row in layer.weight for w in row]
    bound = 1 / math.sqrt(fan_in)
    assert all(-bound <= w <= bound for w in weights)
    assert max(weights) > 0.8 * bound and min(weights) < -0.8 * bound   # spread over the range, not clumped
    assert [b.data for b in layer.bias] == [0.0] * 30


def test_the_same_seed_gives_the_same_network():
    a = MLP(3, (4,), 2, rng=random.Random(5))
    b = MLP(3, (4,), 2, rng=random.Random(5))
    c = MLP(3, (4,), 2, rng=random.Random(6))
    assert [p.data for p in a.parameters()] == [p.data for p in b.parameters()]
    assert [p.data for p in a.parameters()] != [p.data for p in c.parameters()]


def test_layer_outputs_one_value_per_unit_with_weights_in_out_in_layout():
    layer = Layer(3, 2, activation="relu", rng=random.Random(0))
    for row, values in zip(layer.weight, ([1.0, 0.0, -1.0], [0.5, 0.5, 0.5]), strict=True):
        for w, v in zip(row, values, strict=True):
            w.data = v
    layer.neurons[1].bias.data = -4.0
    out = layer([2.0, 3.0, 1.0])
    assert isinstance(out, Vector) and [v.data for v in out] == [1.0, 0.0]    # relu(1), relu(3 − 4)
    assert len(layer.parameters()) == 3 * 2 + 2


def test_mlp_names_and_shapes_match_the_engine_spec():
    net = MLP(4, (5, 3, 6), 2, activation=("tanh", "relu", "sigmoid"), rng=random.Random(0))
    spec = MLPSpec(4, (5, 3, 6), 2, activation=("tanh", "relu", "sigmoid"))
    assert net.spec == spec
    named = net.named_parameters()
    shapes = {
        name: (len(v), len(v[0])) if name.endswith("weight") else (len(v),)    # type: ignore[arg-type]
        for name, v in named.items()
    }
    assert shapes == spec.linear_shapes()
    assert len(net.parameters()) == spec.num_parameters == 4 * 5 + 5 + 5 * 3 + 3 + 3 * 6 + 6 + 6 * 2 + 2
    assert [layer.activation for layer in net.layers] == ["tanh", "relu", "sigmoid", "identity"]


def test_mlp_forward_is_the_layers_composed_by_hand():
    net = MLP(2, (2,), 1, activation="sigmoid", rng=random.Random(0))
    (h0, h1), (out,) = net.layers[0].neurons, net.layers[1].neurons
    h0.weight[0].data, h0.weight[1].data, h0.bias.data = 1.0, 2.0, 0.0
    h1.weight[0].data, h1.weight[1].data, h1.bias.data = -1.0, 0.0, 1.0
    out.weight[0].data, out.weight[1].data, out.bias.data = 3.0, -2.0, 0.5
    x = [0.5, -0.25]
    sigma = lambda z: 1 / (1 + math.exp(-z))                           # noqa: E731
    expected = 0.5 + 3.0 * sigma(0.5 - 0.5) - 2.0 * sigma(-0.5 + 1.0)   # the output layer is linear
    (logit,) = net(x)
    assert logit.data == pytest.approx(expected, rel=1e-15)


def test_a_linear_model_has_no_hidden_layer():
    net = MLP(3, (), 2, rng=random.Random(0))
    assert len(net.layers) == 1 and net.layers[0].activation == "identity"
    assert net.spec == MLPSpec(3, (), 2)
    assert list(net.named_parameters()) == ["0.weight", "0.bias"]


def test_zero_grad_clears_every_parameter():
    net = MLP(2, (3,), 2, activation="tanh", rng=random.Random(0))
    cross_entropy_loss([net([1.0, -1.0])], [0]).backward()
    assert sum(abs(p.grad) for p in net.parameters()) > 0
    first_layer, output_neuron = net.layers[0], net.layers[1].neurons[0]
    output_neuron.zero_grad()                                          # one neuron: its weights and bias
    assert [p.grad for p in output_neuron.parameters()] == [0.0] * 4
    assert sum(abs(p.grad) for p in first_layer.parameters()) > 0
    first_layer.zero_grad()
    assert [p.grad for p in first_layer.parameters()] == [0.0] * 9
    net.zero_grad()
    assert [p.grad for p in net.parameters()] == [0.0] * len(net.parameters())


def test_sgd_on_the_scalar_mlp_learns_xor():
    # XOR is the classic function no single perceptron computes (Minsky & Papert 1969); one hidden
    # layer does. Full-batch SGD from a seeded start.
    data = [([0.0, 0.0], 0), ([0.0, 1.0], 1), ([1.0, 0.0], 1), ([1.0, 1.0], 0)]
    net = MLP(2, (8,), 2, activation="tanh", rng=random.Random(3))
    first = None
    for _ in range(300):
        loss = cross_entropy_loss([net(x) for x, _ in data], [y for _, y in data])
        first = loss.data if first is None else first
        net.zero_grad()
        loss.backward()
        for p in net.parameters():
            p.data -= 0.5 * p.grad
    predictions = [max(range(2), key=lambda c, x=x: net(x)[c].data) for x, _ in data]
    assert predictions == [0, 1, 1, 0]
    assert loss.data < 0.05 < first


def test_mse_loss_is_the_mean_over_every_element_with_its_gradient():
    out = [[Value(1.0), Value(-1.0)], [Value(0.5), Value(2.0)]]
    targets = [[0.0, 0.0], [0.5, 0.0]]
    loss = mse_loss(out, targets)
    assert loss.data == pytest.approx((1 + 1 + 0 + 4) / 4, rel=1e-15)
    loss.backward()
    # d mean((ŷ − y)²)/dŷ = 2 (ŷ − y) / (B C) with B C = 4.
    assert [v.grad for row in out for v in row] == pytest.approx([0.5, -0.5, 0.0, 1.0], rel=1e-15)


def test_cross_entropy_is_log_sum_exp_minus_the_true_logit_and_its_gradient_is_softmax_minus_onehot():
    rows = [[0.2, -1.0, 3.0], [1.5, 1.5, -0.5]]
    labels = [0, 2]
    logits = [[Value(z) for z in row] for row in rows]
    loss = cross_entropy_loss(logits, labels)
    lse = [math.log(sum(math.exp(z) for z in row)) for row in rows]
    assert loss.data == pytest.approx(sum(lse[b] - rows[b][labels[b]] for b in range(2)) / 2, rel=1e-14)
    loss.backward()
    for b, row in enumerate(rows):
        softmax = [math.exp(z - lse[b]) for z in row]
        expected = [(p - (c == labels[b])) / 2 for c, p in enumerate(softmax)]
        assert [z.grad for z in logits[b]] == pytest.approx(expected, rel=1e-13, abs=1e-16)


def test_cross_entropy_does_not_overflow_with_large_logits():
    logits = [[Value(1000.0), Value(0.0)]]
    loss = cross_entropy_loss(logits, [1])
    assert loss.data == pytest.approx(1000.0, rel=1e-15)              # log(e^1000 + 1) − 0
    loss.backward()
    assert (logits[0][0].grad, logits[0][1].grad) == (1.0, -1.0)


# -- errors ------------------------------------------------------------------------------------------


def test_backward_on_the_network_outputs_asks_for_a_loss():
    net = MLP(2, (3,), 3, rng=random.Random(0))
    message = "backward() needs a scalar output (one Value), got a list of 3 Values"
    with pytest.raises(ValueError, match=re.escape(message)):
        net([1.0, 2.0]).backward()


def test_an_input_of_the_wrong_length_names_both_lengths():
    net = MLP(2, (3,), 1, rng=random.Random(0))
    with pytest.raises(ValueError, match=re.escape("x must have in_features=2 entries, got 3")):
        net([1.0, 2.0, 3.0])
    message = "x must be a sequence of 2 numbers or Values, got str 'ab'"
    with pytest.raises(TypeError, match=re.escape(message)):
        net("ab")


def test_a_non_number_input_is_named():
    with pytest.raises(TypeError, match=re.escape("unsupported operand for Value *: str 'a'")):
        MLP(2, (3,), 1, rng=random.Random(0))(["a", 1.0])


def test_an_activation_the_scalar_mlp_lacks_is_refused_with_the_valid_names():
    message = "activation must be one of ['identity', 'relu', 'sigmoid', 'tanh'], got 'gelu'"
    with pytest.raises(ValueError, match=re.escape(message)):
        MLP(2, (3,), 1, activation="gelu", rng=random.Random(0))
    with pytest.raises(ValueError, match=re.escape("got 'tahn' (did you mean 'tanh'?)")):
        Neuron(2, activation="tahn", rng=random.Random(0))


def test_sizes_are_checked_like_the_engine_spec():
    with pytest.raises(ValueError, match=re.escape("in_features must be a positive int, got 0")):
        MLP(0, (3,), 1, rng=random.Random(0))
    with pytest.raises(ValueError, match=re.escape("out_features must be a positive int, got 0")):
        Layer(2, 0, rng=random.Random(0))


def test_loss_shapes_are_checked():
    row = [Value(0.0), Value(1.0)]
    with pytest.raises(ValueError, match=re.escape("targets must have one row per output row (1), got 2")):
        mse_loss([row], [[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=re.escape("row 0: 2 outputs but 3 targets")):
        mse_loss([row], [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=re.escape("labels[0] must be an int in [0, 2), got 2")):
        cross_entropy_loss([row], [2])
    with pytest.raises(ValueError, match=re.escape("labels[0] must be an int in [0, 2), got 1.0")):
        cross_entropy_loss([row], [1.0])
    with pytest.raises(ValueError, match=re.escape("logits must be a non-empty batch")):
        cross_entropy_loss([], [])
