"""mlpkit.blocks.Dropout: inverted dropout with the CPU mask drawn by NumPy from a seed torch draws."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mlpkit.blocks.dropout import Dropout, keep_mask, relu_dropout_

pytestmark = pytest.mark.torch


def test_each_element_is_kept_with_probability_one_minus_p_and_scaled_to_keep_the_mean() -> None:
    torch.manual_seed(0)
    p, n = 0.4, 1_000_000
    y = Dropout(p)(torch.ones(1, n))                                       # (1, N), batch of one
    assert y.shape == (1, n)
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / (1 - p))]
    kept = (y != 0).double().mean().item()
    # Binomial(N, 1 - p): 5 standard deviations of the kept share.
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    assert y.double().mean().item() == pytest.approx(1.0, abs=5 * math.sqrt(p / (1 - p) / n))


def test_the_gradient_is_the_mask_the_forward_pass_applied() -> None:
    torch.manual_seed(1)
    x = torch.randn(5, 7, requires_grad=True)
    y = Dropout(0.3)(x)
    y.sum().backward()
    mask = torch.where(y != 0, 1 / 0.7, 0.0)                               # (5, 7)
    torch.testing.assert_close(y, x.detach() * mask)
    torch.testing.assert_close(x.grad, mask)


def test_a_seed_gives_the_same_mask_and_evaluation_is_the_identity() -> None:
    x = torch.randn(3, 11)
    drop = Dropout(0.5)
    torch.manual_seed(7)
    first = drop(x)
    torch.manual_seed(7)
    assert torch.equal(drop(x), first)
    assert torch.equal(drop.eval()(x), x)


def test_the_mask_follows_torchs_generator_state_as_a_checkpoint_restores_it() -> None:
    torch.manual_seed(3)
    torch.rand(5)                                                          # somewhere in the stream
    state = torch.get_rng_state()
    first, second = keep_mask((4, 6), 0.5), keep_mask((4, 6), 0.5)
    assert not torch.equal(first, second)                                  # each call draws a new seed
    torch.set_rng_state(state)
    assert torch.equal(keep_mask((4, 6), 0.5), first)
    assert torch.equal(keep_mask((4, 6), 0.5), second)


def test_neighbouring_elements_are_independent() -> None:
    # Two elements share each 64-bit word of the generator: their keep indicators must not correlate.
    torch.manual_seed(4)
    n = 1_000_000
    kept = (keep_mask((n,), 0.5) != 0).double().reshape(-1, 2)             # (N/2, 2): word halves
    correlation = torch.corrcoef(kept.T)[0, 1].item()
    assert abs(correlation) < 5 / math.sqrt(n / 2)
    # And an odd count still gets one word per element.
    assert keep_mask((1, 7), 0.5).shape == (1, 7)


@pytest.mark.parametrize("shape", [(1, 9), (5, 9)])
def test_relu_dropout_in_place_equals_relu_then_dropout_with_their_gradient(shape: tuple[int, int]) -> None:
    x = torch.randn(shape)
    x[0, :3] = torch.tensor([0.0, -0.0, 1e-30])                            # ReLU's edge at zero
    upstream = torch.randn(shape)

    torch.manual_seed(5)
    a = x.clone().requires_grad_()
    expected = Dropout(0.3)(torch.relu(a))
    expected.backward(upstream)

    torch.manual_seed(5)
    b = x.clone().requires_grad_()
    h = b * 1.0                                                             # a layer's fresh output
    out = relu_dropout_(h, 0.3)
    assert out.data_ptr() == h.data_ptr()                                   # written over its input
    out.backward(upstream)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0)


def test_p_zero_is_the_identity_p_one_zeroes_and_the_dtype_is_kept() -> None:
    x = torch.randn(2, 3)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    assert Dropout(0.5)(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_it_is_an_nn_dropout_to_code_that_inspects_modules() -> None:
    drop = Dropout(0.25)
    assert isinstance(drop, nn.Dropout) and drop.p == 0.25 and repr(drop) == repr(nn.Dropout(0.25))
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        Dropout(1.5)
