"""What the report says: its sections as document blocks, every number with the command that recomputes it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import optuna
from omegaconf import DictConfig

from mnist_study.paths import portable
from mnist_study.report import figures, selection
from mnist_study.report.document import Block, Code, Heading, Image, Paragraph, Table
from mnist_study.report.environment import Fact
from mnist_study.report.refit import RefitResult
from mnist_study.report.registry import REGISTERED_SEED, Registered, champion
from mnist_study.report.rerun import RerunResult, command
from mnist_study.report.rescore import Rescored
from mnist_study.report.results import Row, Versus, p_text, pct, signed_pp
from mnist_study.secrets import redact
from mnist_study.serving import CHAMPION_ALIAS
from mnist_study.sweep.schema import state_counts_text

# How the report names its testing procedure wherever it states a verdict.
PROCEDURE = "Welch's t-test, Holm's procedure with interim looks"

STATISTICS = (
    "Each configuration is refitted on the full training set (no validation hold-out) once per seed and scored "
    "on the 10 000 test images. Mean ± sample standard deviation (ddof = 1); the 95 % confidence interval of "
    "the mean uses Student's t with n - 1 degrees of freedom. The difference from the baseline is tested with "
    "**Welch's t-test** (two-sided, unequal variances, Welch-Satterthwaite degrees of freedom), not a paired "
    "test: every configuration uses the same seeds, but a seed does not make matched pairs across "
    "configurations (a different width draws different initial weights from it; the replica trains on other "
    "images), so pairing by seed would spend degrees of freedom on a correlation that is not there. The "
    "variants form one family, tested by Holm's procedure with interim looks (report/sequential.py): each "
    "variant is compared after the first seeds and again after all of them, spending part of its level at each "
    "look, and a variant whose verdict is settled early is refitted no further; the family-wise error rate stays "
    "at most 5 %. Test errors = round((1 - accuracy) x 10 000). Nothing was selected on the test set: "
    "the variants are the study's top trials by its objective on the validation split."
)


def blocks(
    cfg: DictConfig,
    study: optuna.Study,
    table: Sequence[Row],
    rerun: RerunResult | None,
    facts: Sequence[Fact],
    report_command: str,
    registered: Sequence[Registered] = (),
    rescored: Sequence[Rescored] = (),
    objectives: Sequence[str] = (),
    versus: Sequence[Versus] = (),
) -> list[Block]:
    """Every section of the report, in reading order; `objectives` names the study's objectives when known,
    `versus` holds each variant against the second reference (`reference=<experiment>`) when there is one."""
    return [
        Heading(f"Reproducibility report: study `{cfg.study_name}`", 1),
        Paragraph(headline(table, versus)),
        Paragraph(f"Recompute the whole report: `{report_command}`"),
        *results_section(table),
        *reference_section(table, versus),
        *models_section(cfg, registered),
        *claim_section(table),
        *selection_section(cfg, study, table, objectives),
        *rescoring_section(cfg, rescored),
        *figures_section(study, table),
        *rerun_section(cfg, rerun),
        *environment_section(facts),
        *commands_section(table),
    ]


def headline(table: Sequence[Row], versus: Sequence[Versus] = ()) -> str:
    """The answer in one paragraph: does any variant beat the baseline (and does the champion beat the second
    reference, when there is one)?"""
    baseline = next(row for row in table if row.candidate.role == "baseline")
    variants = [row for row in table if row.candidate.role == "variant"]
    better = [row.candidate.label for row in variants if row.verdict.startswith("better")]
    seeds = baseline.accuracy.n
    text = (
        f"Baseline: {pct(baseline.accuracy.mean)} ± {pct(baseline.accuracy.std)} test accuracy over {seeds} "
        f"seed(s). "
    )
    if not variants:
        return text + "The study has no COMPLETE trial besides the baseline, so no variant was compared."
    if better:
        text += f"Better than the baseline at 95 % ({PROCEDURE}): {', '.join(better)}."
    else:
        text += (
            f"None of the {len(variants)} variant(s) is distinguishable from the baseline at 95 % "
            f"({PROCEDURE}) — or better than it."
        )
    return f"{text} {reference_headline(table, versus)}" if versus else text


def reference_headline(table: Sequence[Row], versus: Sequence[Versus]) -> str:
    """Whether the champion beats the second reference, in one or two sentences."""
    second = next(row for row in table if row.candidate.role == "reference")
    text = (
        f"The second reference, {second.candidate.label}: {pct(second.accuracy.mean)} ± "
        f"{pct(second.accuracy.std)}. "
    )
    winner = champion(table)
    if winner.candidate.role != "variant":
        return text + (
            "No variant beats the baseline, so the champion is the baseline, which is not tested against the "
            "second reference."
        )
    verdict = next(entry for entry in versus if entry.candidate.label == winner.candidate.label)
    difference = f", {signed_pp(verdict.comparison.difference)}" if verdict.comparison else ""
    return text + (
        f"The champion, {winner.candidate.label}, against it: {verdict.verdict}{difference} ({PROCEDURE}, one "
        "family over every variant against both references)."
    )


def results_section(table: Sequence[Row]) -> list[Block]:
    headers = (
        "configuration",
        "overrides",
        "test accuracy (mean ± std)",
        "95 % CI",
        "test errors / 10 000",
        "difference vs baseline [95 % CI]",
        "p (Welch)",
        "seeds compared",
        "verdict",
    )
    rows = []
    for row in table:
        comparison = row.comparison
        difference = (
            f"{signed_pp(comparison.difference)} [{signed_pp(comparison.ci_low)}, {signed_pp(comparison.ci_high)}]"
            if comparison
            else "—"
        )
        seeds = str(row.compared_seeds) if row.compared_seeds else "—"
        rows.append(
            (
                row.candidate.label,
                f"`{' '.join(row.candidate.overrides) or '(none)'}`",
                f"{pct(row.accuracy.mean)} ± {pct(row.accuracy.std)}",
                f"[{pct(row.accuracy.ci_low)}, {pct(row.accuracy.ci_high)}]",
                f"{row.errors.mean:.1f} ± {row.errors.std:.1f}",
                difference,
                p_text(comparison.p_value) if comparison else "—",
                seeds,
                row.verdict,
            )
        )
    per_seed = [
        (
            row.candidate.label,
            str(result.refit.seed),
            f"{result.test_accuracy:.4f}",
            str(round((1 - result.test_accuracy) * 10000)),
            f"`{result.run_id}`" + (" (reused)" if result.reused else ""),
        )
        for row in table
        for result in row.refits
    ]
    return [
        Heading("Results"),
        Table(headers, tuple(rows)),
        Paragraph(STATISTICS),
        Heading("Every refit", 3),
        Paragraph(reuse_text([result for row in table for result in row.refits])),
        Table(("configuration", "seed", "test accuracy", "test errors", "MLflow run"), tuple(per_seed)),
    ]


def reference_section(table: Sequence[Row], versus: Sequence[Versus]) -> list[Block]:
    """Each variant against the second reference, and which family the verdicts belong to (none without one)."""
    if not versus:
        return []
    second = next(row for row in table if row.candidate.role == "reference")
    overrides = " ".join(second.candidate.overrides)
    claims = 2 * len(versus)
    rows = tuple(
        (
            entry.candidate.label,
            f"{signed_pp(entry.comparison.difference)} [{signed_pp(entry.comparison.ci_low)}, "
            f"{signed_pp(entry.comparison.ci_high)}]"
            if entry.comparison
            else "—",
            p_text(entry.comparison.p_value) if entry.comparison else "—",
            str(entry.compared_seeds) if entry.compared_seeds else "—",
            entry.verdict,
        )
        for entry in versus
    )
    return [
        Heading(f"Against the second reference: {second.candidate.label}"),
        Paragraph(
            f"The second reference is an experiment file (`{overrides}`), refitted with the same seeds as every "
            "configuration above and with the report's own `data.*`, `train.*` and `tracking.*` overrides, which "
            "win over the file's values as they win over every trial's: it trains as this study's configurations "
            "do here. Its row above compares it with the baseline, unadjusted. Below, each variant against it. "
            f"These {len(versus)} comparisons and the {len(versus)} against the baseline form one family of "
            f"{claims} hypotheses, tested together by Holm's procedure with interim looks "
            "(report/sequential.py): each starts at 5 % / "
            f"{claims} rather than 5 % / {len(versus)}, and the family-wise error rate over every verdict in this "
            "report, against either reference, stays at most 5 %. That covers the verdict on the champion too, "
            "although the champion is chosen by its verdict against the baseline."
        ),
        Table(
            ("configuration", "difference vs reference [95 % CI]", "p (Welch)", "seeds compared", "verdict"),
            rows,
        ),
    ]


def reuse_text(refits: Sequence[RefitResult]) -> str:
    """How many refits this report trained, and how many it took from FINISHED runs of the same refit."""
    reused = sum(result.reused for result in refits)
    if not reused:
        return f"This report trained all {len(refits)} refits."
    return (
        f"This report reused {reused} of its {len(refits)} refits instead of training them again: FINISHED runs "
        "in the store, of an earlier report or of one that was stopped, had the same resolved config, seed, data "
        "digest and code version (the run tag `run.key`). They are marked (reused) below, and the report's MLflow "
        "run names each with a tag `reused.<run id>`."
    )


def claim_section(table: Sequence[Row]) -> list[Block]:
    replica = next((row for row in table if row.candidate.role == "replica"), None)
    baseline = next(row for row in table if row.candidate.role == "baseline")
    text = (
        "The Keras tutorial reports 97.5 % test accuracy (`test_acc: 0.9751`). Its protocol fits the network on "
        "the test images and then scores it on the same images, so that figure is not a test estimate. "
    )
    if replica is not None:
        text += (
            "Its protocol, replicated here with the baseline's hyperparameters, gives "
            f"{pct(replica.accuracy.mean)} ± {pct(replica.accuracy.std)}; the honest protocol (fit on training "
            f"images, score on the unseen test set) gives {pct(baseline.accuracy.mean)} ± "
            f"{pct(baseline.accuracy.std)}. The dashed line in the "
            "first figure marks 97.5 %."
        )
    return [Heading("The tutorial's 97.5 %"), Paragraph(text)]


def objective_text(values: Sequence[float]) -> str:
    """`0.9812` for one objective; `0.9812, 4.071e+05` for several."""
    return f"{values[0]:.4f}" if len(values) == 1 else ", ".join(f"{value:.4g}" for value in values)


def aims(directions: Sequence[str], names: Sequence[str]) -> str:
    """`maximize val_accuracy and minimize n_params`; without names, `maximize its objective` (or `its first`)."""
    if len(names) != len(directions):
        ordinals = ("first", "second", "third", "fourth")
        names = ["its objective"] if len(directions) == 1 else [f"its {ordinal} objective" for ordinal in ordinals]
    else:
        names = [f"`{name}`" for name in names]
    return " and ".join(f"{direction} {name}" for direction, name in zip(directions, names, strict=False))


def selection_section(
    cfg: DictConfig, study: optuna.Study, table: Sequence[Row], objectives: Sequence[str] = ()
) -> list[Block]:
    trials = study.get_trials(deepcopy=False)
    counted = state_counts_text(trials)
    directions = [direction.name.lower() for direction in study.directions]
    if len(directions) == 1:
        chosen = f"the top {cfg.top_k} other COMPLETE trials by that objective"
    else:
        chosen = (
            f"up to {cfg.top_k} other COMPLETE trials on its Pareto front by those objectives, spread along it"
        )
    rows = tuple(
        (
            row.candidate.label,
            objective_text(row.candidate.trial.values),
            f"`{' '.join(row.candidate.overrides)}`",
        )
        for row in table
        if row.candidate.trial is not None and row.candidate.role != "replica"
    )
    named = f" ({', '.join(objectives)})" if len(objectives) == len(directions) else ""
    pronoun = "them" if len(directions) > 1 else "it"
    storage = shlex.quote(portable(redact(str(cfg.storage))))
    return [
        Heading("Which configurations"),
        Paragraph(
            f"Study `{cfg.study_name}` holds {len(trials)} trials ({counted}); it set out to "
            f"{aims(directions, objectives)}, as each trial's seed-0 run measured {pronoun} at its last epoch. "
            "The baseline is the trial the sweeper enqueued as the configured baseline; the variants are "
            f"{chosen} — never by a test metric."
        ),
        Table(("configuration", f"study objective{'s' if len(directions) > 1 else ''}{named}", "overrides"), rows),
        Paragraph("Recompute the ranking:"),
        Code(f"optuna trials --study-name {shlex.quote(str(cfg.study_name))} --storage {storage}"),
    ]


def rescoring_section(cfg: DictConfig, rescored: Sequence[Rescored]) -> list[Block]:
    """The re-scored trials' validation scores, by which the variants were chosen and ordered."""
    if not rescored:
        return []
    seeds = ", ".join(str(seed) for seed in cfg.rescore.seeds)
    rows = tuple(
        (
            f"trial {entry.trial.number}",
            *(f"{score:.4f}" for score in entry.scores),
            f"**{entry.mean:.4f}**",
        )
        for entry in sorted(rescored, key=lambda entry: -entry.mean)
    )
    return [
        Heading("Re-scoring"),
        Paragraph(
            f"Before choosing, the study's {len(rescored)} best trials were trained again with their own split "
            f"and epochs at seeds {seeds}, scored on the validation split only (the test set was not scored), and "
            f"ranked by their mean over {len(cfg.rescore.seeds) + 1} seeds, the study's own first: the variants "
            f"above are the top {cfg.top_k} of this table, in its order, so one lucky seed does not choose them "
            "or the champion. Each score is the last epoch's validation accuracy."
        ),
        Table(("trial", "the study's own seed", *(f"seed {seed}" for seed in cfg.rescore.seeds), "mean"), rows),
    ]


def figures_section(study: optuna.Study, table: Sequence[Row]) -> list[Block]:
    out: list[Block] = [Heading("Figures")]
    accuracy = [(row.candidate.label, row.accuracies, row.accuracy.ci_low, row.accuracy.ci_high) for row in table]
    out.append(
        Image("accuracy.png", "test accuracy by configuration", figures.accuracy_by_configuration(accuracy))
    )
    curves = {}
    baseline = selection.baseline_trial(study)
    best = selection.top_trials(study, 1)
    for label, trial in (("baseline", baseline), ("best variant", best[0] if best else None)):
        if trial is not None and trial.intermediate_values:
            curves[f"{label} (trial {trial.number})"] = trial.intermediate_values
    drawings = {
        "learning_curves.png": (
            "validation accuracy per epoch: baseline vs best",
            lambda: figures.curves_by_configuration(curves, "val_accuracy"),
        ),
        "optimization_history.png": (
            "the study's optimization history",
            lambda: figures.optimization_history(study),
        ),
        "param_importances.png": ("the study's parameter importances", lambda: figures.param_importances(study)),
    }
    for name, (alt, draw) in drawings.items():
        try:
            out.append(Image(name, alt, draw()))
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            out.append(Paragraph(f"No figure for {alt}: {error}"))
    return out


def rerun_section(cfg: DictConfig, rerun: RerunResult | None) -> list[Block]:
    out: list[Block] = [Heading("Rerun check")]
    if rerun is None:
        out.append(Paragraph("Not run (`rerun_check=false`, or no COMPLETE variant with an MLflow run)."))
        return out
    out.append(
        Paragraph(
            f"The best variant's trial run `{rerun.run_id}` was re-executed from its MLflow record alone (its "
            "logged `config.yaml`, seed included) in a fresh Python process, and every logged metric (loss and "
            f"accuracy per epoch, test loss and accuracy) compared with the rerun's: **{rerun.verdict}**."
            + (
                f" That rerun ran in report run `{rerun.reused_from}`, with the same code and data; this report "
                "reused its outcome."
                if rerun.reused_from
                else ""
            )
        )
    )
    shown = ["python", *command(portable(redact(cfg.tracking.uri)), rerun.run_id)[1:]]
    out.append(Code(shlex.join(shown)))
    return out


def models_section(cfg: DictConfig, registered: Sequence[Registered]) -> list[Block]:
    """Where the registry's aliases point after this report, and how to use them."""
    if not registered:
        return []
    name = cfg.tracking.experiment
    rows = tuple(
        (
            ", ".join(f"`{alias}`" for alias in entry.aliases) or "—",
            entry.version,
            entry.row.candidate.label,
            entry.row.verdict,
        )
        for entry in registered
    )
    return [
        Heading("The models"),
        Paragraph(
            f"The seed-{REGISTERED_SEED} refit of the baseline and of each variant is a version of the registered "
            f"model `{name}`. `champion` is the variant ranked highest by validation among those "
            f"better than the baseline at 95 % ({PROCEDURE}), or the baseline when none is."
        ),
        Table(("aliases", "version", "configuration", "verdict"), rows),
        Code(
            f"python src/predict.py --model models:/{name}@{CHAMPION_ALIAS} --test-set\n"
            f"make serve MODEL=models:/{name}@{CHAMPION_ALIAS}"
        ),
    ]


def environment_section(facts: Sequence[Fact]) -> list[Block]:
    rows = tuple((fact.name, f"`{fact.value}`", f"`{fact.command}`") for fact in facts)
    return [Heading("Environment"), Table(("what", "value", "command that reads it"), rows)]


def commands_section(table: Sequence[Row]) -> list[Block]:
    lines = []
    for row in table:
        if not row.refits:
            continue
        first = row.refits[0].refit
        base = [item for item in first.overrides if not item.startswith("seed=")]
        seeds = " ".join(str(result.refit.seed) for result in row.refits)
        lines.append(
            f"# {row.candidate.label}\nfor s in {seeds}; do python src/run.py {shlex.join(base)} seed=$s; done"
        )
    return [
        Heading("Commands"),
        Paragraph("Each configuration's refits, one MLflow run per seed (each prints its test accuracy):"),
        Code("\n".join(lines)),
    ]
