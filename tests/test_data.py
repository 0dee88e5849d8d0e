"""MNIST offline: byte-identical to keras's layout, a tampered source refused unread, a corrupt cache rebuilt."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mnist_study import data
from mnist_study.checks import ConfigError, check_data


@pytest.fixture(scope="module")
def mnist() -> tuple:
    return data.load_mnist()


def test_load_mnist_matches_keras_layout_and_hashes(mnist: tuple) -> None:
    (x_train, y_train), (x_test, y_test) = mnist
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for name, array in arrays.items():
        assert array.dtype == np.uint8
        assert array.shape == data.ARRAY_SHAPES[name]
        assert data.array_sha256(array) == data.ARRAY_SHA256[name]
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_hub_file_is_found_through_package_metadata_and_verified() -> None:
    path = data.hub_file()
    assert path.name == "mnist.pkl.gz"
    assert data.file_sha256(path) == data.HUB_FILE_SHA256
    arrays = data.read_hub_pickle(path)
    assert data.array_sha256(arrays["x_train"]) == data.ARRAY_SHA256["x_train"]


def test_tampered_source_is_refused_before_unpickling(tmp_path: Path) -> None:
    # This pickle would create a file if it were ever loaded; the hash check must refuse it first.
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    tampered = tmp_path / "mnist.pkl.gz"
    with gzip.open(tampered, "wb") as handle:
        pickle.dump(Payload(), handle)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        data.read_hub_pickle(tampered)
    assert not marker.exists()


def test_corrupt_cache_is_rebuilt(tmp_path: Path, mnist: tuple) -> None:
    cache = tmp_path / "mnist.npz"
    (x_train, y_train), (x_test, y_test) = mnist
    bad_x_train = np.array(x_train)
    bad_x_train[0, 0, 0] ^= 0xFF
    np.savez(cache, x_train=bad_x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    with pytest.raises(ValueError, match="x_train fails its sha256"):
        data.read_npz(cache)
    (x_loaded, _), _ = data.load_mnist(cache)
    assert data.array_sha256(x_loaded) == data.ARRAY_SHA256["x_train"]
    data.read_npz(cache)  # The file on disk was rewritten and now verifies.


def test_garbage_cache_file_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "mnist.npz"
    cache.write_bytes(b"not a zip file")
    (x_loaded, _), _ = data.load_mnist(cache)
    assert data.array_sha256(x_loaded) == data.ARRAY_SHA256["x_train"]


def test_no_usable_source_names_everything_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "absent" / "mnist.npz")
    monkeypatch.setattr(data, "HUB_DISTRIBUTION", "no-such-distribution-for-mnist")

    def offline() -> data.Arrays:
        raise OSError("no network")

    monkeypatch.setattr(data, "download_with_keras", offline)
    with pytest.raises(data.DataSourceError) as error:
        data.load_mnist(tmp_path / "cache.npz")
    message = str(error.value)
    for tried in ("keras cache", "no-such-distribution-for-mnist", "keras download", "no network"):
        assert tried in message


def test_split_holds_out_the_last_images_and_scales_to_float32(mnist: tuple) -> None:
    (x_train, y_train), _ = mnist
    split = data.make_split(val_size=5000, train_subset=None, fit_on="train")
    assert split.x_fit.shape == (55000, 784) and split.x_fit.dtype == np.float32
    assert split.x_val.shape == (5000, 784)
    assert split.x_fit.min() >= 0.0 and split.x_fit.max() == 1.0
    np.testing.assert_array_equal(split.x_val, x_train[55000:].reshape(5000, -1) / np.float32(255))
    np.testing.assert_array_equal(split.y_val, y_train[55000:])
    assert split.y_fit.dtype == np.int32


def test_subset_keeps_the_first_images_and_the_same_validation() -> None:
    full = data.make_split(val_size=5000)
    small = data.make_split(val_size=5000, train_subset=2000)
    assert small.x_fit.shape == (2000, 784)
    np.testing.assert_array_equal(small.x_fit, full.x_fit[:2000])
    np.testing.assert_array_equal(small.x_val, full.x_val)


def test_fit_on_test_is_the_tutorials_protocol(mnist: tuple) -> None:
    split = data.make_split(val_size=5000, fit_on="test")
    np.testing.assert_array_equal(split.x_fit, split.x_test)
    np.testing.assert_array_equal(split.y_fit, split.y_test)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"fit_on": "validation"}, "data.fit_on"),
        ({"val_size": 60000}, "data.val_size"),
        ({"val_size": -1}, "data.val_size"),
        ({"train_subset": 0}, "data.train_subset"),
        ({"train_subset": 55001}, "data.train_subset"),
    ],
)
def test_bad_split_settings_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as from_split:
        data.make_split(**kwargs)
    # One rule: the split refuses a value in the very words the config check (`checks.check_data`) uses.
    split = {"val_size": 5000, "train_subset": None, "fit_on": "train", **kwargs}
    with pytest.raises(ConfigError) as from_check:
        check_data(OmegaConf.create({"data": split}))
    assert str(from_split.value) == str(from_check.value)


def test_split_arrays_are_read_only() -> None:
    split = data.make_split(val_size=5000, train_subset=100)
    with pytest.raises(ValueError):
        split.x_fit[0, 0] = 1.0
