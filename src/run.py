"""Entry point: `python src/run.py [experiment] [hydra overrides...]`.

A bare word (`baseline`, `seed_replica`, `sweep`) names a file in `experiments/` and becomes the Hydra override
`+experiments=<word>` before Hydra parses the command line (the repository root is on Hydra's search path, so
`experiments/` is a config group); everything else is plain Hydra.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_study.checks import ConfigError, validate

# Importing paths registers the ${project_root:} resolver that the configs use.
from mnist_study.paths import EXPERIMENTS_DIR as EXPERIMENTS
from mnist_study.paths import group_options

# Exit status of a process ended by Ctrl-C, as shells report it (128 + SIGINT).
INTERRUPTED = 130
# Hydra flags whose next argument is a value, not an override or an experiment name.
FLAGS_WITH_VALUE = {
    "-cn",
    "--config-name",
    "-cp",
    "--config-path",
    "-cd",
    "--config-dir",
    "-p",
    "--package",
    "-c",
    "--cfg",
    "-i",
    "--info",
    "--experimental-rerun",
}


def expand_experiment_words(argv: list[str]) -> list[str]:
    """Turn bare experiment names into `+experiments=<name>`; reject bare words that name no experiment.

    `+experiment=<name>`, the group's name before it moved out of conf/, is read as `+experiments=<name>`.
    """
    expanded: list[str] = []
    takes_value = False
    for arg in argv:
        if arg.startswith("+experiment="):
            expanded.append(arg.replace("+experiment=", "+experiments=", 1))
        elif takes_value or arg.startswith(("-", "~")) or "=" in arg or "(" in arg:
            expanded.append(arg)
        elif (EXPERIMENTS / f"{arg}.yaml").is_file():
            expanded.append(f"+experiments={arg}")
        else:
            known = ", ".join(sorted(path.stem for path in EXPERIMENTS.glob("*.yaml")))
            sys.exit(f"error: {arg!r} is neither an override (key=value) nor an experiment; known: {known}")
        takes_value = arg in FLAGS_WITH_VALUE
    return expanded


def check_group_options(argv: list[str]) -> None:
    """Reject `group=option` when conf/<group>/ has no such option, in one line (Hydra's own message is five)."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+")
        # Sweeps (`choice(...)`, `a,b`) are checked by the sweeper, which names the option at fault.
        if not sep or "/" in group or "(" in value or "," in value or value == "null":
            continue
        options = group_options(group)
        if options is not None and value not in options:
            sys.exit(f"error: {arg}: {group}={value!r} is not an option; one of {', '.join(options)}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Validate, run one job and return its objective (what a sweeper optimizes)."""
    try:
        validate(cfg)
    except ConfigError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Inside a sweep, a job with a bad value is a failed trial, not the end of the study.
        sys.exit(f"error: {error}")
    # Imported here, so that a bad command line fails before TensorFlow loads; quietly, before anything else
    # can import keras, so that users see our output rather than TensorFlow's start-up noise.
    import mnist_study.quiet_tensorflow  # noqa: F401
    from mnist_study.job import run

    return run(cfg, HydraConfig.get().overrides.task)


if __name__ == "__main__":
    sys.argv[1:] = expand_experiment_words(sys.argv[1:])
    check_group_options(sys.argv[1:])
    try:
        main()
    except KeyboardInterrupt:
        # The sweeper and the job have already closed their trial and runs; a traceback would say nothing more.
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
