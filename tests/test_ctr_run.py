"""``mlpkit ctr``: CTR runs through the one runner, on generated tables (never the benchmark's data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.numpy import load_file
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from fakedata import assert_warns_unfinished_once, interrupt_after, run_cli, unfinished_copy, write_ctr_tables
from launch import launch_ranks
from mlpkit.compare import COMPARE_KEYS
from mlpkit.config import CTR_MODEL_NAMES, CTRConfig
from mlpkit.models.ctr import CTR_MODELS
from mlpkit.run import evaluate_run, resume_run, train_run
from mlpkit.tasks.ctr import load_ctr_run

# A small, fast protocol: BARS's defaults but a batch that gives several steps on 3,000 rows.
SMALL = ["--batch-size", "512", "--epochs", "3", "--device", "cpu", "--lr", "0.01", "--no-progress"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ctr_tables(tmp_path_factory.mktemp("ctr") / "data")


@pytest.fixture(scope="module")
def deepfm_run(tables: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "deepfm"
    code, _, err = run_cli(
        "ctr", "train", "--data", tables, "--model", "deepfm", "--hidden", "16,16", *SMALL, "--out", out
    )
    assert code == 0, err
    return out


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_seconds(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(run_dir)]


def config(tables: Path, out: Path, **model: Any) -> CTRConfig:
    return CTRConfig.from_dict(
        {
            "model": {"name": "deepfm", "hidden_features": [16], **model},
            "optim": {"batch_size": 512, "epochs": 4, "lr": 0.01},
            "early_stopping": {"patience": None},
            "data": {"data_dir": str(tables)},
            "run": {"out": str(out), "device": "cpu"},
        }
    )


def test_the_model_names_known_to_the_config_are_the_zoo() -> None:
    assert sorted(CTR_MODEL_NAMES) == sorted(CTR_MODELS)


def test_a_ctr_run_writes_the_run_directory_every_run_writes(deepfm_run: Path) -> None:
    names = {p.name for p in deepfm_run.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "model.safetensors",
        "report.md",
        "curves.png",
        "table.json",
        "checkpoint.json",
    } <= names
    config_json = json.loads((deepfm_run / "config.json").read_text())
    assert config_json["task"] == "ctr" and config_json["model"]["name"] == "deepfm"
    assert (
        config_json["optim"]["optimizer"] == "adam" and config_json["early_stopping"]["monitor"] == "val_auc"
    )
    records = read_metrics(deepfm_run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all({"val_auc", "val_logloss", "train_loss", "lr"} <= r.keys() for r in records)
    summary = json.loads((deepfm_run / "summary.json").read_text())
    assert summary["best_epoch"] == max(records, key=lambda r: r["val_auc"])["epoch"]
    assert summary["best_val_auc"] == max(r["val_auc"] for r in records)
    assert summary["test_auc"] > 0.7  # the planted signal is learnt
    report = (deepfm_run / "report.md").read_text()
    assert f"**Test AUC {summary['test_auc']:.4f}**" in report and "| val AUC |" in report


def test_summary_scores_equal_sklearn_on_the_saved_model(deepfm_run: Path, tables: Path) -> None:
    summary = json.loads((deepfm_run / "summary.json").read_text())
    loaded = load_ctr_run(deepfm_run)
    from mlpkit.data.tables import encode_file

    for split, prefix in (("test", "test"), ("valid", "best_val")):
        encoded = encode_file(tables / f"{split}.csv", loaded.fitted)
        logits = loaded.predict_logits(encoded).astype(np.float64)
        labels = np.asarray(encoded.label)
        assert summary[f"{prefix}_auc"] == pytest.approx(roc_auc_score(labels, logits), abs=1e-6)
        probs = 1 / (1 + np.exp(-logits))
        assert summary[f"{prefix}_logloss"] == pytest.approx(sk_log_loss(labels, probs), abs=1e-5)
    assert summary["params"] == sum(p.numel() for p in loaded.model.parameters())


def test_evaluate_reproduces_the_summary(deepfm_run: Path) -> None:
    summary = json.loads((deepfm_run / "summary.json").read_text())
    scores = evaluate_run(deepfm_run)
    assert scores["test_auc"] == pytest.approx(summary["test_auc"], abs=1e-12)
    assert scores["test_logloss"] == pytest.approx(summary["test_logloss"], rel=1e-6)
    code, out, err = run_cli("evaluate", deepfm_run)
    assert code == 0, err
    assert f"{summary['test_auc']:.4f}" in out and "test rows" in out


def test_predict_writes_one_probability_per_row_in_the_input_format(
    deepfm_run: Path, tables: Path, tmp_path: Path
) -> None:
    loaded = load_ctr_run(deepfm_run)
    from mlpkit.data.tables import encode_file

    expected = 1 / (1 + np.exp(-loaded.predict_logits(encode_file(tables / "test.csv", loaded.fitted))))
    out_csv = tmp_path / "p.csv"
    code, out, err = run_cli("ctr", "predict", deepfm_run, tables / "test.csv", "--out", out_csv)
    assert code == 0, err
    assert "wrote 800 probabilities" in out
    got = pacsv.read_csv(out_csv).to_pydict()
    np.testing.assert_allclose(got["probability"], expected, rtol=1e-6)
    # Parquet in, Parquet out, no label column, an extra column the model does not read: ignored.
    table = pacsv.read_csv(tables / "test.csv").drop(["label"]).append_column("note", pa.array(["x"] * 800))
    pq.write_table(table, tmp_path / "new.parquet")
    code, _, err = run_cli(
        "ctr", "predict", deepfm_run, tmp_path / "new.parquet", "--out", tmp_path / "p.parquet"
    )
    assert code == 0, err
    np.testing.assert_allclose(
        pq.read_table(tmp_path / "p.parquet")["probability"].to_numpy(), expected, rtol=1e-6
    )
    # The same file again: nothing is replaced without --overwrite.
    code, _, err = run_cli("ctr", "predict", deepfm_run, tables / "test.csv", "--out", out_csv)
    assert code == 2 and "already exists" in err


def test_predict_maps_unseen_categories_to_the_oov_id_and_refuses_a_missing_column(
    deepfm_run: Path, tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("user,item,hour\nuser0,item0,hour0\nnever-seen,item0,hour0\nalso-new,item0,hour0\n")
    code, _, err = run_cli("ctr", "predict", deepfm_run, path, "--out", tmp_path / "p.csv")
    assert code == 0, err
    p = pacsv.read_csv(tmp_path / "p.csv")["probability"].to_numpy()
    from mlpkit.data.tables import encode_file

    ids = encode_file(path, load_ctr_run(deepfm_run).fitted).sparse  # (3, 3)
    assert ids[1, 0] == ids[2, 0] != ids[0, 0]  # both unseen users: the out-of-vocabulary id
    assert p[1] == pytest.approx(p[2], rel=1e-6) and p[1] != pytest.approx(p[0], rel=1e-3)
    path.write_text("user,item\nuser0,item0\n")
    code, _, err = run_cli("ctr", "predict", deepfm_run, path, "--out", tmp_path / "q.csv")
    assert code == 2 and "lacks column(s) ['hour']" in err and str(path) in err
    assert not (tmp_path / "q.csv").exists()


def test_an_interrupted_ctr_run_resumed_equals_the_uninterrupted_run(tables: Path, tmp_path: Path) -> None:
    whole = train_run(config(tables, tmp_path / "whole"))
    with pytest.raises(KeyboardInterrupt):
        cut = config(tables, tmp_path / "cut")
        cut = cut.with_overrides({"run": {"checkpoint_interval": 0}})  # a checkpoint after every epoch
        train_run(cut, on_epoch_end=interrupt_after(2))
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut")] == [1, 2]
    resumed = resume_run(tmp_path / "cut")
    assert resumed.summary["resumed_at_epoch"] == 2
    assert without_seconds(tmp_path / "cut") == without_seconds(whole.run_dir)
    ours, theirs = (
        load_file(tmp_path / "cut" / "model.safetensors"),
        load_file(whole.run_dir / "model.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert resumed.summary["test_auc"] == whole.summary["test_auc"]


def test_compare_trains_each_model_and_writes_the_table(tables: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(
        "ctr",
        "compare",
        "--data",
        tables,
        "--models",
        "lr,fm,dnn",
        "--hidden",
        "8",
        *SMALL,
        "--epochs",
        "2",
        "--out",
        out,
    )
    assert code == 0, err
    rows = json.loads((out / "compare.json").read_text())
    assert [r["model"] for r in rows] == ["lr", "fm", "dnn"]
    for row in rows:
        assert list(row)[: len(COMPARE_KEYS)] == list(COMPARE_KEYS)
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert row["test_auc"] == summary["test_auc"] and row["params"] == summary["params"]
    # LR: one weight per id plus the bias, 3 fields of 40, 60 and 6 values + OOV (no missing cells).
    assert rows[0]["params"] == (41 + 61 + 7) + 1
    assert json.loads((Path(rows[2]["run_dir"]) / "config.json").read_text())["model"]["hidden_features"] == [
        8
    ]
    assert (out / "compare.png").stat().st_size > 0 and "| dnn |" in (out / "compare.md").read_text()
    assert stdout.splitlines()[0].split() == [
        "model",
        "val",
        "AUC",
        "val",
        "logloss",
        "test",
        "AUC",
        "test",
        "logloss",
        "params",
        "best",
        "epoch",
        "s/epoch",
    ]
    code, _, err = run_cli(
        "ctr", "compare", "--data", tables, "--models", "lr,fmm", *SMALL, "--out", tmp_path / "x"
    )
    assert code == 2 and "'fmm' (did you mean 'fm'?)" in err and not (tmp_path / "x").exists()


def test_two_gloo_processes_train_as_one(tables: Path, tmp_path: Path) -> None:
    args = [
        "ctr",
        "train",
        "--data",
        str(tables),
        "--model",
        "dnn",
        "--hidden",
        "16",
        "--no-batch-norm",
        "--dropout",
        "0",
        "--batch-size",
        "512",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--no-progress",
        "-q",
    ]
    ranks = launch_ranks(["-m", "mlpkit", *args, "--out", str(tmp_path / "two")], cwd=tmp_path, timeout=180)
    assert [r.returncode for r in ranks] == [0, 0], [r.stderr for r in ranks]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, _, err = run_cli(*args, "--out", tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    two, one = read_metrics(tmp_path / "two"), read_metrics(tmp_path / "one")
    for ours, theirs in zip(two, one, strict=True):
        for key in ("train_loss", "val_loss", "val_auc", "val_logloss", "lr"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key
    ours, theirs = (
        load_file(tmp_path / "two" / "model.safetensors"),
        load_file(tmp_path / "one" / "model.safetensors"),
    )
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2


# -- bad input: one clear line naming the file, column and row; no run directory left behind ---------


def _copy(tables: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(tables, data, ignore=shutil.ignore_patterns(".mlpkit-cache"))
    return data


def _train_fails(data: Path, tmp_path: Path, *extra: Any) -> str:
    out = tmp_path / "run"
    code, _, err = run_cli("ctr", "train", "--data", data, *SMALL, "--out", out, *extra)
    assert code == 2, err
    assert not out.exists()  # created, then removed again: nothing half-written
    return err


def test_a_missing_label_column_is_named(tables: Path, tmp_path: Path) -> None:
    err = _train_fails(tables, tmp_path, "--label", "clicked")
    assert "clicked" in err and "train.csv" in err


def test_a_label_that_is_not_0_or_1_is_named_with_its_row(tables: Path, tmp_path: Path) -> None:
    data = _copy(tables, tmp_path)
    lines = (data / "valid.csv").read_text().splitlines()
    lines[5] = "2" + lines[5][lines[5].index(",") :]
    (data / "valid.csv").write_text("\n".join(lines) + "\n")
    err = _train_fails(data, tmp_path)
    assert "valid.csv" in err and "label" in err and "row 5" in err and "'2'" in err


def test_text_in_a_numeric_field_is_named(tables: Path, tmp_path: Path) -> None:
    data = _copy(tables, tmp_path)
    lines = (data / "train.csv").read_text().splitlines()
    (data / "train.csv").write_text(
        "\n".join(
            [
                lines[0] + ",price",
                *(f"{line},1.5" for line in lines[1:3]),
                lines[3] + ",cheap",
                *(f"{line},2" for line in lines[4:]),
            ]
        )
        + "\n"
    )
    for split in ("valid", "test"):
        rows = (data / f"{split}.csv").read_text().splitlines()
        (data / f"{split}.csv").write_text(
            "\n".join([rows[0] + ",price", *(f"{r},1" for r in rows[1:])]) + "\n"
        )
    spec = tmp_path / "spec.toml"
    spec.write_text('[user]\n[item]\n[hour]\n[price]\nkind = "numeric"\n')
    err = _train_fails(data, tmp_path, "--spec", spec)
    assert "train.csv" in err and "price" in err and "cheap" in err


def test_an_empty_file_is_named(tables: Path, tmp_path: Path) -> None:
    data = _copy(tables, tmp_path)
    (data / "test.csv").write_text("")
    err = _train_fails(data, tmp_path)
    assert "test.csv" in err and "empty" in err


def test_a_spec_naming_an_absent_column_lists_the_columns(tables: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('[user]\n[price]\nkind = "numeric"\n')
    err = _train_fails(tables, tmp_path, "--spec", spec)
    assert "price" in err and "user" in err


def test_splits_with_different_columns_are_refused(tables: Path, tmp_path: Path) -> None:
    data = _copy(tables, tmp_path)
    rows = (data / "valid.csv").read_text().splitlines()
    (data / "valid.csv").write_text("\n".join(",".join(r.split(",")[:3]) for r in rows) + "\n")
    err = _train_fails(data, tmp_path)
    assert "valid.csv" in err and "hour" in err


def test_a_corrupted_cache_file_is_rebuilt_not_trusted(tables: Path, tmp_path: Path) -> None:
    data = _copy(tables, tmp_path)
    code, _, err = run_cli("ctr", "train", "--data", data, *SMALL, "--epochs", "1", "--out", tmp_path / "a")
    assert code == 0, err
    (npy,) = [p for p in (data / ".mlpkit-cache").rglob("train*sparse*.npy")]
    npy.write_bytes(npy.read_bytes()[:100])
    code, _, err = run_cli("ctr", "train", "--data", data, *SMALL, "--epochs", "1", "--out", tmp_path / "b")
    assert code == 0, err
    assert "unusable" in err and "encoding" in err
    first = json.loads((tmp_path / "a" / "summary.json").read_text())
    again = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert again["test_auc"] == first["test_auc"]


def test_ctr_train_without_data_says_so(tmp_path: Path) -> None:
    code, _, err = run_cli("ctr", "train", "--model", "fm", "--out", tmp_path / "r")
    assert code == 2 and "data_dir is not set" in err and "--data DIR" in err
    code, _, err = run_cli("ctr", "train", "--data", tmp_path, "--model", "deepfn")
    assert code == 2 and "did you mean 'deepfm'" in err
    code, _, err = run_cli("ctr", "train", "--data", tmp_path, "--engine", "numpy")
    assert code == 2 and "unrecognized arguments: --engine" in err


# -- ctr spectrum ------------------------------------------------------------------------------------


def test_effective_rank_of_a_known_rank_r_product_is_r() -> None:
    from mlpkit.spectrum import effective_rank, normalized_singular_values

    rng = np.random.default_rng(0)
    w = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 30))  # rank 3
    s = normalized_singular_values(w)
    assert s[0] == 1.0 and s[3] < 1e-12
    assert effective_rank(s, 0.99) <= 3 and effective_rank(s, 0.999999) == 3
    assert (
        effective_rank(np.array([2.0, 1.0, 1.0]), 0.6) == 1
        and effective_rank(np.array([2.0, 1.0, 1.0]), 0.7) == 2
    )


@pytest.mark.parametrize("model", ["dcnv2", "dcnmix"])
def test_spectrum_rebuilds_the_initial_weights_from_the_seed(
    model: str, tables: Path, tmp_path: Path
) -> None:
    # One Adam step of 2e-6 (one batch of 4096 > 3,000 rows) leaves the weights where they started to
    # ~1e-5: the rebuilt initial spectrum must equal the trained one (to 1e-5), which holds only if the seed
    # reproduces the runner's draw (another draw differs by about 10%).
    code, _, err = run_cli(
        "ctr",
        "train",
        "--data",
        tables,
        "--model",
        model,
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--lr",
        "2e-6",
        "--batch-size",
        "4096",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        tmp_path / "run",
    )
    assert code == 0, err
    code, out, err = run_cli("ctr", "spectrum", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "spectrum.json").read_text())
    expected = 4 if model == "dcnv2" else 4 * 4  # 4 layers (x 4 experts)
    assert len(result["layers"]) == expected and (tmp_path / "run" / "spectrum.png").exists()
    for layer in result["layers"].values():
        np.testing.assert_allclose(
            layer["initial"]["singular_values"], layer["trained"]["singular_values"], rtol=1e-5, atol=1e-6
        )
        if model == "dcnmix":  # U Vᵀ has rank r = 8 at most
            assert layer["trained"]["rank_99"] <= 8
    assert "trained r90" in out


def test_spectrum_refuses_a_model_without_a_dcnv2_cross_network(deepfm_run: Path) -> None:
    code, _, err = run_cli("ctr", "spectrum", deepfm_run)
    assert code == 2 and "no DCN-V2 cross network (found" in err


def test_evaluate_and_predict_say_once_when_the_ctr_run_did_not_finish(
    deepfm_run: Path, tables: Path, tmp_path: Path
) -> None:
    unfinished = unfinished_copy(deepfm_run, tmp_path)
    assert_warns_unfinished_once(unfinished, "scoring", "evaluate", unfinished)
    assert_warns_unfinished_once(unfinished, "predicting with", "ctr", "predict", unfinished,
                                 tables / "test.csv", "--out", tmp_path / "p.csv")


def test_bf16_autocast_from_the_command_line_trains_and_is_recorded(tables: Path, tmp_path: Path) -> None:
    out = tmp_path / "bf16"
    code, _, err = run_cli("ctr", "train", "--data", tables, "--model", "deepfm", "--hidden", "16,16", *SMALL,
                           "--autocast", "bf16", "--out", out)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["run"]["autocast"] == "bf16"
    records = read_metrics(out)
    assert all(np.isfinite(r["train_loss"]) and 0.0 <= r["val_auc"] <= 1.0 for r in records)
    # The saved model scores as the run did: the scores of a bf16 run are full-precision ones.
    summary = json.loads((out / "summary.json").read_text())
    assert evaluate_run(out)["test_auc"] == pytest.approx(summary["test_auc"], abs=1e-12)


def test_resume_from_the_command_line_extends_a_run_and_refuses_other_settings(
    tables: Path, deepfm_run: Path, tmp_path: Path
) -> None:
    short = tmp_path / "short"
    code, _, err = run_cli("ctr", "train", "--data", tables, "--model", "deepfm", "--hidden", "16,16", *SMALL,
                           "--epochs", "2", "--out", short)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in short.iterdir() if p.is_file()}
    code, _, err = run_cli("ctr", "train", "--resume", short, "--lr", "0.5")
    assert code == 2 and err == (
        f"mlpkit: error: --resume continues {short} with the settings in its config.json; it cannot be "
        "combined with --lr (it takes --epochs, --data, --device, --checkpoint-interval)\n"
    )
    assert {p.name: p.read_bytes() for p in short.iterdir() if p.is_file()} == before
    code, _, err = run_cli("ctr", "train", "--resume", short, "--epochs", "3", "--checkpoint-interval", "0")
    assert code == 0, err
    # Epoch 3 continues exactly where the 2-epoch run stopped: the straight 3-epoch run's records.
    assert without_seconds(short) == without_seconds(deepfm_run)
    recorded = json.loads((short / "config.json").read_text())
    assert (recorded["optim"]["epochs"], recorded["run"]["checkpoint_interval"]) == (3, 0)
