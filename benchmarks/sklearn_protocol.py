"""Fashion-MNIST under the official benchmark's MLP protocol: mlpkit's MLPClassifier beside scikit-learn's.

The protocol of zalandoresearch/fashion-mnist's scikit-learn benchmark for MLPClassifier:
StandardScaler fitted on the training images, one hidden layer of 100 ReLU units, Adam,
alpha = 1e-4, and scikit-learn's defaults otherwise (batch 200, learning rate 1e-3, at most 200
epochs, stop when the training loss has not improved by 1e-4 for 10 epochs). Both estimators get
the same float32 input, which both keep in float32 (scikit-learn's precision rule, which mlpkit's
estimators follow; every run checks that its fitted weights are float32), in one process, over 3
seeds, with the order of the two alternating per seed so that slow spells of a shared machine fall
on both alike.

Reported per implementation: test accuracy (mean ± sd over seeds), epochs run (``n_iter_``), and
seconds per epoch (``fit`` time / ``n_iter_``); then the two acceptance checks:

- accuracy: mean mlpkit accuracy >= mean scikit-learn accuracy - 0.003;
- speed: mlpkit's seconds per epoch <= 0.6 x scikit-learn's (the mean of the per-seed ratios).

Usage::

    python benchmarks/sklearn_protocol.py              # 3 seeds, writes results/sklearn_protocol.json
    python benchmarks/sklearn_protocol.py --quick      # smoke run: 2 seeds x 3 epochs on 6,000 images
    python benchmarks/sklearn_protocol.py --blas-env-unset
        # also re-run the whole benchmark in a child process with OPENBLAS_CORETYPE and
        # OPENBLAS_L2_SIZE removed from its environment (and only its), and report both
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BLAS_ENV_VARS, machine_info, mean_sd, print_table, rerun_without_blas_env, write_json

from mlpkit.data import load_fashion_mnist

# The official protocol. Everything else is each library's default, the same numbers in both (batch
# "auto" = 200, learning rate 1e-3, max_iter 200, tol 1e-4, n_iter_no_change 10); only the weight
# initializers differ (see mlpkit.sklearn).
PROTOCOL: dict[str, Any] = {
    "hidden_layer_sizes": (100,),
    "activation": "relu",
    "solver": "adam",
    "alpha": 1e-4,
}
SEEDS = 3
ACCURACY_MARGIN = 0.003
SPEED_RATIO = 0.6
QUICK = {"seeds": 2, "train": 6000, "test": 2000, "max_iter": 3}


def make_estimators(seed: int, max_iter: int | None) -> dict[str, Any]:
    from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

    from mlpkit.sklearn import MLPClassifier

    extra = {} if max_iter is None else {"max_iter": max_iter}
    return {
        "mlpkit": MLPClassifier(**PROTOCOL, random_state=seed, **extra),
        "sklearn": SklearnMLPClassifier(**PROTOCOL, random_state=seed, **extra),
    }


def load(train: int | None, test: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised float32 images: the scaler is fitted on the training set only."""
    from sklearn.preprocessing import StandardScaler

    data = load_fashion_mnist()
    x_train = data.x_train[:train].astype(np.float32)
    x_test = data.x_test[:test].astype(np.float32)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)   # float32 in, float32 out
    if not x_train.dtype == x_test.dtype == np.float32:                      # the protocol's premise
        raise TypeError(f"expected float32 inputs, got {x_train.dtype} and {x_test.dtype}")
    return x_train, data.y_train[:train], x_test, data.y_test[:test]


def run_one(est: Any, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        est.fit(x, y)
        seconds = time.perf_counter() - start
    return {
        "fit_seconds": seconds,
        "n_iter": int(est.n_iter_),
        "epoch_seconds": seconds / est.n_iter_,
        "test_accuracy": float(est.score(xt, yt)),
        "final_train_loss": float(est.loss_curve_[-1]),
        "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        "dtype": str(est.coefs_[0].dtype),
    }


def benchmark(seeds: int, train: int | None, test: int | None, max_iter: int | None) -> dict[str, Any]:
    x, y, xt, yt = load(train, test)
    runs: dict[str, list[dict[str, Any]]] = {"mlpkit": [], "sklearn": []}
    for seed in range(seeds):
        estimators = make_estimators(seed, max_iter)
        names = list(estimators)
        for name in names[seed % 2 :] + names[: seed % 2]:             # alternate who goes first
            runs[name].append(run_one(estimators[name], x, y, xt, yt))
            r = runs[name][-1]
            if r["dtype"] != "float32":                                  # the protocol's premise
                raise TypeError(f"{name} trained in {r['dtype']} on float32 input, expected float32")
            print(f"  seed {seed} {name:8s} {r['n_iter']:3d} epochs x {r['epoch_seconds']:.3f} s, "
                  f"test accuracy {r['test_accuracy']:.4f}", file=sys.stderr)
    summary: dict[str, dict[str, Any]] = {
        name: {
            "test_accuracy": mean_sd([r["test_accuracy"] for r in rs]),
            "epoch_seconds": mean_sd([r["epoch_seconds"] for r in rs]),
            "n_iter": mean_sd([r["n_iter"] for r in rs]),
            "runs": rs,
        }
        for name, rs in runs.items()
    }
    pairs = zip(runs["mlpkit"], runs["sklearn"], strict=True)
    ratios = [ours["epoch_seconds"] / theirs["epoch_seconds"] for ours, theirs in pairs]
    accuracy_gap = summary["mlpkit"]["test_accuracy"]["mean"] - summary["sklearn"]["test_accuracy"]["mean"]
    return {
        "settings": {"protocol": {**PROTOCOL, "hidden_layer_sizes": list(PROTOCOL["hidden_layer_sizes"])},
                     "seeds": seeds, "train_samples": len(x), "test_samples": len(xt),
                     "max_iter": max_iter or "default (200)", "dtype": "float32"},
        "machine": machine_info(),
        "results": summary,
        "epoch_time_ratio": {"per_seed": ratios, "mean": statistics.fmean(ratios)},
        "accuracy_gap": accuracy_gap,
        "checks": {
            f"accuracy: mlpkit >= sklearn - {ACCURACY_MARGIN}": accuracy_gap >= -ACCURACY_MARGIN,
            f"speed: mlpkit epoch <= {SPEED_RATIO} x sklearn's": statistics.fmean(ratios) <= SPEED_RATIO,
        },
    }


def report(results: dict[str, dict[str, Any]]) -> None:
    """One table with a row per (BLAS environment, implementation), then the checks."""
    rows = []
    for label, result in results.items():
        for name, r in result["results"].items():
            ratio = result["epoch_time_ratio"]["mean"] if name == "mlpkit" else 1.0
            acc, sec, its = r["test_accuracy"], r["epoch_seconds"], r["n_iter"]
            rows.append([
                label,
                name,
                f"{acc['mean']:.4f} ± {acc['sd']:.4f}",
                f"{its['mean']:.0f} ± {its['sd']:.0f}",
                f"{sec['mean']:.3f} ± {sec['sd']:.3f}",
                f"{ratio:.2f}",
            ])
    first = next(iter(results.values()))["settings"]
    print(f"\nFashion-MNIST, {first['train_samples']} train / {first['test_samples']} test images, "
          f"{first['seeds']} seeds, float32; protocol {first['protocol']}, max_iter {first['max_iter']}")
    header = ["BLAS environment", "implementation", "test accuracy", "epochs", "s / epoch", "mlpkit/sklearn"]
    print_table(rows, header)
    for label, result in results.items():
        for check, ok in result["checks"].items():
            print(f"[{label}] {check}: {'PASS' if ok else 'FAIL'}")
    if first["max_iter"] != "default (200)":
        print("(a smoke run: a few epochs on a subset decide neither check)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=SEEDS)
    quick_help = f"smoke run: {QUICK['seeds']} seeds x {QUICK['max_iter']} epochs on {QUICK['train']} images"
    parser.add_argument("--quick", action="store_true", help=quick_help)
    unset_help = f"also run in a child process without {' and '.join(BLAS_ENV_VARS)}, and report both"
    parser.add_argument("--blas-env-unset", action="store_true", help=unset_help)
    parser.add_argument("--child-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        seeds, train, test, max_iter = QUICK["seeds"], QUICK["train"], QUICK["test"], QUICK["max_iter"]
    else:
        seeds, train, test, max_iter = args.seeds, None, None, None
    result = benchmark(seeds, train, test, max_iter)
    if args.child_json:
        print(json.dumps(result))
        return
    configured = {name: os.environ.get(name) for name in BLAS_ENV_VARS}
    label = "as configured (neither variable set)"
    if any(configured.values()):
        label = "as configured: " + ", ".join(f"{k}={v}" for k, v in configured.items() if v is not None)
    results = {label: result}
    if args.blas_env_unset:
        unset = rerun_without_blas_env(__file__, ["--quick"] if args.quick else ["--seeds", str(seeds)])
        if unset is None:
            print(f"\nneither {' nor '.join(BLAS_ENV_VARS)} is set: the run above already is the unset one")
        else:
            results[f"{' and '.join(BLAS_ENV_VARS)} unset"] = unset
    report(results)
    path = write_json("sklearn_protocol" + ("_quick" if args.quick else ""), {"runs": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
