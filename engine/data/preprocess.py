"""From raw pixels to model inputs: a deterministic train/validation split, scaling to [0, 1],
optional mean-centring and optional standardization, with statistics of the training split only.

`PixelDecoder.decode` is the single definition of "pixels -> features". The dataset's float arrays
are built with it, and the trainer decodes gathered uint8 rows with it too, so both give the same
numbers to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["STD_EPS", "PixelDecoder", "split_indices"]


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, validation) index arrays over range(n), each sorted, fixed by `seed`."""
    if not 1 <= val_size < n:
        raise ValueError(
            f"val_size must be between 1 and {n - 1} (the training set has {n} examples), "
            f"got {val_size}."
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


# Added to each feature's variance before standardizing ([0, 1] pixel units): Coates, Lee and
# Ng's +10 on 0..255 pixels (2011). A border pixel that is dark in all but a few training images
# (std down to 3e-4 on Fashion-MNIST) would otherwise be blown up a thousandfold, so one bright
# test pixel there would outweigh the whole image.
STD_EPS = 10.0 / 255.0**2


@dataclass(frozen=True, eq=False)
class PixelDecoder:
    """features = (pixels * scale - mean) * inv_std, each factor optional:

    - plain:        x = p / 255
    - centred:      x = p / 255 - mu
    - standardized: x = (p / 255 - mu) / sqrt(sigma^2 + STD_EPS)

    mu (D,) and sigma^2 (D,) are the mean and variance of p / 255 over the training split only.
    """

    dtype: np.dtype
    scale: float = 1.0 / 255.0
    mean: np.ndarray | None = None  # (D,) in `dtype`, from the training split only
    inv_std: np.ndarray | None = None  # (D,) in `dtype`: 1 / sqrt(sigma^2 + STD_EPS)

    @classmethod
    def fit(
        cls,
        train_pixels: np.ndarray,
        *,
        center: bool,
        dtype: np.dtype,
        standardize: bool = False,
    ) -> PixelDecoder:
        plain = cls(dtype=np.dtype(dtype))
        if not (center or standardize):
            return plain
        # Moments of the scaled training features, accumulated in float64 then cast once.
        n, d = train_pixels.shape
        total, squares = np.zeros(d, dtype=np.float64), np.zeros(d, dtype=np.float64)
        for start in range(0, n, 8192):
            x = plain.decode(train_pixels[start : start + 8192]).astype(np.float64)  # (b, D)
            total += x.sum(axis=0)
            squares += np.einsum("nd,nd->d", x, x)
        mu = total / n
        mean = mu.astype(plain.dtype)
        if not standardize:
            return cls(dtype=plain.dtype, mean=mean)
        variance = np.maximum(squares / n - mu * mu, 0.0)  # (D,)
        inv_std = (1.0 / np.sqrt(variance + STD_EPS)).astype(plain.dtype)
        return cls(dtype=plain.dtype, mean=mean, inv_std=inv_std)

    def decode(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(n, D) uint8 -> (n, D) float features in `dtype`, written into `out` if given."""
        if out is None:
            out = np.empty(pixels.shape, dtype=self.dtype)
        out[...] = pixels  # exact: every uint8 is representable in float32/float64
        out *= self.dtype.type(self.scale)
        if self.mean is not None:
            out -= self.mean
        if self.inv_std is not None:
            out *= self.inv_std
        return out

    def pixels(self, features: np.ndarray) -> np.ndarray:
        """(n, D) features -> (n, D) float64 pixel values on the 0..255 scale: the inverse of
        `decode` (up to rounding), for showing the images a model was given."""
        x = np.asarray(features, dtype=np.float64)
        if self.inv_std is not None:
            x = x / self.inv_std
        if self.mean is not None:
            x = x + self.mean
        return x / self.scale
