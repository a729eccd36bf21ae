"""Tiny datasets the tests write themselves (IDX folders, CIFAR-10 batches)."""

from __future__ import annotations

import pickle
import subprocess
import tarfile
from pathlib import Path

import numpy as np

from engine.data.idx import IDX_FILES, write_idx


def blob_images(
    n: int, image_shape: tuple[int, ...], n_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose class shows as a brighter band: learnable by a linear model."""
    labels = rng.integers(0, n_classes, size=n).astype(np.uint8)
    images = rng.integers(0, 90, size=(n, *image_shape)).astype(np.int16)
    flat = images.reshape(n, -1)
    d = flat.shape[1]
    band = max(1, d // n_classes)
    for i, label in enumerate(labels):
        flat[i, int(label) * band : (int(label) + 1) * band] += 150
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_idx_dataset(
    folder: Path,
    *,
    n_train: int = 300,
    n_test: int = 100,
    image_shape: tuple[int, ...] = (6, 5),
    n_classes: int = 3,
    gz: bool = True,
    seed: int = 0,
) -> Path:
    """Write the four IDX files of a small learnable dataset into `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = blob_images(n_train, image_shape, n_classes, rng)
    test_x, test_y = blob_images(n_test, image_shape, n_classes, rng)
    suffix = ".gz" if gz else ""
    for role, array in (
        ("train_images", train_x),
        ("train_labels", train_y),
        ("test_images", test_x),
        ("test_labels", test_y),
    ):
        write_idx(folder / (IDX_FILES[role] + suffix), array)
    return folder


def cifar_batch(n: int, rng: np.random.Generator) -> dict[bytes, object]:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {
        b"batch_label": b"tiny batch",
        b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        b"data": data,
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }


def write_cifar_folder(folder: Path, *, n_per_batch: int = 20, archive: bool = False) -> Path:
    """CIFAR-10 python batches (pickle protocol 2, as the originals) in a folder or a tar.gz."""
    rng = np.random.default_rng(0)
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(batches / name, "wb") as fh:
            pickle.dump(cifar_batch(n_per_batch, rng), fh, protocol=2)
    if archive:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(batches, arcname="cifar-10-batches-py")
        for path in batches.iterdir():
            path.unlink()
        batches.rmdir()
    return folder


def spec_text(
    name: str,
    folder: Path,
    *,
    sampler: str = "grid",
    n_trials: int = 100,
    pruner: str = "none",
    side_by_side: int = 4,
    epochs: int = 3,
    lr: str = "{ values = [0.03, 0.3, 1.0] }",
    reg: str = "{ values = [0.0, 1e-3] }",
    batch: str = "[16, 32]",
) -> str:
    return f"""
[study]
name = "{name}"
sampler = "{sampler}"
n_trials = {n_trials}
pruner = "{pruner}"
seed = 0
[data]
dataset = "{folder}"
val_size = 80
[train]
epochs = {epochs}
side_by_side = {side_by_side}
[space]
learning_rate = {lr}
reg = {reg}
batch_size = {batch}
"""


def run_spec(text: str, home: Path, source: str = "test.toml", **options: object):
    """`sweep run` in this process: the study in `text`, in the home folder `home`."""
    from sweep.launch import run_study
    from sweep.spec import parse_spec
    from sweep.store.home import Home

    return run_study(parse_spec(text, source), Home.resolve(home), **options)  # type: ignore[arg-type]


def wait_for_pause(process: subprocess.Popen[str], step: str) -> list[str]:
    """Read stderr until the process says it is paused at `step`."""
    seen = []
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if f"paused at {step}" in line:
            return seen
    raise AssertionError(f"never paused at {step}; stderr: {''.join(seen)}")


def stored_trials(storage: str, study: str, *states: object) -> list:
    """The trials (in `states`, or all) of `study` in an Optuna storage, or [] before the sweep
    made the storage or the study. Reads only: `optuna.load_study` creates Optuna's tables when
    they are missing, and even with `skip_table_creation` an `RDBStorage` stamps the schema's
    version (it creates `alembic_version`), either of which would race the sweep that is making
    them (UniqueViolation on pg_type, in whichever is second). So a storage is opened only once
    the study's row exists, which the sweep writes after the whole schema."""
    import optuna
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).exists():
        return []  # connecting would create the file
    engine = sqlalchemy.create_engine(storage, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            query = sqlalchemy.text("SELECT 1 FROM studies WHERE study_name = :name")
            if connection.execute(query, {"name": study}).first() is None:
                return []
    except sqlalchemy.exc.SQLAlchemyError:  # no tables yet (or the database is away)
        return []
    finally:
        engine.dispose()
    try:
        reader = optuna.storages.RDBStorage(storage, skip_table_creation=True)
        found = optuna.load_study(study_name=study, storage=reader)
    except (KeyError, optuna.exceptions.StorageInternalError):  # not made yet
        return []
    return found.get_trials(deepcopy=False, states=states or None)  # type: ignore[arg-type]
