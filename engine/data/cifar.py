"""CIFAR-10 "python version" batches, read through a restricted unpickler.

A pickle is a program: loading one from the internet with `pickle.load` can run any code. The
batches only need dicts, lists, bytes, strings, numbers and NumPy arrays, so the unpickler below
resolves exactly the few NumPy names that rebuild an array and refuses every other global.
The batches may sit in a folder (`cifar-10-batches-py/` or the files themselves) or inside the
official `cifar-10-python.tar.gz`, which is read in place without extracting it.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CIFAR10_ARCHIVE", "UnsafePickleError", "load_cifar10", "restricted_loads"]

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_BATCH = "test_batch"


class UnsafePickleError(ValueError):
    """A pickle asked for something other than plain data."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import codecs

    from numpy._core import multiarray, numeric

    reconstruct = multiarray._reconstruct  # type: ignore[attr-defined]
    frombuffer = numeric._frombuffer  # type: ignore[attr-defined]
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        # Python 3 writes bytes in protocol 2 as encode(str, "latin1"): a pure str -> bytes call.
        ("_codecs", "encode"): codecs.encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.dtypes", "UInt8DType"): type(np.dtype(np.uint8)),
        ("numpy.dtypes", "Int64DType"): type(np.dtype(np.int64)),
        ("numpy.dtypes", "Int32DType"): type(np.dtype(np.int32)),
    }


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="bytes")  # the batches were written by Python 2
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        target = self._allowed.get((module, name))
        if target is None:
            raise UnsafePickleError(
                f"CIFAR-10 file {self._source} holds a pickle that asks for {module}.{name}; "
                "softsweep only loads pickles of plain data (dicts, lists, bytes, strings, "
                "numbers, NumPy arrays). The file is not an original CIFAR-10 batch: delete it "
                "and download cifar-10-python.tar.gz again from the official page."
            )
        return target


def restricted_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle `data`, building nothing but plain containers, numbers and arrays."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()  # type: ignore[arg-type]
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or garbage bytes raise many different types
        raise ValueError(
            f"CIFAR-10 file {source} is not a readable pickle ({type(exc).__name__}: {exc}). "
            "It is corrupt or truncated: download cifar-10-python.tar.gz again."
        ) from None


def _parse_batch(obj: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise ValueError(
            f"CIFAR-10 file {source} must hold a dict with b'data' and b'labels', got "
            f"{type(obj).__name__}. Is it a CIFAR-10 python batch?"
        )
    data, labels = obj[b"data"], obj[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(
            f"CIFAR-10 file {source} must hold b'data' as a uint8 (N, 3072) array, got "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}."
        )
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"CIFAR-10 file {source} must hold 3072 values per image (3x32x32), "
            f"got {data.shape[1]}."
        )
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"CIFAR-10 file {source} holds {data.shape[0]} images but its labels are "
            f"{labels.dtype} {labels.shape}; they must be one integer per image."
        )
    # Stored as planes (3, 32, 32); images are (32, 32, 3) so that a row reshapes to a picture.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _batch_reader(folder: Path) -> tuple[Any, str]:
    archive = folder / CIFAR10_ARCHIVE
    for sub in (folder / "cifar-10-batches-py", folder):
        if all((sub / name).is_file() for name in [*_TRAIN_BATCHES, _TEST_BATCH]):
            return (lambda name, folder=sub: (folder / name).read_bytes()), str(sub)
    if archive.is_file():
        try:
            tar = tarfile.open(archive, "r:gz")
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(
                f"CIFAR-10 archive {archive} is corrupt or truncated ({exc}). "
                "Delete it and download it again."
            ) from None

        def read(name: str) -> bytes:
            member = members.get(name)
            fh = tar.extractfile(member) if member is not None else None
            if fh is None:
                raise FileNotFoundError(f"CIFAR-10 archive {archive} has no member {name!r}.")
            return fh.read()

        return read, str(archive)
    raise FileNotFoundError(
        f"Folder {folder} holds neither the CIFAR-10 python batches (data_batch_1..5, "
        f"test_batch) nor {CIFAR10_ARCHIVE}."
    )


def has_cifar10(folder: Path) -> bool:
    try:
        _batch_reader(folder)
    except (FileNotFoundError, ValueError):
        return False
    return True


def load_cifar10(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels); images uint8 (N, 32, 32, 3)."""
    read, where = _batch_reader(Path(folder))
    parts = []
    for name in [*_TRAIN_BATCHES, _TEST_BATCH]:
        source = f"{where}:{name}"
        parts.append(_parse_batch(restricted_loads(read(name), source=source), source))
    train_images = np.concatenate([p[0] for p in parts[:-1]])
    train_labels = np.concatenate([p[1] for p in parts[:-1]])
    return train_images, train_labels, parts[-1][0], parts[-1][1]
