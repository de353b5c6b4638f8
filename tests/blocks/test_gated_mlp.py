"""GatedMLP, LLaMA's feed-forward: the formula, Hugging Face's keys, both layouts, ``pretraining_tp``,
parity with ``transformers``' own ``LlamaMLP``, checkpoints, and the error messages."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from mlpkit.blocks import GatedMLP, load_llama_mlp, read_llama_mlp
from mlpkit.blocks.dropout import Dropout
from mlpkit.blocks.mlp import pack_gate_up, split_gate_up
from mlpkit.errors import CheckpointError

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

LAYOUTS = ("split", "packed")
ACTIVATIONS = {
    "silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "relu": F.relu
}


def weights(mlp: GatedMLP) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in mlp.hf_tensors().items()}


def formula(w: dict[str, torch.Tensor], x: torch.Tensor, act=F.silu) -> torch.Tensor:
    """down(act(gate x) * up x), written out with matmuls in Hugging Face's (out, in) shapes."""
    gate = x @ w["gate_proj.weight"].T + w.get("gate_proj.bias", 0)
    up = x @ w["up_proj.weight"].T + w.get("up_proj.bias", 0)
    return (act(gate) * up) @ w["down_proj.weight"].T + w.get("down_proj.bias", 0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 8), (4, 8), (1, 1, 8), (2, 5, 8)])  # (B, D) and (B, T, D), B = 1 too
def test_both_layouts_compute_the_formula_on_any_leading_shape(layout, bias, shape):
    torch.manual_seed(0)
    mlp = GatedMLP(8, 12, 6, bias=bias, layout=layout)
    x = torch.randn(shape)
    out = mlp(x)
    assert out.shape == (*shape[:-1], 6)
    torch.testing.assert_close(out, formula(weights(mlp), x))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_worked_example_the_gate_is_the_first_half_of_gate_up_proj(layout):
    # D = I = O = 1: gate 2, up 3, down 0.5, x = 1 -> 0.5 * silu(2 * 1) * (3 * 1) = 1.5 * 2 / (1 + e^-2).
    mlp = GatedMLP(1, 1, layout=layout)
    down = torch.tensor([[0.5]])
    mlp.load_state_dict({"gate_up_proj.weight": torch.tensor([[2.0], [3.0]]), "down_proj.weight": down})
    expected = 1.5 * 2 / (1 + math.exp(-2))
    assert mlp(torch.ones(1, 1)).item() == pytest.approx(expected, rel=1e-6)
    w = mlp.hf_tensors()
    assert w["gate_proj.weight"].item() == 2.0 and w["up_proj.weight"].item() == 3.0
    # With the halves swapped the value differs: 0.5 * silu(3) * 2.
    mlp.load_state_dict({"gate_up_proj.weight": torch.tensor([[3.0], [2.0]]), "down_proj.weight": down})
    assert mlp(torch.ones(1, 1)).item() == pytest.approx(3 / (1 + math.exp(-3)), rel=1e-6)


@pytest.mark.parametrize(("layout", "bias", "keys"), [
    ("split", False, {"gate_proj.weight": (12, 8), "up_proj.weight": (12, 8), "down_proj.weight": (6, 12)}),
    ("split", True, {"gate_proj.weight": (12, 8), "gate_proj.bias": (12,), "up_proj.weight": (12, 8),
                     "up_proj.bias": (12,), "down_proj.weight": (6, 12), "down_proj.bias": (6,)}),
    ("packed", False, {"gate_up_proj.weight": (24, 8), "down_proj.weight": (6, 12)}),
    ("packed", True, {"gate_up_proj.weight": (24, 8), "gate_up_proj.bias": (24,), "down_proj.weight": (6, 12),
                      "down_proj.bias": (6,)}),
])
def test_state_dict_keys_and_shapes_are_hugging_faces(layout, bias, keys):
    state = GatedMLP(8, 12, 6, bias=bias, layout=layout).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == keys
    assert list(state) == list(keys)  # in LlamaMLP's order
    assert all(v.is_contiguous() for v in state.values())  # safetensors writes only contiguous tensors


def test_the_packed_layout_is_stored_transposed_in_memory():
    mlp = GatedMLP(8, 12, 6, bias=True, layout="packed")
    assert {n: tuple(p.shape) for n, p in mlp.named_parameters()} == {
        "gate_up_weight": (8, 24), "gate_up_bias": (24,), "down_weight": (12, 6), "down_bias": (6,)}
    state = mlp.state_dict()
    assert torch.equal(state["gate_up_proj.weight"], mlp.gate_up_weight.T)
    assert torch.equal(state["down_proj.weight"], mlp.down_weight.T)


@pytest.mark.parametrize("bias", [False, True])
def test_layout_conversion_is_lossless_both_ways(bias):
    torch.manual_seed(0)
    split = GatedMLP(8, 12, bias=bias, act_layer="gelu_tanh")
    packed = split.to_layout("packed")
    back = packed.to_layout("split")
    assert packed.layout == "packed" and back.layout == "split" and type(back.act_fn) is type(split.act_fn)
    for key, value in split.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key  # bit for bit
    assert torch.equal(packed.state_dict()["gate_up_proj.weight"],
                       torch.cat([split.gate_proj.weight, split.up_proj.weight]).detach())
    x = torch.randn(3, 8)
    torch.testing.assert_close(packed(x), split(x))
    # The state-dict functions are each other's inverse, and leave other keys alone.
    state = {f"m.{k}": v for k, v in split.state_dict().items()} | {"other": torch.ones(1)}
    packed_state = pack_gate_up(state, "m.")
    assert sorted(packed_state) == (["m.down_proj.weight", "m.gate_up_proj.weight", "other"] if not bias else
                                    ["m.down_proj.bias", "m.down_proj.weight", "m.gate_up_proj.bias",
                                     "m.gate_up_proj.weight", "other"])
    assert all(torch.equal(split_gate_up(packed_state, "m.")[k], v) for k, v in state.items())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("source", LAYOUTS)
def test_either_layouts_keys_load_into_either_layout(layout, source):
    torch.manual_seed(0)
    original = GatedMLP(8, 12, bias=True, layout=source)
    mlp = GatedMLP(8, 12, bias=True, layout=layout)
    mlp.load_state_dict(original.state_dict())
    for key, value in original.hf_tensors().items():
        assert torch.equal(mlp.hf_tensors()[key], value), key


def test_a_packed_mlp_inside_a_model_saves_and_loads_under_its_prefix():
    torch.manual_seed(0)
    model = nn.ModuleDict({"norm": nn.LayerNorm(8), "mlp": GatedMLP(8, 12, layout="packed")})
    state = model.state_dict()
    assert list(state) == ["norm.weight", "norm.bias", "mlp.gate_up_proj.weight", "mlp.down_proj.weight"]
    twin = nn.ModuleDict({"norm": nn.LayerNorm(8), "mlp": GatedMLP(8, 12, layout="split")})
    twin.load_state_dict(state)
    x = torch.randn(2, 8)
    torch.testing.assert_close(twin["mlp"](twin["norm"](x)), model["mlp"](model["norm"](x)))
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "mlp.extra.weight"'):
        model.load_state_dict(state | {"mlp.extra.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "mlp.down_proj.weight"'):
        model.load_state_dict({k: v for k, v in state.items() if k != "mlp.down_proj.weight"})


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_parameters_get_the_gradient_of_the_formula(layout):
    torch.manual_seed(0)
    mlp = GatedMLP(5, 7, 3, bias=True, layout=layout)
    w = {k: v.detach().clone().requires_grad_() for k, v in mlp.hf_tensors().items()}
    x = torch.randn(4, 5)
    mlp(x).square().sum().backward()
    formula(w, x).square().sum().backward()
    for key, view in mlp.hf_tensors().items():  # the views of each layout's parameters
        name = key.replace(".weight", "").replace(".bias", "")
        if layout == "split":
            grad = getattr(getattr(mlp, name), key.rsplit(".", 1)[1]).grad
        else:
            grad = {"gate_proj.weight": lambda: mlp.gate_up_weight.grad[:, :7].T,
                    "up_proj.weight": lambda: mlp.gate_up_weight.grad[:, 7:].T,
                    "down_proj.weight": lambda: mlp.down_weight.grad.T,
                    "gate_proj.bias": lambda: mlp.gate_up_bias.grad[:7],
                    "up_proj.bias": lambda: mlp.gate_up_bias.grad[7:],
                    "down_proj.bias": lambda: mlp.down_bias.grad}[key]()
        assert view.shape == grad.shape
        torch.testing.assert_close(grad, w[key].grad, msg=key)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tp_slices", [1, 3])
def test_gradcheck_in_float64(layout, tp_slices):
    torch.manual_seed(0)
    mlp = GatedMLP(3, 6, 2, bias=True, layout=layout).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mlp(t, tp_slices=tp_slices), (x,))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_by_name(name):
    torch.manual_seed(0)
    mlp = GatedMLP(4, 6, act_layer=name, layout="packed")
    x = torch.randn(3, 4) * 2
    torch.testing.assert_close(mlp(x), formula(weights(mlp), x, ACTIVATIONS[name]))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dropout_drops_the_gated_product_in_training_only(layout):
    torch.manual_seed(0)
    mlp = GatedMLP(4, 64, 2, dropout=0.5, layout=layout)
    x = torch.randn(3, 4)
    mlp.eval()
    torch.testing.assert_close(mlp(x), formula(weights(mlp), x))
    mlp.train()
    torch.manual_seed(1)
    out = mlp(x)
    torch.manual_seed(1)
    mask = Dropout(0.5)(torch.ones(3, 64))  # the same draw: (I,)-wide mask scaled by 1/(1-p)
    w = weights(mlp)
    h = F.silu(x @ w["gate_proj.weight"].T) * (x @ w["up_proj.weight"].T) * mask
    torch.testing.assert_close(out, h @ w["down_proj.weight"].T)


# -- pretraining_tp --------------------------------------------------------------------------


def pretraining_tp_reference(w: dict[str, torch.Tensor], x: torch.Tensor, k: int) -> torch.Tensor:
    """Hugging Face's ``LlamaMLP`` branch for ``pretraining_tp = k`` (transformers 4.x), restated:
    biases are not used, the hidden states are cut along dim 2, and the k down products are summed
    with Python's ``sum`` (0 + p_0 + p_1 + ...)."""
    step = w["gate_proj.weight"].shape[0] // k
    gates = w["gate_proj.weight"].split(step, dim=0)
    ups = w["up_proj.weight"].split(step, dim=0)
    downs = w["down_proj.weight"].split(step, dim=1)
    gate = torch.cat([F.linear(x, gates[j]) for j in range(k)], dim=-1)
    up = torch.cat([F.linear(x, ups[j]) for j in range(k)], dim=-1)
    pieces = (F.silu(gate) * up).split(step, dim=2)
    return sum(F.linear(pieces[j], downs[j]) for j in range(k))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", [2, 3, 4, 12])
def test_tp_slices_is_the_pretraining_tp_computation_and_equals_the_unsliced_one(layout, k):
    torch.manual_seed(0)
    mlp = GatedMLP(8, 12, layout=layout)
    x = torch.randn(2, 5, 8, requires_grad=True)
    sliced = mlp(x, tp_slices=k)
    if layout == "split":  # the same operations on the same tensors: the same bits
        assert torch.equal(sliced, pretraining_tp_reference(mlp.hf_tensors(), x, k))
    torch.testing.assert_close(sliced, pretraining_tp_reference(mlp.hf_tensors(), x, k))
    torch.testing.assert_close(sliced, mlp(x))
    (grad_sliced,) = torch.autograd.grad(sliced.sum(), x)
    (grad_plain,) = torch.autograd.grad(mlp(x).sum(), x)
    torch.testing.assert_close(grad_sliced, grad_plain)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tp_slices_applies_every_bias_once(layout):
    # The reference branch drops the biases; with them, slicing must still equal the unsliced result.
    torch.manual_seed(0)
    mlp = GatedMLP(8, 12, bias=True, layout=layout)
    with torch.no_grad():
        for name, t in mlp.hf_tensors().items():
            if name.endswith("bias"):
                t.add_(1.0)  # biases far from zero, so that dropping or repeating one shows
    x = torch.randn(1, 3, 8)
    for k in (2, 3, 4):
        torch.testing.assert_close(mlp(x, tp_slices=k), formula(weights(mlp), x))
    assert not torch.allclose(pretraining_tp_reference(mlp.hf_tensors(), x, 3), mlp(x), atol=1e-2)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tp_slices_that_do_not_divide_the_width_are_an_error(layout):
    mlp = GatedMLP(8, 10, layout=layout)
    message = (r"tp_slices 4 must divide hidden_features 10: Hugging Face's pretraining_tp code cuts I into "
               r"4 slices of I // 4 = 2 and would silently drop the last 2 hidden unit\(s\)")
    with pytest.raises(ValueError, match=message):
        mlp(torch.randn(1, 8), tp_slices=4)
    with pytest.raises(ValueError, match="tp_slices must be a positive int, got 0"):
        mlp(torch.randn(1, 8), tp_slices=0)


# -- parity with transformers' LlamaMLP ------------------------------------------------------

HF_ACTS = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}


def llama_mlp(hidden: int, intermediate: int, *, bias: bool, act: str = "silu"):
    transformers = pytest.importorskip("transformers")  # the dev extra installs it
    from transformers.models.llama.modeling_llama import LlamaMLP

    config = transformers.LlamaConfig(  # tiny: built here, nothing downloaded
        hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=2, num_key_value_heads=2,
        num_hidden_layers=1, vocab_size=16, hidden_act=HF_ACTS[act], mlp_bias=bias,
    )
    return LlamaMLP(config)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("intermediate", [12, 10])  # 12: a multiple of the tp degrees below; 10: not of 4
@pytest.mark.parametrize("act", list(HF_ACTS))
def test_same_output_and_input_gradient_as_transformers_llama_mlp(layout, bias, intermediate, act):
    torch.manual_seed(0)
    reference = llama_mlp(8, intermediate, bias=bias, act=act)
    mlp = GatedMLP(8, intermediate, act_layer=act, bias=bias, layout=layout)
    mlp.load_state_dict(reference.state_dict())  # Hugging Face's keys, unchanged
    x = torch.randn(2, 5, 8, requires_grad=True)  # (batch, sequence, hidden)
    expected = reference(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    slicings = [1, 2] + ([4] if intermediate % 4 == 0 else [])
    for k in slicings:
        out = mlp(x, tp_slices=k)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        torch.testing.assert_close(out, expected, rtol=1.3e-6, atol=1e-5, msg=f"tp_slices={k}")
        torch.testing.assert_close(grad, expected_grad, rtol=1.3e-6, atol=1e-5, msg=f"tp_slices={k}")
    if intermediate % 4:
        with pytest.raises(ValueError, match="tp_slices 4 must divide hidden_features 10"):
            mlp(x, tp_slices=4)
    # ... and back: our state dict loads into LlamaMLP (through the split names for the packed layout).
    twin = llama_mlp(8, intermediate, bias=bias, act=act)
    twin.load_state_dict(split_gate_up(mlp.state_dict()))
    torch.testing.assert_close(twin(x), expected)


# -- checkpoints -----------------------------------------------------------------------------


def write_checkpoint(path, layers: dict[int, dict[str, torch.Tensor]]) -> None:
    tensors = {"model.embed_tokens.weight": torch.zeros(16, 8)}  # a neighbour that must be left alone
    for n, state in layers.items():
        tensors |= {f"model.layers.{n}.mlp.{k}": v.clone().contiguous() for k, v in state.items()}
        tensors[f"model.layers.{n}.self_attn.q_proj.weight"] = torch.zeros(8, 8)
    save_file(tensors, str(path))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_llama_mlp_picks_layer_n_of_a_checkpoint(tmp_path, layout):
    torch.manual_seed(0)
    mlps = {n: GatedMLP(8, 12, bias=n == 1) for n in range(3)}
    write_checkpoint(tmp_path / "model.safetensors", {n: m.state_dict() for n, m in mlps.items()})
    x = torch.randn(1, 8)
    for n, original in mlps.items():
        for path in (tmp_path / "model.safetensors", tmp_path):  # the file, or the directory holding it
            mlp = load_llama_mlp(path, n, layout=layout)
            assert (mlp.in_features, mlp.hidden_features, mlp.out_features, mlp.bias) == (8, 12, 8, n == 1)
            torch.testing.assert_close(mlp(x), original(x), rtol=0, atol=1e-6)
    assert set(read_llama_mlp(tmp_path, 0)) == {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}


def test_a_sharded_checkpoint_a_packed_one_and_a_bfloat16_one(tmp_path):
    torch.manual_seed(0)
    first, second = GatedMLP(8, 12), GatedMLP(8, 12, 4)
    write_checkpoint(tmp_path / "model-00001-of-00002.safetensors", {0: first.state_dict()})
    packed = pack_gate_up({k: v.to(torch.bfloat16) for k, v in second.state_dict().items()})
    write_checkpoint(tmp_path / "model-00002-of-00002.safetensors", {1: packed})
    weight_map = {f"model.layers.0.mlp.{k}": "model-00001-of-00002.safetensors" for k in first.state_dict()}
    weight_map |= {f"model.layers.1.mlp.{k}": "model-00002-of-00002.safetensors" for k in packed}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    x = torch.randn(2, 8)
    torch.testing.assert_close(load_llama_mlp(tmp_path, 0)(x), first(x), rtol=0, atol=1e-6)
    loaded = load_llama_mlp(tmp_path, 1, dtype=torch.float32)
    assert loaded.out_features == 4 and loaded.gate_proj.weight.dtype == torch.float32
    torch.testing.assert_close(loaded(x), second(x), rtol=2e-2, atol=2e-2)  # bfloat16 weights
    assert load_llama_mlp(tmp_path, 1).gate_proj.weight.dtype == torch.bfloat16  # the checkpoint's dtype


def test_checkpoint_errors_name_the_file_the_layer_and_the_tensor(tmp_path):
    torch.manual_seed(0)
    state = GatedMLP(8, 12).state_dict()
    file = tmp_path / "model.safetensors"
    write_checkpoint(file, {0: {k: v for k, v in state.items() if k != "up_proj.weight"}})
    with pytest.raises(CheckpointError, match=r"model.safetensors layer 0: no up_proj.weight \(found "
                                              r"\['down_proj.weight', 'gate_proj.weight'\]\)"):
        load_llama_mlp(file, 0)
    write_checkpoint(file, {0: state | {"up_proj.weight": torch.zeros(12, 7)}})
    message = (r"up_proj.weight has shape \(12, 7\), expected \(12, 8\) "
               r"\(from gate_proj.weight \(12, 8\) and down_proj.weight \(8, 12\)\)")
    with pytest.raises(CheckpointError, match=message):
        load_llama_mlp(file, 0)
    write_checkpoint(file, {0: state, 1: state})
    message = r"no tensors under model.layers.5.mlp.\* \(the checkpoint has MLP layers 0..1\)"
    with pytest.raises(CheckpointError, match=message):
        load_llama_mlp(file, 5)
    with pytest.raises(CheckpointError, match="no such checkpoint file or directory"):
        load_llama_mlp(tmp_path / "absent.safetensors", 0)
    with pytest.raises(ValueError, match="layer must be a non-negative int, got -1"):
        load_llama_mlp(file, -1)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_state_dict_names_a_missing_or_misshapen_tensor(layout):
    state = GatedMLP(8, 12).state_dict()
    mlp = GatedMLP(8, 12, layout=layout)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "up_proj.weight"'):
        mlp.load_state_dict({k: v for k, v in state.items() if k != "up_proj.weight"})
    message = (r"size mismatch for up_proj.weight: copying a param with shape torch.Size\(\[7, 8\]\) from "
               r"checkpoint, the shape in current model is torch.Size\(\[12, 8\]\)")
    with pytest.raises(RuntimeError, match=message):
        mlp.load_state_dict(state | {"up_proj.weight": torch.zeros(7, 8)})
    down = state["down_proj.weight"]
    message = (r"size mismatch for gate_up_proj.weight: copying a param with shape torch.Size\(\[22, 8\]\) "
               r"from checkpoint, the shape in current model is torch.Size\(\[24, 8\]\)")
    with pytest.raises(RuntimeError, match=message):
        mlp.load_state_dict({"gate_up_proj.weight": torch.zeros(22, 8), "down_proj.weight": down})
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "down_proj.bias"'):
        mlp.load_state_dict(state | {"down_proj.bias": torch.zeros(8)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "fused"}, r"layout must be one of \['packed', 'split'\], got 'fused'"),
        ({"act_layer": "swiglu"}, r"activation must be one of \['gelu', 'gelu_tanh', 'identity', "
                                  r"'leaky_relu', 'relu', 'sigmoid', 'silu', 'tanh'\], got 'swiglu'"),
        ({"hidden_features": (8, 4)}, r"hidden_features must be one positive int \(or a sequence of one\), "
                                      r"got \(8, 4\)"),
        ({"hidden_features": 0}, "hidden_features must be a positive int, got 0"),
        ({"out_features": 0}, "out_features must be a positive int, got 0"),
        ({"dropout": 1.0}, r"dropout must be a float in \[0, 1\), got 1.0"),
    ],
)
def test_bad_arguments_are_named_with_the_valid_choices(kwargs, message):
    args = {"hidden_features": 8} | kwargs
    with pytest.raises(ValueError, match=message):
        GatedMLP(4, args.pop("hidden_features"), **args)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_input_of_the_wrong_width_is_named(layout):
    message = r"x must have in_features=4 values in its last axis, got shape \(2, 3, 5\)"
    with pytest.raises(ValueError, match=message):
        GatedMLP(4, 8, layout=layout)(torch.zeros(2, 3, 5))
