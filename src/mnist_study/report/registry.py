"""The report's verdict turned into models: seed-0 refits registered, the `baseline` and `champion` aliases set.

Every refit logged its model (see `serving.model`). The seed-0 refit of the baseline and of each variant becomes a
version of the registered model named after the MLflow experiment, tagged with what the report found. The
`champion` alias goes to the variant ranked highest by validation (the study's objective, or its mean over more
seeds when the report re-scores: see `rescore`) among those the report finds better than the baseline at 95 %
(Holm's procedure with interim looks: `sequential`); if none is, to the baseline. The test set only decides
whether a variant is better, never which; the seed replica (fit on test) is never registered. Running the report
again registers its own refits and moves the aliases by the same rule; a refit it reused keeps the version an
earlier report on the study made for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mnist_study.paths import config_groups
from mnist_study.provenance import in_key
from mnist_study.report.refit import merge_overrides, override_key
from mnist_study.report.results import Row, p_text, pct
from mnist_study.serving import BASELINE_ALIAS, CHAMPION_ALIAS, MODEL_ID_TAG
from mnist_study.whole_files import write_whole

# The refit whose model is registered: every configuration's seed 0, like the study's own trials.
REGISTERED_SEED = 0


@dataclass(frozen=True)
class Registered:
    """One registered version: which configuration, which version, which aliases point at it."""

    row: Row
    version: str
    aliases: tuple[str, ...]


def champion(table: Sequence[Row]) -> Row:
    """The highest-ranked variant better than the baseline (the table lists variants in the report's validation
    ranking), or the baseline itself."""
    better = [row for row in table if row.candidate.role == "variant" and row.better_than_baseline]
    return better[0] if better else next(row for row in table if row.candidate.role == "baseline")


def promote(
    client: MlflowClient, name: str, table: Sequence[Row], study: str, report_run_id: str
) -> list[Registered]:
    """Register the baseline's and every variant's seed-0 refit as versions of `name`; then set both aliases.

    All or nothing from a user's side: every version exists before an alias moves, and `baseline` moves before
    `champion`, so a report killed in between leaves the aliases on the previous report's versions (or
    `baseline` alone moved), never `champion` without `baseline`, never on a run that is not FINISHED. The next
    report finds the versions it already made (`version_of`) and completes the move.
    """
    ensure_registered_model(client, name, study)
    winner = champion(table)
    versions = [
        (row, version_of(client, name, row, study, report_run_id))
        for row in table
        if row.candidate.role in ("baseline", "variant")
    ]
    registered = [Registered(row, version, aliases_of(row, winner)) for row, version in versions]
    move_aliases(client, name, registered)
    return registered


def aliases_of(row: Row, winner: Row) -> tuple[str, ...]:
    """The aliases the row's version gets: `baseline` for the baseline, `champion` for the winner (maybe both)."""
    chosen = ((BASELINE_ALIAS, row.candidate.role == "baseline"), (CHAMPION_ALIAS, row is winner))
    return tuple(alias for alias, wanted in chosen if wanted)


def version_of(client: MlflowClient, name: str, row: Row, study: str, report_run_id: str) -> str:
    """The version holding the row's seed-0 refit: the one an earlier report on this study made for the same run
    and trial (its tags brought up to date), or a new one."""
    refit = next(result for result in row.refits if result.refit.seed == REGISTERED_SEED)
    tags = version_tags(row, study, report_run_id)
    for existing in client.search_model_versions(f"name='{name}' and run_id='{refit.run_id}'"):
        if (existing.tags.get("study"), existing.tags.get("trial")) == (tags["study"], tags["trial"]):
            for key, value in tags.items():
                client.set_model_version_tag(name, existing.version, key, value)
            return str(existing.version)
    model_id = client.get_run(refit.run_id).data.tags.get(MODEL_ID_TAG)
    if model_id is None:
        raise ValueError(
            f"refit run {refit.run_id} logged no model (tracking.log_model=false?): nothing to register"
        )
    version = client.create_model_version(
        name,
        # The logged model's own location: a `models:/` source would be resolved against MLflow's global tracking
        # URI, not this client's store.
        source=client.get_logged_model(model_id).artifact_location,
        run_id=refit.run_id,
        tags=tags,
        model_id=model_id,
    ).version
    return str(version)


def move_aliases(client: MlflowClient, name: str, registered: Sequence[Registered]) -> None:
    """Point `baseline`, then `champion`, at their versions (the order keeps `champion` from standing alone)."""
    for alias in (BASELINE_ALIAS, CHAMPION_ALIAS):
        for entry in registered:
            if alias in entry.aliases:
                client.set_registered_model_alias(name, alias, entry.version)


def ensure_registered_model(client: MlflowClient, name: str, study: str) -> None:
    """Create the registered model unless it exists (another report may have created it a moment ago)."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description=f"The MNIST network of study `{study}`: raw 0-255 pixels in, digit out."
            )
        except MlflowException:
            client.get_registered_model(name)


def version_tags(row: Row, study: str, report_run_id: str) -> dict[str, str]:
    """What the report found for this configuration, on its model version."""
    trial = row.candidate.trial
    accuracy = row.accuracy
    return {
        "study": study,
        "trial": str(trial.number) if trial is not None else "",
        "overrides": " ".join(row.candidate.overrides),
        "test_accuracy": f"{pct(accuracy.mean)} ± {pct(accuracy.std)} over {accuracy.n} seeds",
        "ci95": f"[{pct(accuracy.ci_low)}, {pct(accuracy.ci_high)}]",
        "p_welch": p_text(row.comparison.p_value) if row.comparison else "",
        "verdict": row.verdict,
        "report_run_id": report_run_id,
    }


def carried(forwarded: Sequence[str]) -> tuple[str, ...]:
    """The report's forwarded overrides that the champion's experiment file carries: those that may change what a
    run computes (their keys are in a run's key, `provenance.in_key`: `train.precision`, `data.train_subset`, ...,
    not `train.verbose` or `tracking.*`). Every refit trained with them, so retraining the champion needs them too.
    A removal (`~key`) has no value to write and is left out."""
    return tuple(item for item in forwarded if not item.startswith("~") and in_key(override_key(item)))


def write_champion_experiment(
    folder: Path, study: str, winner: Row, report_command: str, forwarded: Sequence[str] = ()
) -> Path:
    """`<folder>/<study>_champion.yaml`: the champion's configuration as an experiment, headed by its command,
    with the report's forwarded overrides that change the numbers (`carried`) winning over the trial's own, as
    they did in every refit, so that `python src/run.py <study>_champion` trains what the report measured."""
    name = f"{study}_champion"
    extra = carried(forwarded)
    overrides = merge_overrides(winner.candidate.overrides, extra)
    # An override of a config group (`optimizer=adam`) chooses an option in the defaults; any other sets a key.
    chosen = config_groups()
    groups = [item for item in overrides if item.split("=", 1)[0] in chosen]
    keys = [item.lstrip("+") for item in overrides if item not in groups]
    body = OmegaConf.to_yaml(OmegaConf.from_dotlist(keys)) if keys else ""
    defaults = "".join(f"  - override /{item.replace('=', ': ', 1)}\n" for item in groups)
    trial = winner.candidate.trial
    source = f"trial {trial.number} of study {study}" if trial is not None else f"the baseline of study {study}"
    accuracy = f"{pct(winner.accuracy.mean)} ± {pct(winner.accuracy.std)} over {winner.accuracy.n} seeds"
    with_report = f"# With the report's own {' '.join(extra)}, as every refit trained.\n" if extra else ""
    text = (
        "# @package _global_\n"
        f"# python src/run.py {name}\n"
        f"# The champion of `{report_command}` ({dt.date.today().isoformat()}): {source}, {winner.verdict}\n"
        f"# (test accuracy {accuracy}).\n"
        + with_report
        + (f"defaults:\n{defaults}" if defaults else "")
        + f"name: {name}\n"
        + body
    )
    path = folder / f"{name}.yaml"
    write_whole({path: text})
    return path
