"""Optimizers: steps worked out by hand, torch.optim parity, resuming from state, and errors.

Each hand-worked test sets the gradient before every step (layers overwrite ``grad``, so this is
what a training step does) and compares with numbers written out from the update formulas.
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest

from mlpkit.engine.layers import Parameter
from mlpkit.engine.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Optimizer, make_optimizer


def _run(opt: Optimizer, grads: list[list[float]]) -> list[np.ndarray]:
    """Step ``opt`` once per gradient (applied to its single parameter); return the values after each step."""
    (p,) = opt.params
    values = []
    for g in grads:
        p.grad[...] = g
        opt.step()
        values.append(p.data.copy())
    return values


# --- SGD ----------------------------------------------------------------------------------------


def test_sgd_plain_by_hand():
    p = Parameter(np.array([1.0, -2.0]))
    w1, w2 = _run(SGD([p], lr=0.1), [[0.5, 1.0], [-1.0, 2.0]])
    # w ← w − lr g:  [1, −2] − 0.1 [0.5, 1] = [0.95, −2.1];  [0.95, −2.1] − 0.1 [−1, 2] = [1.05, −2.3]
    np.testing.assert_allclose(w1, [0.95, -2.1], rtol=1e-15)
    np.testing.assert_allclose(w2, [1.05, -2.3], rtol=1e-15)


def test_sgd_momentum_by_hand_first_buffer_is_the_gradient():
    p = Parameter(np.array([1.0]))
    w = _run(SGD([p], lr=0.1, momentum=0.9), [[1.0], [2.0], [-1.0]])
    # torch convention: b₁ = g₁ (no (1 − μ) damping, no zero start), then b ← μ b + g; w ← w − lr b.
    # step 1: b = 1                    w = 1    − 0.1 · 1    = 0.9
    # step 2: b = 0.9 · 1    + 2  = 2.9   w = 0.9  − 0.1 · 2.9  = 0.61
    # step 3: b = 0.9 · 2.9  − 1  = 1.61  w = 0.61 − 0.1 · 1.61 = 0.449
    np.testing.assert_allclose(np.concatenate(w), [0.9, 0.61, 0.449], rtol=1e-14)


def test_sgd_nesterov_by_hand():
    p = Parameter(np.array([1.0]))
    w = _run(SGD([p], lr=0.1, momentum=0.9, nesterov=True), [[1.0], [2.0], [-1.0]])
    # Buffers as above (1, 2.9, 1.61); the step uses g + μ b:
    # step 1: 1  + 0.9 · 1    = 1.9    w = 1     − 0.19   = 0.81
    # step 2: 2  + 0.9 · 2.9  = 4.61   w = 0.81  − 0.461  = 0.349
    # step 3: −1 + 0.9 · 1.61 = 0.449  w = 0.349 − 0.0449 = 0.3041
    np.testing.assert_allclose(np.concatenate(w), [0.81, 0.349, 0.3041], rtol=1e-14)


def test_sgd_weight_decay_applies_to_weights_not_to_biases():
    weight = Parameter(np.array([2.0]))
    bias = Parameter(np.array([2.0]), decay=False)
    opt = SGD([weight, bias], lr=0.1, weight_decay=0.5)
    for _ in range(2):
        weight.grad[...] = 1.0
        bias.grad[...] = 1.0
        opt.step()
    # weight: g + λ w = 1 + 0.5 · 2 = 2 -> w = 2 − 0.2 = 1.8;  1 + 0.5 · 1.8 = 1.9 -> w = 1.8 − 0.19 = 1.61
    # bias (decay=False): g = 1 -> 1.9 -> 1.8
    np.testing.assert_allclose(weight.data, [1.61], rtol=1e-15)
    np.testing.assert_allclose(bias.data, [1.8], rtol=1e-15)
    # The gradients themselves are not modified by the L2 term.
    np.testing.assert_array_equal(weight.grad, [1.0])


def test_sgd_reads_lr_at_every_step_so_schedules_can_set_it():
    p = Parameter(np.array([1.0]))
    opt = SGD([p], lr=0.1)
    p.grad[...] = 1.0
    opt.step()
    opt.lr = 0.01
    opt.step()
    np.testing.assert_allclose(p.data, [1.0 - 0.1 - 0.01], rtol=1e-15)


# --- Adam and AdamW -----------------------------------------------------------------------------


def test_adam_two_steps_by_hand():
    p = Parameter(np.array([1.0]))
    w1, w2 = _run(Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8), [[1.0], [-2.0]])
    # t = 1: m = 0.1 · 1 = 0.1, v = 0.001 · 1 = 0.001; m̂ = 0.1 / (1 − 0.9) = 1, v̂ = 0.001 / (1 − 0.999) = 1
    #        w = 1 − 0.1 · 1 / (sqrt(1) + 1e-8)
    expected_w1 = 1.0 - 0.1 * 1.0 / (1.0 + 1e-8)
    # t = 2: m = 0.9 · 0.1 + 0.1 · (−2) = −0.11, v = 0.999 · 0.001 + 0.001 · 4 = 0.004999
    #        m̂ = −0.11 / (1 − 0.81) = −0.11 / 0.19,  v̂ = 0.004999 / (1 − 0.998001) = 0.004999 / 0.001999
    #        w = w₁ − 0.1 · m̂ / (sqrt(v̂) + 1e-8)     (≈ 0.9 + 0.0366103)
    expected_w2 = expected_w1 - 0.1 * (-0.11 / 0.19) / (math.sqrt(0.004999 / 0.001999) + 1e-8)
    np.testing.assert_allclose(w1, [expected_w1], rtol=1e-14)
    np.testing.assert_allclose(w2, [expected_w2], rtol=1e-13)
    assert w2[0] == pytest.approx(0.9366103, abs=1e-7)


def test_adam_eps_is_added_outside_the_sqrt_of_the_bias_corrected_v():
    # With g = eps = 1e-8 at t = 1: m̂ = 1e-8 and sqrt(v̂) = 1e-8,
    # so the step is lr · 1e-8 / (1e-8 + 1e-8) = lr / 2.
    # eps inside the sqrt, sqrt(v̂ + eps) ≈ 1e-4, would give a step of ≈ lr · 1e-4; eps added before the
    # bias correction, (sqrt(v) + eps) / sqrt(1 − β2), would give ≈ lr · 0.03.
    p = Parameter(np.array([0.0]))
    (w1,) = _run(Adam([p], lr=0.1, eps=1e-8), [[1e-8]])
    np.testing.assert_allclose(w1, [-0.05], rtol=1e-12)


def test_adam_coupled_l2_and_adamw_decoupled_decay_differ_by_hand():
    adam_w = Parameter(np.array([1.0]))
    adamw_w = Parameter(np.array([1.0]))
    (adam_1,) = _run(Adam([adam_w], lr=0.1, weight_decay=0.5), [[1.0]])
    (adamw_1,) = _run(AdamW([adamw_w], lr=0.1, weight_decay=0.5), [[1.0]])
    # Adam + L2: g' = g + λ w = 1 + 0.5 = 1.5; m̂ = 1.5, v̂ = 2.25 -> step 0.1 · 1.5 / (1.5 + 1e-8):
    # the decay is normalised away by the adaptive scaling, w ≈ 0.9.
    np.testing.assert_allclose(adam_1, [1.0 - 0.1 * 1.5 / (1.5 + 1e-8)], rtol=1e-15)
    # AdamW: w ← w (1 − lr λ) = 1 · (1 − 0.05) = 0.95, then the plain Adam step
    # 0.1 · 1 / (1 + 1e-8): w ≈ 0.85.
    np.testing.assert_allclose(adamw_1, [0.95 - 0.1 / (1.0 + 1e-8)], rtol=1e-15)
    assert adamw_1[0] < adam_1[0] - 0.04


def test_adamw_second_step_by_hand():
    p = Parameter(np.array([1.0]))
    _, w2 = _run(AdamW([p], lr=0.1, weight_decay=0.5), [[1.0], [-2.0]])
    w1 = 0.95 - 0.1 / (1.0 + 1e-8)
    # t = 2: shrink w₁ by (1 − 0.05), then the same Adam step as in test_adam_two_steps_by_hand.
    expected = w1 * 0.95 - 0.1 * (-0.11 / 0.19) / (math.sqrt(0.004999 / 0.001999) + 1e-8)
    np.testing.assert_allclose(w2, [expected], rtol=1e-13)


def test_adamw_does_not_decay_biases():
    bias = Parameter(np.array([1.0]), decay=False)
    (b1,) = _run(AdamW([bias], lr=0.1, weight_decay=0.5), [[1.0]])
    np.testing.assert_allclose(b1, [1.0 - 0.1 / (1.0 + 1e-8)], rtol=1e-15)


def test_adam_coupled_l2_does_not_decay_biases():
    bias = Parameter(np.array([1.0]), decay=False)
    (b1,) = _run(Adam([bias], lr=0.1, weight_decay=0.5), [[0.2]])
    np.testing.assert_allclose(b1, [1.0 - 0.1 * 0.2 / (0.2 + 1e-8)], rtol=1e-15)


def test_adamw_default_weight_decay_is_torchs():
    assert AdamW([Parameter(np.zeros(1))]).weight_decay == 0.01
    assert Adam([Parameter(np.zeros(1))]).weight_decay == 0.0


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_adam_over_many_parameters_equals_one_adam_per_parameter_bit_for_bit(cls, rng):
    # Adam lays the parameters of one dtype end to end in flat buffers, their grads included: the
    # update of each element must not depend on its neighbours, dtype groups or decay flags (a
    # float32 and a float64 group, decayed weights and undecayed biases, a scalar).
    def parameters() -> list[Parameter]:
        draw = np.random.default_rng(7)
        return [
            Parameter(draw.standard_normal((3, 4))),
            Parameter(draw.standard_normal(4).astype(np.float32), decay=False),
            Parameter(draw.standard_normal((2, 3)).astype(np.float32)),
            Parameter(draw.standard_normal(()), decay=False),
        ]

    together = parameters()
    apart = parameters()
    kwargs = {"lr": 1e-2, "weight_decay": 0.1}
    joint = cls(together, **kwargs)
    single = [cls([q], **kwargs) for q in apart]
    assert all(a.grad.base is not None for a in together)  # the grads became views of flat buffers
    for step in range(4):
        for a, b in zip(together, apart, strict=True):
            a.grad[...] = b.grad[...] = rng.standard_normal(a.data.shape).astype(a.data.dtype)
        if step == 2:  # a gradient replaced by another array is read from there
            together[2].grad = together[2].grad.copy()
        joint.step()
        for opt in single:
            opt.step()
    for i, (a, b) in enumerate(zip(together, apart, strict=True)):
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape
        np.testing.assert_array_equal(a.data, b.data)
        state = joint.state_arrays()
        np.testing.assert_array_equal(state[f"{i}.exp_avg"], single[i].state_arrays()["0.exp_avg"])
        np.testing.assert_array_equal(state[f"{i}.exp_avg_sq"], single[i].state_arrays()["0.exp_avg_sq"])


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
        lambda ps: Adam(ps, lr=1e-2, weight_decay=1e-2),
        lambda ps: AdamW(ps, lr=1e-2),
    ],
    ids=["sgd", "adam", "adamw"],
)
def test_float32_parameters_stay_float32(make, rng):
    p = Parameter(rng.standard_normal((3, 2)).astype(np.float32))
    opt = make([p])
    for _ in range(3):
        p.grad[...] = rng.standard_normal((3, 2))
        opt.step()
    assert p.data.dtype == np.float32
    assert all(a.dtype == np.float32 for a in opt.state_arrays().values())


def test_zero_grad_zeroes_every_gradient():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(3))
    a.grad[...], b.grad[...] = 1.0, 2.0
    SGD([a, b], lr=0.1).zero_grad()
    assert not a.grad.any() and not b.grad.any()


def test_make_optimizer_builds_by_name_with_keywords():
    p = Parameter(np.zeros(2))
    opt = make_optimizer("sgd", [p], lr=0.05, momentum=0.9)
    assert type(opt) is SGD and opt.lr == 0.05 and opt.momentum == 0.9
    assert type(make_optimizer("adam", [p], lr=1e-3)) is Adam
    assert type(make_optimizer("adamw", [p], lr=1e-3)) is AdamW


# --- parity with torch.optim --------------------------------------------------------------------

# (id, our class, keyword arguments shared by both, torch-only keyword arguments). Weight decay goes
# to the weight's param group only on the torch side, since our biases have decay=False.
TORCH_CASES = [
    ("sgd", SGD, {"lr": 0.1, "weight_decay": 0.0}, {}),
    ("sgd_momentum", SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}, {}),
    ("sgd_nesterov_wd", SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05}, {}),
    ("sgd_wd", SGD, {"lr": 0.1, "weight_decay": 0.05}, {}),
    ("adam", Adam, {"lr": 0.01, "weight_decay": 0.0}, {"foreach": False}),
    ("adam_wd", Adam, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}, {"foreach": False}),
    ("adamw", AdamW, {"lr": 0.01, "weight_decay": 0.1}, {"foreach": False}),
]


@pytest.mark.torch
@pytest.mark.parametrize(
    ("cls", "kwargs", "torch_kwargs"), [c[1:] for c in TORCH_CASES], ids=[c[0] for c in TORCH_CASES]
)
def test_five_steps_match_torch_optim(cls, kwargs, torch_kwargs, rng):
    torch = pytest.importorskip("torch")
    w0, b0 = rng.standard_normal((3, 2)), rng.standard_normal(2)
    grads = [(rng.standard_normal((3, 2)), rng.standard_normal(2)) for _ in range(5)]

    weight, bias = Parameter(w0.copy()), Parameter(b0.copy(), decay=False)
    ours = cls([weight, bias], **kwargs)

    tw = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    shared = {k: v for k, v in kwargs.items() if k != "weight_decay"}
    groups = [{"params": [tw], "weight_decay": kwargs["weight_decay"]}, {"params": [tb], "weight_decay": 0.0}]
    theirs = getattr(torch.optim, cls.__name__)(groups, **shared, **torch_kwargs)

    for gw, gb in grads:
        weight.grad[...], bias.grad[...] = gw, gb
        ours.step()
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        theirs.step()
    np.testing.assert_allclose(weight.data, tw.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg="weight")
    np.testing.assert_allclose(bias.data, tb.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg="bias")


# --- state_dict / load_state_dict ---------------------------------------------------------------

STATEFUL = [
    pytest.param(lambda ps: SGD(ps, lr=0.1), id="sgd"),
    pytest.param(
        lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), id="sgd_nesterov"
    ),
    pytest.param(lambda ps: Adam(ps, lr=0.01, weight_decay=0.01), id="adam"),
    pytest.param(lambda ps: AdamW(ps, lr=0.01), id="adamw"),
]


@pytest.mark.parametrize("make", STATEFUL)
def test_state_dict_round_trip_resumes_identically(make, rng):
    w0, b0 = rng.standard_normal((3, 2)), rng.standard_normal(2)
    grads = [(rng.standard_normal((3, 2)), rng.standard_normal(2)) for _ in range(6)]

    # Run A straight through 6 steps.
    wa, ba = Parameter(w0.copy()), Parameter(b0.copy(), decay=False)
    opt_a = make([wa, ba])
    for step, (gw, gb) in enumerate(grads):
        wa.grad[...], ba.grad[...] = gw, gb
        opt_a.step()
        if step == 2:
            # A checkpoint after 3 steps, deep-copied as writing it to disk would.
            checkpoint = copy.deepcopy({"w": wa.data, "b": ba.data, "opt": opt_a.state_dict()})

    # Run B: fresh parameters and optimizer, restored from the checkpoint, then the last 3 steps.
    wb, bb = Parameter(checkpoint["w"].copy()), Parameter(checkpoint["b"].copy(), decay=False)
    opt_b = make([wb, bb])
    opt_b.lr = 123.0  # overwritten by the restore
    opt_b.load_state_dict(checkpoint["opt"])
    assert opt_b.lr == opt_a.lr and opt_b.step_count == 3
    for gw, gb in grads[3:]:
        wb.grad[...], bb.grad[...] = gw, gb
        opt_b.step()

    assert opt_b.step_count == opt_a.step_count == 6
    np.testing.assert_array_equal(wb.data, wa.data)
    np.testing.assert_array_equal(bb.data, ba.data)
    for key, value in opt_a.state_arrays().items():
        np.testing.assert_array_equal(opt_b.state_arrays()[key], value, err_msg=key)


@pytest.mark.parametrize("make", STATEFUL[1:])
def test_resuming_without_the_state_does_not_match(make, rng):
    # The control for the test above: the buffers and step count matter, so dropping them shows.
    w0 = rng.standard_normal(3)
    grads = [rng.standard_normal(3) for _ in range(4)]
    wa = Parameter(w0.copy())
    opt_a = make([wa])
    for g in grads[:2]:
        wa.grad[...] = g
        opt_a.step()
    wb = Parameter(wa.data.copy())
    opt_b = make([wb])  # fresh state: no buffers, step 0
    for g in grads[2:]:
        wa.grad[...], wb.grad[...] = g, g
        opt_a.step()
        opt_b.step()
    assert not np.allclose(wa.data, wb.data)


def test_state_dict_contents():
    p = Parameter(np.zeros(2))
    opt = Adam([p], lr=0.01)
    p.grad[...] = 1.0
    opt.step()
    state = opt.state_dict()
    assert state["lr"] == 0.01 and state["step_count"] == 1
    assert sorted(state["arrays"]) == ["0.exp_avg", "0.exp_avg_sq"]
    np.testing.assert_allclose(state["arrays"]["0.exp_avg"], [0.1, 0.1], rtol=1e-15)  # (1 − β1) g
    np.testing.assert_allclose(state["arrays"]["0.exp_avg_sq"], [0.001, 0.001], rtol=1e-12)  # (1 − β2) g²
    assert sorted(SGD([p], lr=0.1, momentum=0.5).state_dict()["arrays"]) == ["0.momentum_buffer"]
    assert SGD([p], lr=0.1).state_dict()["arrays"] == {}


def test_state_dict_is_a_snapshot_that_later_steps_do_not_change():
    # Sequential.state_dict returns copies; the optimizer's must too, or an in-memory checkpoint
    # (e.g. "keep the best state") ends up with step_count and lr from step 1 but buffers from later.
    live = []
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps), lambda ps: AdamW(ps)):
        p = Parameter(np.zeros(2))
        opt = make([p])
        p.grad[...] = 1.0
        opt.step()
        state = opt.state_dict()
        frozen = {k: v.copy() for k, v in state["arrays"].items()}
        p.grad[...] = -3.0
        opt.step()
        live += [
            f"{type(opt).__name__}:{k}" for k in frozen if not np.array_equal(state["arrays"][k], frozen[k])
        ]
    assert not live, (
        f"ENGINE BUG: Optimizer.state_dict() returns live buffers {live}: a later step changed them "
        "while the snapshot's step_count stayed 1"
    )


def test_load_state_dict_with_other_buffers_is_rejected():
    sgd_state = SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9).state_dict()
    adam = Adam([Parameter(np.zeros(2))])
    msg = "optimizer state has buffers ['0.momentum_buffer'], expected ['0.exp_avg', '0.exp_avg_sq']"
    with pytest.raises(ValueError, match=re.escape(msg)):
        adam.load_state_dict(sgd_state)


def test_load_state_dict_with_a_wrong_buffer_shape_is_rejected():
    state = SGD([Parameter(np.zeros(3))], lr=0.1, momentum=0.9).state_dict()
    opt = SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9)
    with pytest.raises(
        ValueError, match=re.escape("optimizer buffer 0.momentum_buffer: checkpoint shape (3,), model (2,)")
    ):
        opt.load_state_dict(state)


def test_load_state_dict_arrays_must_be_a_mapping():
    opt = SGD([Parameter(np.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="optimizer state 'arrays' must be a mapping, got list"):
        opt.load_state_dict({"lr": 0.1, "step_count": 0, "arrays": []})


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_lr_must_be_positive(cls):
    with pytest.raises(ValueError, match="lr must be a positive float, got 0"):
        cls([Parameter(np.zeros(1))], lr=0)
    with pytest.raises(ValueError, match=re.escape("lr must be a positive float, got -0.1")):
        cls([Parameter(np.zeros(1))], lr=-0.1)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_negative_weight_decay_is_rejected(cls):
    with pytest.raises(ValueError, match=re.escape("weight_decay must be a non-negative float, got -0.01")):
        cls([Parameter(np.zeros(1))], lr=0.1, weight_decay=-0.01)


def test_nesterov_without_momentum_is_rejected():
    with pytest.raises(ValueError, match="nesterov momentum needs momentum > 0, got momentum=0"):
        SGD([Parameter(np.zeros(1))], lr=0.1, nesterov=True)


def test_momentum_of_one_is_rejected():
    with pytest.raises(ValueError, match=re.escape("momentum must be a float in [0, 1), got 1.0")):
        SGD([Parameter(np.zeros(1))], lr=0.1, momentum=1.0)


def test_adam_beta_of_one_is_rejected():
    with pytest.raises(ValueError, match=re.escape("betas[1] must be a float in [0, 1), got 1.0")):
        Adam([Parameter(np.zeros(1))], betas=(0.9, 1.0))


def test_adam_eps_must_be_positive():
    with pytest.raises(ValueError, match=re.escape("eps must be a positive float, got 0.0")):
        Adam([Parameter(np.zeros(1))], eps=0.0)


def test_empty_parameter_list_is_rejected():
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        SGD([], lr=0.1)


def test_make_optimizer_unknown_name_lists_the_valid_names():
    assert sorted(OPTIMIZERS) == ["adam", "adamw", "sgd"]
    msg = "optimizer must be one of ['adam', 'adamw', 'sgd'], got 'rmsprop'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        make_optimizer("rmsprop", [Parameter(np.zeros(1))], lr=0.1)
