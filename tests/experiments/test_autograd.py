"""The autograd study: the quick run's files, figure and time ratio; its training, scoring and boundary.

The run on the real Fashion-MNIST is here too (marked real_data); test_runs checks every study's
files and JSON keys on generated images.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys

import numpy as np
import pytest

from fakedata import fake_images
from mlpkit.autograd import MLP, cross_entropy_loss
from mlpkit.autograd.convert import state_dict
from mlpkit.errors import MissingDependencyError
from mlpkit.experiments import EXPERIMENTS, _common
from mlpkit.experiments import autograd as study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RATIO_LINE = re.compile(
    r"Scalar / engine time ratio: \*\*([\d,]+)\*\* one sample at a time, \*\*([\d,]+)\*\*"
)


@pytest.fixture
def small_images(monkeypatch):
    """Stand-in for Fashion-MNIST: 100 + 100 generated images in [0, 1] (see fakedata.fake_images)."""
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 10, 100), rng.integers(0, 10, 100)
    arrays = (
        fake_images(y_train, seed=1).reshape(100, 784).astype(np.float32) / 255, y_train,
        fake_images(y_test, seed=2).reshape(100, 784).astype(np.float32) / 255, y_test,
    )
    monkeypatch.setattr(study, "load_scaled_fashion_mnist", lambda *args, **kwargs: arrays)


@pytest.fixture
def figures(monkeypatch):
    """The figures the study saves (still written to disk)."""
    saved = []
    original = _common.save_png

    def save_png(figure, path):
        saved.append(figure)
        original(figure, path)

    monkeypatch.setattr(_common, "save_png", save_png)
    return saved


def _check_quick_run(out_dir, figures):
    assert sorted(p.name for p in out_dir.iterdir()) == ["autograd.json", "autograd.png", "summary.md"]
    assert (out_dir / "autograd.png").read_bytes()[:8] == PNG_MAGIC
    numbers = json.loads((out_dir / "autograd.json").read_text())
    summary = (out_dir / "summary.md").read_text()
    timing = numbers["timing"]

    # The ratio is in the summary, equals the JSON's, and the scalar graph is the slower one.
    ratio, batch_ratio = (float(g.replace(",", "")) for g in RATIO_LINE.search(summary).groups())
    assert ratio == round(timing["ratio"]) and batch_ratio == round(timing["batch_ratio"])
    assert timing["ratio"] > 1 and timing["batch_ratio"] > 1
    assert timing["ratio"] == pytest.approx(timing["scalar_seconds"] / timing["engine_seconds"])
    assert timing["batch_ratio"] == pytest.approx(timing["scalar_seconds"] / timing["engine_batch_seconds"])
    assert "| NumPy engine, one sample at a time |" in summary and "| scalar autograd" in summary

    # The figure's first panel is the moons' decision boundary: filled P(class 1) and its 0.5 contour.
    (figure,) = figures
    ax = figure.axes[0]
    assert ax.get_title().startswith("two moons: decision boundary")
    levels = [list(c.levels) for c in ax.collections if hasattr(c, "levels")]
    assert [0.5] in levels and any(len(lv) == 11 for lv in levels)
    boundary = numbers["boundary"]
    probability = np.asarray(boundary["probability"])
    assert probability.shape == (len(boundary["x2"]), len(boundary["x1"]))
    assert probability.min() < 0.2 and probability.max() > 0.8      # both classes get a region

    for task in ("moons", "images"):
        run = numbers[task]
        assert len(run["curves"]["test_accuracy"]) == run["epochs"] == numbers["config"][task]["epochs"]
        assert run["test_accuracy"] == run["curves"]["test_accuracy"][-1]
        assert run["max_logit_difference"] < 1e-12                     # scalar and engine: one function
    return numbers


def test_quick_run_writes_the_figure_and_a_summary_with_the_time_ratio(tmp_path, small_images, figures):
    assert EXPERIMENTS["autograd"](tmp_path / "out", quick=True, seed=1) == tmp_path / "out"
    numbers = _check_quick_run(tmp_path / "out", figures)
    assert numbers["config"]["images"]["architecture"] == "49-16-10 MLP (tanh)"
    assert numbers["images"]["n_train"] == 100                         # what the stand-in loader returned
    assert numbers["moons"]["test_accuracy"] > 0.7                     # 100 points, 15 epochs: above chance


@pytest.mark.real_data
def test_quick_run_on_fashion_mnist(tmp_path, real_data_dir, figures):
    EXPERIMENTS["autograd"](tmp_path, quick=True, data_dir=real_data_dir)
    numbers = _check_quick_run(tmp_path, figures)
    assert (numbers["images"]["n_train"], numbers["images"]["n_test"]) == (100, 100)


def test_downsample_averages_blocks():
    image = np.repeat(np.repeat(np.arange(49.0).reshape(7, 7), 4, axis=0), 4, axis=1)   # (28, 28) blocks
    image[0, 0] += 16.0                                                # one pixel of the first block
    small = study.downsample(image.reshape(1, 784))
    expected = np.arange(49.0)
    expected[0] += 1.0                                                 # 16 / 16 pixels
    np.testing.assert_array_equal(small, expected[None, :])
    with pytest.raises(ValueError, match="x must hold square images whose side divides by 4, got rows of 50"):
        study.downsample(np.zeros((2, 50)))


@pytest.fixture
def blobs():
    """Two separable clusters in 3 dimensions: 60 training and 40 test points."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    x = np.where(y[:, None] == 1, 1.5, -1.5) + rng.normal(size=(100, 3))
    return (x[:60], y[:60]), (x[60:], y[60:])


def test_training_learns_and_the_engine_scores_the_scalar_network(blobs):
    train, test = blobs
    net = MLP(3, (6,), 2, activation="tanh", rng=random.Random(0))
    curves = study.train_scalar_mlp(net, train, test, epochs=5, lr=0.3, batch_size=8,
                                    rng=np.random.default_rng(0))
    assert len(curves.train_loss) == len(curves.test_accuracy) == len(curves.running_train_loss) == 5
    # Cosine decay (Loshchilov & Hutter 2017): epoch t of T trains with lr (1 + cos(π t / T)) / 2.
    assert curves.extra["lr"] == pytest.approx([0.3 * (1 + math.cos(math.pi * t / 5)) / 2 for t in range(5)])
    assert curves.test_accuracy[-1] > 0.9 and curves.running_train_loss[-1] < curves.running_train_loss[0]
    # The curves come from the engine with the scalar weights: recompute the last ones in the scalar graph.
    rows, labels = train[0].tolist(), train[1].tolist()
    logits = [net(row) for row in rows]
    assert curves.train_loss[-1] == pytest.approx(cross_entropy_loss(logits, labels).data, rel=1e-12)
    predicted = [max(range(2), key=lambda c, z=z: z[c].data) for z in logits]
    accuracy = np.mean([p == y for p, y in zip(predicted, labels, strict=True)])
    assert curves.train_accuracy[-1] == accuracy


def test_the_boundary_is_the_scalar_networks_class_1_probability(blobs):
    net = MLP(2, (4,), 2, activation="tanh", rng=random.Random(0))
    x = np.random.default_rng(1).normal(size=(20, 2))
    boundary = study._boundary(net, x, np.zeros(20, dtype=int), resolution=5)
    for i, j in ((0, 0), (2, 3), (4, 1)):
        z0, z1 = (v.data for v in net([boundary.x1[j], boundary.x2[i]]))
        assert boundary.probability[i][j] == pytest.approx(1 / (1 + np.exp(z0 - z1)), rel=1e-12)


def test_time_per_sample_reports_the_ratios_of_its_medians(blobs):
    net = MLP(3, (32,), 2, activation="relu", rng=random.Random(0))
    timing = study.time_per_sample(net.spec, state_dict(net), blobs[0][0][:8], blobs[0][1][:8], repeats=3)
    assert (timing.n_samples, timing.repeats, timing.architecture) == (8, 3, "3-32-2 MLP (relu)")
    assert timing.ratio == timing.scalar_seconds / timing.engine_seconds > 1
    assert timing.batch_ratio == timing.scalar_seconds / timing.engine_batch_seconds > 1


def test_without_scikit_learn_the_study_names_it_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    message = "the autograd study's two moons needs sklearn, which is not installed: "
    message += "pip install 'mlpkit[sklearn]'"
    with pytest.raises(MissingDependencyError, match=f"^{re.escape(message)}$"):
        EXPERIMENTS["autograd"](tmp_path / "out", quick=True)
    assert list(tmp_path.iterdir()) == []
