"""Tensor-parallel GatedMLP: two gloo processes (one thread each) give the output and the input
gradient of one process, each holding only its shard; full state dicts and checkpoints are cut on
each rank; the single-process helpers and their errors.

The ranks are started as ``torchrun`` starts them (:func:`launch.launch_ranks`); they run this file
as a script, write what they computed, and the test compares it with one process's result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mlpkit.blocks import GatedMLP
from mlpkit.blocks.mlp import pack_gate_up
from mlpkit.blocks.parallel import ParallelGatedMLP, shard_llama_mlp, tensor_parallel_bounds

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

DIM, HIDDEN, OUT = 6, 8, 5
CASES = [(layout, bias) for layout in ("split", "packed") for bias in (False, True)]


def full_module(layout: str, bias: bool) -> GatedMLP:
    """The whole MLP every rank and the single process start from (seeded: the same everywhere)."""
    torch.manual_seed(0)
    mlp = GatedMLP(DIM, HIDDEN, OUT, bias=bias, layout=layout)
    with torch.no_grad():
        for name, t in mlp.hf_tensors().items():
            if name.endswith("bias"):
                t.add_(0.5)  # biases far from zero, so that a bias added per rank would show
    return mlp


def inputs() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, DIM)  # (batch, sequence, DIM)


def hf_grads(mlp: GatedMLP) -> dict[str, np.ndarray]:
    """The parameters' gradients in Hugging Face's shapes, whatever the layout."""
    if mlp.layout == "split":
        return {f"{n}.{k}": getattr(getattr(mlp, n), k).grad.numpy()
                for n in ("gate_proj", "up_proj", "down_proj")
                for k in ("weight", "bias") if getattr(getattr(mlp, n), k) is not None}
    i = mlp.hidden_features
    grad = mlp.gate_up_weight.grad
    grads = {"gate_proj.weight": grad[:, :i].T, "up_proj.weight": grad[:, i:].T,
             "down_proj.weight": mlp.down_weight.grad.T}
    if mlp.bias:
        grads |= {"gate_proj.bias": mlp.gate_up_bias.grad[:i], "up_proj.bias": mlp.gate_up_bias.grad[i:],
                  "down_proj.bias": mlp.down_bias.grad}
    return {k: v.numpy() for k, v in grads.items()}


def run(mlp: torch.nn.Module) -> dict[str, np.ndarray]:
    x = inputs().requires_grad_()
    out = mlp(x)
    (out.square().sum() + out.sum()).backward()  # a loss whose gradient differs per output entry
    assert x.grad is not None
    return {"out": out.detach().numpy(), "x.grad": x.grad.numpy()} | {
        f"grad {k}": v for k, v in hf_grads(mlp).items()}


def _worker(out: Path) -> None:
    """One rank: shard the full module three ways, run each, and save what it computed."""
    from mlpkit.train.distributed import cleanup_distributed, init_distributed

    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    assert ctx is not None
    try:
        report: dict[str, object] = {"rank": ctx.rank}
        for layout, bias in CASES:
            full = full_module(layout, bias)
            ways = {
                "from_module": ParallelGatedMLP.from_module(full),
                "load_state_dict": ParallelGatedMLP(DIM, HIDDEN, OUT, bias=bias, layout=layout),
                "checkpoint": ParallelGatedMLP.from_llama_checkpoint(out / f"{layout}-{bias}.safetensors", 2,
                                                                     layout=layout),
            }
            ways["load_state_dict"].load_state_dict(full.state_dict())  # full tensors, cut here
            for way, shard in ways.items():
                tag = f"{layout}-{bias}-{way}-rank{ctx.rank}"
                np.savez(out / f"{tag}.npz", **run(shard),
                         **{f"weight {k}": v.detach().numpy() for k, v in shard.hf_tensors().items()})
                report[f"{layout}-{bias}-{way}"] = [
                    shard.hidden_features, {k: list(v.shape) for k, v in shard.state_dict().items()}]
        try:
            ParallelGatedMLP(DIM, 9, OUT)
        except ValueError as exc:
            report["error"] = str(exc)
        (out / f"rank{ctx.rank}.json").write_text(json.dumps(report))
    finally:
        cleanup_distributed()


def test_two_ranks_give_one_processs_output_and_input_gradient(tmp_path):
    from launch import launch_ranks  # here: the ranks run this file as a script, outside pytest's path

    for layout, bias in CASES:  # checkpoints: layer 2 of three, the packed ones with gate_up_proj
        state = full_module(layout, bias).state_dict()
        layers = {f"model.layers.{n}.mlp.{k}": v.clone() for n in range(3) for k, v in state.items()}
        save_file(layers, str(tmp_path / f"{layout}-{bias}.safetensors"))
    ranks = launch_ranks([__file__, str(tmp_path)], cwd=tmp_path, timeout=100)
    for rank in ranks:
        assert rank.returncode == 0, f"rank {rank.rank} failed:\n{rank.stderr}"

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for layout, bias in CASES:
        full = full_module(layout, bias)
        single = run(full)
        weights = {k: v.detach().numpy() for k, v in full.hf_tensors().items()}
        for way in ("from_module", "load_state_dict", "checkpoint"):
            for r in range(2):
                got = dict(np.load(tmp_path / f"{layout}-{bias}-{way}-rank{r}.npz"))
                where = f"{layout}, bias={bias}, {way}, rank {r}"
                # The same output and input gradient on every rank as in one process.
                np.testing.assert_allclose(got["out"], single["out"], rtol=1e-5, atol=1e-6, err_msg=where)
                np.testing.assert_allclose(got["x.grad"], single["x.grad"], rtol=1e-5, atol=1e-6,
                                           err_msg=where)
                # Each rank holds (and gets the gradient of) its hidden units only: rows 4r..4r+3.
                rows = slice(4 * r, 4 * r + 4)
                for name, value in weights.items():
                    part = (value if name == "down_proj.bias"
                            else value[:, rows] if name == "down_proj.weight" else value[rows])
                    np.testing.assert_array_equal(got[f"weight {name}"], part, err_msg=f"{where}: {name}")
                    grad = single[f"grad {name}"]
                    grad = (grad if name == "down_proj.bias"
                            else grad[:, rows] if name == "down_proj.weight" else grad[rows])
                    np.testing.assert_allclose(got[f"grad {name}"], grad, rtol=1e-5, atol=1e-6,
                                               err_msg=f"{where}: grad {name}")
                hidden, shapes = reports[r][f"{layout}-{bias}-{way}"]
                assert hidden == HIDDEN // 2
                expected = ({"gate_proj.weight": [4, DIM], "up_proj.weight": [4, DIM]} if layout == "split"
                            else {"gate_up_proj.weight": [8, DIM]}) | {"down_proj.weight": [OUT, 4]}
                if bias:
                    expected |= ({"gate_proj.bias": [4], "up_proj.bias": [4]} if layout == "split"
                                 else {"gate_up_proj.bias": [8]}) | {"down_proj.bias": [OUT]}
                assert shapes == expected, where
    for report in reports:
        assert report["error"] == (
            "hidden_features 9 is not divisible by the tensor-parallel degree 2: every rank holds an equal "
            "slice of the intermediate width; use a multiple of 2"
        )


# -- one process -----------------------------------------------------------------------------


def test_tensor_parallel_bounds_and_errors():
    assert [tensor_parallel_bounds(12, r, 3) for r in range(3)] == [(0, 4), (4, 8), (8, 12)]
    message = "hidden_features 10 is not divisible by the tensor-parallel degree 4"
    with pytest.raises(ValueError, match=message):
        tensor_parallel_bounds(10, 0, 4)
    with pytest.raises(ValueError, match=r"rank must lie in \[0, world_size=2\), got 2"):
        tensor_parallel_bounds(10, 2, 2)


def test_shards_add_up_to_the_whole_mlp_without_a_process_group():
    # Sum over ranks of each shard's partial output (no down bias) plus the bias once = the full output.
    full = full_module("split", True)
    x = inputs()
    for layout in ("split", "packed"):
        state = full.state_dict() if layout == "split" else pack_gate_up(full.state_dict())
        total = torch.zeros(2, 3, OUT)
        for rank in range(4):
            shard = GatedMLP(DIM, HIDDEN // 4, OUT, bias=True, layout=layout)
            shard.load_state_dict(shard_llama_mlp(state, HIDDEN, rank, 4))
            total += shard._forward(x, 1, down_bias=False)
        torch.testing.assert_close(total + full.down_proj.bias, full(x), msg=layout)


def test_a_shard_needs_a_process_group():
    message = r"ParallelGatedMLP needs an initialized torch\.distributed process group"
    with pytest.raises(RuntimeError, match=message):
        ParallelGatedMLP(DIM, HIDDEN, OUT)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
