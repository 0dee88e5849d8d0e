"""How fast is a trial? The tutorial's code, the project's training path and the machine's peak, side by side.

    .venv/bin/python benchmarks/trial_speed.py [--reps 5] [--variant NAME=OVERRIDE[,OVERRIDE...]] ...

Measured in one process, repetitions alternating (a, b, variants..., c, a, b, ...), medians reported: the
machine is shared and noisy, so only ratios measured side by side mean anything.

(a) the seed document's code as it is written: float64 images / 255, `to_categorical` one-hot labels,
    `categorical_crossentropy`, rmsprop, `fit(epochs=5, batch_size=128)` with Keras's defaults (progress output
    off). The tutorial fits on its test images; here (a) and (b) both fit the same 60 000 training images, so
    they do the same work.
(b) the project's training path: `mnist_study.train.train` with the baseline config from conf/, overridden only
    to fit all 60 000 images without a validation split (`data.val_size=0`), the same work as (a), and in float32
    (`train.precision=float32`), the tutorial's arithmetic. Variants are variants of (b), in float32 unless they
    set `train.precision` themselves.
(b16) (b) in bfloat16 arithmetic (`train.precision=bfloat16`, the project's default), the same config otherwise.
(c) the machine's peak: a 4096 x 4096 float32 `tf.matmul` through TensorFlow; (c16) the same in bfloat16, the
    peak (b16) is measured against.

GFLOP per run = 3 x 2 x (the model's weights) x images x epochs (forward + backward, the usual convention).
The overhead sweep is the default study's first few trials, run three times: as it is, without per-run figures,
and with every trial cut to two epochs (the worst case: the same fixed costs around seconds of training).

Last line: `speedup=<a/b> peak=<GFLOP/s of b / GFLOP/s of c> overhead=<share of the default sweep's wall time
spent outside fit/evaluate> bf16_speedup=<b/b16> bf16_peak=<GFLOP/s of b16 / GFLOP/s of c16>`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
import warnings

import common  # noqa: F401  (first: puts src/ on the path and imports TensorFlow quietly)

# isort: split
import tensorflow as tf
from common import (
    ROOT,
    FitClock,
    Stopwatches,
    clear_data_caches,
    compose_configs,
    create_stores,
    median,
    print_table,
    run_cli_in_process,
)
from tensorflow.python.framework import config as tf_config

from mnist_study.data import load_mnist
from mnist_study.model import build_model
from mnist_study.train import train

EPOCHS = 5
BATCH_SIZE = 128
MATMUL_N = 4096
# The project's path on the same 60 000 images as the tutorial's code: no validation split, quiet.
SAME_WORK = ("data.val_size=0", "train.verbose=0")
# (b) and its variants in float32, the tutorial's arithmetic; (b16): the baseline in bfloat16 (the project's
# default), always measured beside (b).
FLOAT32 = ("train.precision=float32",)
BFLOAT16 = ("train.precision=bfloat16",)
# The overhead sweep is the project's default study (experiments/sweep.yaml, its space and pruner unchanged),
# cut to its first few trials: trial 0 is the baseline and the next ones are the sampler's first draws.
DEFAULT_SWEEP_TRIALS = 4
# The worst case beside it: the same sweep with every trial cut to two epochs of at most 1 024 units (seconds of
# training each), where the fixed costs of a sweep and of a trial weigh most.
SHORT_TRIALS = ("train.epochs=2", "model.units=tag(log, int(interval(32, 1024)))")
# Variants of (b) measured when none is asked for: what the project's loop bought over Keras's `fit` (same config
# otherwise), and the project's loop without XLA.
DEFAULT_VARIANTS = ("keras=train.loop=keras", "noxla=train.jit_compile=false")
# Where a sweep's time goes, nested from the outside in (each row includes the rows below it that it calls).
SWEEP_BREAKDOWN = (
    (
        "sweeper: check config, storage, space",
        "hydra_plugins.mnist_study_sweeper.mnist_study_sweeper:MnistStudySweeper",
        "_preflight",
    ),
    ("sweeper: open study + MLflow parent run", "mnist_study.sweep.parent_run:ParentRun", "open"),
    ("sweeper: study summary + plots to MLflow", "mnist_study.sweep.parent_run:ParentRun", "log_summary"),
    ("sweeper: one trial (ask..tell)", "mnist_study.sweep.sweeper:_Loop", "_run_trial"),
    ("optuna: study.ask", "optuna.study:Study", "ask"),
    ("optuna: study.tell", "optuna.study:Study", "tell"),
    ("hydra: launcher (compose + job)", "hydra._internal.core_plugins.basic_launcher:BasicLauncher", "launch"),
    ("hydra: run_job", "hydra._internal.core_plugins.basic_launcher", "run_job"),
    ("job: MLflow run + train", "mnist_study.job", "run"),
    ("job: connect to the Optuna trial", "mnist_study.job", "trial_callbacks"),
    ("job: plots to MLflow", "mnist_study.tracked_training", "log_plots"),
    ("job: model to MLflow", "mnist_study.tracked_training", "log_served_model"),
    ("train: data + model + fit + evaluate", "mnist_study.tracked_training", "train"),
    ("data: make_split", "mnist_study.data", "make_split"),
)


def tutorial_fit(epochs: int = EPOCHS) -> dict[str, float]:
    """The seed document's code, line for line, on the 60 000 training images; returns its timings in seconds."""
    from keras import layers, models
    from keras.utils import to_categorical

    # The tutorial never enables op determinism; the flag is process-wide, so switch off what (b) switched on.
    tf_config.disable_op_determinism()
    (train_images, train_labels), (test_images, test_labels) = load_mnist()  # Memoised: the same arrays as (b).
    started = time.perf_counter()

    network = models.Sequential()
    with warnings.catch_warnings():
        # Keras 3 warns that `input_shape` belongs on an Input layer; the tutorial passes it to Dense.
        warnings.simplefilter("ignore", UserWarning)
        network.add(layers.Dense(512, activation="relu", input_shape=(28 * 28,)))
    network.add(layers.Dense(10, activation="softmax"))
    network.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])

    train_images = train_images.reshape((60000, 28 * 28))
    train_images = train_images.astype("float") / 255
    test_images = test_images.reshape((10000, 28 * 28))
    test_images = test_images.astype("float32") / 255
    train_labels = to_categorical(train_labels)
    test_labels = to_categorical(test_labels)

    prepared = time.perf_counter()
    network.fit(train_images, train_labels, epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    fitted = time.perf_counter()
    network.evaluate(test_images, test_labels, verbose=0)
    finished = time.perf_counter()
    return {"prepare": prepared - started, "fit": fitted - prepared, "evaluate": finished - fitted}


def project_fit(cfg: object) -> dict[str, float]:
    """The project's training path for one composed config; returns its timings in seconds."""
    result = train(cfg)
    return {
        "prepare": result["prepare_seconds"],
        "fit": result["fit_seconds"],
        "evaluate": result["evaluate_seconds"],
    }


def matmul_gflops(n: int = MATMUL_N, repeats: int = 3, dtype: tf.DType = tf.float32) -> float:
    """Median GFLOP/s of `repeats` n x n x n matmuls in `dtype` (2 n^3 floating-point operations each)."""
    a = tf.cast(tf.random.stateless_uniform((n, n), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_uniform((n, n), seed=(3, 4)), dtype)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    product(a, b).numpy()  # Trace and warm up once; only the steady state is timed.
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        product(a, b).numpy()
        rates.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
    return median(rates)


def tensorflow_import_seconds() -> float:
    """Seconds a fresh process spends importing TensorFlow and Keras (paid once per sweep process)."""
    code = (
        "import time; t = time.perf_counter(); import mnist_study.quiet_tensorflow; print(time.perf_counter() - t)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(output.stdout.strip().splitlines()[-1])


def sweep_overhead(trials: int, extra: list[str]) -> dict[str, float]:
    """Run a small study in this process (`src/run.py -m sweep ...`); time it and the time inside fit/evaluate.

    The data caches are cleared first, so the sweep pays MNIST loading and preparation like a fresh one would;
    TensorFlow's import is not part of it (measured separately). MLflow and Optuna write to a throwaway
    directory, never to the project's mlflow.db or optuna.db.
    """
    clear_data_caches()
    with tempfile.TemporaryDirectory(prefix="trial_speed_") as scratch:
        # Create both stores' schemas first: that happens once in a project's life (MLflow's migrations take
        # seconds), not once per sweep, so it does not belong to a sweep's overhead.
        create_stores(f"sqlite:///{scratch}/mlflow.db", f"sqlite:///{scratch}/optuna.db")
        arguments = [
            "sweep",
            f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.study_name=trial-speed-{uuid.uuid4().hex[:8]}",
            f"hydra.sweeper.storage=sqlite:///{scratch}/optuna.db",
            f"tracking.uri=sqlite:///{scratch}/mlflow.db",
            f"tracking.artifact_location={scratch}/mlruns",
            f"hydra.sweep.dir={scratch}/multirun",
            *extra,
        ]
        clock = FitClock()
        watches = Stopwatches(SWEEP_BREAKDOWN)
        with clock.installed(), watches.installed():
            wall = run_cli_in_process(arguments)
    breakdown = {label: (watches.seconds[label], watches.calls[label]) for label in watches.seconds}
    breakdown["keras: fit + evaluate"] = (clock.seconds, clock.calls)
    return {"wall": wall, "inside": clock.seconds, "calls": clock.calls, "breakdown": breakdown}


def parse_variants(items: list[str]) -> dict[str, list[str]]:
    """`NAME=override,override` -> {NAME: [overrides]} (overrides are applied on top of (b)'s)."""
    variants: dict[str, list[str]] = {}
    for item in items:
        name, _, overrides = item.partition("=")
        if not name or not overrides:
            raise ValueError(f"--variant {item!r}: expected NAME=OVERRIDE[,OVERRIDE...]")
        variants[name] = overrides.split(",")
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="alternating repetitions of every path (default 5)")
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="NAME=OVERRIDES",
        help=f"a variant of (b), e.g. nodet=train.deterministic=false (repeatable; default: {DEFAULT_VARIANTS})",
    )
    parser.add_argument(
        "--sweep-trials", type=int, default=DEFAULT_SWEEP_TRIALS, help="trials in the overhead sweep (0 skips it)"
    )
    parser.add_argument("--sweep-arg", action="append", default=[], help="an extra override for the sweep")
    parser.add_argument("--threads", default=None, help="INTRA,INTER: size TensorFlow's pools for this process")
    args = parser.parse_args()
    if args.reps < 1:
        raise ValueError("--reps must be at least 1")
    if args.threads:
        intra, inter = (int(value) for value in args.threads.split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)

    overrides = {"b": [*SAME_WORK, *FLOAT32], "b16": [*SAME_WORK, *BFLOAT16]}
    variants = parse_variants(DEFAULT_VARIANTS if args.variant is None else args.variant)
    for name, extra in variants.items():
        own_precision = any(override.startswith("train.precision=") for override in extra)
        overrides[name] = [*SAME_WORK, *(() if own_precision else FLOAT32), *extra]
    configs = compose_configs(overrides)
    weights = build_model(configs["b"].model.units).count_params()
    images = 60000
    gflop = 3 * 2 * weights * images * EPOCHS / 1e9

    # One untimed run of each path first: TensorFlow's one-off start-up costs (thread pools, oneDNN kernels,
    # the MNIST cache) should not land on whichever path happens to run first.
    tutorial_fit(epochs=1)
    for cfg in configs.values():
        project_fit(cfg)
    matmul_gflops(repeats=1)
    matmul_gflops(repeats=1, dtype=tf.bfloat16)

    timings: dict[str, list[dict[str, float]]] = {"a": [], **{name: [] for name in configs}}
    peaks: list[float] = []
    bf16_peaks: list[float] = []
    for rep in range(args.reps):
        timings["a"].append(tutorial_fit())
        for name, cfg in configs.items():
            timings[name].append(project_fit(cfg))
        peaks.append(matmul_gflops())
        bf16_peaks.append(matmul_gflops(dtype=tf.bfloat16))
        line = " ".join(f"{name}={runs[-1]['fit']:.2f}s" for name, runs in timings.items())
        print(
            f"rep {rep + 1}/{args.reps}: {line} c={peaks[-1]:.0f}GFLOP/s c16={bf16_peaks[-1]:.0f}GFLOP/s",
            file=sys.stderr,
            flush=True,
        )

    # Ratios are taken within each repetition (the runs next to each other in time saw the same load), then
    # the median over repetitions: steadier than a ratio of medians when the load drifts.
    peak, bf16_peak = median(peaks), median(bf16_peaks)
    fits = {name: [run["fit"] for run in runs] for name, runs in timings.items()}
    labels = {"a": "a (tutorial code)", "b": "b (project, baseline)", "b16": "b16 (baseline in bfloat16)"}
    rows = []
    for name, runs in timings.items():
        fit = median(fits[name])
        label = labels.get(name, f"b + {name}")
        # Each fit against the matmul rate of its own arithmetic.
        own_peaks = bf16_peaks if configs.get(name, configs["b"]).train.precision == "bfloat16" else peaks
        of_peak = median([gflop / run / rep_peak for run, rep_peak in zip(fits[name], own_peaks, strict=True)])
        speedup = median([a / run for a, run in zip(fits["a"], fits[name], strict=True)])
        rows.append(
            [
                label,
                f"{fit:.2f}",
                f"{median([sum(run.values()) for run in runs]):.2f}",
                f"{images * EPOCHS / fit:,.0f}",
                f"{gflop / fit:.0f}",
                f"{of_peak:.2f}",
                f"{speedup:.2f}",
            ]
        )
    rows.append(["c (4096^3 matmul)", "", "", "", f"{peak:.0f}", "1.00", ""])
    rows.append(["c16 (4096^3 bfloat16 matmul)", "", "", "", f"{bf16_peak:.0f}", "1.00", ""])
    print(
        f"\n{args.reps} alternating repetitions, medians; {EPOCHS} epochs x {images} images, batch {BATCH_SIZE}, "
        f"{weights:,} weights, {gflop:.0f} GFLOP per fit; 'of peak' (against c, or c16 for bfloat16 fits) and "
        "'speedup' are medians of per-repetition ratios"
    )
    print_table(["path", "fit s", "trial s", "images/s", "GFLOP/s", "of peak", "speedup vs a"], rows)

    overhead = float("nan")
    if args.sweep_trials > 0:
        sweep = sweep_overhead(args.sweep_trials, args.sweep_arg)
        overhead = 1 - sweep["inside"] / sweep["wall"]
        print(f"\nwhere the sweep's {sweep['wall']:.1f}s went (nested; a row includes the rows it calls):")
        print_table(
            ["inside", "calls", "seconds", "of wall"],
            [
                [label, str(calls), f"{seconds:.2f}", f"{seconds / sweep['wall']:.3f}"]
                for label, (seconds, calls) in sweep["breakdown"].items()
            ],
        )
        # The same sweep without per-run figures, the one per-trial cost a user can switch off: its overhead is
        # measured here, not added up from the rows above.
        bare = sweep_overhead(args.sweep_trials, [*args.sweep_arg, "tracking.plots=false"])
        bare_overhead = 1 - bare["inside"] / bare["wall"]
        import_seconds = tensorflow_import_seconds()
        with_import = 1 - sweep["inside"] / (sweep["wall"] + import_seconds)
        short = sweep_overhead(args.sweep_trials, [*args.sweep_arg, *SHORT_TRIALS])
        short_overhead = 1 - short["inside"] / short["wall"]
        command = " ".join(["src/run.py -m sweep", f"hydra.sweeper.n_trials={args.sweep_trials}", *args.sweep_arg])
        print(
            f"\nsweep: `{command}` in this process: "
            f"wall {sweep['wall']:.1f}s, inside fit/evaluate {sweep['inside']:.1f}s ({sweep['calls']:.0f} calls), "
            f"outside {sweep['wall'] - sweep['inside']:.1f}s = {overhead:.3f} of wall time.\n"
            f"The same sweep with tracking.plots=false: wall {bare['wall']:.1f}s, inside {bare['inside']:.1f}s, "
            f"outside {bare['wall'] - bare['inside']:.1f}s = {bare_overhead:.3f} of wall time.\n"
            f"The same sweep with short trials ({' '.join(SHORT_TRIALS)}): wall {short['wall']:.1f}s, "
            f"inside {short['inside']:.1f}s, outside {short['wall'] - short['inside']:.1f}s = "
            f"{short_overhead:.3f} of wall time.\n"
            f"TensorFlow import in a fresh process: {import_seconds:.1f}s (once per sweep process; counted in, "
            f"the overhead of this sweep would be {with_import:.3f})."
        )

    # Under heavy load the 2-thread matmul suffers more than training does (one descheduled thread stalls the
    # whole product), so a median-based peak fraction can even exceed 1. The least-disturbed figures (fastest
    # of each path, highest matmul rate) are printed beside it; the last line stays median-based.
    best_b, best_a, best_peak = min(fits["b"]), min(fits["a"]), max(peaks)
    print(
        f"least disturbed (fastest a, fastest b, highest c): a {best_a:.2f}s, b {best_b:.2f}s, c {best_peak:.0f} "
        f"GFLOP/s -> speedup {best_a / best_b:.2f}, peak {gflop / best_b / best_peak:.2f}"
    )
    speedup = median([a / b for a, b in zip(fits["a"], fits["b"], strict=True)])
    of_peak = median([gflop / b / rep_peak for b, rep_peak in zip(fits["b"], peaks, strict=True)])
    bf16_speedup = median([b / b16 for b, b16 in zip(fits["b"], fits["b16"], strict=True)])
    bf16_of_peak = median([gflop / b16 / rep_peak for b16, rep_peak in zip(fits["b16"], bf16_peaks, strict=True)])
    print(
        f"speedup={speedup:.2f} peak={of_peak:.2f} overhead={overhead:.3f} "
        f"bf16_speedup={bf16_speedup:.2f} bf16_peak={bf16_of_peak:.2f}"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
