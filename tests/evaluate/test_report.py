"""The Markdown run report: the opening sentence, the Run and Result sections, the per-class table
against classification_scores, the figures and the order of the sections."""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pytest

from mlpkit.config import RunConfig
from mlpkit.evaluate.metrics import classification_scores
from mlpkit.evaluate.report import render_report

CLASSES = ["T-shirt/top", "Trouser", "Pullover"]
# 784-256-3: 784*256 + 256 weights and biases into the hidden layer, 256*3 + 3 out of it.
PARAMETERS = 784 * 256 + 256 + 256 * 3 + 3
CONFUSION = np.array(
    [
        [80, 2, 18],  # 100 T-shirts, 18 taken for pullovers
        [1, 95, 4],
        [25, 0, 75],  # 100 pullovers, 25 taken for T-shirts: the most frequent mistake
    ]
)
FIGURES = {"loss and accuracy curves": "curves.png", "test predictions": "predictions.png"}
PROVENANCE = {
    "started_at": "2025-03-01T09:05:07-05:00",
    "command": "mlpkit train --epochs 5 --patience 2",
    "host": "lab-3",
    "platform": "Linux-6.1-x86_64",
    "python_version": "3.11.7",
    "mlpkit_version": "0.1.0",
    "numpy_version": "2.1.0",
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "git_dirty": True,
}
SECTIONS = [
    "# mlpkit run: ",
    "## Run",
    "## Result",
    "## Figures",
    "## Epochs",
    "## Per-class scores",
    "## Test confusion matrix",
    "## Configuration",
]


def make_records(val_losses: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            "train_accuracy": 0.5 + 0.05 * epoch,
            "val_loss": val_loss,
            "val_accuracy": 0.9 - val_loss / 2,
            "lr": 0.1,
            "seconds": 0.5,
        }
        for epoch, val_loss in enumerate(val_losses, start=1)
    ]


@pytest.fixture
def run() -> dict[str, Any]:
    """An early-stopped run: the validation loss is lowest at epoch 3 of 5 (of at most 20)."""
    overrides = {"optim": {"epochs": 20}, "early_stopping": {"patience": 2}}
    config = RunConfig().with_overrides(overrides).to_dict()
    summary = {
        "status": "completed",
        "test_accuracy": 0.8321,
        "test_loss": 0.4567,
        "saved_weights": "best_epoch",
        "final_test_accuracy": 0.8123,
        "final_test_loss": 0.5012,
        "best_epoch_test_accuracy": 0.8321,
        "best_epoch_test_loss": 0.4567,
        "best_epoch": 3,
        "monitor": "val_loss",
        "epochs_run": 5,
        "stop_reason": "early stopping: val_loss did not improve by more than 0 for 2 epochs "
        "(best 0.4 at epoch 3)",
        "n_train": 55000,
        "n_val": 5000,
        "n_test": 300,
        "wall_seconds": 205.0,
        "data_dir": "data/fashion",
        "engine": "numpy",
        "mlpkit_version": "0.1.0",
        "numpy_version": "2.1.0",
        "python_version": "3.11.7",
    }
    return {
        "title": "20250301-090507-mlp256-sgd",
        "config": config,
        "records": make_records([0.6, 0.5, 0.4, 0.45, 0.47]),
        "summary": summary,
        "confusion": CONFUSION,
        "class_names": CLASSES,
        "figures": FIGURES,
        "provenance": PROVENANCE,
        "in_features": 784,
        "parameters": PARAMETERS,
    }


def section(text: str, heading: str) -> str:
    """The body of the section ``heading`` up to the next heading of any level."""
    start = text.index(heading + "\n")
    end = text.find("\n#", start + len(heading))
    return text[start + len(heading) : None if end < 0 else end]


def table_rows(text: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for every body row of the Markdown tables in ``text``."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| |"):  # "| | |" heads a key-value table
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0]] = cells[1:]
    return rows


def test_opening_sentence_of_the_classic_recipe() -> None:
    summary = {"epochs_run": 10, "n_train": 55000, "n_val": 5000, "n_test": 10000}
    text = render_report(
        title="classic", config=RunConfig().to_dict(), records=[], summary=summary, confusion=None,
        class_names=[str(k) for k in range(10)], figures={}, in_features=784,
        parameters=784 * 256 + 256 + 256 * 10 + 10,
    )
    assert text.splitlines()[2] == (
        "A 784-256-10 MLP (ReLU, 203,530 parameters) trained with SGD (lr 0.1, batch 256) for 10 epochs "
        "on Fashion-MNIST: 55,000 training, 5,000 validation and 10,000 test images."
    )


def test_opening_sentence_names_every_setting_that_is_not_the_default() -> None:
    config = RunConfig().with_overrides(
        {
            "model": {"hidden_features": [8, 4], "activation": ["gelu", "relu"], "dropout": [0.2, 0.1]},
            "optim": {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "cosine",
                      "min_lr": 1e-4, "epochs": 30},
            "data": {"augment": "shift_flip", "val_size": 0},
        }
    ).to_dict()
    summary = {"epochs_run": 1, "n_train": 60000, "n_val": 0, "n_test": 10000}
    text = render_report(
        title="x", config=config, records=[], summary=summary, confusion=None, class_names=["a", "b"],
        figures={}, in_features=8, parameters=8 * 8 + 8 + 8 * 4 + 4 + 4 * 2 + 2,
    )
    assert text.splitlines()[2] == (
        "An 8-8-4-2 MLP (GELU then ReLU, dropout 0.2/0.1, 118 parameters) trained with SGD "
        "(lr 0.1 annealed to 0.0001 by a cosine schedule, Nesterov momentum 0.9, weight decay 0.0005, "
        "batch 256) for 1 epoch (of at most 30) on Fashion-MNIST: 60,000 training and 10,000 test images "
        "(no validation set). Each training image was shifted by up to 2 pixels and mirrored with "
        "probability 0.5."
    )


@pytest.mark.parametrize(
    ("hidden", "in_features", "words"),
    [
        ([512, 256], None, "An MLP with hidden widths 512, 256 (ReLU)"),  # no input width: no 512-256-3
        ([], 784, "A 784-3 softmax regression"),
        ([], None, "A softmax regression"),
    ],
)
def test_opening_words_without_the_input_width_or_hidden_layers(
    hidden: list[int], in_features: int | None, words: str
) -> None:
    config = RunConfig().with_overrides({"model": {"hidden_features": hidden}}).to_dict()
    text = render_report(
        title="x", config=config, records=[], summary={}, confusion=None, class_names=CLASSES, figures={},
        in_features=in_features,
    )
    assert text.splitlines()[2] == f"{words} trained with SGD (lr 0.1, batch 256) on Fashion-MNIST."


def test_sections_appear_in_order(run: dict[str, Any]) -> None:
    text = render_report(**run)
    starts = [text.index(heading) for heading in SECTIONS]
    assert starts == sorted(starts)
    assert text.startswith("# mlpkit run: 20250301-090507-mlp256-sgd\n\nA 784-256-3 MLP")
    assert text.endswith("|\n")
    assert len(re.findall(r"^#", text, flags=re.MULTILINE)) == len(SECTIONS)


def test_run_table(run: dict[str, Any]) -> None:
    rows = table_rows(section(render_report(**run), "## Run"))
    assert rows == {
        "started": ["2025-03-01 09:05:07 (UTC-05:00)"],
        "command": ["`mlpkit train --epochs 5 --patience 2`"],
        "mlpkit": ["0.1.0 (Python 3.11.7, NumPy 2.1.0)"],
        "git commit": ["`0123456789abcdef0123456789abcdef01234567` (with uncommitted changes)"],
        "host": ["lab-3 (Linux-6.1-x86_64)"],
        "engine": ["NumPy"],
        "device": ["cpu, float32"],
        "seed": ["0"],
        "data": ["`data/fashion`"],
        "wall time": ["3 min 25 s"],
    }


def test_run_table_of_a_torch_run_outside_git(run: dict[str, Any]) -> None:
    run["provenance"] = {k: v for k, v in PROVENANCE.items() if not k.startswith("git")} | {
        "torch_version": "2.13.0",
        "command": "mlpkit train --set 'name=a|b'",
    }
    run["summary"] |= {"engine": "torch", "device": "cuda:1", "world_size": 2, "resumed_at_epoch": 4}
    rows = table_rows(section(render_report(**run), "## Run"))
    assert "git commit" not in rows
    assert rows["command"] == ["`mlpkit train --set 'name=a\\|b'`"]  # the pipe cannot end the cell
    assert rows["mlpkit"] == ["0.1.0 (Python 3.11.7, NumPy 2.1.0, PyTorch 2.13.0)"]
    assert rows["engine"] == ["PyTorch, 2 processes, resumed from the checkpoint of epoch 4"]
    assert rows["device"] == ["cuda:1, float32"]


@pytest.mark.parametrize(
    ("seconds", "shown"), [(12.94, "12.9 s"), (59.9, "59.9 s"), (185.4, "3 min 05 s"), (3725.0, "1 h 02 min")]
)
def test_wall_time_in_words(run: dict[str, Any], seconds: float, shown: str) -> None:
    run["summary"]["wall_seconds"] = seconds
    assert table_rows(section(render_report(**run), "## Run"))["wall time"] == [shown]


def test_run_table_without_provenance_keeps_the_summary_facts(run: dict[str, Any]) -> None:
    del run["provenance"]
    rows = table_rows(section(render_report(**run), "## Run"))
    assert set(rows) == {"mlpkit", "engine", "device", "seed", "data", "wall time"}
    assert rows["mlpkit"] == ["0.1.0 (Python 3.11.7, NumPy 2.1.0)"]  # the versions from summary.json


def test_result_in_words_for_an_early_stopped_run(run: dict[str, Any]) -> None:
    result = section(render_report(**run), "## Result")
    assert (
        "**Test accuracy 83.21%** (test loss 0.4567) with the saved weights, those of epoch 3, the epoch "
        "with the lowest validation loss (0.4000). Early stopping ended training after epoch 5 of 20: the "
        "validation loss had not improved for 2 epochs." in result
    )
    last = "The last epoch (5) scores 81.23% on the test set, 1.98 points less than the best epoch (3):"
    assert last in result
    # val accuracy of the records: 0.9 - val_loss / 2
    assert table_rows(result) == {
        "epoch": ["val loss", "val accuracy", "test loss", "test accuracy"],
        "3, best (saved)": ["0.4000", "70.00%", "0.4567", "83.21%"],
        "5, last": ["0.4700", "66.50%", "0.5012", "81.23%"],
    }


def test_result_when_the_last_epoch_is_saved_and_every_epoch_ran(run: dict[str, Any]) -> None:
    run["config"]["optim"]["epochs"] = 5
    run["config"]["early_stopping"] |= {"restore_best": False, "monitor": "val_accuracy"}
    run["summary"] |= {
        "saved_weights": "last_epoch", "monitor": "val_accuracy", "stop_reason": "completed 5 epochs",
        "test_accuracy": 0.8123, "test_loss": 0.5012,
    }
    result = section(render_report(**run), "## Result")
    assert (
        "**Test accuracy 81.23%** (test loss 0.5012) with the saved weights, those of the last epoch, 5 "
        "(`restore_best` is off). Epoch 3 was the epoch with the highest validation accuracy (70.00%). "
        "Training ran all 5 epochs." in result
    )
    assert "| 5, last (saved) |" in result and "| 3, best |" in result


def test_result_when_the_best_epoch_is_the_last(run: dict[str, Any]) -> None:
    run["records"] = make_records([0.6, 0.5, 0.4])
    run["config"]["optim"]["epochs"] = 3
    run["summary"] |= {"epochs_run": 3, "stop_reason": "completed 3 epochs", "final_test_accuracy": 0.8321}
    result = section(render_report(**run), "## Result")
    assert result.strip().endswith("Training ran all 3 epochs. The best epoch was the last one.")
    assert "|" not in result  # no best-against-last table


def test_figures_are_embedded_in_the_order_given(run: dict[str, Any]) -> None:
    figures = section(render_report(**run), "## Figures")
    assert "![loss and accuracy curves](curves.png)\n\n*Loss and accuracy curves.*" in figures
    assert figures.index("](curves.png)") < figures.index("](predictions.png)")
    run["figures"] = {}
    assert "## Figures" not in render_report(**run)


def test_epoch_table_has_train_accuracy_and_marks_the_best(run: dict[str, Any]) -> None:
    rows = table_rows(section(render_report(**run), "## Epochs"))
    assert rows["epoch"] == ["train loss", "train acc %", "val loss", "val acc %", "lr", "seconds"]
    assert rows["1"] == ["1.0000", "55.00", "0.6000", "60.00", "0.1", "0.50"]
    assert rows["**3** (best)"] == ["0.3333", "65.00", "0.4000", "70.00", "0.1", "0.50"]
    assert len(rows) == 1 + 5


def test_per_class_table_equals_classification_scores(run: dict[str, Any]) -> None:
    body = section(render_report(**run), "## Per-class scores")
    rows = table_rows(body)
    scores = classification_scores(CONFUSION)
    assert rows["class"] == ["precision", "recall", "F1", "support"]
    for k, name in enumerate(CLASSES):
        shown = [float(cell.replace(",", "")) for cell in rows[name]]
        expected = [scores["precision"][k], scores["recall"][k], scores["f1"][k], scores["support"][k]]
        assert shown == pytest.approx(expected, abs=5e-4), name
    for key in ("macro", "weighted"):
        shown = [float(cell.replace(",", "")) for cell in rows[f"*{key} average*"]]
        mean = scores[key]
        assert shown == pytest.approx([mean["precision"], mean["recall"], mean["f1"], 300], abs=5e-4)
    # By hand, F1 = 2 tp / (row sum + column sum): T-shirt/top 80 of 106 predictions right, F1 160/206;
    # Trouser 95 of 97, F1 190/197; Pullover 75 of 97, F1 150/197. Accuracy 250/300.
    assert rows["T-shirt/top"] == ["0.755", "0.800", "0.777", "100"]
    assert rows["Trouser"] == ["0.979", "0.950", "0.964", "100"]
    assert rows["Pullover"] == ["0.773", "0.750", "0.761", "100"]
    assert (
        "On the 300 test images (accuracy 83.33%). Hardest class: Pullover (F1 0.761); "
        "easiest: Trouser (F1 0.964)." in body
    )


def test_per_class_section_names_classes_with_a_zero_ratio(run: dict[str, Any]) -> None:
    run["confusion"] = np.array([[5, 0, 0], [2, 0, 0], [0, 0, 0]])
    body = section(render_report(**run), "## Per-class scores")
    assert "Never predicted, so precision 0: Trouser and Pullover." in body
    assert "Not in the test set, so recall 0: Pullover." in body
    assert table_rows(body)["Pullover"] == ["0.000", "0.000", "0.000", "0"]


def test_confusion_matrix_bolds_the_diagonal_and_names_the_worst_mistakes(run: dict[str, Any]) -> None:
    body = section(render_report(**run), "## Test confusion matrix")
    assert (
        "The most frequent mistakes: Pullover taken for T-shirt/top (25 of 100), T-shirt/top taken for "
        "Pullover (18 of 100) and Trouser taken for Pullover (4 of 100)." in body
    )
    assert table_rows(body)["Pullover"] == ["25", "0", "**75**"]
    run["confusion"] = None
    text = render_report(**run)
    assert "## Per-class scores" not in text and "## Test confusion matrix" not in text


def test_configuration_is_last_and_complete(run: dict[str, Any]) -> None:
    text = render_report(**run)
    lines = section(text, "## Configuration").strip().splitlines()
    assert lines[:2] == ["| section | key | value |", "|---|---|---|"]
    assert len(lines) == 2 + sum(len(values) for values in run["config"].values() if isinstance(values, dict))
    assert "| early_stopping | patience | 2 |" in lines and "| optim | gamma | — |" in lines
    assert text.rindex("## ") == text.index("## Configuration")


def test_render_report_is_pure(run: dict[str, Any]) -> None:
    before = copy.deepcopy(run)
    assert render_report(**run) == render_report(**run)
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(run[key], value)
        else:
            assert run[key] == value, key


def test_a_run_without_a_test_score_says_why(run: dict[str, Any]) -> None:
    run["summary"] |= {"test_accuracy": None, "stop_reason": "loss is NaN at epoch 4"}
    assert section(render_report(**run), "## Result").strip() == "No test score: loss is NaN at epoch 4."
