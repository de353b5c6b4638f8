"""The Vision Transformer: shapes at B = 1 and 5, what the head reads, the patch embedding and the
depth-0 reduction against formulas written out here, its MLP blocks, and its error messages."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mlpkit.blocks import MLP
from mlpkit.models.vit import ViT, sincos_position_embedding

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)


def small_vit(**kwargs: object) -> ViT:
    settings: dict[str, object] = {
        "image_size": 28, "patch_size": 7, "num_classes": 10, "dim": 16, "depth": 2, "heads": 2,
        "mlp_dim": 32, "dim_head": 8,
    }
    settings.update(kwargs)
    torch.manual_seed(0)
    return ViT(**settings).double().eval()  # type: ignore[arg-type]


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_output_shape_for_flat_rows_and_images(batch_size: int, pool: str) -> None:
    vit = small_vit(pool=pool)
    torch.manual_seed(1)
    images = torch.rand(batch_size, 1, 28, 28, dtype=torch.float64)          # (B, C, H, W)
    logits = vit(images)
    assert logits.shape == (batch_size, 10)
    # The image task feeds row-major flattened pixels (B, H*W) for one channel: the same images.
    torch.testing.assert_close(vit(images.reshape(batch_size, 784)), logits, rtol=0, atol=0)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_flat_rows_of_several_channels_are_height_width_channel(batch_size: int) -> None:
    vit = small_vit(image_size=(8, 12), patch_size=4, channels=3)
    torch.manual_seed(1)
    hwc = torch.rand(batch_size, 8, 12, 3, dtype=torch.float64)              # (B, H, W, C)
    logits = vit(hwc.reshape(batch_size, -1))
    assert logits.shape == (batch_size, 10)
    torch.testing.assert_close(logits, vit(hwc.permute(0, 3, 1, 2)), rtol=0, atol=0)


def test_the_head_reads_the_class_token() -> None:
    vit = small_vit(pool="cls")
    torch.manual_seed(1)
    x = torch.rand(3, 784, dtype=torch.float64)
    z = vit.embed(x)
    for block in vit.blocks:
        z = block(z)                                                         # (B, N + 1, D)
    # The formula: logits = head(LN(z_L[:, 0])).
    torch.testing.assert_close(vit(x), vit.head(vit.norm(z[:, 0])))

    def perturb(token: slice) -> torch.Tensor:
        def hook(module: nn.Module, args: object, out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            out[:, token] += torch.arange(16.0, dtype=out.dtype)   # not a constant, which LayerNorm removes
            return out

        handle = vit.blocks[-1].register_forward_hook(hook)
        try:
            return vit(x)
        finally:
            handle.remove()

    # Changing every patch token's final output leaves the logits alone; changing the class token does not.
    torch.testing.assert_close(perturb(slice(1, None)), vit(x), rtol=0, atol=0)
    assert not torch.allclose(perturb(slice(0, 1)), vit(x))


@pytest.mark.parametrize("batch_size", [1, 5])
def test_patch_embedding_is_reshape_then_linear(batch_size: int) -> None:
    vit = small_vit(image_size=(8, 12), patch_size=(2, 4), channels=3)
    torch.manual_seed(1)
    images = torch.rand(batch_size, 3, 8, 12, dtype=torch.float64)          # (B, C, H, W)
    # Explicit loops: patch (i, j) holds rows 2i..2i+1, columns 4j..4j+3, values in (row, col, channel) order.
    expected = torch.stack(
        [
            images[:, :, 2 * i : 2 * i + 2, 4 * j : 4 * j + 4].permute(0, 2, 3, 1).reshape(batch_size, -1)
            for i in range(4)
            for j in range(3)
        ],
        dim=1,
    )                                                                        # (B, 12, 24)
    torch.testing.assert_close(vit.patches(images), expected, rtol=0, atol=0)
    e, b = vit.patch_embedding.weight, vit.patch_embedding.bias
    tokens = vit.embed(images)                                               # (B, 13, D)
    torch.testing.assert_close(tokens[:, 1:], expected @ e.T + b + vit.pos_embedding[:, 1:])
    cls = (vit.cls_token + vit.pos_embedding[:, :1])[:, 0]                   # (1, D)
    torch.testing.assert_close(tokens[:, 0], cls.expand(batch_size, -1))


@pytest.mark.parametrize("batch_size", [1, 5])
def test_depth_zero_mean_pool_is_a_linear_model_of_mean_patch_embeddings(batch_size: int) -> None:
    vit = small_vit(depth=0, pool="mean")
    torch.manual_seed(1)
    x = torch.rand(batch_size, 784, dtype=torch.float64)
    patches = x.reshape(batch_size, 4, 7, 4, 7).permute(0, 1, 3, 2, 4).reshape(batch_size, 16, 49)
    e, b = vit.patch_embedding.weight, vit.patch_embedding.bias
    # No block: the head sees LN(mean_n(x_n E + b + p_n)) = LN(mean_n(x_n) E + b + mean_n(p_n)).
    mean_embedding = patches.mean(dim=1) @ e.T + b + vit.pos_embedding[0, 1:].mean(dim=0)     # (B, D)
    normed = F.layer_norm(mean_embedding, (16,), vit.norm.weight, vit.norm.bias, vit.norm.eps)
    torch.testing.assert_close(vit(x), normed @ vit.head.weight.T + vit.head.bias)


def test_sincos_codes_are_the_written_out_sines_and_cosines() -> None:
    # D = 8: D/4 = 2 frequencies ω = T^(-k / (D/4 - 1)) for k = 0, 1, i.e. 1 and 1/T.
    codes = sincos_position_embedding((2, 3), 8, temperature=100.0)          # (6, 8)
    assert codes.shape == (6, 8)
    for i in range(2):
        for j in range(3):
            expected = [math.sin(j), math.sin(j / 100), math.cos(j), math.cos(j / 100),
                        math.sin(i), math.sin(i / 100), math.cos(i), math.cos(i / 100)]
            torch.testing.assert_close(codes[3 * i + j], torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("batch_size", [1, 5])
def test_sincos_positions_are_fixed_and_the_class_token_gets_none(batch_size: int) -> None:
    vit = small_vit(pos_embedding="sincos")
    names = {name for name, _ in vit.named_parameters()}
    assert "pos_embedding" not in names and "pos_embedding" not in vit.state_dict()
    torch.manual_seed(1)
    x = torch.rand(batch_size, 784, dtype=torch.float64)
    tokens = vit.embed(x)                                                    # (B, 17, D)
    e, b = vit.patch_embedding.weight, vit.patch_embedding.bias
    codes = sincos_position_embedding((4, 4), 16).double()                   # (16, D)
    torch.testing.assert_close(tokens[:, 1:], vit.patches(x) @ e.T + b + codes)
    torch.testing.assert_close(tokens[:, 0], vit.cls_token[0].expand(batch_size, -1))


@pytest.mark.parametrize("batch_size", [1, 5])
def test_patch_norm_normalizes_each_patch_and_each_token(batch_size: int) -> None:
    vit = small_vit(patch_norm=True)
    torch.manual_seed(1)
    for norm in (vit.patch_norm, vit.token_norm):      # not the identity affine, so it is checked
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    x = torch.rand(batch_size, 784, dtype=torch.float64)
    p = vit.patches(x)                                                       # (B, 16, 49)
    p = (p - p.mean(-1, keepdim=True)) / (p.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    normed = p * vit.patch_norm.weight + vit.patch_norm.bias
    t = normed @ vit.patch_embedding.weight.T + vit.patch_embedding.bias
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    t = t * vit.token_norm.weight + vit.token_norm.bias                      # (B, 16, D)
    torch.testing.assert_close(vit.embed(x)[:, 1:], t + vit.pos_embedding[:, 1:])


def test_linear_weights_start_xavier_uniform_and_biases_zero() -> None:
    vit = small_vit(dim=64, depth=2, heads=4, dim_head=16, mlp_dim=128)
    linears = [m for m in vit.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 + 2 * 4 + 1                     # patch embedding, 4 per block, head
    for linear in linears:
        fan_out, fan_in = linear.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))            # Glorot & Bengio's U(-a, a)
        w = linear.weight
        assert w.abs().max() <= bound and w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert linear.bias is None or not linear.bias.any()
    assert not vit.cls_token.any() and vit.pos_embedding.std().item() == pytest.approx(0.02, rel=0.1)


def test_every_mlp_block_is_mlpkits_mlp() -> None:
    vit = small_vit(depth=3, mlp_dim=24, dropout=0.1)
    assert len(vit.mlps) == 3
    for mlp in vit.mlps:
        assert type(mlp) is MLP
        assert (mlp.in_features, mlp.hidden_features, mlp.out_features) == (16, (24,), 16)
        assert isinstance(mlp[1], nn.GELU) and isinstance(mlp[2], nn.Dropout) and mlp[2].p == 0.1
    assert vit.arguments["depth"] == 3 and ViT(**vit.arguments).arguments == vit.arguments


def test_identity_mlp_leaves_the_attention_residual() -> None:
    vit = small_vit(depth=1)
    torch.manual_seed(1)
    x = torch.rand(2, 784, dtype=torch.float64)
    vit.blocks[0].mlp = nn.Identity()
    z = vit.embed(x)
    z = z + vit.blocks[0].attention(z)                     # the block without its MLP branch
    torch.testing.assert_close(vit(x), vit.head(vit.norm(z[:, 0])))


def test_every_parameter_gets_a_finite_grad() -> None:
    vit = small_vit(pool="cls").train()
    torch.manual_seed(1)
    vit(torch.rand(4, 784, dtype=torch.float64)).logsumexp(dim=1).sum().backward()
    for name, p in vit.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no usable gradient for {name}"


def test_attention_matches_the_written_out_softmax() -> None:
    vit = small_vit(depth=1, heads=2, dim_head=8)
    att = vit.blocks[0].attention
    torch.manual_seed(1)
    z = torch.randn(1, 5, 16, dtype=torch.float64)                           # (B, T, D)
    q, k, v = att.qkv(att.norm(z)).split(16, dim=-1)                         # each (B, T, h*d)
    heads = []
    for i in range(2):
        s = slice(8 * i, 8 * i + 8)
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 8**0.5, dim=-1)    # (B, T, T)
        heads.append(weights @ v[..., s])
    torch.testing.assert_close(att(z), att.out(torch.cat(heads, dim=-1)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": 5}, "image_size 28x28 must be divisible by patch_size 5x5, got a remainder of 3x3"),
        ({"image_size": (28, 30), "patch_size": 7}, "image_size 28x30 must be divisible by patch_size 7x7"),
        ({"dim": 18, "heads": 4, "dim_head": None},
         "dim must be divisible by heads when dim_head is not given, got dim=18 with heads=4"),
        ({"pool": "max"}, "pool must be one of \\['cls', 'mean'\\], got 'max'"),
        ({"pos_embedding": "rope"}, "pos_embedding must be one of \\['learned', 'sincos'\\], got 'rope'"),
        ({"pos_embedding": "sincos", "dim": 18, "heads": 2, "dim_head": 9},
         "pos_embedding 'sincos' needs dim divisible by 4 .*got dim=18"),
        ({"patch_norm": 1}, "patch_norm must be true or false, got 1"),
        ({"depth": -1}, "depth must be a non-negative int, got -1"),
        ({"patch_size": 0}, "patch_size must be a positive int, got 0"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_vit(**kwargs)


def test_bad_input_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"ViT expects images of shape \(B, 1, 28, 28\) or flattened rows "
                                         r"\(B, 784\), got \(2, 783\)"):
        small_vit()(torch.rand(2, 783, dtype=torch.float64))
