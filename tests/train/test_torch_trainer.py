"""TorchTrainer: history, early stopping in both modes with restore-best, schedules, clipping, NaN
handling, devices and the error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mlpkit.errors import ConfigError, TrainingDivergedError
from mlpkit.spec import MLPSpec
from mlpkit.torch_engine import build_torch_mlp
from mlpkit.train import EarlyStopping
from mlpkit.train.device import resolve_device
from mlpkit.train.schedules import (
    SCHEDULES,
    CosineLR,
    ExponentialLR,
    ReduceLROnPlateau,
    StepLR,
    make_schedule,
)
from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

RECORD_KEYS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def blobs(seed: int, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 4-D: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return (centers[y] + rng.standard_normal((n, 4))).astype(np.float32), y


def make_trainer(optimizer: str = "sgd", lr: float = 0.1, **kwargs) -> TorchTrainer:
    torch.manual_seed(0)
    model = build_torch_mlp(MLPSpec(4, (16,), 3, init="xavier_uniform"), rng=np.random.default_rng(0))
    return TorchTrainer(
        model,
        loss=build_loss("cross_entropy"),
        optimizer=build_optimizer(optimizer, model, lr=lr),
        rng=np.random.default_rng(1),
        batch_size=kwargs.pop("batch_size", 16),
        **kwargs,
    )


def test_fit_records_the_numpy_trainers_keys_and_learns():
    x, y = blobs(0)
    xv, yv = blobs(1, 30)
    seen = []
    trainer = make_trainer(on_epoch_end=seen.append)
    history = trainer.fit(x, y, xv, yv, epochs=6)
    assert [list(r) for r in history.records] == [RECORD_KEYS] * 6
    assert seen == history.records
    assert [r["epoch"] for r in history.records] == [1, 2, 3, 4, 5, 6]
    assert history.records[-1]["train_loss"] < 0.6 * history.records[0]["train_loss"]
    assert history.records[-1]["val_accuracy"] > 0.8
    assert history.stop_reason == "completed 6 epochs"
    # The reported validation numbers are the model's (reference: computed here by hand).
    trainer.restore_best = False
    history = trainer.fit(x, y, xv, yv, epochs=1)
    logits = trainer.model(torch.from_numpy(xv))
    assert history.records[-1]["val_loss"] == pytest.approx(
        nn.functional.cross_entropy(logits, torch.from_numpy(yv)).item(), rel=1e-6
    )
    assert history.records[-1]["val_accuracy"] == pytest.approx((logits.argmax(1).numpy() == yv).mean())
    assert trainer.epochs_done == 7


def test_batch_of_one_and_predict_shapes():
    x, y = blobs(0, 5)
    trainer = make_trainer(batch_size=1)
    trainer.fit(x, y, epochs=1)
    assert trainer.predict_logits(x[:1]).shape == (1, 3)
    loss, acc = trainer.evaluate(x[:1], y[:1])
    assert math.isfinite(loss) and acc in (0.0, 1.0)


def test_train_loss_equals_the_mean_of_the_batch_losses():
    # Reference: the same epoch written as a plain loop over the same permutation.
    x, y = blobs(0, 20)
    trainer = make_trainer(batch_size=6)
    model = build_torch_mlp(MLPSpec(4, (16,), 3, init="xavier_uniform"), rng=np.random.default_rng(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    order, total = np.random.default_rng(1).permutation(20), 0.0
    for start in range(0, 20, 6):
        idx = order[start : start + 6]
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    history = trainer.fit(x, y, epochs=1)
    assert history.records[0]["train_loss"] == pytest.approx(total / 20, rel=1e-6)
    for (name, p), q in zip(trainer.model.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


@pytest.mark.parametrize(("monitor", "mode"), [("val_loss", "min"), ("val_accuracy", "max")])
def test_early_stopping_in_either_mode_restores_the_best_weights(monitor, mode):
    x, y = blobs(0)
    xv, yv = blobs(1, 30)
    weights = {}
    trainer = make_trainer(
        optimizer="adam",
        lr=0.05,
        monitor=monitor,
        early_stopping=EarlyStopping(patience=2, min_delta=0.0, mode=mode, monitor=monitor),
    )
    trainer.on_epoch_end = lambda r: weights.__setitem__(
        r["epoch"], {k: v.clone() for k, v in trainer.model.state_dict().items()}
    )
    history = trainer.fit(x, y, xv, yv, epochs=40)
    scores = history.column(monitor)
    best = (np.argmin if mode == "min" else np.argmax)(scores) + 1
    assert history.best_epoch == best
    assert len(history.records) == best + 2  # patience 2 after the best epoch
    assert history.stop_reason.startswith(
        f"early stopping: {monitor} did not improve by more than 0 for 2 epochs"
    )
    assert trainer.stopped_early
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, weights[best][name], rtol=0, atol=0)
    assert (
        trainer.fit(x, y, xv, yv, epochs=5) is history and len(history.records) == best + 2
    )  # stays stopped


def test_without_validation_the_train_loss_picks_the_best_epoch():
    x, y = blobs(0)
    history = make_trainer(restore_best=False).fit(x, y, epochs=3)
    assert history.column("val_loss") == [None] * 3
    assert history.best_epoch == int(np.argmin(history.column("train_loss"))) + 1


def test_a_schedule_sets_the_lr_of_every_group_each_epoch():
    x, y = blobs(0)
    trainer = make_trainer(schedule=make_schedule("step", 0.1, step_size=2, gamma=0.5))
    history = trainer.fit(x, y, epochs=5)
    assert history.column("lr") == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.025, 0.025])  # epoch 6's


def test_plateau_schedule_decays_when_the_monitored_loss_stalls():
    x, y = blobs(0)
    xv, yv = blobs(1, 30)
    trainer = make_trainer(
        lr=1e-4, schedule=make_schedule("plateau", 1e-4, factor=0.5, patience=0, threshold=0.5)
    )
    history = trainer.fit(x, y, xv, yv, epochs=4)  # lr too small to improve by 50%
    # Epoch 1 sets the best score; epochs 2, 3, 4 each fail to beat it by 50% and halve the lr.
    assert history.column("lr") == pytest.approx([1e-4, 1e-4, 0.5e-4, 0.25e-4])


def test_gradient_clipping_bounds_the_update():
    x, y = blobs(0, 8)
    trainer = make_trainer(lr=1.0, grad_clip_norm=1e-3, batch_size=8)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(x, y, epochs=1)  # one SGD step: update = lr * clipped grad
    step = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before, strict=True)]
    )
    assert step.norm().item() == pytest.approx(1e-3, rel=1e-4)


def test_a_diverging_epoch_raises_and_rolls_back_to_the_last_good_epoch():
    x, y = blobs(0)
    saved = {}
    trainer = make_trainer(restore_best=False)
    trainer.on_epoch_end = lambda r: saved.update(
        {k: v.clone() for k, v in trainer.model.state_dict().items()}
    )
    trainer.fit(x, y, epochs=1)
    trainer._set_lr(1e30)
    with pytest.raises(
        TrainingDivergedError,
        match=r"training diverged: .* in epoch 2 \(lr=1e\+30\); "
        r"the trainer was rolled back to the end of epoch 1",
    ):
        trainer.fit(x, y, epochs=3)
    assert trainer.epochs_done == 1  # the NaN epoch was never recorded nor passed on
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)


# Every way Python code can pull a tensor's value back to the host (each one syncs a GPU).
HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy")


def test_the_loop_reads_back_one_number_per_epoch(monkeypatch):
    x, y = blobs(0, 64)
    trainer = make_trainer(batch_size=4)  # 16 batches per epoch: a per-batch read would count 16
    calls = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            calls.append(name)
            return original(self, *args, **kwargs)

        return wrapper

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    trainer.fit(x, y, epochs=3)
    # Derivation (TorchTrainer.train_epoch): the loss sum and correct count stay on the device
    # through every batch; after the last one, [loss_sum, correct, nonfinite-weight count] is
    # stacked and read with a single ``totals.tolist()``. With no validation set evaluate() does
    # not run, and the loop (EpochTrainer._run_epoch) reads the lr from the optimizer's Python
    # float, so 3 epochs make exactly 3 reads, all tolist().
    assert calls == ["tolist"] * 3
    monkeypatch.undo()  # the patches are gone: reading now counts nothing
    t = torch.tensor([2.5])
    assert (t.item(), t.tolist(), float(t), bool(t), t.cpu().numpy()[0]) == (2.5, [2.5], 2.5, True, 2.5)
    assert calls == ["tolist"] * 3


def test_progress_bar_runs(capsys):
    x, y = blobs(0, 10)
    make_trainer(progress=True).fit(x, y, epochs=1)
    assert "epoch 1" in capsys.readouterr().err


def test_mse_loss_has_no_accuracy():
    rng = np.random.default_rng(0)
    model = nn.Linear(3, 2)
    trainer = TorchTrainer(
        model,
        loss=build_loss("mse"),
        optimizer=build_optimizer("adam", model, lr=0.01),
        rng=rng,
        batch_size=4,
    )
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    history = trainer.fit(x, y, x, y, epochs=2)
    assert history.column("train_accuracy") == [None, None]
    with pytest.raises(ValueError, match="monitor 'val_accuracy' needs a classification loss, got MSELoss"):
        TorchTrainer(
            model, loss=build_loss("mse"), optimizer=trainer.optimizer, rng=rng, monitor="val_accuracy"
        ).fit(x, y, x, y, epochs=1)


# -- devices, names, arguments -------------------------------------------------------------------


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(
        ConfigError,
        match=r"device 'cuda' was requested but CUDA is not available .*use device 'cpu', or 'auto'",
    ):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="device 'cuda:1' was requested but CUDA is not available"):
        make_trainer(device="cuda:1")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: resolve_device("tpu"),
            r"device must be one of \['auto', 'cpu', 'cuda'\] or 'cuda:N', got 'tpu'",
        ),
        (lambda: resolve_device("cuda:x"), r"device must be one of .* got 'cuda:x'"),
        (
            lambda: build_optimizer("lbfgs", nn.Linear(2, 2), lr=0.1),
            r"optimizer must be one of \['adam', 'adamw', 'sgd'\], got 'lbfgs'",
        ),
        (
            lambda: build_loss("hinge"),
            r"loss must be one of \['bce_with_logits', 'cross_entropy', 'mse'\], got 'hinge'",
        ),
        (
            lambda: make_schedule("linear", 0.1),
            r"schedule must be one of \['constant', 'cosine', 'exponential', 'plateau', 'step'\], "
            r"got 'linear'",
        ),
        (
            lambda: make_schedule("step", 0.1, epochs=3),
            r"schedule 'step': .*unexpected keyword argument 'epochs'",
        ),
    ],
)
def test_unknown_names_are_config_errors_listing_the_valid_ones(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_optimizer("sgd", nn.Linear(2, 2), lr=0), "lr must be a positive float, got 0"),
        (
            lambda: build_optimizer("sgd", nn.Linear(2, 2), lr=0.1, nesterov=True),
            "nesterov momentum needs momentum > 0",
        ),
        (
            lambda: build_optimizer("adam", nn.Linear(2, 2), lr=0.1, weight_decay=-1),
            "weight_decay must be a non-negative float, got -1.0",
        ),
        (lambda: make_trainer(batch_size=0), "batch_size must be a positive int, got 0"),
        (
            lambda: make_trainer(monitor="auc"),
            r"monitor must be one of \['train_loss', 'val_accuracy', 'val_loss'\], got 'auc'",
        ),
        (lambda: make_trainer(grad_clip_norm=0.0), "grad_clip_norm must be a positive float, got 0.0"),
        (lambda: make_trainer().fit(*blobs(0), epochs=-1), "epochs must be a non-negative int, got -1"),
        (
            lambda: make_trainer().fit(np.zeros(4), np.zeros(4), epochs=1),
            r"x must be 2-D \(samples, features\), got shape \(4,\)",
        ),
        (lambda: make_trainer().fit(np.zeros((4, 4)), np.zeros(3), epochs=1), "y has 3 rows for 4 samples"),
        (lambda: make_schedule("plateau", 0.1, factor=1.5), r"factor must be a float in \(0, 1\), got 1.5"),
    ],
)
def test_bad_arguments_name_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_weight_decay_groups_hold_weights_only():
    model = build_torch_mlp(MLPSpec(3, (4,), 2))
    opt = build_optimizer("sgd", model, lr=0.1, weight_decay=0.1, momentum=0.9, nesterov=True)
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [(4, 3), (2, 4)] and decay["weight_decay"] == 0.1
    assert [p.shape for p in no_decay["params"]] == [(4,), (2,)] and no_decay["weight_decay"] == 0.0
    assert decay["nesterov"] and decay["momentum"] == 0.9


# -- schedules (framework-free), checked against torch.optim.lr_scheduler -------------------------


def _torch_lrs(make, epochs, scores=None):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make(opt)
    lrs = []
    for epoch in range(epochs):
        opt.step()
        sched.step(scores[epoch]) if scores is not None else sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: StepLR(0.1, step_size=3, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
        (lambda: ExponentialLR(0.1, gamma=0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
        (
            lambda: CosineLR(0.1, epochs=7, min_lr=0.01),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 7, 0.01),
        ),
    ],
)
def test_epoch_schedules_match_torch(ours, theirs):
    schedule = ours()
    assert [schedule.step() for _ in range(7)] == pytest.approx(_torch_lrs(theirs, 7), rel=1e-12)


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_plateau_matches_torch(mode, threshold_mode):
    scores = [1.0, 0.9, 0.95, 0.93, 0.91, 0.96, 0.97, 0.8, 0.85, 0.86, 0.87, 0.88, 0.9, 0.7, 0.71]
    kwargs = {
        "mode": mode,
        "factor": 0.5,
        "patience": 1,
        "threshold": 0.02,
        "threshold_mode": threshold_mode,
        "cooldown": 1,
        "min_lr": 0.01,
    }
    ours = ReduceLROnPlateau(0.1, **kwargs)
    expected = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, **kwargs), len(scores), scores
    )
    assert [ours.step(s) for s in scores] == pytest.approx(expected, rel=1e-12)


# name: (kwargs, lr after four steps with score 1.0, lrs of the next two steps with score 1.0), by hand.
ROUND_TRIP_CASES = {
    "constant": ({}, 0.1, [0.1, 0.1]),
    # lr0 · 0.5^floor(t / 2): t = 4 -> 0.1 / 4; t = 5, 6 -> 0.1 / 4, 0.1 / 8.
    "step": ({"step_size": 2, "gamma": 0.5}, 0.025, [0.025, 0.0125]),
    # lr0 · 0.5^t: t = 4, 5, 6.
    "exponential": ({"gamma": 0.5}, 0.00625, [0.003125, 0.0015625]),
    # lr0 (1 + cos(π t / 8)) / 2: t = 4 -> 0.05; t = 5, 6 -> 0.05 (1 - cos(3π/8)), 0.05 (1 - √2/2).
    "cosine": (
        {"epochs": 8},
        0.05,
        [0.05 * (1 - math.cos(3 * math.pi / 8)), 0.05 * (1 - math.sqrt(0.5))],
    ),
    # patience 1: t = 1 sets best = 1.0; t = 2, 3 are bad, the 2nd halves the lr (0.05) and resets
    # the count; t = 4 is bad (count 1, kept in the state); t = 5 is the 2nd bad one -> 0.025.
    "plateau": ({"factor": 0.5, "patience": 1}, 0.05, [0.025, 0.025]),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_state_round_trips_through_json(name):
    import json

    kwargs, lr_after, next_lrs = ROUND_TRIP_CASES[name]
    a, b, fresh = (make_schedule(name, 0.1, **kwargs) for _ in range(3))
    for _ in range(4):
        a.step(1.0)
    assert a.lr == pytest.approx(lr_after, rel=1e-12)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    # A load that did nothing would leave b equal to a fresh schedule: the checks below tell them apart.
    assert b.state_dict() == a.state_dict() != fresh.state_dict()  # epoch 4 vs 0 at least
    assert b.lr == a.lr
    ours, theirs = [a.step(1.0) for _ in range(2)], [b.step(1.0) for _ in range(2)]
    assert ours == theirs == pytest.approx(next_lrs, rel=1e-12)
    assert b.state_dict() == a.state_dict()
    if name != "constant":  # the only schedule whose lr never moves
        assert fresh.lr != lr_after
        assert [fresh.step(1.0) for _ in range(2)] != pytest.approx(next_lrs, rel=1e-6)
    with pytest.raises(ValueError, match="schedule state is for 'other'"):
        b.load_state_dict(a.state_dict() | {"name": "other"})


def test_plateau_needs_a_score():
    with pytest.raises(ValueError, match="the plateau schedule needs the epoch's monitored score, got None"):
        ReduceLROnPlateau(0.1).step()


# -- layering ---------------------------------------------------------------------------------------


class _TinyCTR(nn.Module):
    """Named inputs to one logit per row: an embedding per id plus a linear term of the numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(6, 1)
        self.linear = nn.Linear(2, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert batch["sparse"].dtype == torch.int64 and batch["dense"].dtype == torch.float32
        return self.embedding(batch["sparse"]).sum(dim=(1, 2)) + self.linear(batch["dense"]).squeeze(-1)


@pytest.mark.parametrize("n_rows", [1, 5])
def test_named_inputs_train_and_predict_with_one_logit_per_row(n_rows: int) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = {"sparse": rng.integers(0, 6, (n_rows, 3)).astype(np.int32), "dense": rng.random((n_rows, 2))}
    y = (x["sparse"][:, 0] > 2).astype(np.float32)
    model = _TinyCTR()
    trainer = TorchTrainer(
        model, loss=build_loss("bce_with_logits"), optimizer=build_optimizer("adam", model, lr=0.1),
        rng=rng, batch_size=2,
    )
    history = trainer.fit(x, y, x, y, epochs=3)
    logits = trainer.predict_logits(x)
    assert logits.shape == (n_rows,)                                  # the batch axis kept at B = 1
    with torch.no_grad():
        reference = model({"sparse": torch.as_tensor(x["sparse"], dtype=torch.int64),
                           "dense": torch.as_tensor(x["dense"], dtype=torch.float32)})
    np.testing.assert_allclose(logits, reference.numpy(), rtol=1e-6)
    expected_loss = nn.functional.binary_cross_entropy_with_logits(reference, torch.as_tensor(y)).item()
    assert history.records[-1]["val_loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_named_inputs_of_different_lengths_are_refused() -> None:
    model = _TinyCTR()
    trainer = TorchTrainer(model, loss=build_loss("bce_with_logits"),
                           optimizer=build_optimizer("sgd", model, lr=0.1), rng=np.random.default_rng(0))
    x = {"sparse": np.zeros((4, 3), np.int64), "dense": np.zeros((5, 2), np.float32)}
    with pytest.raises(ValueError, match=r"different numbers of rows: \{'sparse': 4, 'dense': 5\}"):
        trainer.fit(x, np.zeros(4, np.float32), epochs=1)


def test_validation_metrics_are_recorded_and_can_pick_the_best_epoch() -> None:
    from sklearn.metrics import roc_auc_score

    from mlpkit.evaluate.metrics import log_loss, roc_auc

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    x = {"sparse": rng.integers(0, 6, (64, 3)), "dense": rng.random((64, 2)).astype(np.float32)}
    y = ((x["sparse"][:, 0] + rng.integers(0, 3, 64)) > 3).astype(np.float32)     # noisy: AUC below 1
    model = _TinyCTR()
    seen: list[np.ndarray] = []

    def auc(y_true: np.ndarray, scores: np.ndarray) -> float:
        seen.append(scores.copy())
        return roc_auc(y_true, scores)

    trainer = TorchTrainer(
        model, loss=build_loss("bce_with_logits"), optimizer=build_optimizer("adam", model, lr=0.05),
        rng=rng, batch_size=16, monitor="val_auc", restore_best=True,
        metrics={"auc": (auc, "max"), "logloss": (lambda t, s: log_loss(t, logits=s), "min")},
    )
    history = trainer.fit(x, y, x, y, epochs=4)
    for record, scores in zip(history.records, seen, strict=True):
        assert scores.shape == (64,)
        assert record["val_auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
        assert record["val_logloss"] == pytest.approx(record["val_loss"], rel=1e-6)  # the same BCE
    aucs = [r["val_auc"] for r in history.records]
    assert history.best_epoch == 1 + int(np.argmax(aucs))
    # restore-best put the best epoch's weights back: its scores come out again.
    np.testing.assert_allclose(trainer.predict_logits(x), seen[history.best_epoch - 1], rtol=1e-6)


def test_an_unknown_monitor_lists_the_metrics_as_monitors() -> None:
    model = _TinyCTR()
    message = r"monitor must be one of \['train_loss', 'val_accuracy', 'val_auc', 'val_loss'\], got 'val_acu'"
    with pytest.raises(ValueError, match=message):
        TorchTrainer(
            model, loss=build_loss("bce_with_logits"), optimizer=build_optimizer("sgd", model, lr=0.1),
            rng=np.random.default_rng(0), monitor="val_acu", metrics={"auc": (lambda t, s: 0.5, "max")},
        )


def test_embedding_tables_get_no_weight_decay() -> None:
    model = _TinyCTR()
    optimizer = build_optimizer("adamw", model, lr=1e-3, weight_decay=0.1)
    decayed = [p for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    assert [p is model.linear.weight for p in decayed] == [True]     # the Linear weight only


def test_the_regularizer_enters_the_gradient_but_not_the_recorded_loss() -> None:
    torch.manual_seed(0)
    x = {"sparse": np.array([[0, 1, 2]]), "dense": np.zeros((1, 2), np.float32)}
    y = np.ones(1, np.float32)
    model = _TinyCTR()
    table, bias = model.embedding.weight.detach().clone(), model.linear.bias.detach().clone()
    trainer = TorchTrainer(
        model, loss=build_loss("bce_with_logits"), optimizer=build_optimizer("sgd", model, lr=1.0),
        rng=np.random.default_rng(0), batch_size=1,
        regularizer=lambda: 0.5 * model.embedding.weight.square().sum(),
    )
    history = trainer.fit(x, y, epochs=1)
    z = table[[0, 1, 2]].sum() + bias[0]                     # the logit; the dense inputs are 0
    assert history.records[0]["train_loss"] == pytest.approx(nn.functional.softplus(-z).item(), rel=1e-6)
    # One SGD step of lr 1: w - (dBCE/dw + w), with dBCE/dw = sigmoid(z) - 1 on the rows used.
    expected = torch.zeros_like(table)
    expected[[0, 1, 2]] = 1 - torch.sigmoid(z)
    torch.testing.assert_close(model.embedding.weight.detach(), expected)


class _CountingForward(nn.Module):
    """Wraps a model and counts its forward calls in evaluation mode (the validation passes)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.eval_calls = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.training:
            self.eval_calls += 1
        return self.inner(batch)


def _pairwise_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by its definition: P(score of a positive > score of a negative), ties counting 1/2."""
    pos, neg = scores[y == 1], scores[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_with_metrics_the_validation_set_goes_through_the_model_once_per_epoch() -> None:
    from mlpkit.evaluate.metrics import roc_auc

    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    n_train, n_val = 48, 50
    x = {"sparse": rng.integers(0, 6, (n_train + n_val, 3)), "dense": rng.random((n_train + n_val, 2))}
    y = ((x["sparse"][:, 0] + rng.integers(0, 3, n_train + n_val)) > 3).astype(np.float32)  # AUC below 1
    train = {k: v[:n_train] for k, v in x.items()}
    val = {k: v[n_train:] for k, v in x.items()}
    y_train, y_val = y[:n_train], y[n_train:]
    inner = _TinyCTR()
    model = _CountingForward(inner)
    seen: list[np.ndarray] = []

    def auc(y_true: np.ndarray, scores: np.ndarray) -> float:
        seen.append(scores.copy())
        return roc_auc(y_true, scores)

    calls_per_epoch: list[int] = []
    two_pass: list[tuple[float, float | None]] = []
    references: list[tuple[float, float, float]] = []

    def on_epoch_end(record: dict[str, object]) -> None:
        calls_per_epoch.append(model.eval_calls)
        # The reference, by hand from the model's outputs at the end of this epoch (its weights).
        with torch.no_grad():
            z = inner({"sparse": torch.as_tensor(val["sparse"]),
                       "dense": torch.as_tensor(val["dense"], dtype=torch.float32)}).double().numpy()  # (N,)
        bce = np.where(y_val == 1, np.log1p(np.exp(-z)), np.log1p(np.exp(z))).mean()  # -log σ(±z)
        references.append((float(bce), float(np.mean((z > 0) == (y_val == 1))), _pairwise_auc(y_val, z)))
        two_pass.append(trainer.evaluate(val, y_val))  # the path without metrics, for comparison
        model.eval_calls = 0

    trainer = TorchTrainer(
        model, loss=build_loss("bce_with_logits"), optimizer=build_optimizer("adam", model, lr=0.05),
        rng=rng, batch_size=16, eval_batch_size=16, restore_best=False, on_epoch_end=on_epoch_end,
        metrics={"auc": (auc, "max")}, monitor="val_auc",
    )
    history = trainer.fit(train, y_train, val, y_val, epochs=3)
    # 50 rows in evaluation batches of 16: 4 forward calls (16 + 16 + 16 + 2) per epoch, not 8.
    assert calls_per_epoch == [4, 4, 4]
    for record, scores, (bce, acc, pairwise), (loss, accuracy) in zip(
        history.records, seen, references, two_pass, strict=True
    ):
        assert scores.shape == (n_val,)
        assert record["val_loss"] == pytest.approx(bce, rel=1e-6)
        assert record["val_accuracy"] == acc                  # a count over 50 rows: exact
        assert record["val_auc"] == pytest.approx(pairwise, abs=1e-12)
        # The same sums as evaluate() alone, which keeps no logits: bit for bit.
        assert (record["val_loss"], record["val_accuracy"]) == (loss, accuracy)
    assert len({r["val_auc"] for r in history.records}) > 1  # the weights moved between the epochs


def test_without_metrics_the_validation_pass_keeps_no_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = blobs(0, 20)
    trainer = make_trainer()

    def refuse(*args: object) -> None:
        raise AssertionError("evaluate_with_scores called without metrics")

    monkeypatch.setattr(trainer, "evaluate_with_scores", refuse)
    history = trainer.fit(x, y, x, y, epochs=2)
    assert all(r["val_loss"] is not None for r in history.records)


def test_bf16_autocast_trains_as_a_hand_written_autocast_loop_and_scores_in_full_precision() -> None:
    # Reference: the same epoch written as a plain loop with torch.autocast around the forward pass.
    x, y = blobs(0, 20)
    xv, yv = blobs(1, 10)
    trainer = make_trainer(batch_size=6, autocast="bf16")
    dtypes: list[tuple[bool, torch.dtype]] = []
    first = trainer.model[0]
    assert isinstance(first, nn.Linear)
    first.register_forward_hook(lambda module, _, out: dtypes.append((module.training, out.dtype)))
    model = build_torch_mlp(MLPSpec(4, (16,), 3, init="xavier_uniform"), rng=np.random.default_rng(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    order, total = np.random.default_rng(1).permutation(20), 0.0
    for start in range(0, 20, 6):
        idx = order[start : start + 6]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(torch.from_numpy(x[idx]))
        loss = nn.functional.cross_entropy(logits.float(), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    history = trainer.fit(x, y, xv, yv, epochs=1)
    assert history.records[0]["train_loss"] == pytest.approx(total / 20, rel=1e-6)
    for ours, theirs in zip(trainer.model.parameters(), model.parameters(), strict=True):
        assert ours.dtype == torch.float32                       # the weights never leave float32
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    assert {d for training, d in dtypes if training} == {torch.bfloat16}
    assert {d for training, d in dtypes if not training} == {torch.float32}   # validation: full precision
    # Autocast is really on: float32 training gives another loss, though not far from it.
    plain = make_trainer(batch_size=6).fit(x, y, epochs=1).records[0]["train_loss"]
    assert plain != history.records[0]["train_loss"]
    assert plain == pytest.approx(history.records[0]["train_loss"], rel=0.05)


def test_an_unknown_autocast_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"autocast.*'bf16'"):
        make_trainer(autocast="bf17")
