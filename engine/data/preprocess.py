"""From raw pixels to model inputs: a deterministic train/validation split, scaling to [0, 1] and
optional mean-centring with statistics of the training split only.

`PixelDecoder.decode` is the single definition of "pixels -> features". The dataset's float arrays
are built with it, and the trainer decodes gathered uint8 rows with it too, so both give the same
numbers to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PixelDecoder", "split_indices"]


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, validation) index arrays over range(n), each sorted, fixed by `seed`."""
    if not 1 <= val_size < n:
        raise ValueError(
            f"val_size must be between 1 and {n - 1} (the training set has {n} examples), "
            f"got {val_size}."
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


@dataclass(frozen=True, eq=False)
class PixelDecoder:
    """features = pixels * scale - mean (mean is None when not centred)."""

    dtype: np.dtype
    scale: float = 1.0 / 255.0
    mean: np.ndarray | None = None  # (D,) in `dtype`, from the training split only

    @classmethod
    def fit(cls, train_pixels: np.ndarray, *, center: bool, dtype: np.dtype) -> PixelDecoder:
        plain = cls(dtype=np.dtype(dtype))
        if not center:
            return plain
        # The mean of the scaled training features, accumulated in float64 then cast once.
        total = np.zeros(train_pixels.shape[1], dtype=np.float64)
        for start in range(0, train_pixels.shape[0], 8192):
            total += plain.decode(train_pixels[start : start + 8192]).sum(axis=0, dtype=np.float64)
        mean = (total / train_pixels.shape[0]).astype(plain.dtype)
        return cls(dtype=plain.dtype, mean=mean)

    def decode(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(n, D) uint8 -> (n, D) float features in `dtype`, written into `out` if given."""
        if out is None:
            out = np.empty(pixels.shape, dtype=self.dtype)
        out[...] = pixels  # exact: every uint8 is representable in float32/float64
        out *= self.dtype.type(self.scale)
        if self.mean is not None:
            out -= self.mean
        return out
