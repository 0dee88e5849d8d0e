"""How much does serving cost? The logged model's `predict` in this process against HTTP to `mlflow models serve`.

    .venv/bin/python benchmarks/serving.py [--model URI [--tracking-uri URI]] [--reps 5] [--requests 30]

Without `--model` a tiny run (2 000 training images, one epoch) is trained through the CLI into a temporary
store and its logged model is served, so the benchmark works on a fresh clone; the model's size does not depend
on its training, only its weights do. With `--model` (e.g. `models:/mnist-mlp@champion`) the model is read from
`--tracking-uri` (default: `MLFLOW_TRACKING_URI`, else the project's mlflow.db).

For 1 and 256 images per request, the arms take turns call by call (in-process, HTTP, `GET /ping`, breakdown),
`--requests` rounds per repetition and batch size, after three untimed rounds (the machine is shared and noisy,
so only ratios measured side by side mean anything):

- in-process: `mlflow.pyfunc.load_model(uri).predict(images)` on a uint8 array, as `src/predict.py` does;
- HTTP: what a client pays, from the array to the answer's digits and probabilities: the array as the JSON body
  `{"inputs": [[[...]]]}`, a POST to `/invocations` of `mlflow models serve --env-manager local` on 127.0.0.1 over
  one kept-alive connection, and the JSON answer decoded;
- `GET /ping`: the floor of an HTTP round trip to the same server, with no body and no model;
- breakdown: the same request's stages timed one by one in this process: the client's encoding and decoding, and
  the server's own request handler (`mlflow.pyfunc.scoring_server.invocations`, called directly with the same
  body) with its JSON decoding, list-to-array conversion, schema check, model and answer encoding timed inside.
  What the HTTP arm spends beyond all of them is HTTP, uvicorn, FastAPI and the hop to a worker thread (and, on a
  busy machine, the waits for a core at each switch), reported as the rest.

Last line: `ratio_1=<HTTP p50 / in-process p50, 1 image> ratio_256=<the same, 256 images>` (medians of
per-repetition ratios).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import common  # noqa: F401  (first: puts src/ on the path and imports TensorFlow quietly)

# isort: split
import mlflow
import numpy as np
from common import ROOT, Stopwatches, median, print_table
from mlflow.pyfunc import scoring_server

from mnist_study.data import load_mnist
from mnist_study.launch import model_server as model_server_launch
from mnist_study.paths import tracking_uri as default_tracking_uri

# The tests' server helpers: start a server, wait until it answers, always stop it.
sys.path.insert(0, str(ROOT / "tests"))
from servers import free_port, serve

# The tiny run trained when no --model is given: enough for a real model, in a minute.
TINY_RUN = ("data.train_subset=2000", "train.epochs=1", "tracking.plots=false")
BATCH_SIZES = (1, 256)
JSON = "application/json"
# Loading TensorFlow and the model takes the server 20-60 s on a busy 2-core machine; the wait is bounded.
START_TIMEOUT = 300.0
# The stages of one request, exclusive (they add up to the HTTP arm's time), in the order a request meets them.
STAGES = (
    ("client: array -> JSON body (tolist + dumps)", "encode"),
    ("server: JSON body -> dict (json.loads, twice: MLflow parses the body twice)", "loads"),
    ("server: nested lists -> uint8 array (parse_tf_serving_input: deepcopy + convert)", "lists"),
    ("server: pyfunc schema check (uint8, shape)", "schema"),
    ("model: as_pixels + DataFrame of answers", "wrapper"),
    ("model: Keras forward pass (eager)", "network"),
    ("server: DataFrame -> JSON answer (records)", "answer"),
    ("server: rest of invocations()", "handler"),
    ("HTTP + uvicorn + FastAPI + thread hop (the rest)", "transport"),
    ("client: JSON answer -> digits, probabilities", "decode"),
)


def train_tiny_model(scratch: Path) -> tuple[str, str]:
    """Train a tiny run through the CLI into a store in `scratch`; return (tracking URI, model URI)."""
    tracking_uri = f"sqlite:///{scratch}/mlflow.db"
    arguments = [
        *TINY_RUN,
        f"tracking.uri={tracking_uri}",
        f"tracking.artifact_location={scratch}/mlruns",
        f"hydra.run.dir={scratch}/outputs",
    ]
    # `scratch` is also the working directory, so that nothing the run writes relative to it (MLflow roots its
    # Default experiment at ./mlruns) can land in the repository.
    result = subprocess.run(
        [sys.executable, str(ROOT / "src" / "run.py"), *arguments],
        cwd=scratch,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"mlflow_run=([0-9a-f]{32})", result.stdout + result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"training the tiny run failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return tracking_uri, f"runs:/{found.group(1)}/model"


@contextlib.contextmanager
def model_server(model_uri: str, tracking_uri: str, log_path: Path) -> Iterator[tuple[str, int]]:
    """`mlflow models serve` on a free loopback port, as `make serve` runs it; yields (host, port), then stops it.

    RuntimeError with the server's log if it exits early or does not answer within START_TIMEOUT.
    """
    port = free_port()
    launch = model_server_launch(model_uri, tracking_uri, port)
    env = {**launch.environment, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    with serve(launch.command, port, log_path, START_TIMEOUT, env):
        yield "127.0.0.1", port


def encode(images: np.ndarray) -> bytes:
    """The request body a client sends: the raw pixels as nested lists of ints under "inputs"."""
    return json.dumps({"inputs": images.tolist()}).encode()


def decode(answer: bytes | str) -> tuple[np.ndarray, np.ndarray]:
    """The digits and the probabilities from the server's answer, `{"predictions": [{"digit", ...}, ...]}`."""
    rows = json.loads(answer)["predictions"]
    return np.array([row["digit"] for row in rows]), np.array([row["probabilities"] for row in rows])


class Client:
    """One kept-alive HTTP connection to the server, as a client sending requests one after another holds."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.connection: http.client.HTTPConnection | None = None

    def reconnect(self) -> None:
        """A fresh connection: uvicorn closes idle ones after 5 s, and the other arms take longer than that."""
        if self.connection is not None:
            self.connection.close()
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def send(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One request; the body of its answer, or RuntimeError with the server's message unless it is a 200."""
        assert self.connection is not None
        headers = {"Content-Type": JSON} if body is not None else {}
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        content = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status}: {content[:500]!r}")
        return content

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The HTTP arm: array -> JSON -> POST /invocations -> JSON -> digits and probabilities."""
        return decode(self.send("POST", "/invocations", encode(images)))


def breakdown(model: mlflow.pyfunc.PyFuncModel, images: np.ndarray, requests: int) -> list[dict[str, float]]:
    """Time one request's stages in this process, `requests` times; seconds per stage (nested, as measured).

    The server's side is its own request handler, `scoring_server.invocations`, called with the body a client
    would send; inside it, the JSON decoding, the conversion of nested lists to an array, the pyfunc's `predict`
    (its schema check around the model), the model's `predict` (around the Keras network) and the answer's
    encoding are timed by patching them.
    """
    schema = model.metadata.get_input_schema()
    classifier = model.unwrap_python_model()
    targets = [
        ("loads", scoring_server, "_decode_json_input"),
        ("lists", scoring_server, "infer_and_parse_data"),
        ("answer", scoring_server, "predictions_to_json"),
        ("pyfunc", model, "predict"),
        ("classifier", classifier, "predict"),
        ("network", classifier, "network"),
    ]
    timings = []
    for _ in range(requests):
        with Stopwatches(targets).installed() as clock:
            started = time.perf_counter()
            body = encode(images)
            encoded = time.perf_counter()
            result = scoring_server.invocations(body, JSON, model, schema)
            handled = time.perf_counter()
            decode(result.response)
            decoded = time.perf_counter()
        if result.status != 200:
            raise RuntimeError(f"invocations answered {result.status}: {result.response[:500]}")
        timings.append(
            {
                "encode": encoded - started,
                "invocations": handled - encoded,
                "decode": decoded - handled,
                **clock.seconds,
            }
        )
    return timings


def seconds_of(call: Callable[[], object]) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (numpy's linear interpolation between the two nearest samples)."""
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model URI to serve (default: train a tiny run)")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="the store that holds --model (default: MLFLOW_TRACKING_URI, else the project's mlflow.db)",
    )
    parser.add_argument("--reps", type=int, default=5, help="alternating repetitions (default 5)")
    parser.add_argument(
        "--requests",
        type=int,
        default=30,
        help="rounds (one call of each arm) per batch size and repetition (default 30)",
    )
    args = parser.parse_args()
    if args.reps < 1 or args.requests < 1:
        parser.error("--reps and --requests must be at least 1")
    if args.tracking_uri and not args.model:
        parser.error("--tracking-uri names the store of --model; without --model a tiny run is trained")

    _, (test_images, _) = load_mnist()
    batches = {size: test_images[:size] for size in BATCH_SIZES}
    with tempfile.TemporaryDirectory(prefix="serving_bench_") as folder:
        scratch = Path(folder)
        if args.model:
            model_uri = args.model
            tracking_uri = args.tracking_uri or default_tracking_uri()
        else:
            print("training a tiny run for its model ...", file=sys.stderr, flush=True)
            tracking_uri, model_uri = train_tiny_model(scratch)
        mlflow.set_tracking_uri(tracking_uri)
        model = mlflow.pyfunc.load_model(model_uri)
        print(f"serving {model_uri} from {tracking_uri} ...", file=sys.stderr, flush=True)
        with model_server(model_uri, tracking_uri, scratch / "serve.log") as (host, port):
            client = Client(host, port)
            client.reconnect()
            # The server must answer as the model does here, or its timings would mean nothing.
            for images in batches.values():
                served, _ = client.predict(images)
                if served.tolist() != model.predict(images)["digit"].tolist():
                    raise RuntimeError("the server's digits differ from the model's in this process")
            results = measure(model, client, batches, args.reps, args.requests)
            client.reconnect()
            sizes = {
                size: (len(encode(images)), len(client.send("POST", "/invocations", encode(images))))
                for size, images in batches.items()
            }
    report(model_uri, results, sizes, args.reps, args.requests)


def measure(
    model: mlflow.pyfunc.PyFuncModel,
    client: Client,
    batches: dict[int, np.ndarray],
    reps: int,
    requests: int,
) -> dict[int, dict[str, Any]]:
    """Every arm for every batch size, `requests` rounds per repetition, the arms alternating call by call.

    Round-robin (in-process, HTTP, ping, breakdown, in-process, ...) rather than blocks: the machine's load
    changes from one second to the next, and neighbouring calls see the same load, so per-repetition ratios stay
    meaningful even for the 1-image calls of a few milliseconds.
    """
    results: dict[int, dict[str, Any]] = {
        size: {"local": [], "http": [], "ping": [], "stages": [], "ratios": []} for size in batches
    }
    # Untimed rounds of every arm first: TensorFlow's kernels, Python's caches and the server's worker thread warm
    # up on whichever arm happens to run first otherwise.
    for _ in range(3):
        for images in batches.values():
            model.predict(images)
            client.reconnect()
            client.predict(images)
            breakdown(model, images, 1)
    for rep in range(reps):
        for size, images in batches.items():
            found = results[size]
            # A fresh connection for each batch size: uvicorn closes a connection after 5 s idle.
            client.reconnect()
            client.send("GET", "/ping")
            local, remote = [], []
            for _ in range(requests):
                local.append(seconds_of(lambda images=images: model.predict(images)))
                remote.append(seconds_of(lambda images=images: client.predict(images)))
                found["ping"].append(seconds_of(lambda: client.send("GET", "/ping")))
                found["stages"].extend(breakdown(model, images, 1))
            found["local"].extend(local)
            found["http"].extend(remote)
            found["ratios"].append(median(remote) / median(local))
            print(
                f"rep {rep + 1}/{reps}, {size} images: in-process {median(local) * 1e3:.2f} ms, "
                f"HTTP {median(remote) * 1e3:.2f} ms",
                file=sys.stderr,
                flush=True,
            )
    return results


def exclusive_stages(found: dict[str, Any]) -> dict[str, float]:
    """Median seconds per request of each stage in STAGES, exclusive, adding up to the HTTP arm's p50.

    Each breakdown request's nested timings are made exclusive first, then each stage's median is taken; what
    the HTTP p50 has beyond the sum of those medians is the transport (HTTP, uvicorn, FastAPI, thread hop).
    """
    per_request: dict[str, list[float]] = {key: [] for _, key in STAGES if key != "transport"}
    for timing in found["stages"]:
        network, classifier, pyfunc = timing["network"], timing["classifier"], timing["pyfunc"]
        loads, lists, answer = timing["loads"], timing["lists"], timing["answer"]
        exclusive = {
            "encode": timing["encode"],
            "loads": loads,
            "lists": lists,
            "schema": pyfunc - classifier,
            "wrapper": classifier - network,
            "network": network,
            "answer": answer,
            "handler": timing["invocations"] - loads - lists - pyfunc - answer,
            "decode": timing["decode"],
        }
        for key, seconds in exclusive.items():
            per_request[key].append(seconds)
    stages = {key: median(values) for key, values in per_request.items()}
    stages["transport"] = median(found["http"]) - sum(stages.values())
    return stages


def report(
    model_uri: str, results: dict[int, dict[str, Any]], sizes: dict[int, tuple[int, int]], reps: int, requests: int
) -> None:
    """Print the latency table, the breakdown table and the last line."""
    rows = []
    for size, found in results.items():
        for label, key in (("in-process predict", "local"), ("HTTP /invocations", "http")):
            seconds = found[key]
            rows.append(
                [
                    str(size),
                    label,
                    f"{percentile(seconds, 50) * 1e3:.2f}",
                    f"{percentile(seconds, 99) * 1e3:.2f}",
                    f"{size * len(seconds) / sum(seconds):,.0f}",
                    f"{median(found['ratios']):.1f}" if key == "http" else "",
                ]
            )
    print(
        f"\n{model_uri} served by `mlflow models serve --env-manager local` (uvicorn, 1 worker) on 127.0.0.1; "
        f"{reps} repetitions x {requests} rounds per batch size, the arms alternating call by call; latency over "
        "all requests; the ratio is the median of per-repetition ratios of p50s"
    )
    print_table(
        ["images/request", "path", "p50 ms", "p99 ms", "images/s", "server / in-process (p50)"],
        rows,
    )

    stages = {size: exclusive_stages(found) for size, found in results.items()}
    http_p50 = {size: median(found["http"]) for size, found in results.items()}
    rows = []
    for label, key in STAGES:
        row = [label]
        for size in results:
            row.append(f"{stages[size][key] * 1e3:.2f} ({stages[size][key] / http_p50[size]:.0%})")
        rows.append(row)
    rows.append(
        ["= HTTP request (p50)", *(f"{http_p50[size] * 1e3:.2f}" for size in results)],
    )
    rows.append(
        [
            "in-process predict (p50), for comparison",
            *(f"{median(found['local']) * 1e3:.2f}" for found in results.values()),
        ]
    )
    rows.append(
        ["GET /ping round trip (p50)", *(f"{median(found['ping']) * 1e3:.2f}" for found in results.values())]
    )
    rows.append(
        ["request / answer bytes", *(f"{sizes[size][0]:,} / {sizes[size][1]:,}" for size in results)],
    )
    print(
        "\nwhere an HTTP request's time goes (medians in ms per request, exclusive stages, share of the HTTP p50):"
    )
    print_table(["stage", *(f"{size} image{'s' if size > 1 else ''}" for size in results)], rows)
    ratios = " ".join(f"ratio_{size}={median(found['ratios']):.2f}" for size, found in results.items())
    print(ratios)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
