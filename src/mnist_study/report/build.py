"""The report, end to end: choose, plan, refit, compare, re-derive, describe the environment, write, log."""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, open_dict

from mnist_study import logged_config
from mnist_study.metrics import objective_names
from mnist_study.report import (
    content,
    document,
    environment,
    reference,
    refit,
    registry,
    rerun,
    rescore,
    results,
    selection,
    sequential,
    strays,
    workers,
)
from mnist_study.report.rerun import RerunResult
from mnist_study.report.results import Row, Versus
from mnist_study.report.selection import ReportError
from mnist_study.secrets import redact
from mnist_study.sweep.schema import MLFLOW_RUN_ATTR
from mnist_study.tracking import TrackedRun

log = logging.getLogger(__name__)


def report_command(given: Sequence[str]) -> str:
    """The command that recomputes this report, as the report run's tag, report.md and the champion file show it:
    a store URL's password is hidden, since all three are read by whoever can read the store or the repository."""
    return redact(shlex.join(["python", "src/report.py", *given]))


def build(cfg: DictConfig, forwarded: Sequence[str], given: Sequence[str]) -> Path:
    """Write report.md and report.html for `cfg.study_name`; return the folder they are in."""
    if cfg.seeds < 1:
        raise ReportError(f"seeds={cfg.seeds}: must be >= 1 (2 or more for confidence intervals and p-values)")
    if cfg.workers < 1:
        raise ReportError(f"workers={cfg.workers}: must be >= 1 (1 refits one at a time in the report's process)")
    second = reference.candidate(cfg.reference)
    study = selection.load_study(cfg.study_name, cfg.storage)
    rescore_seeds = list(cfg.rescore.seeds)
    rescore.check(cfg.rescore.trials, rescore_seeds)
    # A study of several objectives offers its Pareto front, which re-scoring one objective would not respect.
    rescoring = cfg.rescore.trials > 0 and bool(rescore_seeds) and len(study.directions) == 1
    pool = selection.top_trials(study, max(cfg.top_k, cfg.rescore.trials if rescoring else 0))
    seeds = list(range(cfg.seeds))
    # Every fit's config is composed and validated before TensorFlow loads: a bad override costs seconds. The
    # refits are planned for the whole pool; re-scoring then says which of them run.
    to_rescore = pool[: cfg.rescore.trials] if rescoring else []
    fits = rescore.plan(to_rescore, rescore_seeds, forwarded)
    # Refits trained two at a time size TensorFlow's thread pools to their share of the cores, in their configs.
    threads = [*forwarded, *workers.thread_overrides(cfg.workers, forwarded)]
    every_plan = refit.plan(selection.candidates(study, pool), seeds, threads)
    if second is not None:
        every_plan += reference.plan(second, seeds, threads)
    before = f", after re-scoring {len(to_rescore)} trials at seeds {rescore_seeds}" if to_rescore else ""
    companions = 2 if second is None else 3
    configurations = f"{companions + min(cfg.top_k, len(pool))} configurations x {len(seeds)} seeds"
    print(f"report on study {cfg.study_name}: {configurations}{before}", flush=True)

    # TensorFlow is imported only where this process trains (`tracked_training`, `rescore`): a report whose refits
    # are reused or trained by its workers never loads it (seconds of a start-up, at every start after a kill).
    from mnist_study.tracking import tracked_run

    # Every refit builds a new model, so TensorFlow warns about retracing; that says nothing about the report.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    report_cfg = with_parent(cfg, selection.parent_run_id(study))
    command = report_command(given)
    tags = {
        "report": cfg.study_name,
        "mlflow.source.name": "src/report.py",
        "report.command": command,
        **strays.process_tags(),
    }
    with tracked_run(report_cfg, f"report {cfg.study_name}", tags=tags) as tracked:
        closed = strays.close_strays(tracked.client, tracked.experiment_id, cfg.study_name, tracked.run_id)
        if closed:
            names = ", ".join(f"{run.info.run_name} ({run.info.run_id})" for run in closed)
            print(f"closed {len(closed)} run(s) a killed report left RUNNING: {names}", flush=True)
        rescored = rescore.run(fits)
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        ranked = selection.candidates(study, rescore.ranked(pool, rescored, maximize)[: cfg.top_k])
        candidates = reference.beside_baseline(ranked, second)
        chosen = {candidate.label for candidate in candidates}
        plans = [planned for planned in every_plan if planned.candidate.label in chosen]
        design = procedure(cfg)
        with workers.RefitWorkers(cfg.workers) as trainers:
            done, outcomes = refit_sequentially(plans, candidates, design, tracked, cfg, trainers)
        tracked.set_tags(
            {
                "report.refits_reused": str(sum(result.reused for result in done)),
                "report.refits": str(len(done)),
                "report.procedure": sequential.NAME,
                "report.hypotheses": str(len(outcomes)),
                **({"report.reference": reference.name_of(second)} if second is not None else {}),
            }
        )
        baseline = next(candidate.label for candidate in candidates if candidate.role == "baseline")
        table = results.rows(candidates, done, sequential.against(outcomes, baseline), design)
        versus = []
        if second is not None:
            against_second = sequential.against(outcomes, second.label)
            versus = results.versus(candidates, done, against_second, design, reference.name_of(second))
        registered = promote(cfg, table, tracked.client, tracked.run_id, command, forwarded)
        rerun_result = check_rerun(cfg, study, tracked) if cfg.rerun_check else None
        facts = environment.facts(plans[0].cfg)
        objectives = objective_names_of(study, tracked.client)
        blocks = content.blocks(
            cfg, study, table, rerun_result, facts, command, registered, rescored, objectives, versus
        )
        folder = Path(cfg.output_dir)
        markdown, page = document.write(blocks, folder, f"Reproducibility report: {cfg.study_name}")
        tracked.client.log_artifact(tracked.run_id, str(markdown))
        tracked.client.log_artifact(tracked.run_id, str(page))
        against_second = {entry.candidate.label: entry for entry in versus}
        summary = {row.candidate.label: row_summary(row, against_second.get(row.candidate.label)) for row in table}
        tracked.client.log_dict(tracked.run_id, summary, "results.json")
        if rescored:
            scores = {f"trial {entry.trial.number}": list(entry.scores) for entry in rescored}
            tracked.client.log_dict(tracked.run_id, {"seeds": rescore_seeds, "scores": scores}, "rescoring.json")
    print(f"wrote {markdown} and {page} (MLflow run {tracked.run_id})", flush=True)
    return folder


def procedure(cfg: DictConfig) -> sequential.Design:
    """The testing procedure `cfg.procedure` describes, for `cfg.seeds` seeds (interim looks at or past the last
    are dropped: `seeds=3` with the default `interim_seeds: [3]` tests once, after 3 seeds)."""
    interim = tuple(int(seeds) for seeds in cfg.procedure.interim_seeds if int(seeds) < cfg.seeds)
    try:
        return sequential.Design(
            seeds=max(cfg.seeds, 2),
            interim_seeds=interim,
            interim_spending=float(cfg.procedure.interim_spending),
            futility_p=float(cfg.procedure.futility_p),
        )
    except ValueError as error:
        raise ReportError(f"procedure: {error}") from error


def refit_sequentially(
    plans: Sequence[refit.Refit],
    candidates: Sequence[selection.Candidate],
    design: sequential.Design,
    tracked: TrackedRun,
    cfg: DictConfig,
    trainers: workers.RefitWorkers | None = None,
) -> tuple[list[refit.RefitResult], dict[sequential.Hypothesis, sequential.Outcome]]:
    """Refit look by look: at each, the baseline, the replica, the second reference (if any) and every variant with
    a hypothesis still open get the look's seeds, all at once by `trainers` when there are several; `sequential`
    then says which verdicts are settled. The family is every variant against each reference
    (`sequential.family`). Reused where the same refit FINISHED."""
    by_label = {c.label: [p for p in plans if p.candidate.label == c.label] for c in candidates}
    done: dict[str, list[refit.RefitResult]] = {label: [] for label in by_label}
    # The baseline first: the hypotheses against it are the study's own claims; the second reference's follow.
    references = [c.label for c in candidates if c.role == "baseline"]
    references += [c.label for c in candidates if c.role == reference.ROLE]
    companions = [c.label for c in candidates if c.role != "variant"]
    variants = [c.label for c in candidates if c.role == "variant"]
    parallel = trainers if trainers is not None and trainers.workers > 1 else None

    def refit_up_to(labels: Sequence[str], seeds: int) -> None:
        wanted = dict.fromkeys(labels)
        missing = [planned for label in wanted for planned in by_label[label][len(done[label]) : seeds]]
        finished = {}
        for result in refit.run_refits(missing, tracked, cfg.study_name, cfg.reuse, parallel):
            finished[id(result.refit)] = result
            how = f"reused run {result.run_id}" if result.reused else f"{result.seconds:.1f}s"
            count = sum(len(results) for results in done.values()) + len(finished)
            print(
                f"refit {count} (at most {len(plans)}) {result.refit.candidate.label} seed={result.refit.seed}: "
                f"test_accuracy={result.test_accuracy:.4f} {how}",
                flush=True,
            )
        for planned in missing:
            done[planned.candidate.label].append(finished[id(planned)])

    def accuracies(label: str, seeds: int) -> list[float]:
        return [result.test_accuracy for result in done[label][:seeds]]

    def compare(
        seeds: int, open_hypotheses: Sequence[sequential.Hypothesis]
    ) -> dict[sequential.Hypothesis, sequential.Look]:
        claims = [label for claim in open_hypotheses for label in (claim.variant, claim.reference)]
        refit_up_to([*companions, *claims], seeds)
        return {
            claim: sequential.look(accuracies(claim.variant, seeds), accuracies(claim.reference, seeds))
            for claim in open_hypotheses
        }

    hypotheses = sequential.family(variants, references)
    outcomes = sequential.run(design, hypotheses, compare) if cfg.seeds >= 2 else {}
    # Without variants (or seeds to compare) nothing above refitted: the references and replica still get theirs.
    refit_up_to(companions, cfg.seeds if not variants or cfg.seeds < 2 else design.looks[0])
    for claim, outcome in outcomes.items():
        if outcome.verdict is not None and outcome.settled_at is not None:
            seeds = design.looks[outcome.settled_at]
            versus = "" if claim.reference == references[0] else f" against {claim.reference}"
            print(f"{claim.variant}{versus}: {outcome.verdict} after {seeds} seeds", flush=True)
    return [result for results in done.values() for result in results], outcomes


def promote(
    cfg: DictConfig,
    table: list[Row],
    client: MlflowClient,
    report_run_id: str,
    command: str,
    forwarded: Sequence[str] = (),
) -> list[registry.Registered]:
    """Register the refits' models and set the aliases; write the champion's experiment file, with the forwarded
    overrides that change the numbers (see `registry`)."""
    if not cfg.tracking.log_model:
        print("models: not registered (tracking.log_model=false: the refits logged none)", flush=True)
        return []
    name = cfg.tracking.experiment
    registered = registry.promote(client, name, table, cfg.study_name, report_run_id)
    for entry in registered:
        for alias in entry.aliases:
            print(f"models:/{name}@{alias} -> version {entry.version} ({entry.row.candidate.label})", flush=True)
    path = registry.write_champion_experiment(
        Path(cfg.experiments_dir), cfg.study_name, registry.champion(table), command, forwarded
    )
    print(f"champion experiment: {path} (python src/run.py {path.stem})", flush=True)
    return registered


def with_parent(cfg: DictConfig, parent_run_id: str | None) -> DictConfig:
    """The report's config with the study's parent run as its MLflow parent (when that run is in this store)."""
    if parent_run_id:
        try:
            MlflowClient(tracking_uri=cfg.tracking.uri).get_run(parent_run_id)
        except MlflowException:
            log.warning(
                "the study's parent run %s is not in %s; the report run has no parent",
                parent_run_id,
                cfg.tracking.uri,
            )
            parent_run_id = None
    report_cfg = cfg.copy()
    with open_dict(report_cfg):
        report_cfg.tracking.parent_run_id = parent_run_id
    return report_cfg


def check_rerun(cfg: DictConfig, study: optuna.Study, tracked: TrackedRun) -> RerunResult | None:
    """Re-derive the best variant's logged trial run in a fresh process (or say why it cannot be), unless an
    earlier start of a report recorded a rerun of that run by the same code: its outcome is reused, and says so."""
    best = selection.top_trials(study, 1)
    run_id = best[0].user_attrs.get(MLFLOW_RUN_ATTR) if best else None
    if run_id is None:
        return None
    key = rerun.rerun_key(run_id)
    earlier = rerun.recorded(tracked.client, tracked.experiment_id, key)
    if earlier is not None:
        # The report run that did rerun it: the newest record may itself be a reuse.
        result = dataclasses.replace(earlier[1], reused_from=earlier[1].reused_from or earlier[0])
        print(
            f"rerun check: {result.verdict} (reused: report run {result.reused_from} reran it with this code)",
            flush=True,
        )
        rerun.record(tracked.client, tracked.run_id, key, result)
        return result
    started = time.perf_counter()
    print(f"rerun check: re-deriving trial {best[0].number}'s run {run_id} in a fresh process", flush=True)
    result = rerun.rerun_in_subprocess(cfg.tracking.uri, run_id)
    print(f"rerun check: {result.verdict} ({time.perf_counter() - started:.0f}s)", flush=True)
    rerun.record(tracked.client, tracked.run_id, key, result)
    return result


def objective_names_of(study: optuna.Study, client: MlflowClient) -> list[str]:
    """The names of the study's objectives, from a trial's logged config (the study stores directions only); empty
    when no trial's run is in this store."""
    # A progress bar for one small file is noise on the report's output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if run_id is None:
            continue
        try:
            return objective_names(logged_config.load(client, run_id).objective)
        except (MlflowException, OSError, ValueError) as error:
            log.warning("cannot read the objectives from run %s: %s", run_id, error)
            return []
    return []


def row_summary(row: Row, against_second: Versus | None = None) -> dict:
    """One results row as JSON (logged to the report run beside the documents); a variant's comparison with the
    second reference, when there is one, under `*_vs_reference`."""
    comparison = row.comparison
    summary = {
        "role": row.candidate.role,
        "overrides": list(row.candidate.overrides),
        "test_accuracy": row.accuracies,
        "mean": row.accuracy.mean,
        "std": row.accuracy.std,
        "ci95": [row.accuracy.ci_low, row.accuracy.ci_high],
        "difference_vs_baseline": comparison.difference if comparison else None,
        "p_welch": comparison.p_value if comparison else None,
        "seeds_compared": row.compared_seeds,
        "verdict": row.verdict,
        "runs": [result.run_id for result in row.refits],
        "reused_runs": [result.run_id for result in row.refits if result.reused],
    }
    if against_second is not None:
        second = against_second.comparison
        summary["difference_vs_reference"] = second.difference if second else None
        summary["p_vs_reference"] = second.p_value if second else None
        summary["seeds_compared_vs_reference"] = against_second.compared_seeds
        summary["verdict_vs_reference"] = against_second.verdict
    return summary
