"""Tensor parallelism for :class:`~mlpkit.blocks.mlp.GatedMLP` over ``torch.distributed``.

Shoeybi et al. 2019, "Megatron-LM: Training Multi-Billion Parameter Language Models Using Model
Parallelism", https://arxiv.org/abs/1909.08053, sec. 3 and fig. 3a, applied to LLaMA's gated MLP
(Touvron et al. 2023; Shazeer 2020):

- **gate and up projections, column-parallel**: rank r of W holds rows ``[r·I/W, (r+1)·I/W)`` of
  ``gate_proj`` and of ``up_proj`` (in the packed layout those rows of the gate half and of the up
  half, packed again on the rank: the full packed matrix is never gathered) and computes its
  I/W columns of ``act(gate) * up`` without talking to the others, since the activation and the
  product act on each hidden unit alone;
- **down projection, row-parallel**: rank r holds the same I/W columns of ``down_proj`` and
  computes a partial (..., O) output; **one all-reduce** sums the partials (the paper's g), and
  the down bias is added once, after it.

Backward mirrors this: the gradient of the output reaches every rank whole (g's backward is the
identity), and one all-reduce sums the ranks' parts of the input gradient (the paper's f, the
identity forward). So each rank's output and input gradient equal one process's, up to the order
of float sums, and each rank's weight gradients are the rows/columns it holds. Dropout draws each
rank's mask for its own hidden units from that rank's generator.

I must be a multiple of W (equal shards, as Megatron requires); a full checkpoint or a full
state dict is cut on each rank as it loads (:meth:`ParallelGatedMLP.from_llama_checkpoint` reads
only the rank's rows from the safetensors file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mlpkit._checks import check_nonnegative_int, check_positive_int
from mlpkit.blocks.mlp import ActLayer, GatedMLP, _llama_mlp_sizes, _llama_mlp_slices

__all__ = ["ParallelGatedMLP", "shard_llama_mlp", "tensor_parallel_bounds"]


def tensor_parallel_bounds(hidden_features: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of the hidden units rank ``rank`` of ``world_size`` holds.

    Raises
    ------
    ValueError
        ``hidden_features 10 is not divisible by the tensor-parallel degree 4: ...``.

    Examples
    --------
    >>> tensor_parallel_bounds(12, 1, 4)
    (3, 6)
    """
    hidden_features = check_positive_int("hidden_features", hidden_features)
    world_size = check_positive_int("world_size", world_size)
    rank = check_nonnegative_int("rank", rank)
    if rank >= world_size:
        raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
    if hidden_features % world_size:
        raise ValueError(
            f"hidden_features {hidden_features} is not divisible by the tensor-parallel degree {world_size}: "
            f"every rank holds an equal slice of the intermediate width; use a multiple of {world_size}"
        )
    step = hidden_features // world_size
    return rank * step, (rank + 1) * step


def _shard_one(name: str, tensor: Any, start: int, stop: int, full: int) -> Tensor:
    """This rank's part of one full tensor (a Tensor or a lazy safetensors slice) in Hugging Face's shape."""
    if name.startswith(("gate_proj.", "up_proj.")):
        return tensor[start:stop]  # rows of (I, D) or of (I,)
    if name.startswith("gate_up_proj."):
        # the same rows of the gate half [0, I) and of the up half [I, 2I), packed again: gate first
        return torch.cat([tensor[start:stop], tensor[full + start : full + stop]])
    if name == "down_proj.weight":
        return tensor[:, start:stop]  # columns of (O, I)
    return tensor[:]  # down_proj.bias: every rank holds it whole and adds it after the all-reduce


def shard_llama_mlp(
    state: Mapping[str, Any], hidden_features: int, rank: int, world_size: int
) -> dict[str, Tensor]:
    """Cut a full MLP state dict (Hugging Face's names, either layout) to one rank's shard.

    Parameters
    ----------
    state : mapping of str to Tensor
        ``gate_proj.weight`` (I, D), ``up_proj.weight`` (I, D) or ``gate_up_proj.weight`` (2I, D),
        ``down_proj.weight`` (O, I), and biases; lazy safetensors slices work too.
    hidden_features : int
        The full width I.
    rank, world_size : int

    Returns
    -------
    dict of str to Tensor
        The same keys with I/W in place of I (``gate_up_proj``: 2I/W rows, gate rows first).

    Examples
    --------
    >>> full = {"gate_up_proj.weight": torch.arange(8.0).reshape(8, 1)}  # gate rows 0-3, up rows 4-7
    >>> shard_llama_mlp(full, 4, rank=1, world_size=2)["gate_up_proj.weight"].flatten()
    tensor([2., 3., 6., 7.])
    """
    start, stop = tensor_parallel_bounds(hidden_features, rank, world_size)
    return {name: _shard_one(name, t, start, stop, hidden_features) for name, t in state.items()}


_HIDDEN_AXIS = {
    "gate_proj.weight": (0, 1), "gate_proj.bias": (0, 1), "up_proj.weight": (0, 1), "up_proj.bias": (0, 1),
    "gate_up_proj.weight": (0, 2), "gate_up_proj.bias": (0, 2), "down_proj.weight": (1, 1),
}
"""Per tensor, the axis along the hidden units and its length in units of I."""


class _CopyToTensorParallel(torch.autograd.Function):
    """Megatron's f: the identity forward; backward sums the ranks' input-gradient parts."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()  # reduced in place: never into a buffer autograd may reuse
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _ReduceFromTensorParallel(torch.autograd.Function):
    """Megatron's g: forward sums the ranks' partial outputs; backward is the identity."""

    @staticmethod
    def forward(ctx: Any, partial: Tensor, group: Any) -> Tensor:
        total = partial.contiguous().clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class ParallelGatedMLP(GatedMLP):
    """One rank's shard of a :class:`GatedMLP`: column-parallel gate/up, row-parallel down.

    Its parameters and state dict are a :class:`GatedMLP`'s with I/W hidden units (this rank's
    rows of ``gate_proj``/``up_proj`` or of both halves of ``gate_up_proj``, its columns of
    ``down_proj``, the whole down bias). ``load_state_dict`` takes either the shard or the full
    tensors, which it cuts to this rank's part.

    Parameters
    ----------
    in_features, hidden_features, out_features, act_layer, dropout, bias, layout
        As :class:`GatedMLP`, ``hidden_features`` being the full width I, a multiple of the
        group's size W.
    group : ProcessGroup or None
        The tensor-parallel group (None: the default group, which must be initialized).

    Attributes
    ----------
    full_hidden_features : int
        I; ``hidden_features`` is this rank's I/W.
    rank, world_size : int
        This process's place in ``group``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        *,
        act_layer: ActLayer = "silu",
        dropout: float = 0.0,
        bias: bool = False,
        layout: str = "split",
        group: Any = None,
    ) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("ParallelGatedMLP needs an initialized torch.distributed process group")
        rank, world_size = dist.get_rank(group), dist.get_world_size(group)
        start, stop = tensor_parallel_bounds(hidden_features, rank, world_size)
        super().__init__(
            in_features, stop - start, out_features, act_layer=act_layer, dropout=dropout, bias=bias,
            layout=layout,
        )
        self.full_hidden_features = hidden_features
        self.rank, self.world_size, self.group = rank, world_size, group

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, rank={self.rank} of {self.world_size} "
            f"(full hidden_features={self.full_hidden_features})"
        )

    def forward(self, x: Tensor, *, tp_slices: int = 1) -> Tensor:
        """Apply the sharded MLP; every rank passes the same input and gets the whole output.

        Parameters
        ----------
        x : Tensor of shape (..., D)
            The same on every rank.
        tp_slices : int
            Must be 1: ``pretraining_tp`` slicing is a single-process computation.

        Returns
        -------
        Tensor of shape (..., out_features)
            The same on every rank.
        """
        if tp_slices != 1:
            raise ValueError(f"tp_slices must be 1 for a tensor-parallel shard, got {tp_slices!r}")
        x = _CopyToTensorParallel.apply(x, self.group)
        partial = self._forward(x, 1, down_bias=False)  # (..., O): this rank's I/W hidden units only
        out: Tensor = _ReduceFromTensorParallel.apply(partial, self.group)  # one all-reduce
        down_bias = self.down_proj.bias if self.layout == "split" else self.down_bias
        return out if down_bias is None else out + down_bias  # once, not once per rank

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Full tensors (I or 2I along the hidden axis) are cut to this rank's part; shards pass.
        full, local = self.full_hidden_features, self.hidden_features
        if full != local:
            start = self.rank * local
            for key in [k for k in state_dict if k.startswith(prefix)]:
                name, tensor = key[len(prefix):], state_dict[key]
                if name in _HIDDEN_AXIS:
                    dim, multiple = _HIDDEN_AXIS[name]
                    if tensor.dim() > dim and tensor.shape[dim] == multiple * full:
                        state_dict[key] = _shard_one(name, tensor, start, start + local, full)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @classmethod
    def from_module(cls, mlp: GatedMLP, *, group: Any = None, layout: str | None = None) -> ParallelGatedMLP:
        """This rank's shard of a whole :class:`GatedMLP` (the same on every rank), in ``layout``
        (default: the module's own); dtype and device kept."""
        weight = mlp.hf_tensors()["down_proj.weight"]
        shard = cls(
            mlp.in_features, mlp.hidden_features, mlp.out_features, act_layer=type(mlp.act_fn),
            dropout=mlp.drop.p if isinstance(mlp.drop, torch.nn.Dropout) else 0.0, bias=mlp.bias,
            layout=layout or mlp.layout, group=group,
        ).to(device=weight.device, dtype=weight.dtype)
        shard.load_state_dict(mlp.state_dict())
        return shard.train(mlp.training)

    @classmethod
    def from_llama_checkpoint(
        cls,
        path: str | Path,
        layer: int,
        *,
        group: Any = None,
        layout: str = "split",
        act_layer: ActLayer = "silu",
        dropout: float = 0.0,
        dtype: torch.dtype | None = None,
    ) -> ParallelGatedMLP:
        """This rank's shard of layer ``layer``'s MLP in a LLaMA safetensors checkpoint.

        Each rank reads only its rows of the gate and up projections (of both halves of a packed
        ``gate_up_proj``) and its columns of the down projection from the file, so no rank ever
        holds the whole MLP. ``path``, ``layer`` and the errors are those of
        :func:`~mlpkit.blocks.mlp.read_llama_mlp`; ``dtype`` None keeps the checkpoint's.
        """
        with _llama_mlp_slices(path, layer) as slices:
            d, i, o, bias = _llama_mlp_sizes(
                {name: s.get_shape() for name, s in slices.items()}, f"{path} layer {layer}"
            )
            shard = cls(d, i, o, act_layer=act_layer, dropout=dropout, bias=bias, layout=layout, group=group)
            tensors = shard_llama_mlp(slices, i, shard.rank, shard.world_size)
        shard.to(dtype or tensors["down_proj.weight"].dtype)
        shard.load_state_dict(tensors)
        return shard
