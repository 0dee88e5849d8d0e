"""Re-scoring: the study's best trials trained again at more seeds, judged on validation alone, before the report
chooses which variants to refit and which of them becomes the champion.

A trial's value is one training seed's validation accuracy. Between the study's best trials the differences are a
tenth of a point, as large as what the seed alone moves, so the study's own order among them is partly luck: a
trial can lead on one lucky seed and be the weakest of the variants on test (benchmarks/README.md, the default
study over sampler seeds). Here the `trials` best are trained again with the study's own split and epochs at each
of `seeds` and ranked by their mean validation score over the trial's own seed and these.

The test set never takes part: every fit runs with `score_test=False`, so the test images never pass through the
network. Everything the ranking uses is determined by the study (its trials, their overrides) and the report's
config (the seeds), and training is deterministic, so the same study re-scores to the same ranking.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig
from optuna.trial import FrozenTrial

from mnist_study.report.refit import at_seeds, merge_overrides
from mnist_study.report.selection import ReportError
from mnist_study.sweep.schema import trial_overrides


@dataclass(frozen=True)
class RescoreFit:
    """One planned re-scoring fit: a trial's configuration at one more seed."""

    trial: FrozenTrial
    seed: int
    cfg: DictConfig


@dataclass(frozen=True)
class Rescored:
    """A trial's validation scores: the study's own (its seed) first, then one per re-scoring seed."""

    trial: FrozenTrial
    scores: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)


def check(trials: int, seeds: Sequence[int]) -> None:
    """`rescore.trials` and `rescore.seeds` must be a count and distinct non-negative seeds."""
    if trials < 0:
        raise ReportError(f"rescore.trials={trials}: must be >= 0 (0 ranks by the study's values alone)")
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ReportError(f"rescore.seeds={list(seeds)}: must be distinct seeds >= 0")


def plan(trials: Sequence[FrozenTrial], seeds: Sequence[int], forwarded: Sequence[str]) -> list[RescoreFit]:
    """Compose and validate every re-scoring fit before TensorFlow loads.

    A fit is the trial's own command line (its split, its epochs, its validation hold-out) at another seed;
    `forwarded` (the report's `data.*`, `train.*`, `tracking.*` overrides) apply as they do to the refits.
    """
    fits = []
    for trial in trials:
        for seed, _, cfg in at_seeds(merge_overrides(trial_overrides(trial), forwarded), seeds):
            fits.append(RescoreFit(trial, seed, cfg))
    return fits


def run(fits: Sequence[RescoreFit]) -> list[Rescored]:
    """Train every fit without scoring the test set; each trial's scores on the study's objective (the last
    epoch's, as the trial's own value), its own value first."""
    if not fits:  # Re-scoring is off: TensorFlow need not load in the report's process.
        return []
    from omegaconf import open_dict

    from mnist_study.train import train

    scores: dict[int, list[float]] = {}
    trials: dict[int, FrozenTrial] = {}
    for number, fit in enumerate(fits, start=1):
        cfg = fit.cfg.copy()
        with open_dict(cfg):
            cfg.train.verbose = 0
        started = time.perf_counter()
        history = train(cfg, score_test=False)["history"]
        objective = str(cfg.objective)
        if objective not in history:
            raise ReportError(f"re-scoring trial {fit.trial.number}: its fits log no {objective!r} to rank on")
        value = float(history[objective][-1])
        trials[fit.trial.number] = fit.trial
        scores.setdefault(fit.trial.number, [float(fit.trial.value)]).append(value)
        print(
            f"re-score {number}/{len(fits)} trial {fit.trial.number} seed={fit.seed}: {objective}={value:.4f} "
            f"{time.perf_counter() - started:.1f}s",
            flush=True,
        )
    return [Rescored(trials[number], tuple(values)) for number, values in scores.items()]


def ranked(pool: Sequence[FrozenTrial], rescored: Sequence[Rescored], maximize: bool) -> list[FrozenTrial]:
    """The pool in the report's order: re-scored trials by their mean (ties keep the study's order), then the
    trials that were not re-scored, in the study's order."""
    means = {entry.trial.number: entry.mean for entry in rescored}
    order = {trial.number: index for index, trial in enumerate(pool)}
    first = sorted(
        (trial for trial in pool if trial.number in means),
        key=lambda trial: (-means[trial.number] if maximize else means[trial.number], order[trial.number]),
    )
    return first + [trial for trial in pool if trial.number not in means]
