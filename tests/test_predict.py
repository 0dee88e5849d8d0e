"""`python src/predict.py`: image files to digits with a logged model, the test set against the logged accuracy,
and bad input as one line on stderr.

The image preparation is tested in this process on real MNIST test images. Everything that needs a model shares
one tiny real run (the session's smoke-study baseline: 2000 training images, two epochs, trained through the CLI in
a subprocess); the command itself always runs in a subprocess, with `MLFLOW_TRACKING_URI` pointing at a store in
a temporary folder, never at the repository's own.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from conftest import PROJECT_ROOT, SmokeStudy
from mlflow_stores import new_store
from mnist_study.data import load_mnist
from mnist_study.paths import default_experiment
from mnist_study.serving.images import CENTRE, ImageError, border_of, load_digit, load_digits, mnist_pixels
from mnist_study.serving.predict import PredictError, locate_model, main

REGISTERED_MODEL = default_experiment()

PREDICT_PY = PROJECT_ROOT / "src" / "predict.py"
# One line per image: `PATH: DIGIT (p=PROBABILITY)`.
ANSWER = re.compile(r"^(?P<path>.+): (?P<digit>\d) \(p=(?P<probability>[01]\.\d{3})\)$")


def predict_cli(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    """Run `python src/predict.py ARGS` against the MLflow store `store`, as a user with that store set would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": store}
    return subprocess.run(
        [sys.executable, str(PREDICT_PY), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A non-zero exit with exactly one `error: ` line on stderr that holds every fragment, and nothing else."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "; fix: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


def answers(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[int, str]]:
    """The command's per-image lines as {path: (digit, probability as printed)}."""
    found = {}
    for line in result.stdout.splitlines():
        if match := ANSWER.match(line):
            found[match["path"]] = (int(match["digit"]), match["probability"])
    return found


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    _, (images, labels) = load_mnist()
    return images, labels


# ---------------------------------------------------------------------------------------------------------------
# Preparing images like MNIST (in this process, no model).


def test_clean_mnist_images_come_back_as_themselves(test_set: tuple[np.ndarray, np.ndarray]) -> None:
    # MNIST's digits are 20 pixels on their longer side and centred by centre of mass to whole pixels; redoing
    # that to one moves nothing. Only the strongest ink changes, 254 or 253 stretched to 255. A digit that
    # touches the border (about 1 % of them) loses its faintest pixels to the noise floor instead.
    images, _ = test_set
    for image in images[:1000]:
        prepared = mnist_pixels(image)
        assert prepared.dtype == np.uint8 and prepared.shape == (28, 28)
        if not border_of(image).any():
            assert np.abs(prepared.astype(int) - image.astype(int)).max() <= 2


def test_dark_on_light_and_grey_paper_give_the_same_pixels(test_set: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = test_set
    for image in images[:20]:
        expected = mnist_pixels(image)
        assert np.array_equal(mnist_pixels(255 - image), expected)
        # Paper rarely is pure white: a grey background with dark ink is still dark ink on light.
        assert np.array_equal(mnist_pixels(200 - image.astype(np.float64) * 0.7), expected)


def test_a_large_image_is_scaled_and_centred_like_mnist(test_set: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = test_set
    for image in images[:20]:
        large = np.asarray(Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC), float)
        prepared = mnist_pixels(large).astype(np.float64)
        # Upscaling and scaling back blurs the strokes and may move them a pixel; the digit keeps its shape.
        assert np.corrcoef(prepared.ravel(), mnist_pixels(image).ravel())[0, 1] > 0.75
        rows, columns = np.indices(prepared.shape)
        centre = ((rows * prepared).sum() / prepared.sum(), (columns * prepared).sum() / prepared.sum())
        assert abs(centre[0] - CENTRE) <= 0.5 and abs(centre[1] - CENTRE) <= 0.5
        assert prepared.max() == 255


def test_the_longer_side_becomes_20_pixels_keeping_the_aspect_ratio() -> None:
    # A dark bar 30 wide and 120 tall on white paper: a light bar 5 wide and 20 tall in the middle of the field.
    paper = np.full((300, 200), 255.0)
    paper[100:220, 60:90] = 0.0
    prepared = mnist_pixels(paper)
    rows = np.flatnonzero(prepared.any(axis=1))
    columns = np.flatnonzero(prepared.any(axis=0))
    assert (len(rows), len(columns)) == (20, 5)
    # Centred: the bar's centre of mass, row 9.5 and column 2 of the box, is moved to (14, 14), half a row
    # rounding up to a whole row.
    assert (rows[0], columns[0]) == (5, 12)


def test_files_in_any_format_read_as_their_pixels(tmp_path: Path, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    image = test_set[0][0]
    expected = mnist_pixels(image)
    Image.fromarray(image).save(tmp_path / "gray.png")
    Image.fromarray(255 - image).convert("RGB").save(tmp_path / "rgb-dark-on-light.png")
    Image.fromarray(image.astype(np.uint16) * 257).save(tmp_path / "sixteen-bit.png")
    # Black ink whose shape is in the alpha channel: the transparent background shows as white paper.
    ink = np.zeros((28, 28, 4), dtype=np.uint8)
    ink[..., 3] = image
    Image.fromarray(ink, "RGBA").save(tmp_path / "transparent.png")
    for name in ("gray.png", "rgb-dark-on-light.png", "sixteen-bit.png"):
        assert np.array_equal(load_digit(tmp_path / name), expected), name
    assert np.abs(load_digit(tmp_path / "transparent.png").astype(int) - expected.astype(int)).max() <= 2
    Image.fromarray(image).convert("RGB").save(tmp_path / "digit.jpg", quality=95)
    assert np.corrcoef(load_digit(tmp_path / "digit.jpg").ravel(), expected.ravel())[0, 1] > 0.95
    assert load_digits([tmp_path / "gray.png", tmp_path / "digit.jpg"]).shape == (2, 28, 28)


def half_a_png(path: Path) -> None:
    """The first half of a real PNG file: its header is right, its pixels are cut off."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.mark.parametrize(
    ("name", "make", "fragment"),
    [
        ("missing.png", None, "no such file"),
        ("notes.png", lambda path: path.write_text("not pixels\n"), "is not an image"),
        ("folder.png", lambda path: path.mkdir(), "is a folder"),
        ("blank.png", lambda path: Image.new("L", (40, 40), 255).save(path), "has no digit"),
        ("cut.png", half_a_png, "is damaged"),
    ],
)
def test_unusable_files_are_one_clear_message(
    tmp_path: Path, name: str, make: Callable[[Path], object] | None, fragment: str
) -> None:
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(ImageError) as raised:
        load_digit(path)
    message = str(raised.value)
    assert message.startswith(str(path)) and fragment in message.lower() and "; fix: " in message
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------------------------
# Bad input through the command, without a model: each fails before TensorFlow loads, in a few seconds (slow:
# each starts the command in a subprocess).


@pytest.mark.slow
def test_missing_file_fails_before_mlflow_or_tensorflow_loads(tmp_path: Path) -> None:
    probe = (
        "import sys; from mnist_study.serving.predict import main; status = main(sys.argv[1:]); "
        "print(sorted({'mlflow', 'tensorflow', 'keras'} & set(sys.modules))); sys.exit(status)"
    )
    missing = tmp_path / "seven.png"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    result = subprocess.run(
        [sys.executable, "-c", probe, str(missing)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stdout.strip() == "[]"
    assert (
        result.stderr.strip()
        == f"error: {missing}: no such file; fix: check the path (relative to the current folder)"
    )


@pytest.mark.slow
def test_missing_file_is_one_line(tmp_path: Path) -> None:
    result = predict_cli(str(tmp_path / "seven.png"), store=f"sqlite:///{tmp_path}/mlflow.db")
    assert_one_error_line(result, "seven.png: no such file")


@pytest.mark.slow
def test_text_file_named_png_is_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("seven\n")
    result = predict_cli(str(notes), store=f"sqlite:///{tmp_path}/mlflow.db")
    assert_one_error_line(result, "notes.png: is not an image", "PNG or JPEG")


@pytest.fixture
def digit_png(tmp_path: Path, test_set: tuple[np.ndarray, np.ndarray]) -> Path:
    path = tmp_path / "seven.png"
    Image.fromarray(test_set[0][0]).save(path)
    return path


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh MLflow store: its tables exist, nothing is in them (the tests only read it)."""
    return new_store(tmp_path_factory.mktemp("fresh"))


@pytest.mark.slow
def test_default_model_without_a_store_says_to_run_the_report(tmp_path: Path, digit_png: Path) -> None:
    store = f"sqlite:///{tmp_path}/never/mlflow.db"
    result = predict_cli(str(digit_png), store=store)
    assert_one_error_line(result, f"no MLflow store at {store}", "python src/report.py")
    # Reading never creates a store.
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_default_model_in_an_empty_registry_says_to_run_the_report(digit_png: Path, empty_store: str) -> None:
    result = predict_cli(str(digit_png), store=empty_store)
    assert_one_error_line(result, f"no registered model '{REGISTERED_MODEL}'", "python src/report.py")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("models:/no-such-model@champion", "no registered model 'no-such-model'"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "no run '0123456789abcdef0123456789abcdef'"),
    ],
)
def test_unknown_model_uri_is_one_line(digit_png: Path, empty_store: str, model: str, fragment: str) -> None:
    result = predict_cli(str(digit_png), "--model", model, store=empty_store)
    assert_one_error_line(result, fragment)


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("models:/m-0123456789abcdef0123456789abcdef", "no logged model 'm-0123456789abcdef0123456789abcdef'"),
        (f"models:/{REGISTERED_MODEL}/1", f"no registered model '{REGISTERED_MODEL}'"),
        ("models:/", "'models:/' is not a model URI"),
        ("runs:/model", "'runs:/model' is not a model URI"),
        ("mnist-mlp@champion", "is neither a model URI nor a model's folder"),
    ],
)
def test_every_unknown_model_uri_names_the_problem_and_the_fix(
    empty_store: str, model: str, fragment: str
) -> None:
    # In this process: the command prints any PredictError as its one line (the cases above show it).
    with pytest.raises(PredictError) as raised:
        locate_model(MlflowClient(tracking_uri=empty_store), model)
    assert fragment in str(raised.value) and "; fix: " in str(raised.value)


@pytest.mark.slow
def test_nothing_to_do_is_one_line(tmp_path: Path) -> None:
    assert_one_error_line(predict_cli(store=f"sqlite:///{tmp_path}/mlflow.db"), "nothing to do")


# ---------------------------------------------------------------------------------------------------------------
# With a real model: one tiny run trained through the CLI.


@dataclass(frozen=True)
class TrainedStore:
    """The store of one finished run and what it logged."""

    folder: Path
    uri: str
    run_id: str
    model_id: str
    logged_accuracy: float


@pytest.fixture(scope="module")
def trained(smoke_study: SmokeStudy) -> TrainedStore:
    """The session's smoke-study baseline run, with its model: what every test below predicts with. Its store is
    only read here (its registry stays empty); the tests that register take a copy."""
    run = MlflowClient(tracking_uri=smoke_study.tracking_uri).get_run(smoke_study.run_id("baseline"))
    return TrainedStore(
        smoke_study.folder,
        smoke_study.tracking_uri,
        run.info.run_id,
        run.data.tags["model_id"],
        run.data.metrics["test_accuracy"],
    )


@contextlib.contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global store at `uri` for the duration: loading a `models:/` URI and registering a logged
    model read the global store, whatever client is used."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def model(trained: TrainedStore) -> mlflow.pyfunc.PyFuncModel:
    """The run's model, loaded in this process (by its logged model's id, as the run's `model_id` tag names it)."""
    # Imported first, so that TensorFlow's start-up noise stays out of the test's output.
    import mnist_study.quiet_tensorflow  # noqa: F401

    with global_tracking_uri(trained.uri):
        return mlflow.pyfunc.load_model(f"models:/{trained.model_id}")


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory, model, test_set) -> dict[str, np.ndarray]:
    """MNIST test images written as files the way people have them, {path: the raw test image it shows}.

    The images are ones the model is sure of on their raw pixels, so that a clean copy's prediction is not
    decided by a near tie that the last rounding of the preparation could tip either way.
    """
    folder = tmp_path_factory.mktemp("images")
    images, _ = test_set
    probabilities = np.stack(model.predict(images[:200])["probabilities"])
    chosen = np.flatnonzero(probabilities.max(axis=1) > 0.9)[:4]
    files = {}
    for index in chosen:
        image = images[index]
        large = Image.fromarray(255 - image).resize((100, 80), Image.Resampling.BILINEAR).convert("RGB")
        variants = {
            f"{index}-clean.png": Image.fromarray(image),
            f"{index}-dark-on-light.png": Image.fromarray(255 - image),
            f"{index}-100x80-rgb-dark-on-light.png": large,
            f"{index}-100x80-rgb-light-on-dark.jpg": Image.fromarray(image).resize((100, 80)).convert("RGB"),
        }
        for name, variant in variants.items():
            variant.save(folder / name)
            files[str(folder / name)] = image
    return files


@pytest.fixture(scope="module")
def predicted(trained: TrainedStore, image_files: dict[str, np.ndarray]) -> subprocess.CompletedProcess[str]:
    """One command for the images and the test set together: TensorFlow and the model load once."""
    return predict_cli(*image_files, "--test-set", "--model", f"runs:/{trained.run_id}/model", store=trained.uri)


@pytest.mark.slow
def test_test_set_accuracy_is_the_one_the_run_logged(
    trained: TrainedStore, predicted: subprocess.CompletedProcess[str]
) -> None:
    assert predicted.returncode == 0, predicted.stderr
    correct = round(trained.logged_accuracy * 10000)
    expected = (
        f"test accuracy {correct / 10000:.4f} ({correct}/10000); "
        f"logged by run {trained.run_id}: {trained.logged_accuracy:.4f}"
    )
    assert predicted.stdout.splitlines()[-1] == expected
    # TensorFlow's and MLflow's start-up and download noise is silenced: the command says only its answers.
    assert predicted.stderr == ""


@pytest.mark.slow
def test_images_get_the_digit_the_model_gives_their_prepared_pixels(
    model, image_files: dict[str, np.ndarray], predicted: subprocess.CompletedProcess[str]
) -> None:
    assert predicted.returncode == 0, predicted.stderr
    found = answers(predicted)
    assert list(found) == list(image_files)
    expected = model.predict(load_digits(list(image_files)))
    for (path, (digit, probability)), want, probabilities in zip(
        found.items(), expected["digit"], expected["probabilities"], strict=True
    ):
        assert (digit, probability) == (want, f"{probabilities[want]:.3f}"), path
    # A clean 28 x 28 copy of a test image is the test image: it gets the digit the model gives the raw array.
    clean = [path for path in image_files if path.endswith("-clean.png")]
    raw = model.predict(np.stack([image_files[path] for path in clean]))["digit"]
    assert [found[path][0] for path in clean] == list(raw)


@pytest.fixture
def registered_store(trained: TrainedStore, tmp_path: Path) -> str:
    """A copy of the trained store whose registry holds the run's model as version 1 of `mnist-mlp`, no alias.

    A copy, so the module's store keeps an empty registry; the copy's artifacts stay where the original's are.
    """
    shutil.copy(trained.folder / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    client.create_registered_model(REGISTERED_MODEL)
    with global_tracking_uri(uri):
        client.create_model_version(
            REGISTERED_MODEL, f"models:/{trained.model_id}", run_id=trained.run_id, model_id=trained.model_id
        )
    return uri


@pytest.mark.slow
def test_a_run_without_a_registered_model_says_to_run_the_report(trained: TrainedStore, digit_png: Path) -> None:
    result = predict_cli(str(digit_png), store=trained.uri)
    assert_one_error_line(result, f"no registered model '{REGISTERED_MODEL}'", "python src/report.py")


@pytest.mark.slow
def test_registry_uris_find_the_run_that_made_the_model(trained: TrainedStore, registered_store: str) -> None:
    client = MlflowClient(tracking_uri=registered_store)
    for uri in (
        f"models:/{REGISTERED_MODEL}/1",
        f"models:/{REGISTERED_MODEL}/latest",
        f"models:/{trained.model_id}",
        f"runs:/{trained.run_id}/model",
    ):
        assert locate_model(client, uri).run_id == trained.run_id, uri
    with pytest.raises(PredictError, match="has no version '2' \\(versions: 1\\)"):
        locate_model(client, f"models:/{REGISTERED_MODEL}/2")


@pytest.mark.slow
def test_the_champion_is_the_default_model(trained: TrainedStore, registered_store: str, digit_png: Path) -> None:
    without_alias = predict_cli(str(digit_png), store=registered_store)
    assert_one_error_line(without_alias, "has no alias 'champion'", "python src/report.py")
    MlflowClient(tracking_uri=registered_store).set_registered_model_alias(REGISTERED_MODEL, "champion", "1")
    result = predict_cli(str(digit_png), "--test-set", store=registered_store)
    assert result.returncode == 0, result.stderr
    assert list(answers(result)) == [str(digit_png)]
    assert result.stdout.splitlines()[-1].endswith(
        f"logged by run {trained.run_id}: {trained.logged_accuracy:.4f}"
    )


@pytest.mark.slow
def test_a_model_that_misses_its_logged_accuracy_fails(
    trained: TrainedStore, model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A copy of the store in which the run's test_accuracy says one more image was right than the model gets.
    shutil.copy(trained.folder / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    claimed = (round(trained.logged_accuracy * 10000) + 1) / 10000
    MlflowClient(tracking_uri=uri).log_metric(trained.run_id, "test_accuracy", claimed)
    # In this process (TensorFlow is loaded already); the command sets MLflow's global store, restored after.
    with global_tracking_uri(mlflow.get_tracking_uri()):
        status = main(["--test-set", "--model", f"runs:/{trained.run_id}/model", "--tracking-uri", uri])
    output = capsys.readouterr()
    assert status != 0
    assert output.out.strip().endswith(f"logged by run {trained.run_id}: {claimed:.4f}")
    (line,) = output.err.strip().splitlines()
    assert line.startswith("error: the model gets ") and "; fix: " in line
