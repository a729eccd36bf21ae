"""Datasets: IDX and CIFAR-10 reading, where files come from, the split and the scaling, and
every kind of bad file the loader must refuse with a clear message."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.data import sources
from engine.data.idx import IDX_FILES, read_idx, write_idx
from engine.data.preprocess import STD_EPS, PixelDecoder, split_indices
from tests.helpers import write_cifar_folder, write_idx_dataset


# -- IDX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip_raw_and_gzip(tmp_path: Path, name: str) -> None:
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match=r"wrong magic number 12340801"):
        read_idx(tmp_path / "bad")


def test_idx_non_byte_type(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(bytes([0, 0, 0x0D, 1]) + (1).to_bytes(4, "big") + b"\0" * 4)
    with pytest.raises(ValueError, match=r"holds type 0x0d; softsweep reads unsigned-byte"):
        read_idx(tmp_path / "f")


def test_idx_truncated_data(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((4, 3, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"shape is \(4, 3, 3\) \(36 bytes of data\) but holds 31"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.gz", np.zeros((50, 10, 10), np.uint8))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"corrupt or truncated gzip file"):
        read_idx(path)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    payload = bytearray(gzip.compress(b"\0\0\x08\x01" + (5).to_bytes(4, "big") + b"abcde" * 40))
    payload[15:25] = b"\xff" * 10
    (tmp_path / "x.gz").write_bytes(bytes(payload))
    with pytest.raises(ValueError, match=r"corrupt or truncated gzip file"):
        read_idx(tmp_path / "x.gz")


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_folder_of_any_image_size_and_class_count(tmp_path: Path, gz: bool) -> None:
    folder = write_idx_dataset(tmp_path / "mine", image_shape=(7, 4), n_classes=3, gz=gz)
    data = engine.load_dataset(folder, val_size=50)
    assert data.image_shape == (7, 4)
    assert data.X_train.shape == (250, 28) and data.X_val.shape == (50, 28)
    assert data.X_test.shape == (100, 28)
    assert data.class_names == ("0", "1", "2")
    assert data.X_train.dtype == np.float32
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0


def test_classes_txt_names_the_classes(idx_folder: Path) -> None:
    (idx_folder / "classes.txt").write_text("cat\ndog\nbird\n")
    assert engine.load_dataset(idx_folder, val_size=10).class_names == ("cat", "dog", "bird")


def test_folder_missing_some_files(idx_folder: Path) -> None:
    (idx_folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"holds only some of the four IDX files; missing: t10k-labels-idx1-ubyte",
    ):
        engine.load_dataset(idx_folder)


def test_image_and_label_counts_differ(idx_folder: Path) -> None:
    write_idx(idx_folder / "train-labels-idx1-ubyte.gz", np.zeros(299, np.uint8))
    with pytest.raises(ValueError, match=r"same count, got 300 images and 299 labels"):
        engine.load_dataset(idx_folder, val_size=10)


def test_labels_outside_the_class_range(idx_folder: Path) -> None:
    (idx_folder / "classes.txt").write_text("a\nb\n")  # the files use labels 0..2
    with pytest.raises(ValueError, match=r"training labels must lie in \[0, 2\) for the 2 classes"):
        engine.load_dataset(idx_folder, val_size=10)


def test_test_labels_outside_the_training_classes(idx_folder: Path) -> None:
    write_idx(idx_folder / "t10k-labels-idx1-ubyte.gz", np.full(100, 7, np.uint8))
    with pytest.raises(ValueError, match=r"test labels must lie in \[0, 3\)"):
        engine.load_dataset(idx_folder, val_size=10)


def test_train_and_test_image_shapes_differ(idx_folder: Path) -> None:
    write_idx(idx_folder / "t10k-images-idx3-ubyte.gz", np.zeros((100, 5, 6), np.uint8))
    with pytest.raises(ValueError, match=r"same shape, got \(6, 5\) and \(5, 6\)"):
        engine.load_dataset(idx_folder, val_size=10)


def test_unknown_dataset_name_lists_the_known_ones() -> None:
    with pytest.raises(
        ValueError,
        match=r"Unknown dataset 'imagenet'. Known datasets: fashion-mnist, mnist, cifar10",
    ):
        engine.load_dataset("imagenet")


# -- CIFAR-10 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_batches_from_folder_or_archive(tmp_path: Path, archive: bool) -> None:
    write_cifar_folder(tmp_path / "cifar", archive=archive)
    data = engine.load_dataset("cifar10", data_dir=tmp_path / "cifar", val_size=10)
    assert data.image_shape == (32, 32, 3)
    assert data.X_train.shape == (90, 3072) and data.X_test.shape == (20, 3072)
    assert data.class_names[:2] == ("plane", "car")


def test_cifar10_pixels_are_reordered_to_height_width_channel(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "c")
    with open(tmp_path / "c/cifar-10-batches-py/test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    data = engine.load_dataset("cifar10", data_dir=tmp_path / "c", val_size=10)
    first = raw[b"data"][0].reshape(3, 32, 32)  # stored as colour planes
    image = np.rint(data.X_test[0].reshape(32, 32, 3) * 255).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 1], first[1])  # green plane at channel 1


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar10_pickle_with_code_is_refused(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "c")
    batch = tmp_path / "c/cifar-10-batches-py/data_batch_3"
    batch.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}, protocol=2))
    with pytest.raises(
        ValueError, match=r"holds a pickle that asks for (posix|os)\.system; softsweep only loads"
    ):
        engine.load_dataset("cifar10", data_dir=tmp_path / "c", val_size=10)


def test_cifar10_pickle_with_a_non_array_is_refused(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "c")
    batch = tmp_path / "c/cifar-10-batches-py/test_batch"
    batch.write_bytes(pickle.dumps({b"data": [1, 2, 3], b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match=r"must hold b'data' as a uint8 \(N, 3072\) array"):
        engine.load_dataset("cifar10", data_dir=tmp_path / "c", val_size=10)


def test_cifar10_garbage_bytes(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "c")
    (tmp_path / "c/cifar-10-batches-py/data_batch_1").write_bytes(b"\x80\x02}q\x00(")
    with pytest.raises(ValueError, match=r"is not a readable pickle"):
        engine.load_dataset("cifar10", data_dir=tmp_path / "c", val_size=10)


# -- where files come from ---------------------------------------------------------------------
def test_data_dir_is_searched_before_the_environment(tmp_path: Path, monkeypatch) -> None:
    write_idx_dataset(tmp_path / "explicit", n_classes=3)
    write_idx_dataset(tmp_path / "env" / "mnist", n_classes=4, seed=1)
    monkeypatch.setenv("SOFTSWEEP_DATA", str(tmp_path / "env"))
    # Both hold "mnist"-shaped IDX files; the explicit folder wins. (Names are the known
    # dataset's, so the test data's labels 0..2 fit.)
    data = engine.load_dataset("mnist", data_dir=tmp_path / "explicit", val_size=10)
    np.testing.assert_array_equal(
        data.y_test, read_idx(tmp_path / "explicit" / "t10k-labels-idx1-ubyte.gz")
    )


def test_environment_folder_is_used(tmp_path: Path, monkeypatch) -> None:
    write_idx_dataset(tmp_path / "env" / "fashion-mnist")
    monkeypatch.setenv("SOFTSWEEP_DATA", str(tmp_path / "env"))
    assert engine.load_dataset("fashion-mnist", val_size=10).class_names[0] == "T-shirt/top"


def test_offline_error_lists_every_place_looked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIRS", (tmp_path / "sys",))
    with pytest.raises(FileNotFoundError) as info:
        engine.load_dataset("fashion-mnist", data_dir=tmp_path / "mine")
    message = str(info.value)
    assert "downloads are off (SOFTSWEEP_OFFLINE is set)" in message
    for place in (
        tmp_path / "mine",
        sources.cache_dir() / "fashion-mnist",
        tmp_path / "sys" / "fashion-mnist",
    ):
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path):
    """A local HTTP server standing in for a dataset mirror (no network needed)."""
    root = write_idx_dataset(tmp_path / "mirror")
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _fake_info(root: Path, url: str, corrupt: bool = False) -> sources.DatasetInfo:
    files = {}
    for stem in IDX_FILES.values():
        files[f"{stem}.gz"] = sources.sha256_of(root / f"{stem}.gz")
    if corrupt:
        files["train-images-idx3-ubyte.gz"] = "0" * 64
    return sources.DatasetInfo("tinyset", "idx", ("a", "b", "c"), files, (url,))


def test_download_verifies_and_caches(mirror, monkeypatch) -> None:
    root, url = mirror
    monkeypatch.setitem(sources.KNOWN_DATASETS, "tinyset", _fake_info(root, url))
    data = engine.load_dataset("tinyset", val_size=10, allow_download=True)
    assert data.class_names == ("a", "b", "c")
    cached = sources.cache_dir() / "tinyset"
    assert sorted(p.name for p in cached.iterdir()) == sorted(f"{s}.gz" for s in IDX_FILES.values())


def test_download_with_wrong_checksum_keeps_nothing(mirror, monkeypatch) -> None:
    root, url = mirror
    monkeypatch.setitem(sources.KNOWN_DATASETS, "tinyset", _fake_info(root, url, corrupt=True))
    with pytest.raises(
        FileNotFoundError, match=r"SHA-256 [0-9a-f]{64} does not match the known 0000"
    ):
        engine.load_dataset("tinyset", val_size=10, allow_download=True)
    assert not (sources.cache_dir() / "tinyset" / "train-images-idx3-ubyte.gz").exists()
    assert not list((sources.cache_dir() / "tinyset").glob("*.part"))


def test_unreachable_mirror_says_so(tmp_path: Path, monkeypatch) -> None:
    info = sources.DatasetInfo("gone", "idx", ("a",), {"x.gz": "0" * 64}, ("http://127.0.0.1:9/",))
    monkeypatch.setitem(sources.KNOWN_DATASETS, "gone", info)
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIRS", ())
    with pytest.raises(
        FileNotFoundError,
        match=r"the download failed: could not fetch x.gz \(http://127.0.0.1:9/x.gz",
    ):
        engine.load_dataset("gone", allow_download=True)


# -- split and scaling -------------------------------------------------------------------------
def test_split_is_deterministic_disjoint_and_complete() -> None:
    train, val = split_indices(100, 20, seed=3)
    _, again_val = split_indices(100, 20, seed=3)
    np.testing.assert_array_equal(val, again_val)
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(100))
    assert not np.array_equal(split_indices(100, 20, seed=4)[1], val)


@pytest.mark.parametrize("val_size", [0, 300])
def test_val_size_out_of_range(idx_folder: Path, val_size: int) -> None:
    with pytest.raises(ValueError, match=rf"val_size must be between 1 and 299 .* got {val_size}"):
        engine.load_dataset(idx_folder, val_size=val_size)


def test_centering_uses_training_statistics_only(idx_folder: Path) -> None:
    plain = engine.load_dataset(idx_folder, val_size=60)
    centred = engine.load_dataset(idx_folder, val_size=60, center=True)
    mean = plain.X_train.mean(axis=0, dtype=np.float64)
    # The training split is centred; validation and test are shifted by that same mean.
    np.testing.assert_allclose(centred.X_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(centred.X_val, plain.X_val - mean.astype(np.float32), atol=1e-6)
    np.testing.assert_allclose(centred.X_test, plain.X_test - mean.astype(np.float32), atol=1e-6)


def test_standardizing_uses_training_statistics_only(idx_folder: Path) -> None:
    plain = engine.load_dataset(idx_folder, val_size=60)
    scaled = engine.load_dataset(idx_folder, val_size=60, center=True, standardize=True)
    # The oracle, in float64 from the plain [0, 1] training features:
    # x = (p / 255 - mu) / sqrt(sigma^2 + STD_EPS)
    train = plain.X_train.astype(np.float64)
    mu, sd = train.mean(axis=0), np.sqrt(train.var(axis=0) + STD_EPS)
    for split in ("X_train", "X_val", "X_test"):
        expected = (getattr(plain, split).astype(np.float64) - mu) / sd
        np.testing.assert_allclose(getattr(scaled, split), expected, rtol=1e-5, atol=1e-5)
    # Training features have mean 0 and (nearly, because of STD_EPS) unit variance.
    np.testing.assert_allclose(scaled.X_train.mean(axis=0), 0.0, atol=1e-5)
    assert np.all(scaled.X_train.std(axis=0) < 1.0)
    varied = train.std(axis=0) > 0.2  # where sigma^2 >> STD_EPS
    assert varied.any()
    np.testing.assert_allclose(scaled.X_train.std(axis=0)[varied], 1.0, atol=0.01)


def test_a_pixel_that_never_varies_in_training_is_not_blown_up(idx_folder: Path) -> None:
    data = engine.load_dataset(idx_folder, val_size=60)
    assert data.pixels_train is not None and data.decoder is not None
    pixels = data.pixels_train.copy()
    pixels[:, 0] = 0  # dark in every training image (a border pixel)
    decoder = PixelDecoder.fit(pixels, center=True, standardize=True, dtype=np.float32)
    bright = pixels[:1].copy()
    bright[0, 0] = 255  # one test image lit there
    assert decoder.decode(bright)[0, 0] == pytest.approx(1 / np.sqrt(STD_EPS), rel=1e-5)  # ~25.5


@pytest.mark.parametrize(("center", "standardize"), [(False, False), (True, False), (True, True)])
def test_decoder_reproduces_x_train_bit_for_bit_and_back(
    idx_folder: Path, center: bool, standardize: bool
) -> None:
    data = engine.load_dataset(idx_folder, val_size=60, center=center, standardize=standardize)
    assert data.decoder is not None and data.pixels_train is not None
    np.testing.assert_array_equal(data.decoder.decode(data.pixels_train[5:9]), data.X_train[5:9])
    # `pixels` undoes it (to float32 rounding): the report shows the images the model saw.
    back = data.decoder.pixels(data.X_train[5:9])
    np.testing.assert_array_equal(np.rint(back), data.pixels_train[5:9])


def test_float64_dataset(idx_folder: Path) -> None:
    assert engine.load_dataset(idx_folder, val_size=10, dtype=np.float64).X_val.dtype == np.float64


def test_dataset_refuses_non_finite_features(tiny: engine.Dataset) -> None:
    X_val = tiny.X_val.copy()
    X_val[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"X_val must contain only finite numbers, got NaN or inf"):
        dataclasses.replace(tiny, X_val=X_val)


@pytest.mark.parametrize(
    ("xdg", "expected"), [("/x/cache", "/x/cache"), ("rel/cache", None), ("", None)]
)
def test_the_user_cache_follows_an_absolute_xdg_cache_home_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str, expected: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    base = Path(expected) if expected else tmp_path / ".cache"
    assert sources.cache_dir() == base / "softsweep"


def test_a_gzip_bomb_is_refused_without_decompressing_it(tmp_path: Path) -> None:
    """A small .gz whose content is far longer than its IDX header says: decompression stops
    one byte past the header's claim instead of filling memory."""
    import tracemalloc
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunks = [packer.compress(b"\0\0\x08\x01" + (1000).to_bytes(4, "big"))]
    zeros = bytes(1 << 20)
    chunks += [packer.compress(zeros) for _ in range(256)]  # 256 MiB of content
    path = tmp_path / "bomb.gz"
    path.write_bytes(b"".join(chunks) + packer.flush())
    assert path.stat().st_size < 1 << 20  # a small file
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"\(1,000 bytes of data\) but holds more than that"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # not the 256 MiB it would expand to


def test_a_header_claiming_an_impossible_size_is_refused_with_its_real_number(
    tmp_path: Path,
) -> None:
    big = (4294967295).to_bytes(4, "big")
    (tmp_path / "x").write_bytes(b"\0\0\x08\x03" + big * 3 + b"\0" * 10)
    with pytest.raises(ValueError, match=r"79,228,162,458,924,105,385,300,197,375 bytes of pixels"):
        read_idx(tmp_path / "x")


def test_idx_files_with_no_images_are_refused(tmp_path: Path) -> None:
    folder = write_idx_dataset(tmp_path / "d")
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((0, 6, 5), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros((0,), np.uint8))
    with pytest.raises(ValueError, match=r"the training set must hold images, got .* \(0, 6, 5\)"):
        engine.load_dataset(folder)


def test_a_dataset_with_a_single_class_is_refused(tmp_path: Path) -> None:
    folder = write_idx_dataset(tmp_path / "d", n_classes=1)
    with pytest.raises(ValueError, match=r"at least 2 classes .* got \[0\]"):
        engine.load_dataset(folder)
