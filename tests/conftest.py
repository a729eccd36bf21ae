from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import engine
from tests.helpers import write_idx_dataset

# The user's own data settings, read before any test changes them (the real-data fixture uses them).
_USER_ENV = {
    k: os.environ[k]
    for k in ("XDG_CACHE_HOME", "SOFTSWEEP_DATA", "SOFTSWEEP_OFFLINE", "HOME")
    if k in os.environ
}


@pytest.fixture(autouse=True)
def _isolated_data_sources(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
):
    """Tests never read the user's cache or download; the real-data fixture opts back in."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("SOFTSWEEP_OFFLINE", "1")
    monkeypatch.delenv("SOFTSWEEP_DATA", raising=False)


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    return write_idx_dataset(tmp_path / "tiny")


@pytest.fixture
def tiny(idx_folder: Path) -> engine.Dataset:
    return engine.load_dataset(idx_folder, val_size=60, seed=0)


@pytest.fixture
def tiny64(idx_folder: Path) -> engine.Dataset:
    return engine.load_dataset(idx_folder, val_size=60, seed=0, dtype=np.float64)


@pytest.fixture(scope="session")
def fashion() -> engine.Dataset:
    """The real Fashion-MNIST (Debian's dataset-fashion-mnist, $SOFTSWEEP_DATA or the cache).

    Missing data is a failure, not a skip: .ci/run installs the package, and elsewhere the
    loader downloads it (checked by SHA-256) unless SOFTSWEEP_OFFLINE is set.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "SOFTSWEEP_OFFLINE")}
    with mock.patch.dict(os.environ, {**env, **_USER_ENV}, clear=True):
        return engine.load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def fashion_centred() -> engine.Dataset:
    """The real Fashion-MNIST as the shipped studies load it: 5000 for validation, centred."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "SOFTSWEEP_OFFLINE")}
    with mock.patch.dict(os.environ, {**env, **_USER_ENV}, clear=True):
        return engine.load_dataset("fashion-mnist", val_size=5000, center=True)


@pytest.fixture(scope="session")
def fashion_standardized() -> engine.Dataset:
    """As the main study loads it: the same split, centred and standardized."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "SOFTSWEEP_OFFLINE")}
    with mock.patch.dict(os.environ, {**env, **_USER_ENV}, clear=True):
        return engine.load_dataset("fashion-mnist", val_size=5000, center=True, standardize=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real-data and browser tests are slow too: `-m "not slow"` is the quick tier. Slow
    files run first (real data first of all): pytest-xdist hands out whole files in this order
    (`--dist loadfile`), and the longest started first finish together."""
    for item in items:
        if item.get_closest_marker("realdata") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
    items.sort(
        key=lambda item: (
            not item.get_closest_marker("realdata"),
            not item.get_closest_marker("slow"),
        )
    )
