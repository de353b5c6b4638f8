"""DCN-V2's cross networks, forward + backward: our packed CrossNetMix against the per-expert loop.

Three formulations of the same mixture of K low-rank experts (Wang et al., "DCN V2", WWW 2021, sec. 5),
3 layers, batch 1024, float32 on the CPU, one torch thread, in one process:

- ``ours``: :class:`mlpkit.blocks.CrossNetMix`: per layer one (B, D) x (D, K·r) product down, one
  batched (r, r) product, the gate applied to the r-vectors, one (B, K·r) x (K·r, D) product up;
- ``reference``: the formulation of the public implementations (FuxiCTR's and DeepCTR-Torch's
  ``CrossNetMix``), written out here: x as a (B, D, 1) column, a Python loop over the experts, each
  ``x_0 ⊙ (U_i C_i V_iᵀ x_l + b)`` as three ``torch.matmul`` on (B, ·, 1) columns, the expert
  outputs stacked (B, D, K) and mixed by the softmax gate;
- ``deepctr``: DeepCTR-Torch's own ``CrossNetMix`` when the package is installed (the bench extra).
  It applies tanh twice in every expert, so it is compared with ``ours tanh``
  (``activation="tanh"``), which does the same work;
- ``full rank``: :class:`mlpkit.blocks.CrossNetV2` at the same width and depth.

Targets (issue 11, width 160, 4 experts, rank 16): ours / reference <= 0.25, ours / full rank <= 1.5,
ours faster than DeepCTR-Torch's. Widths 100 and 400 say from which width the mixture is cheaper
than full rank. The implementations take turns, one step each per round with a pause between
(:func:`_common.settle`), so the shared machine's load falls on all alike; medians of ``--repeats``
rounds after warm-up.

Usage::

    python benchmarks/crossnet_speed.py            # widths 100, 160, 400
    python benchmarks/crossnet_speed.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, offline_requests_stub, print_table, settle, write_json

from mlpkit.blocks.interaction import CrossNetMix, CrossNetV2

LAYERS, EXPERTS, RANK, BATCH = 3, 4, 16, 1024


class ReferenceMix(nn.Module):
    """The per-expert loop on column vectors, as the public implementations compute it."""

    def __init__(self, ours: CrossNetMix) -> None:
        super().__init__()
        self.ours = ours  # the same parameters: (L, K, D, r) U and V, (L, K, r, r) C, (L, D, K) gate

    def forward(self, x0: Tensor) -> Tensor:
        net = self.ours
        x_0 = x0.unsqueeze(2)                                               # (B, D, 1)
        x_l = x_0
        for layer in range(net.num_layers):
            outputs, scores = [], []
            for i in range(net.num_experts):
                scores.append(x_l.squeeze(2) @ net.gate[layer][:, i : i + 1])  # (B, 1)
                U, V, C = (m[i] for m in net.experts(layer))                 # (D, r), (D, r), (r, r)
                v_x = torch.matmul(V.t(), x_l)                              # (B, r, 1)
                v_x = torch.matmul(C, v_x)                                  # (B, r, 1)
                uv_x = torch.matmul(U, v_x)                                 # (B, D, 1)
                outputs.append((x_0 * (uv_x + net.bias[layer].unsqueeze(1))).squeeze(2))  # (B, D)
            stacked = torch.stack(outputs, 2)                               # (B, D, K)
            gate = torch.softmax(torch.stack(scores, 1), 1)                 # (B, K, 1)
            x_l = torch.matmul(stacked, gate) + x_l                         # (B, D, 1)
        return x_l.squeeze(2)


def deepctr_mix(width: int) -> nn.Module | None:
    offline_requests_stub()
    try:
        from deepctr_torch.layers.interaction import CrossNetMix as DeepCTRMix
    except ImportError:  # the bench extra is not installed
        return None
    return DeepCTRMix(width, low_rank=RANK, num_experts=EXPERTS, layer_num=LAYERS)


def measure(width: int, repeats: int) -> dict[str, float | None]:
    """Median seconds of one forward + backward of a (B, D) batch, the implementations taking turns."""
    torch.manual_seed(0)
    ours = CrossNetMix(width, LAYERS, EXPERTS, RANK)
    x = torch.randn(8, width)
    torch.testing.assert_close(ReferenceMix(ours)(x), ours(x), rtol=1e-4, atol=1e-5)  # the same function
    built = {
        "ours": ours,
        "ours tanh": CrossNetMix(width, LAYERS, EXPERTS, RANK, activation="tanh"),
        "reference": ReferenceMix(ours),
        "deepctr": deepctr_mix(width),
        "full rank": CrossNetV2(width, LAYERS),
    }
    models = {name: m for name, m in built.items() if m is not None}
    batch = torch.randn(BATCH, width)

    def step(model: nn.Module) -> float:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        model(batch).sum().backward()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(repeats + 3):  # 3 warm-up rounds
        for name, model in models.items():
            settle(0.02)
            seconds = step(model)
            if round_ >= 3:
                times[name].append(seconds)
    return {name: (median(times[name]) if name in times else None) for name in built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 160 only, few repeats")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per width [30]")
    args = parser.parse_args()
    torch.set_num_threads(1)
    widths = (160,) if args.quick else (100, 160, 400)
    repeats = 5 if args.quick else args.repeats
    rows, results = [], {}
    for width in widths:
        r = measure(width, repeats)
        ratios = {
            "ours/reference": r["ours"] / r["reference"],
            "ours/full rank": r["ours"] / r["full rank"],
            "ours tanh/deepctr": None if r["deepctr"] is None else r["ours tanh"] / r["deepctr"],
        }
        results[str(width)] = {"seconds": r, "ratios": ratios}
        rows.append([width, *(None if v is None else 1000 * v for v in r.values()),
                     *(ratios.values())])
    print_table(rows, ["width", "ours ms", "ours tanh ms", "reference ms", "deepctr ms", "full rank ms",
                       "ours/ref", "ours/full", "tanh/deepctr"])
    at160 = results.get("160", {}).get("ratios", {})
    targets = {
        "ours/reference <= 0.25 at 160": at160.get("ours/reference", 1) <= 0.25,
        "ours/full rank <= 1.5 at 160": at160.get("ours/full rank", 9) <= 1.5,
        "ours faster than deepctr at 160": (
            None if at160.get("ours tanh/deepctr") is None else at160["ours tanh/deepctr"] < 1
        ),
    }
    for name, met in targets.items():
        print(f"target {name}: {'not measured' if met is None else 'met' if met else 'NOT met'}")
    if not args.quick:
        path = write_json("crossnet_speed", {
            "settings": {"layers": LAYERS, "experts": EXPERTS, "rank": RANK, "batch": BATCH, "threads": 1,
                         "repeats": repeats, "torch": torch.__version__},
            "machine": machine_info(), "results": results, "targets": targets,
        })
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
