"""`python src/predict.py IMAGE ... [--model URI] [--tracking-uri URI] [--test-set]`: digits from image files.

Each image is prepared like MNIST (see `images`) and answered with one line, `IMAGE: 7 (p=0.998)`. `--test-set`
scores the model on MNIST's 10 000 test images and prints the accuracy beside the `test_accuracy` logged by the
run that made the model; they must agree to the image, or the command fails.

The model is the registry's champion unless `--model` names another: `models:/NAME@ALIAS`,
`models:/NAME/VERSION`, `models:/m-<model id>`, `runs:/<run id>/model`, or any URI or path MLflow loads. The
store is `--tracking-uri`, else `MLFLOW_TRACKING_URI`, else the project's `mlflow.db`. Bad input ends with one
line on stderr, `error: <problem>; fix: <fix>`, and a non-zero exit. Images are read before MLflow is imported
and the store is checked before TensorFlow is, so a wrong path fails in a second and a wrong model URI in a few.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from mnist_study.checks import unreachable
from mnist_study.errors import first_line
from mnist_study.paths import default_experiment
from mnist_study.paths import tracking_uri as default_tracking_uri
from mnist_study.secrets import redact
from mnist_study.serving import CHAMPION_ALIAS, MODEL_ID_TAG
from mnist_study.serving.images import ImageError, load_digits

if TYPE_CHECKING:
    import mlflow.entities
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

# The registered model and the alias the report sets on the study's best configuration.
DEFAULT_MODEL = f"models:/{default_experiment()}@{CHAMPION_ALIAS}"
# The run metric the test-set score is checked against.
LOGGED_ACCURACY = "test_accuracy"
# What registering a model takes, said wherever the registry turns out to be empty.
REGISTER_FIX = "run `python src/report.py` first (it registers the study's models and sets the aliases)"
URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<model id> or runs:/<run id>/model"
# Exit statuses: the test-set accuracy disagrees with the logged one; any other bad input.
MISMATCH = 3
FAILED = 1


class PredictError(Exception):
    """Bad input to the command: the message is one line that names the problem and its fix."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model loads from, and the run that made it (None when the URI names no run)."""

    load_uri: str
    run_id: str | None


@dataclass(frozen=True)
class TestSetScore:
    """The model's score on the test set beside the score its run logged."""

    correct: int
    total: int
    run_id: str
    logged_accuracy: float

    @property
    def logged_correct(self) -> int:
        return round(self.logged_accuracy * self.total)

    def line(self) -> str:
        return (
            f"test accuracy {self.correct / self.total:.4f} ({self.correct}/{self.total}); "
            f"logged by run {self.run_id}: {self.logged_accuracy:.4f}"
        )


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error: ` line like every other bad input, not usage and a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; fix: see `python src/predict.py --help`\n")


def argument_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python src/predict.py",
        description=(
            "Predict the digit in each image file with a logged MNIST model. Each image is prepared like MNIST's "
            "digits: grayscale, inverted if its border is light, cropped to the digit, scaled to 20 pixels on its "
            "longer side and centred in 28 x 28 by its centre of mass. An image should hold one upright digit "
            "with background all round it."
        ),
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="PNG or JPEG files, one digit each, any size")
    parser.add_argument(
        "--model", metavar="URI", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}; or {URI_FORMS}"
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        default=None,
        help="the MLflow store (default: $MLFLOW_TRACKING_URI, else the project's sqlite:///.../mlflow.db)",
    )
    parser.add_argument(
        "--test-set",
        action="store_true",
        help="score the 10 000 MNIST test images and check the accuracy against the one the model's run logged",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status, after printing any error as one `error: ` line on stderr."""
    arguments = argument_parser().parse_args(argv)
    if not arguments.images and not arguments.test_set:
        argument_parser().error("nothing to do: give image files, --test-set, or both")
    try:
        return predict(arguments)
    except (PredictError, ImageError) as error:
        # Store URIs (ours and in MLflow's messages) may carry a database password.
        print(f"error: {redact(str(error))}", file=sys.stderr)
        return FAILED


def predict(arguments: argparse.Namespace) -> int:
    """Predict the images, then score the test set, as asked; returns the exit status."""
    # Every image is read first: a wrong path is reported before seconds go into loading the model.
    pixels = load_digits(arguments.images)
    store = tracking_uri(arguments.tracking_uri)
    client = open_store(store, arguments.model)
    source = locate_model(client, arguments.model)
    model = load_model(source.load_uri, store, arguments.model)
    if arguments.images:
        answer = model.predict(pixels)
        for path, digit, probabilities in zip(
            arguments.images, answer["digit"], answer["probabilities"], strict=True
        ):
            print(f"{path}: {digit} (p={probabilities[digit]:.3f})")
    if not arguments.test_set:
        return 0
    score = score_test_set(client, model, source.run_id or model.metadata.run_id, arguments.model)
    print(score.line())
    if score.correct != score.logged_correct:
        print(
            f"error: the model gets {score.correct}/{score.total} test images right but run {score.run_id} logged "
            f"{score.logged_correct}/{score.total}; fix: it is not the network that run measured, so re-train it "
            "or register the run's own model",
            file=sys.stderr,
        )
        return MISMATCH
    return 0


def tracking_uri(flag: str | None) -> str:
    """The store to read: the flag, else the project's rule (`MLFLOW_TRACKING_URI`, else its mlflow.db)."""
    return flag or default_tracking_uri()


def open_store(uri: str, model_uri: str) -> MlflowClient:
    """A client for `uri`; a sqlite store that does not exist is an error here, not a new empty database."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        if model_uri.startswith("models:/"):
            raise PredictError(f"no MLflow store at {uri}, so no registered models; fix: {REGISTER_FIX}")
        raise PredictError(
            f"no MLflow store at {uri}; fix: pass --tracking-uri (or set MLFLOW_TRACKING_URI) to the store that "
            "holds the model"
        )
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    # MLflow's artifact download bars would be the only other output of a command that prints a line per image.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as error:
        raise PredictError(
            f"cannot open the MLflow store {uri} ({first_line(error)}); fix: check --tracking-uri"
        ) from None
    return client


def check_server(uri: str) -> None:
    """A tracking server answers `/health` (see `checks.unreachable`)."""
    reason = unreachable(uri)
    if reason is not None:
        raise PredictError(
            f"no MLflow server answers at {uri} ({reason}); fix: start it (make services) or pass --tracking-uri"
        ) from None


def locate_model(client: MlflowClient, model_uri: str) -> ModelSource:
    """Where to load the model at `model_uri` from, and the run that made it (None for a plain path).

    Looked up in the store before the model loads, so an unknown URI fails in one line and without TensorFlow.
    """
    if model_uri.startswith("runs:/"):
        run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
        if not run_id or not path.strip("/"):
            raise PredictError(f"{model_uri!r} is not a model URI; fix: use {URI_FORMS}")
        run = find_run(client, run_id, model_uri)
        return ModelSource(linked_model_uri(client, run, path.strip("/")) or model_uri, run_id)
    if ":" not in model_uri and not Path(model_uri).is_dir():
        # A URI without a scheme is a folder to MLflow; checked here, so that a typo fails before TensorFlow loads.
        raise PredictError(f"{model_uri!r} is neither a model URI nor a model's folder; fix: use {URI_FORMS}")
    return ModelSource(model_uri, run_of_registered_model(client, model_uri))


def linked_model_uri(client: MlflowClient, run: mlflow.entities.Run, name: str) -> str | None:
    """`models:/<id>` of the model the run logged under `name`, as its `model_id` tag names it; else None.

    MLflow resolves `runs:/<id>/model` by searching the run's experiment for a logged model of that name. Runs
    logged before `serving.model` put their model in the run's experiment have it in the store's Default one,
    where that search does not look; the tag names the model directly, wherever it is.
    """
    model_id = run.data.tags.get(MODEL_ID_TAG)
    if not model_id:
        return None
    try:
        logged = client.get_logged_model(model_id)
    except Exception:
        return None
    return f"models:/{model_id}" if logged.name == name and logged.source_run_id == run.info.run_id else None


def run_of_registered_model(client: MlflowClient, model_uri: str) -> str | None:
    """The run that made a `models:/` model (the registry's version, or the logged model); None for other URIs."""
    if not model_uri.startswith("models:/"):
        return None
    reference = model_uri.removeprefix("models:/")
    if "@" in reference:
        name, _, alias = reference.partition("@")
        versions = registered_model(client, name).aliases
        if alias not in versions:
            known = ", ".join(sorted(versions)) or "none"
            fix = REGISTER_FIX if alias == CHAMPION_ALIAS else f"use one of the aliases or another of {URI_FORMS}"
            raise PredictError(f"registered model {name!r} has no alias {alias!r} (aliases: {known}); fix: {fix}")
        return client.get_model_version(name, versions[alias]).run_id
    if "/" in reference:
        name, _, version = reference.partition("/")
        registered_model(client, name)
        numbers = sorted(int(found.version) for found in client.search_model_versions(f"name = '{name}'"))
        if version == "latest" and numbers:
            version = str(numbers[-1])
        if not version.isdigit() or int(version) not in numbers:
            known = ", ".join(map(str, numbers)) or "none"
            raise PredictError(
                f"registered model {name!r} has no version {version!r} (versions: {known}); fix: use one of "
                f"those, or models:/{name}@{CHAMPION_ALIAS}"
            )
        return client.get_model_version(name, version).run_id
    if reference.startswith("m-"):
        try:
            return client.get_logged_model(reference).source_run_id
        except Exception as error:
            raise PredictError(
                f"no logged model {reference!r} in {client.tracking_uri} ({first_line(error)}); fix: copy the id "
                "from the run's `model_id` tag or the MLflow UI's Models tab"
            ) from None
    raise PredictError(f"{model_uri!r} is not a model URI; fix: use {URI_FORMS}")


def registered_model(client: MlflowClient, name: str) -> mlflow.entities.model_registry.RegisteredModel:
    """The registered model `name`; PredictError naming the ones there are (or saying to register some)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise PredictError(
                f"cannot read the model registry at {client.tracking_uri} ({first_line(error)}); fix: check "
                "--tracking-uri (and MLFLOW_REGISTRY_URI, if set)"
            ) from None
    names = sorted(model.name for model in client.search_registered_models())
    if not names or name == default_experiment():
        raise PredictError(f"no registered model {name!r} in {client.tracking_uri}; fix: {REGISTER_FIX}")
    raise PredictError(
        f"no registered model {name!r} in {client.tracking_uri} (registered: {', '.join(names)}); "
        "fix: use one of those names"
    )


def find_run(client: MlflowClient, run_id: str, model_uri: str) -> mlflow.entities.Run:
    """The run `run_id`; PredictError if the store has no such run."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as error:
        raise PredictError(
            f"no run {run_id!r} in {client.tracking_uri} for {model_uri!r} ({first_line(error)}); fix: copy the "
            "run id from the MLflow UI or from the run's summary line, and check --tracking-uri"
        ) from None


def load_model(load_uri: str, store: str, model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """The pyfunc model at `load_uri` (where `model_uri`, as the user gave it, leads), resolved against `store`."""
    # First, so that TensorFlow's start-up noise is silenced before the model's loading imports keras.
    import mnist_study.quiet_tensorflow  # noqa: F401

    # isort: split
    import mlflow

    # Loading resolves `runs:/` and `models:/` through MLflow's global store; this process reads only one.
    mlflow.set_tracking_uri(store)
    try:
        return mlflow.pyfunc.load_model(load_uri)
    except Exception as error:
        raise PredictError(
            f"cannot load the model {model_uri!r} ({first_line(error)}); fix: use {URI_FORMS} (a run has a model "
            "only if it finished with tracking.log_model=true)"
        ) from None


def score_test_set(
    client: MlflowClient, model: mlflow.pyfunc.PyFuncModel, run_id: str | None, model_uri: str
) -> TestSetScore:
    """The model's accuracy on MNIST's 10 000 test images beside the accuracy its run logged."""
    from mnist_study.data import load_mnist

    if not run_id:
        raise PredictError(
            f"cannot tell which run made {model_uri!r}, so there is no logged accuracy to compare; fix: use "
            f"--test-set with {URI_FORMS}"
        )
    logged = client.get_run(run_id).data.metrics.get(LOGGED_ACCURACY)
    if logged is None:
        raise PredictError(
            f"run {run_id} logged no {LOGGED_ACCURACY} (it did not finish training); fix: score the model of a "
            "finished run"
        )
    _, (test_images, test_labels) = load_mnist()
    digits = model.predict(np.asarray(test_images))["digit"].to_numpy()
    correct = int(np.count_nonzero(digits == test_labels))
    return TestSetScore(correct, len(test_labels), run_id, float(logged))
