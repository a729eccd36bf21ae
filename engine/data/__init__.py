"""Datasets: where the files come from, how they are read, checked, split and scaled."""

from .dataset import Dataset, load_dataset, make_dataset
from .idx import read_idx, write_idx
from .preprocess import PixelDecoder, split_indices
from .sources import KNOWN_DATASETS

__all__ = [
    "KNOWN_DATASETS",
    "Dataset",
    "PixelDecoder",
    "load_dataset",
    "make_dataset",
    "read_idx",
    "split_indices",
    "write_idx",
]
