"""``mlpkit export``: every kind of run as an ONNX file whose outputs equal the run's own, and
``predict --runtime onnx`` through onnxruntime.

What is checked, on small generated data: for image runs (an MLP from each engine, a ViT), table
runs (classification and regression on the NumPy engine, classification on torch) and CTR runs
(DeepFM and DCN-V2 on ids, numbers and a multi-valued field), onnxruntime's ``logits`` equal the
run's own scoring to float32 rounding for a batch of one and of many; the file passes
``onnx.checker``, has a dynamic batch axis and documents its inputs, outputs and classes; it runs
in a fresh process that imports only onnxruntime and numpy; predict gives the same CSV with either
runtime; and the errors (format, opset, existing file, no export, a stale export) name the problem.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pyarrow.csv as pacsv
import pytest

from fakedata import (
    assert_warns_unfinished_once,
    run_cli,
    unfinished_copy,
    write_ctr_tables,
    write_fake_fashion_mnist,
)
from mlpkit.data.idx import read_idx
from mlpkit.data.tables import encode_file
from mlpkit.runtime import ONNX_FILE, OnnxModel, weights_digest
from mlpkit.tasks.ctr import load_ctr_run, named_inputs
from mlpkit.tasks.fashion_mnist import load_run, pixels_to_features
from mlpkit.tasks.tabular import load_table_run
from test_table_run import customers

pytestmark = pytest.mark.torch  # exporting traces the model with torch

QUICK = ["--no-progress", "--epochs", "2"]
FLOAT32 = {"rtol": 1e-5, "atol": 2e-6}
"""float32 rounding: the exporter may fuse or reorder a product, the values stay those of one model."""


def train(*argv: str | Path) -> Path:
    out = Path(argv[-1])
    code, _, err = run_cli(*argv)
    assert code == 0, err
    return out


def export(run_dir: Path, *extra: str | Path) -> str:
    code, out, err = run_cli("export", run_dir, *extra)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


@pytest.fixture(scope="module")
def image_runs(image_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An MLP from each engine (one in float64) and a small ViT, each exported to RUN_DIR/model.onnx."""
    root = tmp_path_factory.mktemp("image-runs")
    common = ["train", "--data-dir", image_data, "--no-verify", "--val-size", "60", *QUICK]
    settings = {
        "numpy": "--hidden 32,16 --activation gelu --dtype float64",
        "torch": "--engine torch --hidden 24 --dropout 0.2",
        "vit": "--model vit --patch-size 7 --dim 16 --depth 1 --heads 2 --mlp-dim 16",
    }
    runs = {kind: train(*common, *flags.split(), "--out", root / kind) for kind, flags in settings.items()}
    for run_dir in runs.values():
        export(run_dir)
    return runs


def test_image_runs_export_with_outputs_equal_to_the_runs_own(
    image_runs: dict[str, Path], image_data: Path
) -> None:
    pixels = read_idx(image_data / "t10k-images-idx3-ubyte").reshape(-1, 784)
    for kind, run_dir in image_runs.items():
        loaded = load_run(run_dir)
        features = pixels_to_features(pixels, np.float32)  # (N, 784)
        expected = loaded.model.logits(features)  # (N, 10)
        model = OnnxModel.for_run(run_dir)
        np.testing.assert_allclose(model.run({"features": features}), expected, **FLOAT32, err_msg=kind)
        one = model.run({"features": features[:1]})  # a batch of one
        assert one.shape == (1, 10)
        np.testing.assert_allclose(one, expected[:1], **FLOAT32, err_msg=kind)
        probabilities = model.run({"features": features}, "probabilities")
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
        assert (probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_the_file_is_checked_has_a_dynamic_batch_and_documents_itself(image_runs: dict[str, Path]) -> None:
    run_dir = image_runs["numpy"]
    proto = onnx.load(str(run_dir / ONNX_FILE))
    onnx.checker.check_model(proto, full_check=True)
    (features,) = proto.graph.input
    dims = features.type.tensor_type.shape.dim
    assert features.name == "features" and dims[0].dim_param == "batch" and dims[1].dim_value == 784
    assert "divided by 255" in features.doc_string
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["mlpkit.task"] == "fashion_mnist"
    assert json.loads(meta["mlpkit.classes"])[0] == "T-shirt/top"
    assert meta["mlpkit.weights_sha256"] == weights_digest(run_dir / "model.safetensors")
    assert set(json.loads(meta["mlpkit.inputs"])) == {"features"}
    assert proto.producer_name == "mlpkit"


def test_an_export_runs_in_a_process_with_only_onnxruntime_and_numpy(
    image_runs: dict[str, Path], image_data: Path, tmp_path: Path
) -> None:
    run_dir = image_runs["torch"]
    features = pixels_to_features(read_idx(image_data / "t10k-images-idx3-ubyte")[:5], np.float32)
    np.save(tmp_path / "x.npy", features)
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        f"session = ort.InferenceSession({str(run_dir / ONNX_FILE)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, session.run(['logits'], {{'features': x}})[0])\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded & {'torch', 'mlpkit', 'onnx'}, sorted(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), load_run(run_dir).model.logits(features), **FLOAT32
    )


def test_predict_through_onnxruntime_writes_the_same_predictions(
    image_runs: dict[str, Path], image_data: Path, tmp_path: Path
) -> None:
    np.save(tmp_path / "images.npy", read_idx(image_data / "t10k-images-idx3-ubyte")[:20])
    for kind in ("numpy", "vit"):
        tables = {}
        for runtime in ("native", "onnx"):
            code, out, err = run_cli(
                "predict", image_runs[kind], tmp_path / "images.npy", "--probabilities", "--runtime", runtime
            )
            assert code == 0, err
            tables[runtime] = pd.read_csv(io.StringIO(out))
        native, exported = tables["native"], tables["onnx"]
        assert (native["class"] == exported["class"]).all()
        numbers = list(native.columns[native.columns.get_loc("probability") :])
        np.testing.assert_allclose(exported[numbers], native[numbers], atol=1e-5)


# -- tables --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("table-runs")
    frame = customers()
    frame.to_csv(root / "customers.csv", index=False)
    new = customers(n=50, seed=9).drop(columns=["churn", "tier", "value"])
    new.loc[:4, "plan"] = "enterprise"  # a category no training row had
    new.loc[5:9, "spend"] = np.nan  # missing where training had none
    new.to_csv(root / "new.csv", index=False)

    def run(name: str, target: str, *extra: str) -> Path:
        others = ",".join(c for c in ("churn", "tier", "value") if c != target)
        return train(
            "train",
            "--data",
            root / "customers.csv",
            "--target",
            target,
            "--ignore",
            others,
            "--batch-size",
            "64",
            *QUICK,
            *extra,
            "--out",
            root / name,
        )

    runs = {
        "churn": run("churn", "churn"),
        "value": run("value", "value"),
        "tier-torch": run("tier-torch", "tier", "--engine", "torch"),
    }
    for run_dir in runs.values():
        export(run_dir)
    return {"runs": runs, "new": root / "new.csv"}


def test_table_runs_export_with_outputs_equal_to_the_runs_own(table_runs: dict[str, Any]) -> None:
    rows = pd.read_csv(table_runs["new"])
    for name, run_dir in table_runs["runs"].items():
        loaded = load_table_run(run_dir)
        arrays = loaded.preprocessor.transform(rows)
        inputs = {"numeric": arrays.numeric, "categorical": arrays.categorical}
        model = OnnxModel.for_run(run_dir)
        expected = loaded.logits(arrays)
        np.testing.assert_allclose(model.run(inputs), expected, **FLOAT32, err_msg=name)
        one = model.run({k: v[:1] for k, v in inputs.items()})
        np.testing.assert_allclose(one, expected[:1], **FLOAT32, err_msg=name)
    value_run = table_runs["runs"]["value"]
    pre = load_table_run(value_run).preprocessor
    arrays = pre.transform(rows)
    value = OnnxModel.for_run(value_run).run(
        {"numeric": arrays.numeric, "categorical": arrays.categorical}, "value"
    )
    np.testing.assert_allclose(
        value, pre.decode_regression(load_table_run(value_run).logits(arrays)), rtol=1e-5
    )


def test_the_numpy_engines_one_hot_is_made_in_the_graph_with_unseen_ids_as_zero_blocks(
    table_runs: dict[str, Any],
) -> None:
    """An unseen category (id 1) must leave its block empty, as TablePreprocessor.one_hot does: a
    one there would add an untrained weight row. So the graph's logits for an unseen plan equal the
    MLP's on a row with that block all zeros."""
    run_dir = table_runs["runs"]["churn"]
    loaded = load_table_run(run_dir)
    pre = loaded.preprocessor
    arrays = pre.transform(pd.read_csv(table_runs["new"]).head(5))  # plan 'enterprise': unseen
    assert (arrays.categorical[:, [c["name"] for c in pre.categorical].index("plan")] == 1).all()
    dense = pre.one_hot(arrays)
    from mlpkit.train import predict_logits

    by_hand = predict_logits(loaded.model, dense)
    got = OnnxModel.for_run(run_dir).run({"numeric": arrays.numeric, "categorical": arrays.categorical})
    np.testing.assert_allclose(got, by_hand, **FLOAT32)


def test_table_predict_through_onnxruntime_writes_the_same_csv(table_runs: dict[str, Any]) -> None:
    for run_dir in table_runs["runs"].values():
        frames = {}
        for runtime in ("native", "onnx"):
            code, out, err = run_cli("predict", run_dir, table_runs["new"], "--runtime", runtime)
            assert code == 0, err
            frames[runtime] = pd.read_csv(io.StringIO(out))
        native, exported = frames["native"], frames["onnx"]
        assert list(native.columns) == list(exported.columns)
        if len(native.columns) > 1:                                  # classification: class, p_<class>...
            assert (native["prediction"] == exported["prediction"]).all()
            np.testing.assert_allclose(exported.iloc[:, 1:], native.iloc[:, 1:], atol=1e-5)
        else:
            np.testing.assert_allclose(exported["prediction"], native["prediction"], rtol=1e-5)


# -- CTR -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Ids, a number and a multi-valued field: every kind of CTR input the graph takes."""
    root = tmp_path_factory.mktemp("ctr")
    data = write_ctr_tables(root / "data", rows=(1500, 400, 400))
    rng = np.random.default_rng(4)
    for split in ("train", "valid", "test"):
        table = pacsv.read_csv(data / f"{split}.csv").to_pandas()
        table["price"] = rng.gamma(2.0, 3.0, len(table)).round(2)
        table["tags"] = ["|".join(rng.choice(list("abcde"), rng.integers(1, 4))) for _ in range(len(table))]
        table.to_csv(data / f"{split}.csv", index=False)
    spec = root / "spec.toml"
    ids = "".join(f'[{name}]\nkind = "categorical"\n\n' for name in ("user", "item", "hour"))
    others = '[price]\nkind = "numeric"\n\n[tags]\nkind = "multi"\nmax_len = 3\ndelimiter = "|"\n'
    spec.write_text(ids + others)
    runs = {}
    for model in ("deepfm", "dcnv2"):
        runs[model] = train(
            "ctr",
            "train",
            "--data",
            data,
            "--spec",
            spec,
            "--model",
            model,
            "--hidden",
            "16",
            "--batch-size",
            "256",
            "--device",
            "cpu",
            *QUICK,
            "--out",
            root / model,
        )
        export(runs[model])
    return {"data": data, "runs": runs}


def test_ctr_runs_export_with_outputs_equal_to_the_runs_own(ctr: dict[str, Any]) -> None:
    for name, run_dir in ctr["runs"].items():
        loaded = load_ctr_run(run_dir)
        split = encode_file(ctr["data"] / "test.csv", loaded.fitted)
        inputs = {k: np.asarray(v) for k, v in named_inputs(split).items()}
        assert set(inputs) == {"sparse", "dense", "multi:tags"}
        model = OnnxModel.for_run(run_dir)
        assert model.input_names == ["sparse", "dense", "multi_tags"]
        meta = model.metadata                                   # where the vocabularies are, for a deployment
        assert meta["mlpkit.encoding"] == "table.json" and meta["mlpkit.model"] == name
        assert Path(meta["mlpkit.run_dir"]) == run_dir.resolve() and (run_dir / "table.json").is_file()
        expected = loaded.predict_logits(split)  # (N,)
        np.testing.assert_allclose(model.run(inputs), expected, **FLOAT32, err_msg=name)
        np.testing.assert_allclose(model.run({k: v[:1] for k, v in inputs.items()}), expected[:1], **FLOAT32)
        # The graph's probabilities are the sigmoid of its own logits (those match the run's to
        # float32 tolerance above; a sigmoid of the run's logits would carry that slack along).
        probabilities = model.run(inputs, "probabilities")
        logits = model.run(inputs).astype(np.float64)
        np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), rtol=0, atol=1e-6)


def test_ctr_predict_through_onnxruntime_writes_the_same_probabilities(
    ctr: dict[str, Any], tmp_path: Path
) -> None:
    run_dir = ctr["runs"]["dcnv2"]
    got = {}
    for runtime in ("native", "onnx"):
        out = tmp_path / f"{runtime}.csv"
        code, _, err = run_cli(
            "ctr", "predict", run_dir, ctr["data"] / "test.csv", "--out", out, "--runtime", runtime
        )
        assert code == 0, err
        got[runtime] = pacsv.read_csv(out).to_pydict()["probability"]
    np.testing.assert_allclose(got["onnx"], got["native"], rtol=1e-5)


# -- errors --------------------------------------------------------------------------------------


def test_bad_export_requests_are_named_and_change_nothing(
    image_runs: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = image_runs["numpy"]
    before = (run_dir / ONNX_FILE).read_bytes()
    code, _, err = run_cli("export", run_dir, "--format", "onxx")
    assert code == 2 and "invalid choice: 'onxx'" in err and "did you mean 'onnx'?" in err
    code, _, err = run_cli("export", run_dir, "--opset", "9", "--out", tmp_path / "m.onnx")
    assert code == 2 and "opset must be an int from 18" in err and "got 9" in err
    code, _, err = run_cli("export", run_dir)
    assert code == 2 and f"{run_dir / ONNX_FILE} already exists" in err and "--overwrite" in err
    assert (run_dir / ONNX_FILE).read_bytes() == before
    code, _, err = run_cli("export", tmp_path / "nowhere")
    assert code == 2 and "no run directory at" in err
    code, _, err = run_cli("predict", run_dir, tmp_path / "x.npy", "--runtime", "onxx")
    assert code == 2 and "did you mean 'onnx'?" in err
    assert not (tmp_path / "m.onnx").exists()


def test_predicting_with_a_missing_or_stale_export_is_refused(
    image_runs: dict[str, Path], image_data: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(image_runs["torch"], run_dir)
    np.save(tmp_path / "images.npy", read_idx(image_data / "t10k-images-idx3-ubyte")[:3])
    (run_dir / ONNX_FILE).unlink()
    code, _, err = run_cli("predict", run_dir, tmp_path / "images.npy", "--runtime", "onnx")
    assert code == 2 and f"run 'mlpkit export {run_dir}' first" in err
    export(run_dir)
    code, _, err = run_cli("train", "--resume", run_dir, "--epochs", "3", "--no-progress")
    assert code == 0, err  # the run trains on: new weights
    code, _, err = run_cli("predict", run_dir, tmp_path / "images.npy", "--runtime", "onnx")
    assert code == 2 and "was exported from other weights" in err and "--overwrite" in err
    export(run_dir, "--overwrite")
    code, _, err = run_cli("predict", run_dir, tmp_path / "images.npy", "--runtime", "onnx")
    assert code == 0, err


def test_exporting_an_unfinished_run_warns(image_runs: dict[str, Path], tmp_path: Path) -> None:
    run_dir = unfinished_copy(image_runs["numpy"], tmp_path)
    # Once, from the command: the loader it goes through does not warn again.
    out = assert_warns_unfinished_once(run_dir, "exporting", "export", run_dir, "--overwrite")
    assert "model.onnx" in out
