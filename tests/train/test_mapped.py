"""MappedRows: a memory-mapped input read batch by batch equals the array indexed in memory and trains a
model exactly as the same data held in memory does; the epoch order is the NumPy trainer's permutation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlpkit.train.mapped import MappedRows, is_memory_map
from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer, epoch_order

pytestmark = pytest.mark.torch

CPU = torch.device("cpu")


def mapped(tmp_path: Path, array: np.ndarray, name: str = "a.npy") -> np.ndarray:
    np.save(tmp_path / name, array)
    return np.load(tmp_path / name, mmap_mode="r")


@pytest.mark.parametrize("index", [[3], [7, 0, 7, 2, 9], list(range(10))[::-1]])
def test_rows_in_any_order_with_repeats_equal_in_memory_indexing(tmp_path: Path, index: list[int]) -> None:
    array = np.random.default_rng(0).integers(0, 1000, (10, 3), dtype=np.int64)
    rows = MappedRows(mapped(tmp_path, array), device=CPU, dtype=torch.int64)
    got = rows[torch.tensor(index)]
    assert got.dtype == torch.int64 and got.shape == (len(index), 3)              # a batch of one: (1, 3)
    np.testing.assert_array_equal(got.numpy(), array[index])


def test_slices_and_the_dtype_conversion(tmp_path: Path) -> None:
    array = np.random.default_rng(1).random((9, 2)).astype(np.float32)
    rows = MappedRows(mapped(tmp_path, array), device=CPU, dtype=torch.float64)
    assert rows.shape == (9, 2) and len(rows) == 9
    np.testing.assert_array_equal(rows[2:5].numpy(), array[2:5].astype(np.float64))
    assert rows[2:5].dtype == torch.float64
    assert rows[0:0].shape == (0, 2)
    assert is_memory_map(np.load(tmp_path / "a.npy", mmap_mode="r")) and not is_memory_map(array)


def test_the_epoch_order_is_the_permutation_the_numpy_trainer_draws() -> None:
    for n in (1, 5, 1000):
        ours, numpy_trainer = np.random.default_rng(n), np.random.default_rng(n)
        order = epoch_order(ours, n)
        assert order.dtype == np.int32
        np.testing.assert_array_equal(order, numpy_trainer.permutation(n))
        assert ours.bit_generator.state == numpy_trainer.bit_generator.state       # the next epochs too


class _TinyCTR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 4)
        self.linear = nn.Linear(3, 1)
        self.dropout = nn.Dropout(0.2)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # (B, F) ids and (B, 3) numbers -> (B,) logits
        ids = self.dropout(self.embedding(batch["sparse"]))             # (B, F, 4)
        return ids.sum(dim=(1, 2)) + self.linear(batch["dense"])[:, 0]


Trained = tuple[list[dict[str, object]], dict[str, torch.Tensor]]


def _train(x: dict[str, np.ndarray], y: np.ndarray) -> Trained:
    torch.manual_seed(3)
    model = _TinyCTR()
    trainer = TorchTrainer(model, loss=build_loss("bce_with_logits"),
                           optimizer=build_optimizer("adam", model, lr=0.05),
                           rng=np.random.default_rng(4), batch_size=16, eval_batch_size=24)
    history = trainer.fit(x, y, x, y, epochs=3)
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history.records], model.state_dict()


def test_training_on_memory_maps_equals_training_in_memory_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = {"sparse": rng.integers(0, 50, (100, 4)), "dense": rng.random((100, 3)).astype(np.float32)}
    y = (x["sparse"][:, 0] > 25).astype(np.float32)
    files = {name: mapped(tmp_path, array, f"{name}.npy") for name, array in x.items()}
    in_memory, on_file = _train(x, y), _train(files, y)
    assert on_file[0] == in_memory[0]                                    # every epoch's losses, exactly
    for name, tensor in in_memory[1].items():
        assert torch.equal(on_file[1][name], tensor), name
