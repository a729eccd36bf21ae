"""`Dataset` (train / validation / test arrays with their image shape and class names) and
`load_dataset`, which finds, reads, checks, splits and scales a named dataset or an IDX folder.

Features are stored without a bias column: X is (N, D) with D = prod(image_shape). The loss
functions take the bias trick's (N, D + 1) input (`engine.add_bias`); the trainer keeps the bias
as the last row of W (D + 1, C) and never materialises the ones column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cifar import load_cifar10
from .idx import find_idx_files, read_idx
from .preprocess import PixelDecoder, split_indices
from .sources import KNOWN_DATASETS, DatasetInfo, locate, resolve_name

__all__ = ["Dataset", "load_dataset", "make_dataset"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A split, scaled dataset. X arrays are (N, D) floats, y arrays (N,) int64 labels."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    # The training split's raw uint8 pixels and how they map to X_train. The trainer gathers
    # these (a quarter of the bytes of float32 rows) and decodes each batch in cache.
    pixels_train: np.ndarray | None = field(default=None, repr=False)
    decoder: PixelDecoder | None = field(default=None, repr=False)
    source: str = ""  # the folder the files were read from ("" for arrays built in memory)

    def __post_init__(self) -> None:
        n_classes = len(self.class_names)
        d = int(np.prod(self.image_shape))
        for split in ("train", "val", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if X.ndim != 2 or X.shape[1] != d:
                raise ValueError(
                    f"X_{split} must have shape (N, {d}) for images of shape {self.image_shape}, "
                    f"got {X.shape}."
                )
            if y.shape != (X.shape[0],):
                raise ValueError(
                    f"y_{split} must hold one label per row of X_{split} ({X.shape[0]}), "
                    f"got shape {y.shape}."
                )
            if not np.issubdtype(y.dtype, np.integer):
                raise TypeError(f"y_{split} must hold integer labels, got dtype {y.dtype}.")
            if y.size and (y.min() < 0 or y.max() >= n_classes):
                raise ValueError(
                    f"y_{split} labels must lie in [0, {n_classes}) for {n_classes} classes, "
                    f"got labels from {y.min()} to {y.max()}."
                )
            if not np.isfinite(X).all():
                raise ValueError(
                    f"X_{split} must contain only finite numbers, got NaN or inf. Check the "
                    "preprocessing that produced it."
                )
        if self.X_train.shape[0] < 1:
            raise ValueError("X_train must hold at least one example.")
        if (self.pixels_train is None) != (self.decoder is None):
            raise ValueError("pixels_train and decoder must be given together.")
        if self.pixels_train is not None and (
            self.pixels_train.dtype != np.uint8 or self.pixels_train.shape != self.X_train.shape
        ):
            raise ValueError(
                f"pixels_train must be uint8 with the shape of X_train {self.X_train.shape}, "
                f"got {self.pixels_train.dtype} {self.pixels_train.shape}."
            )

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def dtype(self) -> np.dtype:
        return self.X_train.dtype


def make_dataset(
    name: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: tuple[str, ...],
    *,
    val_size: int,
    seed: int,
    center: bool,
    dtype: np.dtype | type,
    standardize: bool = False,
    source: str = "",
) -> Dataset:
    """Split, scale and (optionally) centre or standardize uint8 images (N, *image_shape) into a
    Dataset (`PixelDecoder` holds the formulas)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}.")
    if train_images.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"{name}: the training images and labels must have the same count, got "
            f"{train_images.shape[0]} images and {train_labels.shape[0]} labels."
        )
    if test_images.shape[0] != test_labels.shape[0]:
        raise ValueError(
            f"{name}: the test images and labels must have the same count, got "
            f"{test_images.shape[0]} images and {test_labels.shape[0]} labels."
        )
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"{name}: training and test images must have the same shape, got "
            f"{train_images.shape[1:]} and {test_images.shape[1:]}."
        )
    for split, images in (("training", train_images), ("test", test_images)):
        if images.shape[0] == 0 or images[0].size == 0:
            raise ValueError(
                f"{name}: the {split} set must hold images, got an array of shape "
                f"{images.shape}. Check the {split} IDX files (they are empty)."
            )
    if train_images.shape[0] < 2:
        raise ValueError(
            f"{name}: the training set must hold at least 2 images (one to train on, one to "
            f"validate on), got {train_images.shape[0]}."
        )
    n_classes = len(class_names)
    if n_classes < 2 or np.unique(train_labels).size < 2:
        raise ValueError(
            f"{name}: a classifier needs at least 2 classes in the training labels, got "
            f"{np.unique(train_labels).tolist()} ({n_classes} class names). Check the label "
            "file: it holds a single class."
        )
    for split, labels in (("training", train_labels), ("test", test_labels)):
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(
                f"{name}: {split} labels must lie in [0, {n_classes}) for the {n_classes} "
                f"classes {list(class_names)[:10]}..., got labels from {labels.min()} to "
                f"{labels.max()}. Fix the label file or list every class in classes.txt."
            )
    image_shape = tuple(int(s) for s in train_images.shape[1:])
    flat = train_images.reshape(train_images.shape[0], -1)
    train_idx, val_idx = split_indices(flat.shape[0], val_size, seed)
    pixels_train = np.ascontiguousarray(flat[train_idx])
    decoder = PixelDecoder.fit(pixels_train, center=center, standardize=standardize, dtype=dtype)
    return Dataset(
        name=name,
        X_train=decoder.decode(pixels_train),
        y_train=train_labels[train_idx].astype(np.int64),
        X_val=decoder.decode(flat[val_idx]),
        y_val=train_labels[val_idx].astype(np.int64),
        X_test=decoder.decode(test_images.reshape(test_images.shape[0], -1)),
        y_test=test_labels.astype(np.int64),
        image_shape=image_shape,
        class_names=tuple(class_names),
        pixels_train=pixels_train,
        decoder=decoder,
        source=source,
    )


def _read_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    files = find_idx_files(folder)
    if files is None:
        raise FileNotFoundError(
            f"Folder {folder} holds none of the four IDX files (train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, raw or "
            ".gz). Point at the folder that holds them."
        )
    arrays = {role: read_idx(path) for role, path in files.items()}
    for role in ("train_labels", "test_labels"):
        if arrays[role].ndim != 1:
            raise ValueError(
                f"IDX label file {files[role]} must be 1-D (one label per image), got shape "
                f"{arrays[role].shape}."
            )
    for role in ("train_images", "test_images"):
        if arrays[role].ndim < 2:
            raise ValueError(
                f"IDX image file {files[role]} must have at least 2 dimensions (count, pixels), "
                f"got shape {arrays[role].shape}."
            )
    return (
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
    )


def _folder_class_names(folder: Path, train_labels: np.ndarray) -> tuple[str, ...]:
    listing = folder / "classes.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if names:
            return tuple(names)
    top = int(train_labels.max()) if train_labels.size else -1
    return tuple(str(c) for c in range(top + 1))


def load_dataset(
    name_or_folder: str | Path,
    *,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    seed: int = 0,
    center: bool = False,
    standardize: bool = False,
    dtype: np.dtype | type = np.float32,
    allow_download: bool | None = None,
) -> Dataset:
    """Load `mnist`, `fashion-mnist`, `cifar10`, or a folder holding the four IDX files.

    Pixels are scaled to [0, 1]; with `center=True` the training split's per-feature mean is
    subtracted from every split; `standardize=True` centres too and then divides each feature
    by its training standard deviation (softened by `STD_EPS`; see `PixelDecoder`). The
    validation split (`val_size` examples taken from the official training set; by default
    5000, or a tenth of a training set smaller than 50,000) is fixed by `seed` and never
    overlaps the training split.
    """
    info: DatasetInfo | None = None
    folder: Path | None = None
    if isinstance(name_or_folder, Path) or (
        resolve_name(str(name_or_folder)) is None and Path(name_or_folder).is_dir()
    ):
        folder = Path(name_or_folder)
        name = folder.name
    else:
        info = resolve_name(str(name_or_folder))
        if info is None:
            raise ValueError(
                f"Unknown dataset {str(name_or_folder)!r}. Known datasets: "
                f"{', '.join(KNOWN_DATASETS)}; or pass a folder that holds the four IDX files "
                "(train-images-idx3-ubyte[.gz], ...)."
            )
        name = info.name
        folder = locate(info, Path(data_dir) if data_dir else None, allow_download=allow_download)

    if info is not None and info.kind == "cifar10":
        train_x, train_y, test_x, test_y = load_cifar10(folder)
        class_names = info.class_names
    else:
        train_x, train_y, test_x, test_y = _read_idx_folder(folder)
        class_names = info.class_names if info else _folder_class_names(folder, train_y)
    if val_size is None:
        val_size = min(5000, max(1, train_x.shape[0] // 10))
    return make_dataset(
        name,
        train_x,
        train_y,
        test_x,
        test_y,
        class_names,
        val_size=val_size,
        seed=seed,
        center=center,
        standardize=standardize,
        dtype=dtype,
        source=str(Path(folder).resolve()),
    )
