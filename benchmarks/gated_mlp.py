"""LLaMA's gated MLP on the CPU: GatedMLP's two layouts against ``transformers``' ``LlamaMLP``.

float32, hidden D = 1024, intermediate I = 2816 (LLaMA's 2/3·4·D rounded up to a multiple of
256), token batches of 1, 16 and 512 (input (1, T, D)), forward (under ``no_grad``) and forward +
backward (input and weight gradients), all in one process and one run:

- ``llama``: ``transformers``' ``LlamaMLP`` (three ``nn.Linear``, weights (out, in));
- ``split``: :class:`mlpkit.blocks.GatedMLP` with ``layout="split"`` (the same three ``nn.Linear``);
- ``packed``: ``layout="packed"``: one (D, 2I) gate-and-up weight and an (I, D) down weight,
  both stored transposed and multiplied as ``x @ W``;
- two other in-memory layouts of the same weights, to choose from: ``packed F.linear``, the packed
  weight kept in Hugging Face's (2I, D) and applied with ``F.linear`` (and the down weight as
  (D, I)); ``split x@W``, the gate, up and down weights each stored transposed, (D, I), (D, I),
  (I, D), multiplied as ``x @ W``; ``packed, down F.linear``, the packed (D, 2I) weight with
  the down weight in Hugging Face's (D, I) and ``F.linear``.

Every implementation computes the same function from the same weights (checked first). They take
turns, one timed sample each per round in an order shuffled anew every round (so that none always
runs right after the same one, whose weights may still be in the cache), with a pause before each
(``_common.settle``), so that a slow spell of the shared machine falls on all of them. A sample
repeats the call enough times to last about 10 ms; times are medians over rounds.

Two references run in every round too, beside the blocks and under the same load: the float32
GEMM (torch's 2048³ ``mm``, the library that runs the blocks) and the memory bandwidth (a 256 MiB
``copy_``, counting bytes read and written). Every ratio is the median over rounds of the ratio
within a round: ``LlamaMLP``'s time over each implementation's; at 512 tokens each block's
GFLOP/s (6·T·D·I flops forward, 18·T·D·I forward + backward) over the GEMM's; at 1 token, where a
forward pass streams the 3·D·I weights (34.6 MB) once, the weight bytes per second over the
copy's. The GEMM and the copy are also measured alone before and after, for the record.

Goals (issue 12): the better layout never more than 3% slower than ``LlamaMLP``; >= 80% of the
GEMM peak at 512 tokens; >= 1.3x ``LlamaMLP``'s speed at 1 token.

Usage::

    python benchmarks/gated_mlp.py               # 30 rounds; writes results/gated_mlp.json
    python benchmarks/gated_mlp.py --threads 1   # one torch thread; writes results/gated_mlp_1_threads.json
    python benchmarks/gated_mlp.py --quick       # 5 rounds, nothing written

When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set, the script re-runs itself once with both
removed (in that child process only) and reports both settings.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    machine_info,
    measure_gemm_peak,
    median,
    print_table,
    rerun_without_blas_env,
    settle,
    write_json,
)

from mlpkit.blocks import GatedMLP

HIDDEN, INTERMEDIATE = 1024, 2816
TOKENS = (1, 16, 512)
PASSES = ("forward", "forward+backward")
SAMPLE_SECONDS = 0.01
COPIES = 3
WEIGHT_BYTES = 3 * HIDDEN * INTERMEDIATE * 4  # float32


class PackedLinear(nn.Module):
    """The packed weight in Hugging Face's (2I, D), the down weight in (D, I), applied with ``F.linear``."""

    def __init__(self, mlp: GatedMLP) -> None:
        super().__init__()
        w = mlp.hf_tensors()
        self.gate_up = nn.Parameter(torch.cat([w["gate_proj.weight"], w["up_proj.weight"]]).detach().clone())
        self.down = nn.Parameter(w["down_proj.weight"].detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        gate, up = F.linear(x, self.gate_up).chunk(2, dim=-1)  # (..., I) each
        return F.linear(F.silu(gate) * up, self.down)


class SplitTransposed(nn.Module):
    """Gate, up and down each stored transposed, (D, I), (D, I), (I, D), multiplied as ``x @ W``."""

    def __init__(self, mlp: GatedMLP) -> None:
        super().__init__()
        w = mlp.hf_tensors()
        self.gate, self.up, self.down = (
            nn.Parameter(w[f"{name}.weight"].detach().t().contiguous())
            for name in ("gate_proj", "up_proj", "down_proj")
        )

    def forward(self, x: Tensor) -> Tensor:
        return (F.silu(x @ self.gate) * (x @ self.up)) @ self.down


class PackedDownLinear(nn.Module):
    """``packed``'s (D, 2I) gate-and-up weight with the down weight kept in Hugging Face's (D, I)."""

    def __init__(self, mlp: GatedMLP) -> None:
        super().__init__()
        w = mlp.hf_tensors()
        self.gate_up = nn.Parameter(
            torch.cat([w["gate_proj.weight"], w["up_proj.weight"]]).detach().t().contiguous()
        )
        self.down = nn.Parameter(w["down_proj.weight"].detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        gate, up = (x @ self.gate_up).chunk(2, dim=-1)  # (..., I) each
        return F.linear(F.silu(gate) * up, self.down)


def build() -> dict[str, nn.Module]:
    """The six implementations, holding the same weights."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, hidden_act="silu")
    llama = LlamaMLP(config)
    split = GatedMLP(HIDDEN, INTERMEDIATE)
    split.load_state_dict(llama.state_dict())
    models: dict[str, nn.Module] = {
        "llama": llama,
        "split": split,
        "packed": split.to_layout("packed"),
        "packed F.linear": PackedLinear(split),
        "split x@W": SplitTransposed(split),
        "packed, down F.linear": PackedDownLinear(split),
    }
    x = torch.randn(1, 8, HIDDEN)
    with torch.no_grad():
        expected = llama(x)
        for name, model in models.items():
            torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5, msg=name)
    return models


def step_fn(model: nn.Module, x: Tensor, mode: str) -> Callable[[], None]:
    if mode == "forward":

        def forward() -> None:
            with torch.no_grad():
                model(x)

        return forward
    x = x.detach().requires_grad_()

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        x.grad = None
        model(x).sum().backward()

    return forward_backward


def calls_per_sample(fn: Callable[[], None]) -> int:
    """How many calls make a sample of about SAMPLE_SECONDS (at least one)."""
    fn()  # warm-up: allocator, threads
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, round(SAMPLE_SECONDS / max(once, 1e-6)))


GEMM_N, COPY_MIB = 2048, 256
GEMM, COPY = "gemm 2048^3", "copy 256 MiB"
"""Two references timed in every round beside the blocks, so that they see the same load."""


def reference_fns() -> dict[str, Callable[[], None]]:
    a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    src = torch.randn(COPY_MIB * 2**20 // 4)
    dst = torch.empty_like(src)
    return {GEMM: lambda: torch.mm(a, b), COPY: lambda: dst.copy_(src)}


def time_blocks(
    copies: list[dict[str, nn.Module]], rounds: int
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Seconds per call of every implementation and reference in every round, per token count and pass.

    Each round runs every implementation once, in an order shuffled anew (seeded) every round, so
    that none always follows the same one (whose weights may still sit in the cache), and on the
    next of the copies of its weights (see ``COPIES``).
    """
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    shuffle = random.Random(0).shuffle
    references = reference_fns()
    for tokens in TOKENS:
        x = torch.randn(1, tokens, HIDDEN)
        for mode in PASSES:
            fn_copies = [
                {name: step_fn(m, x, mode) for name, m in models.items()} | references for models in copies
            ]
            counts = {name: calls_per_sample(fn) for name, fn in fn_copies[0].items()}
            samples: dict[str, list[float]] = {name: [] for name in counts}
            for round_ in range(rounds + 1):  # round 0 warms up
                fns = fn_copies[round_ % len(copies)]
                order = list(fns)
                shuffle(order)
                for name in order:
                    settle(0.05)
                    start = time.perf_counter()
                    for _ in range(counts[name]):
                        fns[name]()
                    if round_:
                        samples[name].append((time.perf_counter() - start) / counts[name])
            results.setdefault(str(tokens), {})[mode] = samples
    return results


def torch_gemm_peak(n: int = 2048, repeats: int = 7) -> float:
    """GFLOP/s of torch's float32 (n, n) x (n, n) ``matmul`` (2n³ flops), the best of ``repeats``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def memory_bandwidth(mib: int = 256, repeats: int = 9) -> float:
    """GB/s of a large ``copy_`` (bytes read plus bytes written), the median of ``repeats``."""
    src = torch.randn(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / median(times) / 1e9


def benchmark(rounds: int) -> dict[str, Any]:
    # Each implementation's weights in COPIES separate allocations, used in turn: at one token the
    # time of streaming a 35 MB weight set depended on the buffer (two builds of the same layout
    # differed by up to 1.6x within a run), which would otherwise pass for a layout's merit.
    copies = [build() for _ in range(COPIES)]
    # Alone, before and after the blocks, for the record: best-of GEMM rates, median copies.
    standalone = {"before": {"torch_gemm_gflops": torch_gemm_peak(),
                             "numpy_gemm_gflops": measure_gemm_peak(), "copy_gbs": memory_bandwidth()}}
    settle()
    samples = time_blocks(copies, rounds)
    settle()
    standalone["after"] = {"torch_gemm_gflops": torch_gemm_peak(), "copy_gbs": memory_bandwidth()}
    derived: dict[str, Any] = {}
    seconds: dict[str, dict[str, dict[str, float]]] = {}
    for tokens, by_mode in samples.items():
        for mode, rounds_ in by_mode.items():
            times = {name: median(values) for name, values in rounds_.items()}
            seconds.setdefault(tokens, {})[mode] = times
            blocks = [name for name in rounds_ if name not in (GEMM, COPY)]
            # Paired: within each round (neighbours in time) LlamaMLP's time over ours, the block's
            # GFLOP/s over the GEMM's, the block's weight bytes/s over the copy's; then the medians.
            gemm_gflops = [2 * GEMM_N**3 / t / 1e9 for t in rounds_[GEMM]]
            copy_gbs = [2 * COPY_MIB * 2**20 / t / 1e9 for t in rounds_[COPY]]
            flops = (6 if mode == "forward" else 18) * int(tokens) * HIDDEN * INTERMEDIATE

            speedup = {name: _paired(rounds_[name], rounds_["llama"], lambda t, r: r / t) for name in blocks}
            derived.setdefault(tokens, {})[mode] = {
                "speedup_vs_llama": speedup,
                "better_layout": max(("split", "packed"), key=speedup.__getitem__),
                "better_layout_slowdown_vs_llama": 1 / max(speedup["split"], speedup["packed"]),
                "fastest_in_memory_layout": max(speedup, key=speedup.__getitem__),
                "gemm_gflops": median(gemm_gflops),
                "copy_gbs": median(copy_gbs),
                "percent_of_gemm_peak": {
                    name: _paired(rounds_[name], gemm_gflops, lambda t, g, f=flops: 100 * f / t / 1e9 / g)
                    for name in blocks
                },
                "weight_gbs": {name: WEIGHT_BYTES / times[name] / 1e9 for name in blocks},
                "percent_of_bandwidth": {
                    name: _paired(rounds_[name], copy_gbs, lambda t, c: 100 * WEIGHT_BYTES / t / 1e9 / c)
                    for name in blocks
                },
            }
    one = derived["1"]["forward"]
    big = derived["512"]
    targets = {
        "better layout <= 1.03x LlamaMLP's time everywhere": all(
            d["better_layout_slowdown_vs_llama"] <= 1.03
            for by_mode in derived.values()
            for d in by_mode.values()
        ),
        ">= 80% of the GEMM peak at 512 tokens (forward, better layout)": max(
            big["forward"]["percent_of_gemm_peak"][n] for n in ("split", "packed")) >= 80,
        ">= 80% of the GEMM peak at 512 tokens (forward+backward, better layout)": max(
            big["forward+backward"]["percent_of_gemm_peak"][n] for n in ("split", "packed")) >= 80,
        ">= 1.3x LlamaMLP at 1 token (forward, packed)": one["speedup_vs_llama"]["packed"] >= 1.3,
    }
    return {
        "settings": {"hidden": HIDDEN, "intermediate": INTERMEDIATE, "tokens": TOKENS, "rounds": rounds,
                     "threads": torch.get_num_threads(), "dtype": "float32", "torch": torch.__version__,
                     "transformers": _version("transformers")},
        "machine": machine_info(),
        "standalone": standalone,
        "seconds": seconds,
        "samples": samples,
        "derived": derived,
        "targets": targets,
    }


def _paired(times: list[float], reference: list[float], f: Callable[..., float]) -> float:
    """The median over rounds of ``f(time, reference)`` within each round."""
    return median([f(t, r) for t, r in zip(times, reference, strict=True)])


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def report(result: dict[str, Any], title: str) -> None:
    print(f"\n== {title} ==")
    alone = result["standalone"]
    before, after = alone["before"], alone["after"]
    print(f"threads {result['settings']['threads']}; alone before the blocks: torch 2048^3 GEMM "
          f"{before['torch_gemm_gflops']:.0f} GFLOP/s (NumPy's {before['numpy_gemm_gflops']:.0f}), "
          f"copy {before['copy_gbs']:.1f} GB/s; after: {after['torch_gemm_gflops']:.0f} GFLOP/s, "
          f"{after['copy_gbs']:.1f} GB/s")
    names = [n for n in next(iter(next(iter(result["seconds"].values())).values())) if n not in (GEMM, COPY)]
    rows = []
    for tokens, by_mode in result["seconds"].items():
        for mode, times in by_mode.items():
            d = result["derived"][tokens][mode]
            rows.append([tokens, mode, *(1000 * times[n] for n in names), d["gemm_gflops"], d["copy_gbs"]])
    print("\nmedian ms per call; the GEMM's GFLOP/s and the copy's GB/s in the same rounds")
    print_table(rows, ["tokens", "pass", *names, "GEMM GFLOP/s", "copy GB/s"])
    rows = []
    for tokens, by_mode in result["derived"].items():
        for mode, d in by_mode.items():
            rows.append([tokens, mode, *(d["speedup_vs_llama"][n] for n in names[1:]),
                         *(d["percent_of_gemm_peak"][n] for n in ("llama", "split", "packed")),
                         *(d["weight_gbs"][n] for n in ("llama", "packed")),
                         d["percent_of_bandwidth"]["packed"]])
    print("\nLlamaMLP's time / each one's (median of the ratios within rounds); % of the GEMM's rate; "
          "weight bytes per second")
    print_table(rows, ["tokens", "pass", *(f"x {n}" for n in names[1:]), "llama %peak", "split %peak",
                       "packed %peak", "llama GB/s", "packed GB/s", "packed %copy"])
    for tokens, by_mode in result["derived"].items():
        for mode, d in by_mode.items():
            print(f"{tokens:>4} tokens, {mode}: better layout {d['better_layout']} "
                  f"({d['better_layout_slowdown_vs_llama']:.3f}x LlamaMLP's time); fastest in memory: "
                  f"{d['fastest_in_memory_layout']}")
    for name, met in result["targets"].items():
        print(f"target {name}: {'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per token count and pass [30]")
    parser.add_argument("--quick", action="store_true", help="5 rounds; nothing written")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--child-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rounds = 5 if args.quick else args.rounds
    result = benchmark(rounds)
    if args.child_json:
        print(json.dumps(result))
        return
    report(result, "as configured (BLAS environment of this machine)")
    extra = ["--rounds", str(rounds)] + ([] if args.threads is None else ["--threads", str(args.threads)])
    unset = rerun_without_blas_env(__file__, extra)
    payload: dict[str, Any] = {"as_configured": result}
    if unset is not None:
        report(unset, "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset")
        payload["blas_env_unset"] = unset
    if not args.quick:
        name = "gated_mlp" if args.threads is None else f"gated_mlp_{args.threads}_threads"
        print(f"\nwrote {write_json(name, payload)}")


if __name__ == "__main__":
    main()
