"""The shipped ViT against the best plain MLP on Fashion-MNIST: accuracy over seeds, size, training
time and inference throughput.

Both models are trained by ``mlpkit train`` from their shipped configs (configs/vit_fashion_mnist.toml
on the torch engine, configs/best_mlp.toml on the engine its config names), each over 3 seeds; each
run's saved model is its best epoch on the 5,000 validation images (``monitor = "val_accuracy"``),
and the test set only scores it. The table gives the test accuracy's mean and sample standard
deviation over the seeds, the parameters, the training minutes per run (``summary.json``'s wall
time: loading, every epoch, and the final scoring), and the inference throughput of the saved
model as ``mlpkit evaluate`` and ``mlpkit predict`` run it (the NumPy network for the MLP, the
torch module for the ViT): images per second one image at a time (batch 1) and in batches of
256, the median of 3 rounds after a warm-up. The machine's load average before and after each run
is recorded: other jobs on this shared 2-core machine slow every number here down.

Usage::

    python benchmarks/vit_vs_mlp.py              # 2 models x 3 seeds, hours; writes results/vit_vs_mlp.json
    python benchmarks/vit_vs_mlp.py --quick      # 1 epoch on a 2,000 + 500 image subset -> ..._quick.json
    python benchmarks/vit_vs_mlp.py --seeds 0    # one seed per model
    python benchmarks/vit_vs_mlp.py --reuse      # measure the finished runs of the same settings
    python benchmarks/vit_vs_mlp.py --models ViT # train ViT only; keep the MLP's entry of the last file

The run directories are kept under ``--runs-dir`` (``runs/vit_vs_mlp`` of the current directory; a
temporary directory with ``--quick``), so ``mlpkit experiment vit-mlp --run DIR`` can read a ViT.
With ``--reuse``, a finished run there whose ``config.json`` equals the settings this benchmark
would train (one trained by ``mlpkit train --config configs/vit_fashion_mnist.toml --seed 1 --out
runs/vit_vs_mlp/vit-seed1``, say) is measured instead of trained again; its training minutes are its
own ``summary.json``'s.
With ``--models``, only the named models are trained and measured; every other model's entry is
copied from the results file this run replaces, marked ``"carried_over"`` with the settings and
machine it was measured with (a change to one config need not retrain the other for hours).

When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set, the inference throughput of the same saved
models is measured once more in a child process with both removed, and both are reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BLAS_ENV_VARS, machine_info, mean_sd, median, print_table, results_path, write_json

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "ViT": REPO / "configs" / "vit_fashion_mnist.toml",
    "best MLP": REPO / "configs" / "best_mlp.toml",
}
QUICK_SIZES = (2000, 500, 500)  # train (validation carved out of it), validation, test images
ROUNDS, BATCH, SINGLE_IMAGES, BATCHES = 3, 256, 200, 8


def quick_data(directory: Path) -> Path:
    """The first 2,000 training and 500 test images of Fashion-MNIST as IDX files in ``directory``."""
    from mlpkit.data.fashion_mnist import load_fashion_mnist
    from mlpkit.data.idx import write_idx

    data = load_fashion_mnist(download=False)
    n_train, _, n_test = QUICK_SIZES
    directory.mkdir(parents=True, exist_ok=True)
    write_idx(directory / "train-images-idx3-ubyte", data.x_train[:n_train].reshape(-1, 28, 28))
    write_idx(directory / "train-labels-idx1-ubyte", data.y_train[:n_train].astype(np.uint8))
    write_idx(directory / "t10k-images-idx3-ubyte", data.x_test[:n_test].reshape(-1, 28, 28))
    write_idx(directory / "t10k-labels-idx1-ubyte", data.y_test[:n_test].astype(np.uint8))
    return directory


def run_config(name: str, seed: int, out: Path, quick_dir: Path | None) -> Any:
    """The shipped config of ``name`` with this seed and output (and the quick subset, 1 epoch)."""
    from mlpkit.config import load_config

    config = load_config(CONFIGS[name])
    overrides: dict[str, dict[str, Any]] = {"run": {"seed": seed, "out": str(out)}}
    if quick_dir is not None:
        overrides["optim"] = {"epochs": 1}
        overrides["data"] = {"data_dir": str(quick_dir), "verify": False, "download": False,
                             "val_size": QUICK_SIZES[1]}
    return config.with_overrides(overrides, source=f"{CONFIGS[name].name} with benchmark settings")


def throughput(run_dir: Path) -> dict[str, float]:
    """Images per second of the saved model at batch 1 and batch 256 (median of the rounds)."""
    from mlpkit.tasks.fashion_mnist import load_dataset, load_run, pixels_to_features

    loaded = load_run(run_dir)
    model = loaded.model
    x = pixels_to_features(load_dataset(loaded.config).x_test, model.dtype)          # (N, 784)
    x_batches = np.resize(x, (BATCHES * BATCH, x.shape[1]))                          # wraps a small test set
    singles = [x[i % len(x) : i % len(x) + 1] for i in range(SINGLE_IMAGES)]         # each (1, 784)
    for one in singles[:10]:
        model.logits(one)                                                            # warm-up
    model.logits(x_batches[:BATCH])
    single_rates, batch_rates = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for one in singles:
            model.logits(one)
        single_rates.append(SINGLE_IMAGES / (time.perf_counter() - start))
        start = time.perf_counter()
        for i in range(BATCHES):
            model.logits(x_batches[i * BATCH : (i + 1) * BATCH])
        batch_rates.append(BATCHES * BATCH / (time.perf_counter() - start))
    return {"batch_1_images_per_s": median(single_rates), "batch_256_images_per_s": median(batch_rates)}


def finished_run(out: Path, config: Any) -> dict[str, Any] | None:
    """The summary of a finished run in ``out`` trained with exactly ``config``, or None.

    ``config.json``, read back, is compared with what the runner would record for the config this
    benchmark would train (:meth:`mlpkit.tasks.base.Task.recorded`), so a run trained from another
    config or version of the shipped file, or one that did not finish, is trained again.
    """
    from mlpkit.config import load_config
    from mlpkit.tasks import task_for

    summary_path, config_path = out / "summary.json", out / "config.json"
    if not (summary_path.is_file() and config_path.is_file()):
        return None
    # Compared as configs, not as JSON: a config.json written before a key existed reads as its default.
    if load_config(config_path, task=None) != task_for(config).recorded():
        logging.getLogger(__name__).info("%s was trained with other settings: training it again", out)
        return None
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    return summary


def train_and_measure(name: str, seed: int, runs_dir: Path, quick_dir: Path | None,
                      reuse: bool = False) -> dict[str, Any]:
    from mlpkit.run import load_run, train_run

    out = runs_dir / f"{name.lower().replace(' ', '-')}-seed{seed}"
    config = run_config(name, seed, out, quick_dir)
    summary = finished_run(out, config) if reuse else None
    if summary is not None:
        logging.getLogger(__name__).info("measuring the finished run %s", out)
        load_before = load_after = None      # trained earlier: the load during training is not known
    else:
        load_before = os.getloadavg()[0]
        summary = train_run(config, overwrite=True).summary
        load_after = os.getloadavg()[0]
    loaded = load_run(out)
    return {
        "seed": seed,
        "run_dir": out.name,
        "engine": summary["engine"],
        "test_accuracy": summary["test_accuracy"],
        "best_val_accuracy": summary["best_val_accuracy"],
        "best_epoch": summary["best_epoch"],
        "epochs_run": summary["epochs_run"],
        "training_minutes": summary["wall_seconds"] / 60,
        "parameters": loaded.model.num_parameters,
        "description": loaded.model.description,
        "reused": load_before is None,
        "load_average_before_after": [load_before, load_after],
        **throughput(out),
    }


def benchmark(seeds: list[int], runs_dir: Path, quick_dir: Path | None,
              reuse: bool = False, models: list[str] | None = None) -> dict[str, Any]:
    import torch

    results: dict[str, Any] = {}
    for name in models or list(CONFIGS):
        runs = []
        for seed in seeds:
            logging.getLogger(__name__).info("training %s, seed %d", name, seed)
            runs.append(train_and_measure(name, seed, runs_dir, quick_dir, reuse))
        results[name] = {
            "config": str(CONFIGS[name].relative_to(REPO)),
            "runs": runs,
            "test_accuracy": mean_sd([r["test_accuracy"] for r in runs]),
            "training_minutes": mean_sd([r["training_minutes"] for r in runs]),
            "parameters": runs[0]["parameters"],
            "batch_1_images_per_s": median([r["batch_1_images_per_s"] for r in runs]),
            "batch_256_images_per_s": median([r["batch_256_images_per_s"] for r in runs]),
        }
    return {
        "settings": {
            "seeds": seeds,
            "quick": quick_dir is not None,
            "reuse": reuse,
            "data": "Fashion-MNIST" if quick_dir is None else
                    f"Fashion-MNIST subset: {QUICK_SIZES[0]} train ({QUICK_SIZES[1]} of them validation), "
                    f"{QUICK_SIZES[2]} test, 1 epoch",
            "throughput": f"median of {ROUNDS} rounds: {SINGLE_IMAGES} single images; {BATCHES} batches "
                          f"of {BATCH}",
        },
        "machine": {**machine_info(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        "results": results,
    }


def carry_over(payload: dict[str, Any], earlier: dict[str, Any] | None) -> None:
    """Add to ``payload`` the models it did not measure, from ``earlier`` (the last file's payload).

    Each copied entry gets ``"carried_over"``: the seeds, settings and machine it was measured
    with; its runs' throughput without the BLAS variables is copied too. The table keeps the
    order of :data:`CONFIGS`.

    Raises
    ------
    SystemExit
        When a model is neither measured now nor in ``earlier``: the table would lack it.
    """
    earlier = earlier or {}
    measured = payload["as_configured"]["results"]
    before = earlier.get("as_configured", {})
    missing = [name for name in CONFIGS if name not in measured and name not in before.get("results", {})]
    if missing:
        raise SystemExit(f"--models leaves out {missing}, and the existing results file has no entry to "
                         "keep for them: measure them too")
    carried = {name: {**before["results"][name],
                      "carried_over": {"settings": before["settings"], "machine": before["machine"]}}
               for name in CONFIGS if name not in measured}
    payload["as_configured"]["results"] = {name: measured.get(name) or carried[name] for name in CONFIGS}
    unset_before = earlier.get("throughput_blas_env_unset", {})
    runs = [run["run_dir"] for entry in carried.values() for run in entry["runs"]]
    kept = {run: unset_before[run] for run in runs if run in unset_before}
    if kept and "throughput_blas_env_unset" in payload:
        payload["throughput_blas_env_unset"].update(kept)


def report(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(f"\nseeds {s['seeds']}; {s['data']}; throughput: {s['throughput']}")
    rows = []
    for name, r in result["results"].items():
        acc, minutes = r["test_accuracy"], r["training_minutes"]
        rows.append([
            name + (" (earlier file)" if "carried_over" in r else ""), f"{acc['mean']:.4f} ± {acc['sd']:.4f}",
            " ".join(f"{run['test_accuracy']:.4f}" for run in r["runs"]),
            f"{r['parameters']:,}", f"{minutes['mean']:.1f}",
            f"{r['batch_1_images_per_s']:,.0f}", f"{r['batch_256_images_per_s']:,.0f}",
        ])
    print_table(rows, ["model", "test acc (mean ± sd)", "per seed", "parameters", "train min",
                       "img/s batch 1", "img/s batch 256"])


def throughput_without_blas_env(run_dirs: list[Path]) -> dict[str, Any] | None:
    """The same saved models' throughput in a child process without the BLAS variables, or None."""
    import subprocess

    if not any(name in os.environ for name in BLAS_ENV_VARS):
        return None
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV_VARS}
    out = subprocess.run(
        [sys.executable, __file__, "--throughput-of", *map(str, run_dirs)],
        env=env, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="1 epoch on a 2,000 + 500 image subset")
    parser.add_argument("--runs-dir", type=Path, default=None, help="where the runs go [runs/vit_vs_mlp]")
    parser.add_argument("--reuse", action="store_true",
                        help="measure a finished run of these settings in --runs-dir, not train it")
    parser.add_argument("--models", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                        help="train and measure only these; keep the others' entries of the last file")
    parser.add_argument("--throughput-of", type=Path, nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.throughput_of:
        print(json.dumps({str(d.name): throughput(d) for d in args.throughput_of}))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        quick_dir = quick_data(Path(tmp) / "data") if args.quick else None
        runs_dir = args.runs_dir or (Path(tmp) / "runs" if args.quick else Path("runs") / "vit_vs_mlp")
        result = benchmark(args.seeds, runs_dir, quick_dir, args.reuse, args.models)
        run_dirs = [runs_dir / run["run_dir"] for r in result["results"].values() for run in r["runs"]]
        payload: dict[str, Any] = {"as_configured": result}
        if (unset := throughput_without_blas_env(run_dirs)) is not None:
            payload["throughput_blas_env_unset"] = unset
    name = "vit_vs_mlp" + ("_quick" if args.quick else "")
    if len(args.models) < len(CONFIGS):
        path = results_path(name)
        carry_over(payload, json.loads(path.read_text()) if path.is_file() else None)
    report(payload["as_configured"])
    if "throughput_blas_env_unset" in payload:
        print("\nthroughput with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (images/s, batch 1 / 256):")
        for run_dir, rates in payload["throughput_blas_env_unset"].items():
            one, many = rates["batch_1_images_per_s"], rates["batch_256_images_per_s"]
            print(f"  {run_dir}: {one:,.0f} / {many:,.0f}")
    path = write_json(name, payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
