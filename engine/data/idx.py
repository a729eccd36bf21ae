"""IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw.

Layout: two zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of
dimensions, one big-endian uint32 per dimension, then the data in C order. Every header field and
the data size are checked against the file before any array is built.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_FILES", "find_idx_files", "read_idx", "write_idx"]

# The four standard files of an IDX dataset, by role.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_UBYTE = 0x08


MAX_BYTES = 8 << 30  # 8 GiB of pixels: far past any dataset a linear classifier is fit on
_MAX_HEADER = 4 + 4 * 255  # magic, and one uint32 per dimension (at most 255)


def _gunzip(raw: bytes, limit: int, path: Path) -> bytes:
    """At most `limit` bytes of a gzip file's content: a file that says it holds N bytes
    never makes more than N + 1 (a gzip bomb stops there, not at memory's end)."""
    stream = zlib.decompressobj(wbits=31)
    try:
        # One call for the whole file: zlib then holds no GIL for it, so a thread importing
        # MLflow meanwhile does not slow it down 4x (measured).
        data = stream.decompress(raw, limit)
        problem = "" if stream.eof or len(data) == limit else "it ends before its last block"
    except zlib.error as exc:
        problem = str(exc)
    if problem:
        raise ValueError(
            f"IDX file {path} is a corrupt or truncated gzip file ({problem}). "
            "Delete it and download it again."
        )
    return data


def _header(head: bytes, path: Path) -> tuple[int, tuple[int, ...]]:
    """(header size, shape) from an IDX file's first bytes, every field checked."""
    if len(head) < 4:
        raise ValueError(f"IDX file {path} is too short to hold a header ({len(head)} bytes).")
    zero1, zero2, dtype_code, ndim = head[0], head[1], head[2], head[3]
    if zero1 != 0 or zero2 != 0 or ndim == 0:
        raise ValueError(
            f"IDX file {path} has a wrong magic number {head[:4].hex()}: an IDX file starts with "
            "two zero bytes, a type byte and a dimension count. Is this really an IDX file?"
        )
    if dtype_code != _UBYTE:
        raise ValueError(
            f"IDX file {path} holds type 0x{dtype_code:02x}; softsweep reads unsigned-byte IDX "
            "files (type 0x08), the type of MNIST-style image and label files."
        )
    header_size = 4 + 4 * ndim
    if len(head) < header_size:
        raise ValueError(f"IDX file {path} is truncated inside its header.")
    shape = struct.unpack(f">{ndim}I", head[4:header_size])
    return header_size, shape


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes into a uint8 array of its stated shape. A gzip file
    is decompressed only as far as its header says it reaches."""
    path = Path(path)
    raw = path.read_bytes()
    packed = raw[:2] == b"\x1f\x8b"  # gzip magic, whatever the file is called
    head = _gunzip(raw, _MAX_HEADER, path) if packed else raw[:_MAX_HEADER]
    header_size, shape = _header(head, path)
    expected = math.prod(shape)  # exact: Python integers do not overflow
    if expected > MAX_BYTES:
        raise ValueError(
            f"IDX file {path} says its shape is {shape}: {expected:,} bytes of pixels, more than "
            f"the {MAX_BYTES >> 30} GiB softsweep reads. The header is corrupt, or the dataset "
            "is far larger than a linear classifier needs: take a subset."
        )
    data = _gunzip(raw, header_size + expected + 1, path) if packed else raw
    actual = len(data) - header_size
    if actual != expected:
        raise ValueError(
            f"IDX file {path} says its shape is {shape} ({expected:,} bytes of data) but holds "
            f"{'more than that' if actual > expected else f'{actual:,} bytes'}. The file is "
            "truncated or corrupt: download it again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz or compress=True)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four standard IDX files in `folder` (raw or .gz), or None if none is there.

    Raises when only some are present: a half-copied folder is an error to report, not a
    reason to look elsewhere.
    """
    found: dict[str, Path] = {}
    for role, stem in IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
    if not found:
        return None
    missing = [IDX_FILES[r] for r in IDX_FILES if r not in found]
    if missing:
        raise FileNotFoundError(
            f"Folder {folder} holds only some of the four IDX files; missing: "
            f"{', '.join(missing)} (raw or .gz). Copy the missing files there, or remove the "
            "partial set so that softsweep looks elsewhere."
        )
    return found
