"""A second reference beside the baseline: an experiment file, refitted with the same seeds, tested the same way.

`python src/report.py study_name=frontier reference=mnist-mlp_champion` also refits
experiments/mnist-mlp_champion.yaml (the champion the default study's report wrote) and compares every variant
with it, so the report can say whether this study's champion beats another study's. The reference is an experiment
of the repository's `experiments/`, the one `python src/run.py <name>` would train, wherever `experiments_dir`
points (that is where this report writes its own champion).

Its refits are planned like every configuration's (`refit.plan`): the report's forwarded `data.*`, `train.*` and
`tracking.*` overrides win over the file's own values, so under `train.precision=bfloat16` the reference trains in
bfloat16 like the study's own configurations, and a refit that FINISHED before is reused. Which hypotheses the
reference adds, and how the family-wise error rate stays at 5 %: `sequential`. This module imports neither
TensorFlow nor MLflow's tracking, so bad input costs a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from mnist_study.checks import ConfigError
from mnist_study.paths import EXPERIMENTS_DIR
from mnist_study.report import refit
from mnist_study.report.selection import Candidate, ReportError

# The role of the reference's row among the configurations (beside `replica`, `baseline` and `variant`).
ROLE = "reference"


def candidate(name: object) -> Candidate | None:
    """The configuration `reference=<name>` names (None when it names none), checked before any store is opened:
    a ReportError naming the fix when experiments/ has no such file, or when the file is a study, not one
    configuration."""
    if name is None:
        return None
    name = str(name)
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not name or "/" in name or not path.is_file():
        known = ", ".join(sorted(item.stem for item in EXPERIMENTS_DIR.glob("*.yaml")))
        raise ReportError(
            f"reference={name}: experiments/ has no {name}.yaml; name one of its configurations (a report writes "
            f"<study>_champion.yaml there, e.g. reference=mnist-mlp_champion): {known}"
        )
    try:
        settings = OmegaConf.load(path)
    except (OSError, YAMLError, OmegaConfBaseException) as error:
        raise ReportError(
            f"reference={name}: experiments/{name}.yaml does not load: {first_line(error)}"
        ) from error
    if (
        OmegaConf.select(settings, "hydra.sweeper") is not None
        or OmegaConf.select(settings, "hydra.mode") == "MULTIRUN"
    ):
        study = OmegaConf.select(settings, "hydra.sweeper.study_name", default="<study>")
        raise ReportError(
            f"reference={name}: experiments/{name}.yaml is a study (it sets up the sweeper), not one "
            f"configuration; name the champion its report wrote instead: reference={study}_champion"
        )
    return Candidate(f"{name} (reference)", ROLE, (f"+experiments={name}",))


def plan(reference: Candidate, seeds: Sequence[int], forwarded: Sequence[str]) -> list[refit.Refit]:
    """The reference's refits, composed and checked like every configuration's; a file that does not compose,
    fails a check or fits on the test set is a ReportError that names it."""
    name = name_of(reference)
    try:
        plans = refit.plan([reference], seeds, forwarded)
    except (HydraException, OmegaConfBaseException, ConfigError) as error:
        raise ReportError(f"reference={name}: {first_line(error)}") from error
    fit_on = plans[0].cfg.data.fit_on if plans else "train"
    if fit_on != "train":
        raise ReportError(
            f"reference={name}: it fits on the {fit_on} set (data.fit_on={fit_on}), so its test accuracy is not "
            "an honest estimate to compare with; name a configuration that fits on the training images"
        )
    return plans


def beside_baseline(candidates: Sequence[Candidate], reference: Candidate | None) -> list[Candidate]:
    """The configurations with the reference right after the baseline (the results table's order)."""
    ordered: list[Candidate] = []
    for item in candidates:
        ordered.append(item)
        if item.role == "baseline" and reference is not None:
            ordered.append(reference)
    return ordered


def name_of(reference: Candidate) -> str:
    """`mnist-mlp_champion` for the reference `reference=mnist-mlp_champion` made."""
    return reference.overrides[0].split("=", 1)[1]


def first_line(error: BaseException) -> str:
    """An exception's message as one line (Hydra's and OmegaConf's run over several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
