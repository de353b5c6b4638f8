"""Training-time augmentation of image batches: random shifts and horizontal flips.

Applied per minibatch by the trainer (``NumpyTrainer(augment=...)`` or ``TorchTrainer(augment=...)``),
on the flattened rows the network sees, so the stored data set stays untouched and every epoch
sees fresh variants. Both trainers draw the shifts and flips from their NumPy generator with
:meth:`ShiftFlip.draw`, so one seed gives both engines the same augmented batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlpkit._checks import check_nonnegative_int, check_positive_int, check_probability


@dataclass(frozen=True)
class ShiftFlip:
    """Shift each image by up to ``max_shift`` pixels in x and y and mirror it with ``flip_p``.

    Shifts fill with zeros (the background of Fashion-MNIST and MNIST). Horizontal flips keep
    every Fashion-MNIST class a valid member of itself (shoes and bags are left/right mirrored);
    they would be wrong for digits, so MNIST should use ``flip_p=0``.

    Parameters
    ----------
    height, width : int
        Image size; rows are flattened ``(H * W)`` pixels in row-major order.
    max_shift : int
        Largest shift in pixels along each axis.
    flip_p : float
        Probability of a horizontal flip.

    Examples
    --------
    >>> aug = ShiftFlip(28, 28, max_shift=2, flip_p=0.5)
    >>> aug(np.zeros((1, 784), dtype=np.float32), np.random.default_rng(0)).shape
    (1, 784)
    """

    height: int = 28
    width: int = 28
    max_shift: int = 2
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        check_positive_int("height", self.height)
        check_positive_int("width", self.width)
        check_nonnegative_int("max_shift", self.max_shift)
        check_probability("flip_p", self.flip_p, inclusive_high=True)

    def check_features(self, n_features: int) -> None:
        """Raise ValueError unless rows of ``n_features`` pixels are ``height x width`` images."""
        h, w = self.height, self.width
        if n_features != h * w:
            raise ValueError(f"ShiftFlip expects rows of {h}*{w} = {h * w} pixels, got {n_features}")

    def draw(self, b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random crops of ``b`` zero-padded images: source rows (B, H) and columns (B, W).

        The image padded by ``max_shift`` on every side is cropped back to (H, W) at a random
        offset in each axis (a shift), and its columns are read right to left with ``flip_p``.
        """
        h, w, s = self.height, self.width, self.max_shift
        dy = rng.integers(0, 2 * s + 1, size=b)                              # crop offsets
        dx = rng.integers(0, 2 * s + 1, size=b)
        flip = rng.random(b) < self.flip_p
        rows = dy[:, None] + np.arange(h)                                    # (B, H)
        cols = np.where(flip[:, None], w - 1 - np.arange(w), np.arange(w)) + dx[:, None]   # (B, W)
        return rows, cols

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x (B, H*W) -> augmented copy (B, H*W)."""
        self.check_features(x.shape[1])
        b, (h, w), s = len(x), (self.height, self.width), self.max_shift
        rows, cols = self.draw(b, rng)
        padded = np.zeros((b, h + 2 * s, w + 2 * s), dtype=x.dtype)          # (B, H+2s, W+2s)
        padded[:, s : s + h, s : s + w] = x.reshape(b, h, w)
        out = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]      # (B, H, W)
        return out.reshape(b, h * w)
