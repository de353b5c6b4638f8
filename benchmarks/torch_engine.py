"""Seconds per epoch of the torch path of ``mlpkit train`` against a minimal hand-written PyTorch loop.

Acceptance: ``TorchTrainer`` (the code path of ``mlpkit train --engine torch``) may take at most
1.10 times the seconds per epoch of the loop below; the trainer should add almost nothing. The
NumPy engine (``NumpyTrainer``, ``mlpkit train``'s default path) runs in the same process for the
table.

The job is the classic recipe as the CLI runs it: Fashion-MNIST, 55,000 training and 5,000
validation images scaled to [0, 1], 784-256-10 ReLU, N(0, 0.01²) weights, SGD lr 0.1, batch 256,
float32, one validation pass per epoch. Every implementation does the same work per epoch: a
seeded shuffle, the training pass, and the validation loss and accuracy. An epoch is timed around
the whole ``fit(epochs=1)`` call (so the trainer's per-epoch bookkeeping is counted); the first
epoch of each run is a warm-up and is not counted. The three run in lockstep, one epoch each in an
order that rotates every epoch, so a slow spell of this shared machine falls on neighbouring
epochs of all of them, with a pause before each epoch so that the threads of the implementation
that ran before it have stopped spinning (``_common.settle``). The acceptance ratio is the median
over epochs of the paired ratio (trainer epoch / hand-written epoch run next to it); the table
also gives the medians.

Usage::

    python benchmarks/torch_engine.py            # 3 repeats x 6 epochs, writes results/torch_engine.json
    python benchmarks/torch_engine.py --quick    # 3 x 3 epochs on 10,000 images -> torch_engine_quick.json
    python benchmarks/torch_engine.py --threads 1   # one torch thread: steadier on a busy shared machine

When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set, the script re-runs itself once with both
removed (in that child process only) and reports both settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, rerun_without_blas_env, settle, write_json

HIDDEN, CLASSES, LR, BATCH, VAL_SIZE, STD = 256, 10, 0.1, 256, 5000, 0.01
MAX_RATIO = 1.10

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def load_data(subset: int | None) -> tuple[Data, str]:
    """The CLI's split of Fashion-MNIST (random images of the same shape if the files are absent)."""
    from mlpkit.errors import DataNotFoundError

    rng = np.random.default_rng(0)
    try:
        from mlpkit.data import load_fashion_mnist

        data = load_fashion_mnist(download=False)
        x_all, y_all, source = data.x_train, data.y_train, "Fashion-MNIST"
    except DataNotFoundError:
        x_all = rng.integers(0, 256, (60000, 784), dtype=np.uint8)
        y_all, source = rng.integers(0, CLASSES, 60000), "random images (Fashion-MNIST not found)"
    order = rng.permutation(len(x_all))
    val_idx, train_idx = order[:VAL_SIZE], order[VAL_SIZE:][:subset]
    x = x_all.reshape(len(x_all), -1).astype(np.float32) / 255.0
    return (x[train_idx], y_all[train_idx], x[val_idx], y_all[val_idx]), source


EpochRunner = Iterator[float]  # yields the seconds of each epoch it runs


def torch_trainer_epochs(data: Data, seed: int, accuracy: list[float]) -> EpochRunner:
    """``TorchTrainer`` exactly as ``mlpkit train --engine torch`` builds it, one ``fit`` epoch per step."""
    import torch

    from mlpkit.spec import MLPSpec
    from mlpkit.torch_engine import build_torch_mlp
    from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer

    x, y, xv, yv = data
    torch.manual_seed(seed)
    model = build_torch_mlp(
        MLPSpec(784, (HIDDEN,), CLASSES, init="normal", init_std=STD), rng=np.random.default_rng(seed)
    )
    trainer = TorchTrainer(
        model,
        loss=build_loss("cross_entropy"),
        optimizer=build_optimizer("sgd", model, lr=LR),
        rng=np.random.default_rng(seed + 1),
        batch_size=BATCH,
        device="cpu",
        restore_best=False,  # restore-best runs once at the end of a real run
        on_epoch_end=lambda record: accuracy.append(record["val_accuracy"]),
    )
    while True:
        start = time.perf_counter()
        trainer.fit(x, y, xv, yv, epochs=1)
        yield time.perf_counter() - start


def handwritten_epochs(data: Data, seed: int, accuracy: list[float]) -> EpochRunner:
    """The minimal loop a careful user writes over pre-loaded tensors: shuffle, step, validate."""
    import torch
    from torch import nn

    x, y, xv, yv = data
    torch.manual_seed(seed)
    xs, ys, xvs, yvs = (torch.from_numpy(a) for a in (x, y, xv, yv))
    net = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))
    for module in net:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=STD)
            nn.init.zeros_(module.bias)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    rng = np.random.default_rng(seed + 1)
    while True:
        start = time.perf_counter()
        perm = torch.from_numpy(rng.permutation(len(xs)))
        total = torch.zeros(())
        for i in range(0, len(xs), BATCH):
            idx = perm[i : i + BATCH]
            loss = loss_fn(net(xs[idx]), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        with torch.no_grad():
            logits = net(xvs)
            _ = (total.item() / len(xs), loss_fn(logits, yvs).item())
            accuracy.append((logits.argmax(dim=1) == yvs).float().mean().item())
        yield time.perf_counter() - start


def numpy_trainer_epochs(data: Data, seed: int, accuracy: list[float]) -> EpochRunner:
    """``NumpyTrainer``, the path of ``mlpkit train --engine numpy``."""
    from mlpkit.engine import SGD, SoftmaxCrossEntropyLoss, build_mlp
    from mlpkit.spec import MLPSpec
    from mlpkit.train import NumpyTrainer

    x, y, xv, yv = data
    net = build_mlp(
        MLPSpec(784, (HIDDEN,), CLASSES, init="normal", init_std=STD), rng=np.random.default_rng(seed)
    )
    trainer = NumpyTrainer(
        net,
        loss=SoftmaxCrossEntropyLoss(),
        optimizer=SGD(net.parameters().values(), lr=LR),
        rng=np.random.default_rng(seed + 1),
        batch_size=BATCH,
        restore_best=False,
        on_epoch_end=lambda record: accuracy.append(record["val_accuracy"]),
    )
    while True:
        start = time.perf_counter()
        trainer.fit(x, y, xv, yv, epochs=1)
        yield time.perf_counter() - start


RUNNERS: dict[str, Callable[[Data, int, list[float]], EpochRunner]] = {
    "TorchTrainer": torch_trainer_epochs,
    "hand-written torch loop": handwritten_epochs,
    "NumpyTrainer": numpy_trainer_epochs,
}
TRAINER, BASELINE = "TorchTrainer", "hand-written torch loop"


def benchmark(repeats: int, epochs: int, subset: int | None) -> dict[str, Any]:
    """Run the implementations in lockstep, one epoch each in rotating order, so that a slow spell
    of the shared machine hits neighbouring epochs of all of them; compare epoch by epoch."""
    import torch

    data, source = load_data(subset)
    names = list(RUNNERS)
    seconds: dict[str, list[list[float]]] = {name: [] for name in names}
    accuracy: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        last_acc: dict[str, list[float]] = {name: [] for name in names}
        runners = {name: RUNNERS[name](data, repeat, last_acc[name]) for name in names}
        for name in names:
            seconds[name].append([])
        for epoch in range(epochs):
            shift = (repeat * epochs + epoch) % len(names)
            for name in names[shift:] + names[:shift]:  # rotate the order every epoch
                settle()  # the previous implementation's threads stop spinning first
                s = next(runners[name])
                if epoch:  # the first epoch warms up
                    seconds[name][-1].append(s)
        for name in names:
            accuracy[name].append(float(last_acc[name][-1]))
        print(
            f"  repeat {repeat}: " + ", ".join(f"{n} {median(seconds[n][-1]):.3f} s" for n in names),
            file=sys.stderr,
        )
    pooled = {name: [s for run in runs for s in run] for name, runs in seconds.items()}
    paired = [a / b for a, b in zip(pooled[TRAINER], pooled[BASELINE], strict=True)]
    summary = {
        name: {
            "median_epoch_seconds": median(pooled[name]),
            "per_repeat_median_seconds": [median(run) for run in seconds[name]],
            "epoch_seconds": seconds[name],
            "final_val_accuracy": accuracy[name],
        }
        for name in names
    }
    ratio = median(paired)
    return {
        "settings": {
            "repeats": repeats,
            "epochs_per_run": epochs,
            "timed_epochs_per_run": epochs - 1,
            "train_samples": len(data[0]),
            "val_samples": len(data[2]),
            "data": source,
            "batch_size": BATCH,
            "lr": LR,
            "hidden": HIDDEN,
        },
        "machine": machine_info() | {"torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        "results": summary,
        "ratio_trainer_over_handwritten": ratio,
        "ratio_of_medians": summary[TRAINER]["median_epoch_seconds"]
        / summary[BASELINE]["median_epoch_seconds"],
        "paired_epoch_ratios": paired,
        "max_ratio": MAX_RATIO,
        "passed": ratio <= MAX_RATIO,
    }


def report(result: dict[str, Any], label: str) -> None:
    s = result["settings"]
    print(
        f"\n{label}: {s['repeats']} repeats x {s['timed_epochs_per_run']} timed epochs, "
        f"{s['train_samples']} train + "
        f"{s['val_samples']} val images ({s['data']}); torch {result['machine']['torch']}, "
        f"{result['machine']['torch_threads']} threads"
    )
    base = result["results"]["hand-written torch loop"]["median_epoch_seconds"]
    rows = []
    for name, r in result["results"].items():
        accs = r["final_val_accuracy"]
        rows.append(
            [
                name,
                r["median_epoch_seconds"],
                r["median_epoch_seconds"] / base,
                " ".join(f"{v:.3f}" for v in r["per_repeat_median_seconds"]),
                f"{float(np.mean(accs)):.4f}",
            ]
        )
    print_table(rows, ["implementation", "s/epoch (median)", "/ hand-written", "per repeat", "final val acc"])
    verdict = "PASS" if result["passed"] else "FAIL"
    paired = result["paired_epoch_ratios"]
    print(
        f"TorchTrainer / hand-written loop, median of {len(paired)} paired epochs = "
        f"{result['ratio_trainer_over_handwritten']:.3f} (limit {result['max_ratio']:.2f}): {verdict}; "
        f"ratio of medians {result['ratio_of_medians']:.3f}; "
        f"paired range {min(paired):.3f}..{max(paired):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run; the first is a warm-up")
    parser.add_argument("--quick", action="store_true", help="3 repeats x 3 epochs on 10,000 images")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's own choice)"
    )
    parser.add_argument("--child-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.epochs < 2 or args.repeats < 1:
        parser.error("need --epochs >= 2 (the first is not timed) and --repeats >= 1")
    repeats, epochs, subset = (3, 3, 10_000) if args.quick else (args.repeats, args.epochs, None)
    result = benchmark(repeats, epochs, subset)
    if args.child_json:
        print(json.dumps(result))
        return
    report(result, "as configured (BLAS environment of this machine)")
    extra = ["--quick"] if args.quick else ["--repeats", str(repeats), "--epochs", str(epochs)]
    extra += [] if args.threads is None else ["--threads", str(args.threads)]
    unset = rerun_without_blas_env(__file__, extra)
    payload: dict[str, Any] = {"as_configured": result}
    if unset is not None:
        report(unset, "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset")
        payload["blas_env_unset"] = unset
    path = write_json("torch_engine" + ("_quick" if args.quick else ""), payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
