"""Inference speed of a trained run by runtime: NumPy engine, torch eager, torch.compile, onnxruntime.

Two models, each trained briefly through the CLI's own runner and exported with ``mlpkit export``:

- the classic MLP (784-256-10, ReLU) on Fashion-MNIST, 1 epoch of the classic recipe;
- DeepFM with BARS's Frappe_x1 settings (10 fields, embedding 10, DNN 400-400-400 with batch norm)
  on Frappe_x1, 1 epoch (``--frappe DIR``; default ``../shared/datasets/frappe_x1`` beside the
  repository). The NumPy engine has no DeepFM.

For each runtime: latency of one row (p50 and p99 over ``--calls`` calls after a warm-up, numpy
array in, numpy array out, conversions included) and throughput at batch 256 (rows per second,
median of ``--rounds`` timed bursts of about a second). The runtimes take turns within each round
(with a pause between, see ``_common.settle``), so the shared machine's noise falls on all of them
alike. Every runtime gets the same thread count (``--threads``, default 1: the machines here have 2
cores shared with other work). torch.compile's compile time is reported, not counted.

The measurement runs twice, in child processes: with OpenBLAS's kernel forced
(``OPENBLAS_CORETYPE=Haswell``, ``OPENBLAS_L2_SIZE=512``) and with both variables unset.

    python benchmarks/inference.py [--threads 1] [--calls 2000] [--rounds 5]

Prints one table per BLAS setting and writes ``benchmarks/results/inference.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine_info, print_table, settle, write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FRAPPE = REPO.parent / "shared" / "datasets" / "frappe_x1"
BLAS_SETTINGS = {
    "haswell": {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"},
    "unset": {},
}
RUNTIMES = ("numpy", "torch eager", "torch.compile", "onnxruntime")


def train_and_export(root: Path, frappe: Path) -> dict[str, Path]:
    """The two runs, trained through ``mlpkit`` and exported next to their weights."""
    from mlpkit.cli import main
    from mlpkit.export import export_run

    runs = {"classic MLP": root / "mlp", "DeepFM": root / "deepfm"}
    assert main(["-q", "train", "--epochs", "1", "--no-progress", "--out", str(runs["classic MLP"])]) == 0
    assert (
        main(
            [
                "-q",
                "ctr",
                "train",
                "--data",
                str(frappe),
                "--model",
                "deepfm",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--no-progress",
                "--cache-dir",
                str(root / "cache"),
                "--out",
                str(runs["DeepFM"]),
            ]
        )
        == 0
    )
    for run_dir in runs.values():
        export_run(run_dir)
    return runs


def mlp_predictors(run_dir: Path, threads: int) -> tuple[dict[str, Any], Callable[[int], Any]]:
    """The classic MLP's predict function per runtime, and a maker of (n, 784) inputs."""
    import torch

    from mlpkit.runtime import OnnxModel
    from mlpkit.tasks.fashion_mnist import load_run
    from mlpkit.torch_engine import build_torch_mlp, load_state_arrays

    loaded = load_run(run_dir)
    network = loaded.network  # NumPy engine, eval mode
    module = build_torch_mlp(loaded.spec).eval()
    load_state_arrays(module, network.state_dict())
    onnx = OnnxModel(run_dir / "model.onnx", threads=threads)

    def eager(model: Any) -> Callable[[np.ndarray], np.ndarray]:
        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()

        return run

    predictors: dict[str, Any] = {
        "numpy": network.forward,
        "torch eager": eager(module),
        "torch.compile": _compiled(module, eager, [torch.zeros(1, 784), torch.zeros(256, 784)]),
        "onnxruntime": lambda x: onnx.session.run(["logits"], {"features": x})[0],
    }
    rng = np.random.default_rng(0)
    return predictors, lambda n: rng.random((n, 784), dtype=np.float32)


def deepfm_predictors(run_dir: Path, threads: int) -> tuple[dict[str, Any], Callable[[int], Any]]:
    """DeepFM's predict function per runtime (no NumPy engine), and a maker of (n, F) id batches."""
    import torch

    from mlpkit.runtime import OnnxModel
    from mlpkit.tasks.ctr import load_ctr_run

    loaded = load_ctr_run(run_dir)
    model = loaded.model.eval()
    onnx = OnnxModel(run_dir / "model.onnx", threads=threads)
    vocab = np.array([f.vocab_size for f in loaded.fitted.fields.categorical])  # (F,)

    def eager(m: Any) -> Callable[[np.ndarray], np.ndarray]:
        def run(ids: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return m({"sparse": torch.from_numpy(ids)}).numpy()

        return run

    examples = [{"sparse": torch.zeros(n, len(vocab), dtype=torch.int64)} for n in (1, 256)]
    predictors: dict[str, Any] = {
        "numpy": None,
        "torch eager": eager(model),
        "torch.compile": _compiled(model, eager, examples),
        "onnxruntime": lambda ids: onnx.session.run(["logits"], {"sparse": ids})[0],
    }
    rng = np.random.default_rng(0)
    return predictors, lambda n: (rng.random((n, len(vocab))) * vocab).astype(np.int64)


def _compiled(
    module: Any, eager: Callable[[Any], Callable[[np.ndarray], np.ndarray]], examples: list[Any]
) -> Any:
    """``eager(torch.compile(module))`` with its default settings, compiled now for every example's
    shape (batch 1, then 256: a second shape makes it recompile with a dynamic batch), the time
    kept; or the error as text."""
    import torch

    try:
        compiled = torch.compile(module)
        start = time.perf_counter()
        with torch.inference_mode():
            for example in examples:
                compiled(example)
        run = eager(compiled)
        run.compile_seconds = time.perf_counter() - start  # type: ignore[attr-defined]
        return run
    except Exception as exc:  # an inductor that cannot build on this machine: say so in the table
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"


def latency(fn: Callable[[np.ndarray], Any], rows: list[np.ndarray]) -> list[float]:
    """Seconds of each call on one row."""
    times = []
    for x in rows:
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return times


def throughput(fn: Callable[[np.ndarray], Any], batch: np.ndarray, seconds: float = 1.0) -> float:
    """Rows per second over a burst of about ``seconds``."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        fn(batch)
        calls += 1
    return calls * len(batch) / elapsed


def measure(threads: int, calls: int, rounds: int, frappe: Path) -> dict[str, Any]:
    """Everything in this process, under the BLAS setting it was started with."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = train_and_export(Path(tmp), frappe)
        makers = {"classic MLP": mlp_predictors, "DeepFM": deepfm_predictors}
        for name, run_dir in runs.items():
            predictors, inputs = makers[name](run_dir, threads)
            singles = [inputs(1) for _ in range(calls)]
            batch = inputs(256)
            times: dict[str, list[float]] = {r: [] for r in RUNTIMES}
            rates: dict[str, list[float]] = {r: [] for r in RUNTIMES}
            for fn in predictors.values():  # warm-up
                if callable(fn):
                    latency(fn, singles[:100])
                    fn(batch)
            for _ in range(rounds):
                for runtime, fn in predictors.items():
                    if not callable(fn):
                        continue
                    settle()
                    times[runtime] += latency(fn, singles[: max(1, calls // rounds)])
                    settle()
                    rates[runtime].append(throughput(fn, batch))
            entry = {}
            for runtime, fn in predictors.items():
                if fn is None:
                    entry[runtime] = {"status": "not available (the NumPy engine trains MLPs only)"}
                elif not callable(fn):
                    entry[runtime] = {"status": f"failed: {fn}"}
                else:
                    t = np.array(times[runtime]) * 1e6
                    entry[runtime] = {
                        "p50_us": float(np.percentile(t, 50)),
                        "p99_us": float(np.percentile(t, 99)),
                        "rows_per_s_256": float(np.median(rates[runtime])),
                        "compile_s": getattr(fn, "compile_seconds", None),
                    }
            results[name] = entry
    return {
        "threads": threads,
        "calls": calls,
        "rounds": rounds,
        "models": results,
        "machine": machine_info(),
    }


def report(result: dict[str, Any]) -> None:
    rows = []
    for model, entry in result["models"].items():
        for runtime, r in entry.items():
            if "status" in r:
                rows.append([model, runtime, "-", "-", "-", r["status"]])
            else:
                note = f"compiled in {r['compile_s']:.1f} s" if r["compile_s"] else ""
                rows.append(
                    [
                        model,
                        runtime,
                        round(r["p50_us"], 1),
                        round(r["p99_us"], 1),
                        round(r["rows_per_s_256"]),
                        note,
                    ]
                )
    print_table(rows, ["model", "runtime", "p50 µs (batch 1)", "p99 µs", "rows/s (batch 256)", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=2000, help="batch-1 calls timed per runtime")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frappe", type=Path, default=DEFAULT_FRAPPE, help="the Frappe_x1 directory")
    parser.add_argument("--child-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_json:
        print(json.dumps(measure(args.threads, args.calls, args.rounds, args.frappe)))
        return
    if not (args.frappe / "train.csv").is_file():
        sys.exit(f"no Frappe_x1 train.csv in {args.frappe}; pass --frappe DIR")
    results: dict[str, Any] = {}
    for setting, variables in BLAS_SETTINGS.items():
        env = {k: v for k, v in os.environ.items() if k not in BLAS_SETTINGS["haswell"]} | variables
        command = [
            sys.executable,
            __file__,
            "--child-json",
            "--threads",
            str(args.threads),
            "--calls",
            str(args.calls),
            "--rounds",
            str(args.rounds),
            "--frappe",
            str(args.frappe),
        ]
        done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        results[setting] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"\nOpenBLAS variables: {variables or 'unset'}; {args.threads} thread(s)")
        report(results[setting])
    print(f"wrote {write_json('inference', results)}")


if __name__ == "__main__":
    main()
