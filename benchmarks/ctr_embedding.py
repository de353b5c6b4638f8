"""Milliseconds per forward + backward of :class:`~mlpkit.blocks.embedding.FieldEmbedding`, by layout.

The two layouts of the categorical lookup: one shared table with per-field offsets against one
table per field, on Frappe-like sizes (10 fields, 5,389 rows) and Criteo-like sizes (26 fields of
100,000 rows each), batch 4096, E = 10, random ids. A step is ``emb(batch)``, ``(out * g).sum()``
and ``backward()`` with the gradients dropped before each step (as ``zero_grad(set_to_none=True)``),
so allocating the dense table gradient is counted. ``shared, no check`` is the bare lookup
``table(ids + offsets)``, to show what the id range check costs. The layouts alternate step by step
so a slow spell of the shared machine falls on both; each figure is the median of the repeats
after a warm-up (the minimum too: on a busy machine it is the steadier figure).

Usage::

    python benchmarks/ctr_embedding.py              # 30 repeats, two torch threads
    python benchmarks/ctr_embedding.py --threads 1  # one torch thread
    python benchmarks/ctr_embedding.py --repeats 5  # quicker

Writes ``results/ctr_embedding_<threads>_threads.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json

from mlpkit.blocks.embedding import FieldEmbedding
from mlpkit.data.fields import Field, FieldSpec

BATCH, EMBEDDING_DIM = 4096, 10
# Frappe_x1's vocabulary per field as BARS counts it: its training features plus one OOV row each.
FRAPPE_VOCAB = (955, 4083, 8, 8, 3, 4, 3, 10, 81, 234)
SIZES = {"frappe-like": FRAPPE_VOCAB, "criteo-like": (100_000,) * 26}


def _step(fn: Callable[[], torch.Tensor], params: list[torch.nn.Parameter], g: torch.Tensor) -> float:
    for p in params:
        p.grad = None
    start = time.perf_counter()
    (fn() * g).sum().backward()
    return time.perf_counter() - start


def time_sizes(vocab: tuple[int, ...], repeats: int) -> dict[str, float]:
    """Median milliseconds per step of each layout for one set of field vocabularies."""
    spec = FieldSpec(tuple(Field(f"f{i}", "categorical", v) for i, v in enumerate(vocab)))
    gen = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randint(0, v, (BATCH,), generator=gen) for v in vocab], dim=1)
    batch = {"sparse": ids}
    g = torch.randn(BATCH, len(vocab), EMBEDDING_DIM, generator=gen)
    shared = FieldEmbedding(spec, EMBEDDING_DIM, layout="shared")
    per_field = FieldEmbedding(spec, EMBEDDING_DIM, layout="per_field")
    table = shared.table
    assert table is not None
    cases: dict[str, tuple[Callable[[], torch.Tensor], list[torch.nn.Parameter]]] = {
        "shared": (lambda: shared(batch), list(shared.parameters())),
        "per_field": (lambda: per_field(batch), list(per_field.parameters())),
        "shared, no check": (lambda: table(ids + shared.cat_offsets), list(shared.parameters())),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for k in range(repeats + 3):  # 3 warm-up rounds
        for name, (fn, params) in cases.items():
            seconds = _step(fn, params, g)
            if k >= 3:
                times[name].append(seconds)
    return {name: 1000 * median(t) for name, t in times.items()} | {
        f"{name} (min)": 1000 * min(t) for name, t in times.items()
    }


def run(repeats: int) -> dict[str, dict[str, float]]:
    return {size_name: time_sizes(vocab, repeats) for size_name, vocab in SIZES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = run(args.repeats)
    columns = ["shared", "per_field", "shared, no check"]
    columns += [f"{name} (min)" for name in columns]
    print_table(
        [[size, *(results[size][name] for name in columns)] for size in results],
        ["ms per forward + backward", *columns],
    )
    path = write_json(
        f"ctr_embedding_{args.threads}_threads",
        {
            "batch_size": BATCH,
            "embedding_dim": EMBEDDING_DIM,
            "repeats": args.repeats,
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "machine": machine_info(),
            "load_average_after": os.getloadavg(),
            "ms": results,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
