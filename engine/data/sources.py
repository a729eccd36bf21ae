"""Where a dataset's files come from.

Looked up in this order, first hit wins:
  1. the explicit folder (`data_dir`, or a path given instead of a name),
  2. `$SOFTSWEEP_DATA/<name>` (and `$SOFTSWEEP_DATA` itself),
  3. the user cache `~/.cache/softsweep/<name>` (`$XDG_CACHE_HOME` is honoured),
  4. the system's dataset folders, such as Debian's `/usr/share/datasets/<name>`,
  5. a download from the dataset's official mirror into the user cache, every file verified by
     SHA-256 before it is used (set `SOFTSWEEP_OFFLINE=1` to never download).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cifar import CIFAR10_ARCHIVE, has_cifar10
from .idx import IDX_FILES, find_idx_files

__all__ = ["KNOWN_DATASETS", "DatasetInfo", "cache_dir", "download", "locate"]

SYSTEM_DATA_DIRS = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # "idx" or "cifar10"
    class_names: tuple[str, ...]
    files: dict[str, str]  # file name -> SHA-256
    mirrors: tuple[str, ...]  # base URLs, tried in order
    aliases: tuple[str, ...] = ()
    homepage: str = ""


def _idx_files(hashes: tuple[str, str, str, str]) -> dict[str, str]:
    return {f"{stem}.gz": sha for stem, sha in zip(IDX_FILES.values(), hashes, strict=True)}


KNOWN_DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        kind="idx",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        files=_idx_files(
            (
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            )
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        aliases=("fashion_mnist", "fashionmnist"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        kind="idx",
        class_names=tuple(str(d) for d in range(10)),
        files=_idx_files(
            (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            )
        ),
        # The original site often refuses scripted downloads; the hashes make any mirror safe.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        kind="cifar10",
        class_names=(
            "plane",
            "car",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        files={CIFAR10_ARCHIVE: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        aliases=("cifar-10", "cifar_10"),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}


def resolve_name(name: str) -> DatasetInfo | None:
    key = name.strip().lower()
    for info in KNOWN_DATASETS.values():
        if key == info.name or key in info.aliases:
            return info
    return None


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/softsweep`, else `~/.cache/softsweep` (a relative $XDG_CACHE_HOME is
    ignored, as the XDG spec asks: it would name a different folder in every directory)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = str(Path.home() / ".cache")
    return Path(base) / "softsweep"


def _has_files(info: DatasetInfo, folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if info.kind == "cifar10":
        return has_cifar10(folder)
    return find_idx_files(folder) is not None  # raises on a partial set


def candidate_folders(info: DatasetInfo, data_dir: Path | None) -> list[tuple[str, Path]]:
    """Every place looked at, in order, each with a label for error messages."""
    places: list[tuple[str, Path]] = []
    names = (info.name, *info.aliases)
    if data_dir is not None:
        places.append(("data_dir", data_dir))
        places += [("data_dir", data_dir / n) for n in names]
    env = os.environ.get("SOFTSWEEP_DATA")
    if env:
        places += [("$SOFTSWEEP_DATA", Path(env) / n) for n in names]
        places.append(("$SOFTSWEEP_DATA", Path(env)))
    places.append(("user cache", cache_dir() / info.name))
    for root in SYSTEM_DATA_DIRS:
        places += [("system datasets", root / n) for n in names]
    return places


def locate(
    info: DatasetInfo,
    data_dir: Path | None = None,
    *,
    allow_download: bool | None = None,
    progress: bool = True,
) -> Path:
    """The folder holding `info`'s files, downloading them into the cache as the last resort."""
    places = candidate_folders(info, data_dir)
    for _, folder in places:
        if _has_files(info, folder):
            return folder
    if allow_download is None:
        allow_download = os.environ.get("SOFTSWEEP_OFFLINE", "") not in ("1", "true", "yes")
    target = cache_dir() / info.name
    reason = "downloads are off (SOFTSWEEP_OFFLINE is set)"
    if allow_download:
        try:
            download(info, target, progress=progress)
            return target
        except OSError as exc:
            reason = f"the download failed: {exc}"
    looked = "; ".join(f"{label}: {folder}" for label, folder in places)
    hint = (
        "On Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist`. "
        if info.name == "fashion-mnist"
        else ""
    )
    raise FileNotFoundError(
        f"Dataset {info.name!r} was not found, and {reason}. Looked in: {looked}. "
        f"{hint}Or download {', '.join(info.files)} from {info.homepage} into "
        f"{target} (or any folder passed as data_dir / $SOFTSWEEP_DATA)."
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress_printer(label: str) -> Callable[[int, int], None]:
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and done != total:
            return
        last[0] = now
        width = 30
        frac = done / total if total else 0.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        end = "\n" if total and done >= total else ""
        print(f"\r{label} [{bar}] {size}", end=end, file=sys.stderr, flush=True)

    return show


def download(
    info: DatasetInfo, target: Path, *, progress: bool = True, timeout_s: float = 30.0
) -> None:
    """Fetch every file of `info` into `target`, verify its SHA-256, then move it in place."""
    target.mkdir(parents=True, exist_ok=True)
    for file_name, expected in info.files.items():
        final = target / file_name
        if final.is_file() and sha256_of(final) == expected:
            continue
        errors = []
        for mirror in info.mirrors:
            url = mirror + file_name
            partial = final.with_name(final.name + ".part")
            try:
                _fetch(url, partial, _progress_printer(file_name) if progress else None, timeout_s)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                partial.unlink(missing_ok=True)
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            actual = sha256_of(partial)
            if actual != expected:
                partial.unlink(missing_ok=True)
                errors.append(f"{url}: SHA-256 {actual} does not match the known {expected}")
                continue
            partial.replace(final)
            break
        else:
            raise OSError(f"could not fetch {file_name} ({'; '.join(errors)})")


def _fetch(url: str, dest: Path, show: Callable[[int, int], None] | None, timeout_s: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "softsweep"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while block := response.read(1 << 16):
            out.write(block)
            done += len(block)
            if show is not None:
                show(done, total)
