"""The table pipeline at scale: memory that does not grow with the file, against the obvious pandas route.

A seeded, synthetic Criteo-shaped data directory is generated in a temporary directory for each
size (``train.csv`` of 1M and 5M rows, ``valid.csv`` and ``test.csv`` of 100k rows each): a 0/1
``label``, 13 numeric columns ``I1..I13`` (lognormal integers, about 10% empty cells) and 26
categorical columns ``C1..C26`` (Zipf-distributed ids written as 8 hex digits, about 5% empty;
cardinalities from 3 to 10^6, the spread of Criteo's). The label is drawn from a logistic model
of ``log1p(I1)``, ``log1p(I2)`` and a random effect of each id of ``C1``, ``C2`` and ``C3`` (about a
fifth positives), so a model has something to learn. The generator writes 250k rows at a time.

For each size, each job runs in its own subprocess, so that its peak RSS is its own:

(a) ``encode``: :func:`mlpkit.data.load_table_dataset` with a fresh cache directory and the spec
    ``I1..I13`` numeric with ``transform = "log"``, ``C1..C26`` categorical with ``min_count = 10``.
    Each file is parsed once: ``fit_seconds`` is the pass over train (counts, statistics, and each
    chunk's dictionary positions kept in a scratch file), during which valid and test are parsed
    into a spool by a thread of their own; ``encode_seconds["train.csv"]`` is the writing of
    train's arrays from the scratch file, by two threads, while valid and test are encoded from
    their spool (so the three ``encode_seconds`` overlap, and do not add up to the job's time);
(b) ``cached``: the same call again on the same files and cache directory; it must log
    "using cached encoding" and build nothing (checked), and its time is reported;
(c) ``pandas``: ``pandas.read_csv`` of ``train.csv`` (pandas' defaults), ``factorize`` of every
    categorical column and ``log1p(max(x, 0))`` of every numeric one, missing cells as 0;
(e) ``pandas-same``: the same output as (a) the pandas way: ``read_csv`` + ``factorize`` of train,
    ids kept when seen ``min_count`` times (the rest one out-of-vocabulary id), valid and test
    read and mapped through train's vocabulary (``Index.get_indexer``), numbers standardized;
    nothing written to disk (which (a) does, with fsync);
(d) ``train``: one epoch of FM (E = 8; Adam lr 1e-2, batch 4096, ``torch.set_num_threads(1)``)
    with mlpkit's own :class:`~mlpkit.train.torch_trainer.TorchTrainer`, as a CTR run trains: the
    cached arrays are read batch by batch (:class:`~mlpkit.train.mapped.MappedRows`: blocks of rows
    read into a fixed ring, the order shuffled window by window), never moved into memory whole.
    What the process allocates that grows with the rows: the labels and the epoch's order (4 bytes
    a row each); the embedding tables and their Adam moments grow with the vocabulary.

Rows per second count **training rows** over the job's whole wall time. For (a) that time also
holds the fit pass over train and the encoding of valid and test (200k more rows), so the
comparison with (c), which reads train only and applies no ``min_count``, is conservative.

Peak RSS is ``VmHWM`` (``ru_maxrss`` carries a parent's peak over fork and exec). It counts the
file-backed pages of memory maps as well, which an epoch reading random rows through a map leaves
resident (see :mod:`mlpkit.train.mapped`, which reads the file instead). So the peak of ``RssAnon``
(the process's own allocations, sampled every 20 ms by a thread) is reported beside it, and the
scaling targets are judged on both.

Targets: (a) faster than (c) in rows/s at every size; peak RSS at 5M within 1.25x of the peak at
1M, for (a) and for (d); (b) skips encoding.

The work is Arrow's CSV reader, hashing and NumPy passes over columns, not BLAS: the results do
not depend on ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE``, so the script runs once in the
environment it is given and records it.

Usage::

    nice -n 10 python benchmarks/ctr_scale.py            # 1M and 5M rows, writes results/ctr_scale.json
    nice -n 10 python benchmarks/ctr_scale.py --quick    # 50k and 200k rows, writes ctr_scale_quick.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, write_json

SEED = 0
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
# Distinct ids per categorical column, in the spread of Criteo's (from 3 to about 10^7, capped at 10^6 here).
CARDINALITIES = (1_460, 580, 1_000_000, 300_000, 305, 24, 12_500, 633, 3, 93_000, 5_700, 1_000_000,
                 3_200, 27, 14_900, 500_000, 10, 5_600, 2_170, 4, 700_000, 18, 15, 140_000, 105, 42_600)
ZIPF_A = 1.2                     # Zipf exponent of the ids (a > 1; smaller gives a heavier tail)
NUMERIC_MISSING, CATEGORICAL_MISSING = 0.10, 0.05
GENERATE_ROWS = 250_000          # rows generated and written at a time
OTHER_ROWS = 100_000             # rows of valid.csv and test.csv
SIZES = (1_000_000, 5_000_000)
QUICK_SIZES = (50_000, 200_000)
MIN_COUNT = 10
EMBEDDING_DIM, BATCH, LR = 8, 4096, 1e-2
RSS_RATIO_TARGET = 1.25
JOBS = ("encode", "cached", "pandas", "pandas-same", "train")


# ----------------------------------------------------------------------------------------------- data


def _hex_ids(ids: np.ndarray, salt: int) -> np.ndarray:
    """(n, 8) uint8 ASCII hex digits of a bijective scramble of ``ids`` modulo 2**32."""
    scrambled = (ids.astype(np.uint64) * np.uint64(2654435761) + np.uint64(salt)) & np.uint64(0xFFFFFFFF)
    shifts = np.arange(28, -4, -4, dtype=np.uint64)                           # most significant nibble first
    nibbles = (scrambled[:, None] >> shifts) & np.uint64(0xF)                  # (n, 8)
    return np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles.astype(np.intp)]


def _string_column(ids: np.ndarray, missing: np.ndarray, salt: int) -> Any:
    """An Arrow string array of 8-hex-digit ids, null where ``missing``, built from its buffers."""
    import pyarrow as pa

    n = len(ids)
    data = _hex_ids(ids, salt).tobytes()
    offsets = np.arange(0, 8 * n + 1, 8, dtype=np.int32)
    validity = np.packbits(~missing, bitorder="little")
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), pa.py_buffer(validity),
                                       null_count=int(missing.sum()))


def _chunk(rows: int, rng: np.random.Generator, effects: list[np.ndarray]) -> Any:
    """One table of ``rows`` generated rows."""
    import pyarrow as pa

    columns: dict[str, Any] = {}
    logit = np.full(rows, -1.6)
    for j, name in enumerate(NUMERIC):
        values = np.floor(rng.lognormal(mean=1.0 + 0.2 * j, sigma=1.2, size=rows)).astype(np.int64)
        missing = rng.random(rows) < NUMERIC_MISSING
        if j < 2:
            logit += np.where(missing, 0.0, (0.6 if j == 0 else -0.4) * (np.log1p(values) - 1.5))
        columns[name] = pa.array(values, mask=missing)
    for j, (name, size) in enumerate(zip(CATEGORICAL, CARDINALITIES, strict=True)):
        ids = (rng.zipf(ZIPF_A, size=rows) - 1) % size
        missing = rng.random(rows) < CATEGORICAL_MISSING
        if j < len(effects):
            logit += np.where(missing, 0.0, effects[j][ids])
        columns[name] = _string_column(ids, missing, salt=7919 * (j + 1))
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return pa.table({"label": pa.array(label), **columns})


def generate(directory: Path, train_rows: int, *, seed: int = SEED) -> dict[str, Any]:
    """Write ``train.csv`` (``train_rows`` rows), ``valid.csv`` and ``test.csv`` into ``directory``."""
    import pyarrow.csv as pacsv

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    effects = [rng.normal(0.0, 0.8, size=CARDINALITIES[j]) for j in range(3)]   # C1..C3 carry signal
    sizes, positives = {}, {}
    for split, rows in (("train", train_rows), ("valid", OTHER_ROWS), ("test", OTHER_ROWS)):
        path = directory / f"{split}.csv"
        writer = None
        positives[split] = 0
        for start in range(0, rows, GENERATE_ROWS):
            table = _chunk(min(GENERATE_ROWS, rows - start), rng, effects)
            positives[split] += int(np.asarray(table.column("label")).sum())
            if writer is None:
                writer = pacsv.CSVWriter(path, table.schema,
                                         write_options=pacsv.WriteOptions(quoting_style="none"))
            writer.write_table(table)
        assert writer is not None
        writer.close()
        sizes[split] = path.stat().st_size
    return {"bytes": sizes, "positive_rate": {s: positives[s] / (train_rows if s == "train" else OTHER_ROWS)
                                              for s in positives}}


# ----------------------------------------------------------------------------------------------- memory


def _status(key: str) -> float:
    """A ``/proc/self/status`` value in MiB (0 where there is none)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024                             # kB
    return 0.0


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (``VmHWM``), in MiB; ``ru_maxrss`` where there is none."""
    peak = _status("VmHWM")
    if peak:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonPeak:
    """The peak of ``RssAnon`` (memory the process allocated, no file-backed pages), sampled by a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak = interval, _status("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _status("RssAnon"))

    @contextmanager
    def watching(self) -> Iterator[AnonPeak]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _status("RssAnon"))


# ----------------------------------------------------------------------------------------------- jobs


def _spec() -> dict[str, dict[str, Any]]:
    spec: dict[str, dict[str, Any]] = {name: {"kind": "numeric", "transform": "log"} for name in NUMERIC}
    spec.update({name: {"min_count": MIN_COUNT} for name in CATEGORICAL})
    return spec


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _load(data_dir: Path, cache_dir: Path) -> tuple[Any, float, list[logging.LogRecord]]:
    # The libraries are imported before the clock starts, as (c) and (e) import pandas (which
    # imports pyarrow and pyarrow.compute) before theirs: every job times the work, not the
    # imports. pandas too: pyarrow imports it, when it is installed, on the first array it builds
    # or converts (0.3 s here).
    import pandas  # noqa: F401
    import pyarrow.compute
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401

    from mlpkit.data import load_table_dataset

    handler = _Records()
    logger = logging.getLogger("mlpkit.data")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    data = load_table_dataset(data_dir, _spec(), cache_dir=cache_dir)
    seconds = time.perf_counter() - start
    logger.removeHandler(handler)
    return data, seconds, handler.records


def _messages(records: list[logging.LogRecord], cache_dir: Path) -> list[str]:
    """The log lines, with the temporary cache directory written as ``<cache>``: the results file
    records what happened, not where this machine keeps its temporary files."""
    return [r.getMessage().replace(str(cache_dir), "<cache>") for r in records]


def job_encode(data_dir: Path, cache_dir: Path) -> dict[str, Any]:
    data, seconds, records = _load(data_dir, cache_dir)
    messages = _messages(records, cache_dir)
    if not any(m.startswith("cached the encoding") for m in messages):
        raise RuntimeError(f"the first load did not encode: {messages}")
    fit = next(r.args for r in records if r.msg.startswith("fitted"))
    encoded = {r.args[0]: r.args[2] for r in records if r.msg.startswith("encoded")}   # file -> seconds
    train = data.splits["train"]
    return {
        "seconds": seconds,
        "fit_seconds": float(fit[3]),
        "encode_seconds": {name: float(s) for name, s in encoded.items()},
        "train_rows": len(train),
        "vocab_sizes": [f.vocab_size for f in data.fields.categorical],
        "log": messages,
    }


def job_cached(data_dir: Path, cache_dir: Path) -> dict[str, Any]:
    data, seconds, records = _load(data_dir, cache_dir)
    messages = _messages(records, cache_dir)
    hit = any(m.startswith("using cached encoding") for m in messages)
    built = any(m.startswith(("fitted", "encoded", "cached the encoding")) for m in messages)
    if not hit or built:
        raise RuntimeError(f"the second load did not use the cache alone: {messages}")
    return {"seconds": seconds, "cache_hit": hit, "encoded_again": built,
            "train_rows": len(data.splits["train"]), "log": messages}


def job_pandas(data_dir: Path) -> dict[str, Any]:
    import pandas as pd

    start = time.perf_counter()
    frame = pd.read_csv(data_dir / "train.csv")
    read_seconds = time.perf_counter() - start
    sparse = np.empty((len(frame), len(CATEGORICAL)), dtype=np.int64)
    for j, name in enumerate(CATEGORICAL):
        codes, _ = pd.factorize(frame[name])                                   # -1 for missing
        sparse[:, j] = codes + 1                                               # 0 = missing
    dense = np.empty((len(frame), len(NUMERIC)), dtype=np.float32)
    for j, name in enumerate(NUMERIC):
        dense[:, j] = np.log1p(frame[name].clip(lower=0).fillna(0.0).to_numpy(dtype=np.float64))
    label = frame["label"].to_numpy(dtype=np.float32)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "read_csv_seconds": read_seconds, "train_rows": len(frame),
            "pandas": pd.__version__, "string_dtype": str(frame[CATEGORICAL[0]].dtype),
            "distinct_ids": [int(sparse[:, j].max()) for j in range(len(CATEGORICAL))],
            "label_mean": float(label.mean()), "dense_mean": float(dense.mean())}


def job_pandas_same(data_dir: Path) -> dict[str, Any]:
    import pandas as pd

    start = time.perf_counter()
    train = pd.read_csv(data_dir / "train.csv")
    vocabularies, stats = {}, {}
    for name in CATEGORICAL:
        codes, uniques = pd.factorize(train[name])                              # -1 for missing
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        vocabularies[name] = pd.Index(uniques[counts >= MIN_COUNT])            # kept ids: 2, 3, ...
    for name in NUMERIC:
        values = np.log1p(train[name].clip(lower=0).to_numpy(dtype=np.float64))    # NaN for missing
        stats[name] = (np.nanmean(values), np.nanstd(values))
    encoded = {}
    for split, frame in (("train", train), ("valid", pd.read_csv(data_dir / "valid.csv")),
                         ("test", pd.read_csv(data_dir / "test.csv"))):
        sparse = np.empty((len(frame), len(CATEGORICAL)), dtype=np.int64)
        for j, name in enumerate(CATEGORICAL):
            ids = vocabularies[name].get_indexer(frame[name]) + 2              # -1 (unseen) -> 1 (OOV)
            sparse[:, j] = np.where(frame[name].isna().to_numpy(), 0, ids)     # 0: missing
        dense = np.empty((len(frame), len(NUMERIC)), dtype=np.float32)
        for j, name in enumerate(NUMERIC):
            values = np.log1p(frame[name].clip(lower=0).to_numpy(dtype=np.float64))
            mean, std = stats[name]
            dense[:, j] = np.nan_to_num((values - mean) / std, nan=0.0)
        encoded[split] = (sparse, dense, frame["label"].to_numpy(dtype=np.float32))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "train_rows": len(train), "pandas": pd.__version__,
            "vocab_sizes": [len(vocabularies[name]) + 2 for name in CATEGORICAL],
            "rows": {split: len(arrays[0]) for split, arrays in encoded.items()}}


def job_train(data_dir: Path, cache_dir: Path) -> dict[str, Any]:
    import torch

    from mlpkit.evaluate.metrics import roc_auc
    from mlpkit.models.ctr import build_ctr_model
    from mlpkit.tasks.ctr import named_inputs
    from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    data, _, _ = _load(data_dir, cache_dir)
    train, valid = data.splits["train"], data.splits["valid"]
    if not isinstance(train.sparse, np.memmap):
        raise RuntimeError(f"the training ids are a {type(train.sparse).__name__}, not a memory map")
    model = build_ctr_model("fm", data.fields, embedding_dim=EMBEDDING_DIM)
    trainer = TorchTrainer(model, loss=build_loss("bce_with_logits"),
                           optimizer=build_optimizer("adam", model, lr=LR),
                           rng=np.random.default_rng(SEED), batch_size=BATCH, progress=False)
    y_train = np.array(train.label)                               # 4 bytes a row, as a CTR run holds it
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    history = trainer.fit(named_inputs(train), y_train, epochs=1)
    seconds = time.perf_counter() - start
    auc = roc_auc(np.asarray(valid.label), trainer.predict_logits(named_inputs(valid)))
    return {"seconds": seconds, "train_rows": len(train), "steps": -(-len(train) // BATCH),
            "mean_loss": history.records[-1]["train_loss"],
            "val_auc": float(auc), "peak_rss_before_epoch_mb": rss_before,
            "parameters": sum(p.numel() for p in model.parameters()),
            "torch_threads": torch.get_num_threads()}


def child(job: str, data_dir: Path, cache_dir: Path) -> dict[str, Any]:
    with AnonPeak().watching() as anon:
        if job == "encode":
            out = job_encode(data_dir, cache_dir)
        elif job == "cached":
            out = job_cached(data_dir, cache_dir)
        elif job == "pandas":
            out = job_pandas(data_dir)
        elif job == "pandas-same":
            out = job_pandas_same(data_dir)
        else:
            out = job_train(data_dir, cache_dir)
    out["rows_per_second"] = out["train_rows"] / out["seconds"]
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_rss_anon_mb"] = anon.peak
    return out


# ----------------------------------------------------------------------------------------------- driver


def run_size(rows: int, root: Path) -> dict[str, Any]:
    data_dir, cache_dir = root / f"data-{rows}", root / f"cache-{rows}"
    start = time.perf_counter()
    generated = generate(data_dir, rows)
    generated["seconds"] = time.perf_counter() - start
    print(f"  {rows} rows: generated {sum(generated['bytes'].values()) / 2**20:.0f} MiB in "
          f"{generated['seconds']:.0f} s", file=sys.stderr, flush=True)
    jobs: dict[str, Any] = {}
    for job in JOBS:
        command = [sys.executable, __file__, "--child", job, "--data-dir", str(data_dir),
                   "--cache-dir", str(cache_dir)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        jobs[job] = json.loads(done.stdout.strip().splitlines()[-1])
        r = jobs[job]
        print(f"  {rows} rows: {job:7s} {r['seconds']:7.1f} s  {r['rows_per_second']:10.0f} rows/s  "
              f"peak RSS {r['peak_rss_mb']:6.0f} MiB (anon {r['peak_rss_anon_mb']:.0f})",
              file=sys.stderr, flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(cache_dir, ignore_errors=True)
    return {"train_rows": rows, "generated": generated, "jobs": jobs}


def benchmark(sizes: tuple[int, ...], root: Path) -> dict[str, Any]:
    per_size = {str(rows): run_size(rows, root) for rows in sizes}
    small, large = (per_size[str(s)]["jobs"] for s in (sizes[0], sizes[-1]))
    ratios: dict[str, float] = {}
    for job in ("encode", "train"):
        for key in ("peak_rss_mb", "peak_rss_anon_mb"):
            ratios[f"{job} {key} {sizes[-1]}/{sizes[0]}"] = large[job][key] / small[job][key]
    for rows in sizes:
        jobs = per_size[str(rows)]["jobs"]
        for peer in ("pandas", "pandas-same"):
            ratios[f"encode/{peer} rows/s at {rows}"] = (
                jobs["encode"]["rows_per_second"] / jobs[peer]["rows_per_second"])
    targets = {f"encode faster than pandas at {rows}": ratios[f"encode/pandas rows/s at {rows}"] > 1.0
               for rows in sizes}
    for job in ("encode", "train"):
        for key, what in (("peak_rss_mb", "peak RSS (VmHWM)"), ("peak_rss_anon_mb", "peak RssAnon")):
            targets[f"{job} {what} {sizes[-1]} <= {RSS_RATIO_TARGET} x {sizes[0]}"] = (
                ratios[f"{job} {key} {sizes[-1]}/{sizes[0]}"] <= RSS_RATIO_TARGET)
    targets["pandas-same kept the same vocabularies"] = all(
        per_size[str(rows)]["jobs"]["pandas-same"]["vocab_sizes"] == per_size[str(rows)]["jobs"]["encode"][
            "vocab_sizes"] for rows in sizes)
    targets["cached run skips encoding"] = all(
        per_size[str(rows)]["jobs"]["cached"]["cache_hit"] and not per_size[str(rows)]["jobs"]["cached"][
            "encoded_again"] for rows in sizes)
    return {
        "settings": {"sizes": list(sizes), "valid_test_rows": OTHER_ROWS, "seed": SEED,
                     "min_count": MIN_COUNT,
                     "cardinalities": list(CARDINALITIES), "zipf_a": ZIPF_A, "model": "fm",
                     "embedding_dim": EMBEDDING_DIM, "batch_size": BATCH, "lr": LR, "torch_threads": 1},
        "machine": machine_info(),
        "blas_bound": False,
        "results": per_size,
        "ratios": ratios,
        "targets": targets,
    }


def report(result: dict[str, Any]) -> None:
    rows = []
    for size, r in result["results"].items():
        for job, j in r["jobs"].items():
            rows.append([size, job, j["seconds"], round(j["rows_per_second"]), round(j["peak_rss_mb"]),
                         round(j["peak_rss_anon_mb"])])
    print()
    print_table(rows, ["train rows", "job", "seconds", "train rows/s", "peak RSS MiB", "peak RssAnon MiB"])
    print()
    for name, value in result["ratios"].items():
        print(f"  {name}: {value:.3f}")
    for name, met in result["targets"].items():
        print(f"  target {name}: {'met' if met else 'NOT met'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50k and 200k training rows")
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="training rows (default 1M 5M)")
    parser.add_argument("--tmp", type=Path, default=None, help="where the data goes (default: a temp dir)")
    parser.add_argument("--child", choices=JOBS, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data_dir, args.cache_dir)))
        return
    sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    root = Path(tempfile.mkdtemp(prefix="ctr-scale-", dir=args.tmp))
    try:
        result = benchmark(sizes, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(result)
    path = write_json("ctr_scale" + ("_quick" if args.quick else ""), {"as_configured": result})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
