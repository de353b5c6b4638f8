"""The CTR models on Frappe_x1 under BARS's protocol; DeepFM's epoch against a hand loop and DeepCTR-Torch.

``mlpkit ctr compare`` trains the same models under the same protocol through the run machinery
(its Frappe_x1 table is in the README and ``results/ctr_compare_frappe_cli.json``); this script drives
the library pieces directly, so that it can time one epoch against the peers':
:func:`mlpkit.data.load_table_dataset` (the cached per-field ids), :func:`mlpkit.models.ctr.build_ctr_model`,
:class:`mlpkit.train.torch_trainer.TorchTrainer` and :mod:`mlpkit.evaluate.metrics`.

1. **Accuracy.** Every model of ``CTR_MODELS`` is trained as BARS trains it (FuxiCTR v1.1's
   ``BaseModel``, the ``model_config.yaml`` of each model's BARS Frappe_x1 run, recorded in the
   model's ``BARS_FRAPPE_X1``): Adam, lr 1e-3, batch 4096, E = 10, the model's own tower defaults;
   the loss is the mean BCE plus ``(λ_emb / 2) Σ w²`` over every embedding parameter (first-order
   weights included) and ``(λ_net / 2) Σ w²`` over the others when BARS sets ``net_regularizer``
   (FuxiCTR's ``add_regularization``: ``(λ / p) · ‖w‖_p^p``, whole tables); the gradient norm is
   clipped to 10; after every epoch without a better validation AUC (by more than 1e-6) the lr is
   multiplied by 0.1, floored at 1e-6 (FuxiCTR's ``lr_decay``, i.e. a plateau schedule of patience 0), and
   after ``patience`` such epochs in a row training stops (2, IPNN 3, as in each BARS config); at
   most 100 epochs; the best epoch's weights are restored and scored on valid and test. Seed
   2021, BARS's; ``--seeds`` adds more. Transformer&Deep has no BARS run and takes DeepFM's settings.

   Which numbers are compared: our **test** AUC on the exact BARS ``test.csv`` against the test AUC
   of BARS's seed-2021 run (the first run of each model's README table where BARS reports several;
   :data:`BARS_SEED_2021`), with the acceptance ``ours >= BARS - 0.003``; BARS's mean over its runs
   (``BARS_FRAPPE_X1[...].test_auc``) is shown beside it. Our ``train.csv`` is rebuilt (the item of
   every negative was redrawn; see the data set's SOURCE.md), while ``valid.csv`` and ``test.csv``
   equal BARS's byte for byte, so the comparison is of models trained on a train set of the same
   size, positives and contexts, scored on the same test set.

2. **Speed.** DeepFM, data already cached, the same settings, each implementation in its own
   subprocess (so that its peak RSS is its own):

   - ``mlpkit``: :class:`TorchTrainer` exactly as in 1 (plateau schedule and early stopping armed),
     in a process started as the ``mlpkit`` command starts: glibc's malloc told to keep freed
     blocks for the next step (:mod:`mlpkit._allocator`; the process-wide setting is the command's,
     never the library's on import);
   - ``mlpkit-glibc-defaults``: the same trainer with glibc's defaults, as a library user who does
     not make that setting gets it (its own targets below, beside the command's);
   - ``mlpkit-bf16``: the same with ``autocast="bf16"`` (``[run] autocast``, ``--autocast bf16``):
     the training forward passes in bfloat16, weights and optimizer in float32, validation in
     float32. Every peer here computes in float32, so this row says what a CPU with bfloat16
     matrix units (AMX) gives a user who asks for it, not a like-for-like comparison;
   - ``hand``: the loop a user would write around the same :class:`DeepFM` class, over pre-encoded
     int64 tensors: ``torch.randperm``, index, forward, BCE + the same L2, backward, clip, Adam step,
     then the validation AUC;
   - ``deepctr``: DeepCTR-Torch's ``DeepFM`` (same tower, dropout, batch norm, E, Adam lr) fitted by its own
     ``fit`` on the same encoded ids. DeepCTR-Torch sums the BCE over the batch instead of averaging it,
     so its L2 strengths are ``0.025 × 4096`` to optimise the same objective; it does not clip gradients
     and initialises its tower N(0, 1e-4²), its own choices. Its ``fit`` (0.3.0) calls ``train()``
     once, before the first epoch, while scoring the validation set calls ``eval()``: every epoch
     after the first trains in evaluation mode, with no dropout and batch norm on its running
     statistics (cheaper, and its validation AUC suffers);
   - ``deepctr-train-mode``: the same, with a callback that puts the model back in training mode
     at the start of every epoch, so that it does the work the other two do.

   An epoch is the training pass plus the scoring of the validation set (AUC), as each runs it
   while it watches for early stopping; the training pass alone is reported too. The median of
   the epochs after the first (a warm-up) is reported, with the validation AUC after the last epoch
   and the peak RSS (``VmHWM``). Targets: mlpkit / hand <= 1.10; mlpkit <= 0.85 × DeepCTR-Torch's
   epoch at a higher validation AUC; mlpkit's peak RSS below DeepCTR-Torch's (each for float32 and
   for bf16 autocast).

Torch threads: 1 by default (``--threads``). On this shared 2-core machine a DeepFM step (batch 4096)
took 211 ms on 1 thread and 139 ms on 2 with the machine idle, but 227 ms and 456 ms while one
other process kept a core busy: 2 threads lose badly whenever another process runs.

Usage::

    python benchmarks/ctr_frappe.py                    # every model (seed 2021), then the speed runs
    python benchmarks/ctr_frappe.py --seeds 2021 2022  # more seeds
    python benchmarks/ctr_frappe.py --quick            # LR and DeepFM, 1 epoch each; 1-epoch speed runs
    python benchmarks/ctr_frappe.py --reuse-accuracy   # the speed part again, the accuracy table kept
    python benchmarks/ctr_frappe.py --reuse-accuracy --add-models dcnv2 dcnmix   # and two more rows
    python benchmarks/ctr_frappe.py --speed-model dcnv2   # speed part only, DCN-V2 against DeepCTR-Torch's
                                                          # DCN with matrix crosses (dcnmix: its DCNMix)

The data directory defaults to ``../shared/datasets/frappe_x1`` beside the repository (``--data-dir``);
it is read in place. The encoded arrays are cached in ``--cache-dir`` (default
``~/.cache/mlpkit/tables``). Writes ``results/ctr_frappe.json`` (``ctr_frappe_quick.json`` with
``--quick``). When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set, the script also re-runs itself with
both removed (in that child process only) and reports both settings.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    machine_info,
    median,
    offline_requests_stub,
    print_table,
    rerun_without_blas_env,
    results_path,
    settle,
    write_json,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "datasets" / "frappe_x1"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "mlpkit" / "tables"

SEED = 2021  # BARS's seed
MAX_EPOCHS = 100
GRAD_CLIP_NORM = 10.0  # FuxiCTR v1.1 fit_generator(max_gradient_norm=10.)
MIN_DELTA = 1e-6  # FuxiCTR v1.1 checkpoint_and_earlystop(min_delta=1e-6)
MIN_LR = 1e-6  # FuxiCTR v1.1 lr_decay(factor=0.1, min_lr=1e-6)
ACCEPT_MARGIN = 0.003
QUICK_MODELS = ("lr", "deepfm")
SPEED_MODEL = "deepfm"
SPEED_MODELS = ("deepfm", "dcnv2", "dcnmix")
"""Models the speed part can time (``--speed-model``); DeepCTR-Torch has each (DeepFM, DCN with
matrix crosses, DCNMix)."""

# Test AUC of BARS's seed-2021 run per model: the first row of the results table in
# reczoo/BARS ranking/ctr/<Model>/<Model>_frappe_x1/README.md where BARS reports several runs
# (DNN 0.983323, seed 2021 in its results.csv; DeepFM 0.984243; DCN 0.983907), else its one
# reported figure (NFM's log: seed 2021, 0.980409).
BARS_SEED_2021 = {
    "lr": 0.9356,
    "fm": 0.9671,
    "ffm": 0.9786,
    "nfm": 0.9804,
    "ipnn": 0.9841,
    "dcn": 0.9839,
    "deepfm": 0.9842,
    "dnn": 0.9833,
}


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    ``VmHWM`` of ``/proc/self/status`` where there is one: ``ru_maxrss`` carries over the parent's
    peak through fork and exec on Linux (a child of a 400 MB parent reports 400 MB), ``VmHWM``
    belongs to the process's own memory map.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def load_frappe(data_dir: Path, cache_dir: Path) -> Any:
    from mlpkit.data import load_table_dataset

    return load_table_dataset(data_dir, cache_dir=cache_dir)


def bars_settings(name: str) -> Any:
    """The BARS run whose settings a model trains with (the DCN-V2 forms and DCN-Mix borrow DCN-V2's,
    Transformer&Deep DeepFM's)."""
    from mlpkit.models.ctr import BARS_FRAPPE_X1

    return BARS_FRAPPE_X1.get(name) or BARS_FRAPPE_X1["dcnv2" if name.startswith("dcn") else "deepfm"]


def l2_penalty(model: Any, embedding_lambda: float, net_lambda: float) -> Callable[[], Any]:
    """FuxiCTR's ``add_regularization`` for p = 2.

    ``(λ_emb / 2) Σ w²`` over the embedding parameters plus ``(λ_net / 2) Σ w²`` over the others.
    """
    embedding = list(model.embedding_parameters())
    dense = list(model.dense_parameters()) if net_lambda > 0 else []

    def penalty() -> Any:
        total = (embedding_lambda / 2) * sum(p.square().sum() for p in embedding)
        if dense:
            total = total + (net_lambda / 2) * sum(p.square().sum() for p in dense)
        return total

    return penalty


def make_trainer(
    model: Any, name: str, seed: int, on_epoch_end: Callable[[dict[str, Any]], None] | None,
    autocast: str = "none",
) -> Any:
    """The BARS protocol as a :class:`TorchTrainer` (see the module docstring)."""
    from mlpkit.evaluate.metrics import log_loss, roc_auc
    from mlpkit.train.early_stopping import EarlyStopping
    from mlpkit.train.schedules import make_schedule
    from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer

    bars = bars_settings(name)
    return TorchTrainer(
        model,
        loss=build_loss("bce_with_logits"),
        optimizer=build_optimizer("adam", model, lr=bars.learning_rate),
        rng=np.random.default_rng(seed),
        batch_size=bars.batch_size,
        metrics={"auc": (roc_auc, "max"), "logloss": (lambda y, s: log_loss(y, logits=s), "min")},
        monitor="val_auc",
        early_stopping=EarlyStopping(patience=bars.patience, min_delta=MIN_DELTA, mode="max",
                                     monitor="val_auc"),
        schedule=make_schedule("plateau", bars.learning_rate, mode="max", factor=0.1, patience=0,
                               threshold=MIN_DELTA, threshold_mode="abs", min_lr=MIN_LR),
        restore_best=True,
        grad_clip_norm=GRAD_CLIP_NORM,
        regularizer=l2_penalty(model, bars.embedding_regularizer, bars.net_regularizer),
        on_epoch_end=on_epoch_end,
        autocast=autocast,
    )


# ----------------------------------------------------------------------------------------------- accuracy


def train_one(data: Any, name: str, seed: int, max_epochs: int) -> dict[str, Any]:
    """Train model ``name`` with seed ``seed`` under the BARS protocol; its row of the accuracy table."""
    import torch

    from mlpkit.evaluate.metrics import log_loss, roc_auc
    from mlpkit.models.ctr import build_ctr_model

    torch.manual_seed(seed)
    model = build_ctr_model(name, data.fields)
    params = sum(p.numel() for p in model.parameters())

    def report(record: dict[str, Any]) -> None:
        print(f"  {name} seed {seed} epoch {record['epoch']:3d}  val AUC {record['val_auc']:.6f}  "
              f"logloss {record['val_logloss']:.4f}  lr {record['lr']:.0e}  {record['seconds']:.1f} s",
              file=sys.stderr, flush=True)

    trainer = make_trainer(model, name, seed, report)
    splits = {s: data.splits[s] for s in ("train", "valid", "test")}
    inputs = {s: split.batch(slice(None)) for s, split in splits.items()}  # in-memory copies of the ids
    labels = {s: np.array(split.label) for s, split in splits.items()}  # copies: the cache is read-only
    start = time.perf_counter()
    history = trainer.fit(inputs["train"], labels["train"], inputs["valid"], labels["valid"],
                          epochs=max_epochs)
    seconds = time.perf_counter() - start
    scores = {s: trainer.predict_logits(inputs[s]) for s in ("valid", "test")}  # the restored best weights
    bars = bars_settings(name)
    row = {
        "model": name,
        "seed": seed,
        "params": params,
        "best_epoch": history.best_epoch,
        "epochs_run": len(history.records),
        "stop_reason": history.stop_reason,
        "val_auc": roc_auc(labels["valid"], scores["valid"]),
        "val_logloss": log_loss(labels["valid"], logits=scores["valid"]),
        "test_auc": roc_auc(labels["test"], scores["test"]),
        "test_logloss": log_loss(labels["test"], logits=scores["test"]),
        "seconds_per_epoch": median([r["seconds"] for r in history.records]),
        "fit_seconds": seconds,
        "bars_seed_2021_test_auc": BARS_SEED_2021.get(name),
        "bars_mean_test_auc": bars.test_auc if name in BARS_SEED_2021 else None,
        "settings": {"embedding_regularizer": bars.embedding_regularizer,
                     "net_regularizer": bars.net_regularizer, "patience": bars.patience,
                     "lr": bars.learning_rate, "batch_size": bars.batch_size},
        "curve": [{k: r[k] for k in ("epoch", "train_loss", "val_auc", "val_logloss", "lr", "seconds")}
                  for r in history.records],
    }
    published = row["bars_seed_2021_test_auc"]
    row["diff"] = None if published is None else row["test_auc"] - published
    row["meets"] = None if published is None else bool(row["test_auc"] >= published - ACCEPT_MARGIN)
    return row


def accuracy(data: Any, models: list[str], seeds: list[int], max_epochs: int) -> list[dict[str, Any]]:
    rows = []
    for name in models:
        for seed in seeds:
            settle()
            rows.append(train_one(data, name, seed, max_epochs))
            r = rows[-1]
            print(f"{name} seed {seed}: test AUC {r['test_auc']:.4f} (BARS {r['bars_seed_2021_test_auc']}), "
                  f"best epoch {r['best_epoch']} of {r['epochs_run']}", file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------------------------- speed


def speed_mlpkit(data: Any, epochs: int, seed: int, model_name: str = SPEED_MODEL,
                 autocast: str = "none") -> dict[str, Any]:
    """:class:`TorchTrainer` with the BARS protocol, ``epochs`` epochs (early stopping armed);
    ``autocast="bf16"``: the training forward passes in bfloat16 (``[run] autocast``)."""
    import torch

    from mlpkit.models.ctr import build_ctr_model

    torch.manual_seed(seed)
    model = build_ctr_model(model_name, data.fields)
    trainer = make_trainer(model, model_name, seed, None, autocast)
    inputs = {s: data.splits[s].batch(slice(None)) for s in ("train", "valid")}
    labels = {s: np.array(data.splits[s].label) for s in ("train", "valid")}
    rss_setup = peak_rss_mb()
    train_seconds: list[float] = []
    train_epoch = trainer.train_epoch

    def timed_train_epoch(x: Any, y: Any) -> Any:
        start = time.perf_counter()
        out = train_epoch(x, y)
        train_seconds.append(time.perf_counter() - start)
        return out

    trainer.train_epoch = timed_train_epoch  # the training pass alone, inside the trainer's epoch
    history = trainer.fit(inputs["train"], labels["train"], inputs["valid"], labels["valid"], epochs=epochs)
    return {
        "epoch_seconds": [r["seconds"] for r in history.records],
        "train_seconds": train_seconds,
        "val_auc": history.records[-1]["val_auc"],
        "peak_rss_before_training_mb": rss_setup,
    }


def speed_hand(data: Any, epochs: int, seed: int, model_name: str = SPEED_MODEL) -> dict[str, Any]:
    """The plain PyTorch loop around the same model class, on pre-encoded int64 tensors."""
    import torch
    from torch import nn

    from mlpkit.evaluate.metrics import roc_auc
    from mlpkit.models.ctr import build_ctr_model

    bars = bars_settings(model_name)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_ctr_model(model_name, data.fields)
    # The cache stores ids as int32; the loop the issue describes holds them as int64 tensors.
    x = torch.from_numpy(np.array(data.splits["train"].sparse, dtype=np.int64))  # (N, F) int64
    y = torch.from_numpy(np.array(data.splits["train"].label))  # (N,) float32
    xv = torch.from_numpy(np.array(data.splits["valid"].sparse, dtype=np.int64))
    yv = np.asarray(data.splits["valid"].label)
    optimizer = torch.optim.Adam(model.parameters(), lr=bars.learning_rate)
    embeddings = list(model.embedding_parameters())
    rss_setup = peak_rss_mb()
    epoch_seconds, train_seconds, auc = [], [], math.nan
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), bars.batch_size):
            idx = perm[i : i + bars.batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(model({"sparse": x[idx]}), y[idx])
            loss = loss + (bars.embedding_regularizer / 2) * sum(p.square().sum() for p in embeddings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
        train_seconds.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model({"sparse": xv[i : i + 8192]}) for i in range(0, len(xv), 8192)])
        auc = roc_auc(yv, logits.numpy())
        epoch_seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": epoch_seconds, "train_seconds": train_seconds, "val_auc": auc,
            "peak_rss_before_training_mb": rss_setup}


def speed_deepctr(
    data: Any, epochs: int, seed: int, model_name: str = SPEED_MODEL, *, train_mode: bool = False
) -> dict[str, Any]:
    """DeepCTR-Torch's model of the same kind and ``fit`` on the same encoded ids; ``train_mode``:
    ``train()`` every epoch. DeepFM, DCN with matrix crosses for DCN-V2 (parallel), DCNMix for DCN-Mix,
    each with our model's tower, depth and expert sizes."""
    offline_requests_stub()  # deepctr_torch would ask PyPI for a newer version
    from deepctr_torch import models as theirs
    from deepctr_torch.callbacks import Callback
    from deepctr_torch.inputs import SparseFeat

    from mlpkit.models.ctr import CTR_MODELS

    bars = bars_settings(model_name)
    defaults = CTR_MODELS[model_name].__init__.__kwdefaults__
    names = [f.name for f in data.fields.categorical]
    columns = [SparseFeat(f.name, vocabulary_size=f.vocab_size, embedding_dim=defaults["embedding_dim"])
               for f in data.fields.categorical]

    def named(split: str) -> dict[str, np.ndarray]:
        ids = np.array(data.splits[split].sparse, dtype=np.int64)         # as a LabelEncoder gives them
        return {name: ids[:, j] for j, name in enumerate(names)}

    x, y = named("train"), np.array(data.splits["train"].label)
    xv, yv = named("valid"), np.array(data.splits["valid"].label)
    # It sums the BCE over a batch: λ × batch size gives the objective of a mean BCE + (λ / 2) Σ w².
    l2 = bars.embedding_regularizer / 2 * bars.batch_size
    hidden = defaults["hidden_features"] or (400, 400, 400)  # DCN-V2's None: its parallel tower
    common = {"dnn_hidden_units": tuple(hidden), "l2_reg_linear": l2, "l2_reg_embedding": l2,
              "l2_reg_dnn": 0.0, "seed": seed, "dnn_dropout": defaults["dropout"], "dnn_activation": "relu",
              "dnn_use_bn": defaults["batch_norm"], "task": "binary", "device": "cpu"}
    if model_name == "deepfm":
        model = theirs.DeepFM(columns, columns, **common)
    elif model_name == "dcnv2":
        model = theirs.DCN(columns, columns, cross_num=defaults["num_layers"],
                           cross_parameterization="matrix", l2_reg_cross=0.0, **common)
    else:
        model = theirs.DCNMix(columns, columns, cross_num=defaults["num_layers"],
                              low_rank=defaults["low_rank"], num_experts=defaults["num_experts"],
                              l2_reg_cross=0.0, **common)
    model.compile("adam", "binary_crossentropy", metrics=["auc", "logloss"])  # Adam, lr 1e-3
    rss_setup = peak_rss_mb()
    eval_seconds: list[float] = []
    evaluate = model.evaluate

    def timed_evaluate(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = evaluate(*args, **kwargs)
        eval_seconds.append(time.perf_counter() - start)
        return out

    model.evaluate = timed_evaluate

    class EpochTimer(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.aucs: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if train_mode:
                self.model.train()  # undo the eval() of the previous epoch's validation
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self.start)
            self.aucs.append(float(logs["val_auc"]))

    timer = EpochTimer()
    model.fit(x, y, batch_size=bars.batch_size, epochs=epochs, verbose=0, validation_data=(xv, yv),
              shuffle=True, callbacks=[timer])
    return {"epoch_seconds": timer.seconds,
            "train_seconds": [t - e for t, e in zip(timer.seconds, eval_seconds, strict=True)],
            "val_auc": timer.aucs[-1], "peak_rss_before_training_mb": rss_setup}


SPEED_RUNNERS: dict[str, Callable[[Any, int, int], dict[str, Any]]] = {
    "mlpkit": speed_mlpkit,
    "mlpkit-glibc-defaults": speed_mlpkit,
    "mlpkit-bf16": functools.partial(speed_mlpkit, autocast="bf16"),
    "hand": speed_hand,
    "deepctr": speed_deepctr,
    "deepctr-train-mode": functools.partial(speed_deepctr, train_mode=True),
}


KEEP_FREED_MEMORY = ("mlpkit", "mlpkit-bf16")
"""The runners that start as the ``mlpkit`` command starts: glibc told to keep freed memory
(:mod:`mlpkit._allocator`). ``mlpkit-glibc-defaults`` is the same trainer without it."""


def speed_child(which: str, args: argparse.Namespace) -> dict[str, Any]:
    """One implementation's speed run, in this (child) process."""
    import torch

    torch.set_num_threads(args.threads)
    if which in KEEP_FREED_MEMORY:
        from mlpkit._allocator import keep_freed_memory

        keep_freed_memory()                                  # first, as the mlpkit command does
    data = load_frappe(args.data_dir, args.cache_dir)
    out = SPEED_RUNNERS[which](data, args.speed_epochs, SEED, args.speed_model)
    out["peak_rss_mb"] = peak_rss_mb()
    out["torch_threads"] = torch.get_num_threads()
    return out


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Run each implementation in its own subprocess, ``--speed-rounds`` times in rotated order."""
    names = list(SPEED_RUNNERS)
    if importlib.util.find_spec("deepctr_torch") is None:  # not imported here: see speed_deepctr
        names = [name for name in names if not name.startswith("deepctr")]
        print("deepctr-torch is not installed: its column is left out", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for k in range(args.speed_rounds):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            settle()
            command = [sys.executable, __file__, "--speed-child", name,
                       "--speed-epochs", str(args.speed_epochs), "--threads", str(args.threads),
                       "--speed-model", args.speed_model,
                       "--data-dir", str(args.data_dir), "--cache-dir", str(args.cache_dir)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = runs[name][-1]
            print(f"  speed round {k} {name:8s} epoch s {[round(s, 2) for s in r['epoch_seconds']]}  "
                  f"val AUC {r['val_auc']:.4f}  peak RSS {r['peak_rss_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    timed = slice(1, None) if args.speed_epochs > 1 else slice(None)  # the first epoch warms up
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "median_epoch_seconds": median([s for r in results for s in r["epoch_seconds"][timed]]),
            "median_train_seconds": median([s for r in results for s in r["train_seconds"][timed]]),
            "val_auc": [r["val_auc"] for r in results],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "peak_rss_before_training_mb": max(r["peak_rss_before_training_mb"] for r in results),
            "runs": results,
        }
    ratios: dict[str, float] = {}
    targets: dict[str, bool] = {}
    mine = [name for name in summary if name.startswith("mlpkit")]     # float32 both ways, and bf16
    for name in mine:
        for other in (o for o in summary if o != name):
            for key, label in (("median_epoch_seconds", "epoch"), ("median_train_seconds", "train pass")):
                ratios[f"{name}/{other} {label}"] = summary[name][key] / summary[other][key]
    targets["mlpkit/hand <= 1.10"] = ratios["mlpkit/hand epoch"] <= 1.10
    for name in mine:
        ours = summary[name]
        for other in (o for o in summary if o.startswith("deepctr")):
            theirs = summary[other]
            targets[f"{name} <= 0.85 x {other} epoch"] = ratios[f"{name}/{other} epoch"] <= 0.85
            targets[f"{name} val AUC > {other} val AUC"] = median(ours["val_auc"]) > median(theirs["val_auc"])
            targets[f"{name} peak RSS < {other} peak RSS"] = ours["peak_rss_mb"] < theirs["peak_rss_mb"]
    return {"model": args.speed_model, "epochs": args.speed_epochs, "rounds": args.speed_rounds,
            "torch_threads": args.threads, "results": summary, "ratios": ratios, "targets": targets}


# ----------------------------------------------------------------------------------------------- report


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_frappe(args.data_dir, args.cache_dir)  # encodes once; every later load maps the cache
    result: dict[str, Any] = {
        "settings": {"models": args.models, "seeds": args.seeds, "max_epochs": args.max_epochs,
                     "torch_threads": args.threads, "torch": torch.__version__,
                     "acceptance": f"test AUC >= BARS seed-2021 test AUC - {ACCEPT_MARGIN}",
                     "compared": "our test AUC (rebuilt train.csv, BARS's exact test.csv) against BARS's "
                                 "seed-2021 test AUC; BARS's mean over runs beside it"},
        "machine": machine_info(),
        "load_seconds": time.perf_counter() - start,
    }
    if args.reuse_accuracy:
        earlier = json.loads(results_path("ctr_frappe").read_text())["as_configured"]
        added = args.add_models or []
        result["accuracy"] = [row for row in earlier["accuracy"] if row["model"] not in added]
        if added:  # trained now, in this run's settings, beside the rows kept
            result["accuracy"] += accuracy(data, added, args.seeds, args.max_epochs)
            result["accuracy_added"] = {"models": added, "settings": result["settings"]}
        result["accuracy_reused"] = {"settings": earlier["settings"], "machine": earlier["machine"],
                                     "load_average_after": earlier.get("load_average_after")}
    elif args.models:
        result["accuracy"] = accuracy(data, args.models, args.seeds, args.max_epochs)
    if args.speed_rounds > 0:
        result["speed"] = speed(args)
    result["load_average_after"] = os.getloadavg()
    return result


def _fmt_auc(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def report(result: dict[str, Any], label: str) -> None:
    s = result["settings"]
    print(f"\n{label}: torch {s['torch']}, {s['torch_threads']} thread(s); {s['compared']}")
    if "accuracy_reused" in result:
        print("accuracy table reused from an earlier run of this script "
              f"(torch threads {result['accuracy_reused']['settings']['torch_threads']})")
    if "accuracy" in result:
        rows = []
        for r in result["accuracy"]:
            rows.append([
                r["model"], r["seed"], r["params"], r["best_epoch"], r["epochs_run"],
                f"{r['val_auc']:.4f}", f"{r['val_logloss']:.4f}", f"{r['test_auc']:.4f}",
                f"{r['test_logloss']:.4f}", f"{r['seconds_per_epoch']:.1f}",
                _fmt_auc(r["bars_seed_2021_test_auc"]), _fmt_auc(r["bars_mean_test_auc"]),
                "" if r["diff"] is None else f"{r['diff']:+.4f}",
                {None: "", True: "yes", False: "NO"}[r["meets"]],
            ])
        print_table(rows, ["model", "seed", "params", "best ep", "epochs", "val AUC", "val logloss",
                           "test AUC", "test logloss", "s/epoch", "BARS test AUC", "BARS mean",
                           "ours - BARS", f">= BARS - {ACCEPT_MARGIN}"])
    if "speed" in result:
        sp = result["speed"]
        print(f"\nspeed: {sp['model']}, {sp['epochs']} epochs x {sp['rounds']} rounds, median of the epochs "
              f"after the first; {sp['torch_threads']} torch thread(s)")
        rows = []
        for name, r in sp["results"].items():
            rows.append([name, f"{r['median_epoch_seconds']:.2f}", f"{r['median_train_seconds']:.2f}",
                         " ".join(f"{a:.4f}" for a in r["val_auc"]),
                         f"{r['peak_rss_before_training_mb']:.0f}", f"{r['peak_rss_mb']:.0f}"])
        print_table(rows, ["implementation", "s/epoch (train + val AUC)", "s/train pass", "val AUC after",
                           "RSS before training MB", "peak RSS MB"])
        for name, value in sp["ratios"].items():
            print(f"  {name}: {value:.3f}")
        for name, met in sp["targets"].items():
            print(f"  target {name}: {'met' if met else 'NOT met'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="LR and DeepFM for 1 epoch; 1-epoch speed runs")
    parser.add_argument("--models", nargs="*", default=None, help="registry names (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[SEED])
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    parser.add_argument("--speed-epochs", type=int, default=4, help="epochs per speed run (first: warm-up)")
    parser.add_argument("--speed-rounds", type=int, default=3, help="speed runs per implementation (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see the module docstring)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--speed-model", choices=SPEED_MODELS, default=SPEED_MODEL,
                        help="the model the speed part times; other than deepfm: the speed part only, "
                             "written to results/ctr_frappe_speed_MODEL.json [deepfm]")
    parser.add_argument("--speed-child", choices=list(SPEED_RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--add-models", nargs="+", default=None,
                        help="with --reuse-accuracy: train these models too, replacing their earlier rows")
    parser.add_argument("--reuse-accuracy", action="store_true",
                        help="take the accuracy table from results/ctr_frappe.json; run the speed part only")
    parser.add_argument("--child-json", action="store_true", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.speed_child:
        print(json.dumps(speed_child(args.speed_child, args)))
        return
    from mlpkit.models.ctr import CTR_MODELS

    if args.quick:
        args.models, args.max_epochs, args.speed_epochs, args.speed_rounds = list(QUICK_MODELS), 1, 1, 1
    elif args.speed_model != SPEED_MODEL:
        args.models, args.reuse_accuracy = [], False  # the accuracy table is DeepFM's run's
    elif args.models is None:
        args.models = list(CTR_MODELS)
    result = benchmark(args)
    if args.child_json:
        print(json.dumps(result))
        return
    report(result, "as configured (BLAS environment of this machine)")
    extra = ["--quick"] if args.quick else [
        "--models", *args.models, "--seeds", *map(str, args.seeds), "--max-epochs", str(args.max_epochs),
        "--speed-epochs", str(args.speed_epochs), "--speed-rounds", str(args.speed_rounds)]
    extra += ["--threads", str(args.threads), "--data-dir", str(args.data_dir),
              "--cache-dir", str(args.cache_dir), "--speed-model", args.speed_model]
    extra += ["--reuse-accuracy"] if args.reuse_accuracy else []
    extra += ["--add-models", *args.add_models] if args.add_models else []
    unset = rerun_without_blas_env(__file__, extra)
    payload = {"as_configured": result}
    if unset is not None:
        report(unset, "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset")
        payload["blas_env_unset"] = unset
    name = "ctr_frappe" if args.speed_model == SPEED_MODEL else f"ctr_frappe_speed_{args.speed_model}"
    path = write_json(name + ("_quick" if args.quick else ""), payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
