"""The classic recipe (784-256-10, ReLU, SGD lr 0.1, batch 256, 10 epochs) in three implementations.

In one process, over several seeds, it times an epoch of

- the mlpkit NumPy engine (``NumpyTrainer.train_epoch``, the code path of ``mlpkit train``),
- scikit-learn's ``MLPClassifier`` with identical settings (solver "sgd", momentum 0,
  learning_rate_init 0.1, batch 256, alpha 0, float32 input), one ``partial_fit`` per epoch,
- a minimal hand-written PyTorch loop over pre-loaded tensors, if torch is installed,

and reports the median seconds per epoch, the ratios, the final and best-epoch test accuracy
(mean and sd over seeds), and the engine's GEMM throughput as a fraction of this machine's
float32 GEMM peak, measured in the same run. Run order rotates per seed so that slow spells of
the shared machine fall on every implementation alike, and each run starts after a pause in
which the previous one's idle BLAS/OpenMP threads stop spinning (``_common.settle``).

Usage::

    python benchmarks/fashion_mnist_engine.py            # 5 seeds, writes results/fashion_mnist_engine.json
    python benchmarks/fashion_mnist_engine.py --quick    # 2 seeds x 2 epochs on 10k images

When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set, the script also re-runs itself with both
removed (in that child process only) and reports both settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    machine_info,
    mean_sd,
    measure_gemm_peak,
    median,
    print_table,
    rerun_without_blas_env,
    settle,
    write_json,
)

from mlpkit.data import load_fashion_mnist
from mlpkit.engine import SGD, SoftmaxCrossEntropyLoss, build_mlp
from mlpkit.spec import MLPSpec
from mlpkit.train import NumpyTrainer

HIDDEN, CLASSES, LR, BATCH = 256, 10, 0.1, 256

EpochResult = tuple[float, float]  # (seconds of training, test accuracy after it)


def gemm_flops_per_epoch(n: int, d: int = 784, h: int = HIDDEN, c: int = CLASSES) -> float:
    """GEMM flops of one epoch of the engine: forward x@W1, h@W2; backward dW1, dW2 and dh.

    The engine skips dL/dx of the first layer, so the (B, H) @ (H, D) product is not counted.
    Each (m, k) @ (k, n) product is 2mkn flops.
    """
    return 2.0 * n * (d * h + h * c) + 2.0 * n * (d * h + h * c) + 2.0 * n * h * c


def run_engine(
    x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, seed: int, epochs: int
) -> list[EpochResult]:
    rng = np.random.default_rng(seed)
    net = build_mlp(MLPSpec(784, (HIDDEN,), CLASSES, init="normal", init_std=0.01), rng=rng)
    trainer = NumpyTrainer(
        net,
        loss=SoftmaxCrossEntropyLoss(),
        optimizer=SGD(net.parameters().values(), lr=LR),
        rng=rng,
        batch_size=BATCH,
    )
    results = []
    for _ in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch(x, y)
        seconds = time.perf_counter() - start
        _, accuracy = trainer.evaluate(xt, yt)
        results.append((seconds, float(accuracy)))
    return results


def run_sklearn(
    x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, seed: int, epochs: int
) -> list[EpochResult]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        activation="relu",
        solver="sgd",
        momentum=0.0,
        learning_rate_init=LR,
        batch_size=BATCH,
        alpha=0.0,
        random_state=seed,
        shuffle=True,
    )
    classes = np.arange(CLASSES)
    results = []
    for _ in range(epochs):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(x, y, classes=classes)  # one epoch of minibatch SGD
        seconds = time.perf_counter() - start
        results.append((seconds, float(clf.score(xt, yt))))
    return results


def run_torch(
    x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, seed: int, epochs: int
) -> list[EpochResult]:
    """The d2l-style concise loop, written the way a careful user would, nothing more."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    xts, yts = torch.from_numpy(xt), torch.from_numpy(yt)
    net = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))
    for module in net:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    results = []
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(xs), generator=gen)
        for i in range(0, len(xs), BATCH):
            idx = perm[i : i + BATCH]
            loss = loss_fn(net(xs[idx]), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            accuracy = (net(xts).argmax(dim=1) == yts).float().mean().item()
        results.append((seconds, accuracy))
    return results


def measure_engine_gemm_kernels(x: np.ndarray, repeats: int = 3) -> float:
    """GFLOP/s of the engine's GEMMs alone, replaying one epoch's products with its shapes and layout."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((784, HIDDEN), dtype=np.float32)
    w2 = rng.standard_normal((HIDDEN, CLASSES), dtype=np.float32)
    g1 = np.empty_like(w1)
    g2 = np.empty_like(w2)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(x), BATCH):
            xb = x[i : i + BATCH]
            h = xb @ w1
            z = h @ w2
            np.matmul(h.T, z, out=g2)
            dh = z @ w2.T
            np.matmul(xb.T, dh, out=g1)
        best = min(best, time.perf_counter() - start)
    return gemm_flops_per_epoch(len(x)) / best / 1e9


def benchmark(seeds: int, epochs: int, subset: int | None) -> dict[str, Any]:
    data = load_fashion_mnist()
    x = (data.x_train.astype(np.float32) / 255.0)[:subset]
    y = data.y_train[:subset]
    xt = data.x_test.astype(np.float32) / 255.0
    yt = data.y_test
    runners: dict[str, Callable[..., list[EpochResult]]] = {"mlpkit": run_engine, "sklearn": run_sklearn}
    try:
        import torch

        torch.set_num_threads(torch.get_num_threads())
        runners["torch"] = run_torch
    except ImportError:
        pass
    peak = measure_gemm_peak()
    per_run: dict[str, list[list[EpochResult]]] = {name: [] for name in runners}
    names = list(runners)
    for seed in range(seeds):
        for name in names[seed % len(names) :] + names[: seed % len(names)]:  # rotate the order
            settle()  # the previous runner's threads stop spinning
            per_run[name].append(runners[name](x, y, xt, yt, seed, epochs))
            print(
                f"  seed {seed} {name:8s} epoch s {median([s for s, _ in per_run[name][-1]]):.3f}  "
                f"final acc {per_run[name][-1][-1][1]:.4f}",
                file=sys.stderr,
            )
    peak = max(peak, measure_gemm_peak())  # best of before and after
    summary: dict[str, Any] = {}
    for name, runs in per_run.items():
        seconds = [s for run in runs for s, _ in run]
        summary[name] = {
            "median_epoch_seconds": median(seconds),
            "final_test_accuracy": mean_sd([run[-1][1] for run in runs]),
            "best_epoch_test_accuracy": mean_sd([max(a for _, a in run) for run in runs]),
        }
    engine_seconds = summary["mlpkit"]["median_epoch_seconds"]
    flops = gemm_flops_per_epoch(len(x))
    gemm_kernels = measure_engine_gemm_kernels(x)
    result = {
        "settings": {
            "seeds": seeds,
            "epochs": epochs,
            "train_samples": len(x),
            "batch_size": BATCH,
            "lr": LR,
        },
        "machine": machine_info(),
        "gemm_peak_gflops": peak,
        "results": summary,
        "ratios": {
            f"mlpkit/{other}": engine_seconds / summary[other]["median_epoch_seconds"]
            for other in summary
            if other != "mlpkit"
        },
        "engine_gemm": {
            "flops_per_epoch": flops,
            "end_to_end_gflops": flops / engine_seconds / 1e9,
            "end_to_end_fraction_of_peak": flops / engine_seconds / 1e9 / peak,
            "gemm_kernels_gflops": gemm_kernels,
            "gemm_kernels_fraction_of_peak": gemm_kernels / peak,
        },
    }
    return result


def report(result: dict[str, Any], label: str) -> None:
    print(
        f"\n{label}: {result['settings']['seeds']} seeds x {result['settings']['epochs']} epochs, "
        f"{result['settings']['train_samples']} images; "
        f"float32 GEMM peak {result['gemm_peak_gflops']:.0f} GFLOP/s"
    )
    rows = []
    for name, r in result["results"].items():
        ratio = result["ratios"].get(f"mlpkit/{name}", 1.0)
        rows.append(
            [
                name,
                r["median_epoch_seconds"],
                ratio,
                f"{r['final_test_accuracy']['mean']:.4f} ± {r['final_test_accuracy']['sd']:.4f}",
                f"{r['best_epoch_test_accuracy']['mean']:.4f} ± {r['best_epoch_test_accuracy']['sd']:.4f}",
            ]
        )
    print_table(
        rows, ["implementation", "s/epoch (median)", "mlpkit / it", "final test acc", "best-epoch test acc"]
    )
    g = result["engine_gemm"]
    print(
        f"engine GEMM: {g['end_to_end_gflops']:.0f} GFLOP/s over whole epochs = "
        f"{g['end_to_end_fraction_of_peak']:.0%} of peak; "
        f"the same GEMMs alone {g['gemm_kernels_gflops']:.0f} GFLOP/s = "
        f"{g['gemm_kernels_fraction_of_peak']:.0%} of peak"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 seeds x 2 epochs on 10,000 images")
    parser.add_argument("--child-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds, epochs, subset = (2, 2, 10_000) if args.quick else (args.seeds, args.epochs, None)
    result = benchmark(seeds, epochs, subset)
    if args.child_json:
        print(json.dumps(result))
        return
    report(result, "as configured (BLAS environment of this machine)")
    extra = ["--quick"] if args.quick else ["--seeds", str(seeds), "--epochs", str(epochs)]
    unset = rerun_without_blas_env(__file__, extra)
    payload = {"as_configured": result}
    if unset is not None:
        report(unset, "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset")
        payload["blas_env_unset"] = unset
    path = write_json("fashion_mnist_engine" + ("_quick" if args.quick else ""), payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
