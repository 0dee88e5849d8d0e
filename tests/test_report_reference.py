"""The report's second reference (`reference=<experiment>`) without training: which file it names, how its refits
are planned, which refits the loop asks for look by look, and the family of hypotheses it adds, whose family-wise
error rate is simulated as tests/test_sequential.py does for the variants alone."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy import stats as scipy_stats

from conftest import PROJECT_ROOT
from mnist_study.provenance import run_key
from mnist_study.report import build, content, document, reference, refit, results, sequential
from mnist_study.report.selection import Candidate, ReportError
from mnist_study.report.sequential import BETTER, NOT_DISTINGUISHABLE, WORSE, Design, Hypothesis, Look

CHAMPION = "mnist-mlp_champion"
# The precision the configs do not default to, so that a forwarded or carried one is seen to win.
DEFAULT_PRECISION = OmegaConf.load(PROJECT_ROOT / "conf" / "train" / "default.yaml").precision
OTHER_PRECISION = "float32" if DEFAULT_PRECISION == "bfloat16" else "bfloat16"
REPLICA = Candidate("seed_replica (fits on test)", "replica", ("+experiments=seed_replica",))
BASELINE = Candidate("baseline (trial 0)", "baseline", ())


@pytest.fixture(scope="module")
def second() -> Candidate:
    found = reference.candidate(CHAMPION)
    assert found is not None
    return found


def test_no_reference_is_none_and_a_named_one_is_its_experiment_file(second: Candidate) -> None:
    assert reference.candidate(None) is None
    assert second == Candidate(f"{CHAMPION} (reference)", "reference", (f"+experiments={CHAMPION}",))
    assert reference.name_of(second) == CHAMPION


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nope", "reference=nope: experiments/ has no nope.yaml; name one of its configurations"),
        ("../conf/config", "experiments/ has no ../conf/config.yaml"),
        ("", "experiments/ has no .yaml"),
        # A study is not one configuration; the message names the champion its report wrote.
        ("frontier", "reference=frontier: experiments/frontier.yaml is a study"),
        ("sweep", "name the champion its report wrote instead: reference=mnist-mlp_champion"),
    ],
)
def test_a_reference_that_names_no_configuration_is_one_line(name: str, expected: str) -> None:
    with pytest.raises(ReportError) as raised:
        reference.candidate(name)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message


def test_the_missing_reference_message_lists_what_experiments_holds() -> None:
    with pytest.raises(ReportError, match=f"{CHAMPION}.*seed_replica"):
        reference.candidate("nope")


def planned(second: Candidate, seeds: Sequence[int], forwarded: Sequence[str]) -> list[refit.Refit]:
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return reference.plan(second, seeds, forwarded)


def test_the_reference_is_planned_like_every_refit_its_forwarded_overrides_winning(second: Candidate) -> None:
    own = OmegaConf.load(PROJECT_ROOT / "experiments" / f"{CHAMPION}.yaml")
    forwarded = [f"train.precision={OTHER_PRECISION}", "data.train_subset=2000", "train.epochs=1"]
    plans = planned(second, [0, 1, 2], forwarded)
    assert [plan.seed for plan in plans] == [0, 1, 2]
    assert plans[1].overrides == (
        f"+experiments={CHAMPION}",
        *forwarded,
        *refit.REFIT_OVERRIDES,
        "seed=1",
    )
    assert plans[1].command().startswith(f"python src/run.py +experiments={CHAMPION} train.precision=")
    for plan in plans:
        cfg = plan.cfg
        # The file's own configuration...
        assert cfg.model.units == own.model.units and cfg.optimizer.learning_rate == own.optimizer.learning_rate
        assert cfg.train.batch_size == own.train.batch_size
        # ...under the report's forwarded overrides (the file says 14 epochs) and the refit protocol.
        assert own.train.epochs != 1 and cfg.train.epochs == 1
        assert cfg.train.precision == OTHER_PRECISION and cfg.data.train_subset == 2000
        assert (cfg.data.val_size, cfg.objective, cfg.seed) == (0, "accuracy", plan.seed)


def test_a_configuration_composed_once_for_all_seeds_is_what_composing_each_seed_gives(second: Candidate) -> None:
    forwarded = ["data.train_subset=2000", "train.epochs=1"]
    plans = planned(second, [0, 3, 7], forwarded)
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        for plan in plans:
            direct = compose(config_name="config", overrides=list(plan.overrides))
            assert OmegaConf.to_container(plan.cfg, resolve=True) == OmegaConf.to_container(direct, resolve=True)
            # The same run key, so a refit planned either way reuses the same earlier run.
            assert run_key(plan.cfg) == run_key(direct)
    # Each plan holds its own config: setting one seed changed no other plan's.
    assert [plan.cfg.seed for plan in plans] == [0, 3, 7]


def test_a_reference_that_fits_on_the_test_set_is_refused() -> None:
    replica = reference.candidate("seed_replica")
    assert replica is not None
    with pytest.raises(ReportError, match="reference=seed_replica: it fits on the test set"):
        planned(replica, [0], [])


def test_a_bad_forwarded_value_names_the_reference(second: Candidate) -> None:
    with pytest.raises(ReportError, match=f"reference={CHAMPION}: .*train.precision") as raised:
        planned(second, [0], ["train.precision=float8"])
    assert "\n" not in str(raised.value)


def test_the_reference_sits_right_after_the_baseline(second: Candidate) -> None:
    variant = Candidate("trial 4", "variant", ("model.units=900",))
    assert reference.beside_baseline([REPLICA, BASELINE, variant], second) == [REPLICA, BASELINE, second, variant]
    assert reference.beside_baseline([REPLICA, BASELINE, variant], None) == [REPLICA, BASELINE, variant]


def test_the_family_is_every_variant_against_each_reference_the_baseline_first() -> None:
    family = sequential.family(["trial 1", "trial 2"], ["baseline", "ref"])
    assert family == [
        Hypothesis("trial 1", "baseline"),
        Hypothesis("trial 2", "baseline"),
        Hypothesis("trial 1", "ref"),
        Hypothesis("trial 2", "ref"),
    ]


# Per (configuration, seed): the baseline, the second reference 0.46 points above it, trial 1 clearly above both,
# trial 2 as good as the reference (0.02 points above it, within the seed noise), trial 3 as good as the baseline.
ACCURACIES = {
    REPLICA.label: [0.9790, 0.9788, 0.9792, 0.9790, 0.9791],
    BASELINE.label: [0.9800, 0.9802, 0.9798, 0.9800, 0.9801],
    f"{CHAMPION} (reference)": [0.9846, 0.9848, 0.9844, 0.9846, 0.9846],
    "trial 1": [0.9900, 0.9902, 0.9899, 0.9901, 0.9900],
    "trial 2": [0.9848, 0.9850, 0.9846, 0.9848, 0.9848],
    "trial 3": [0.9800, 0.9801, 0.9799, 0.9801, 0.9800],
}


def refit_loop(second: Candidate, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list, dict, list[str]]:
    """`build.refit_sequentially` over the configurations above with 5 seeds and a look after 3; the refits are
    not trained: each returns its given test accuracy, and the order they were asked for is recorded."""
    variants = [Candidate(label, "variant", ()) for label in ("trial 1", "trial 2", "trial 3")]
    candidates = [REPLICA, BASELINE, second, *variants]
    plans = [refit.Refit(candidate, seed, (), None) for candidate in candidates for seed in range(5)]
    asked: list[str] = []

    def given(plans: Sequence[refit.Refit], *_: object, **__: object) -> Iterator[refit.RefitResult]:
        for plan in plans:
            asked.append(f"{plan.candidate.label} seed={plan.seed}")
            accuracy = ACCURACIES[plan.candidate.label][plan.seed]
            yield refit.RefitResult(plan, f"run-{plan.candidate.label}-{plan.seed}", accuracy, 0.1)

    monkeypatch.setattr(refit, "run_refits", given)
    cfg = OmegaConf.create({"study_name": "frontier", "reuse": True, "seeds": 5})
    design = Design(seeds=5, interim_seeds=(3,))
    done, outcomes = build.refit_sequentially(plans, candidates, design, None, cfg)  # type: ignore[arg-type]
    return candidates, done, outcomes, asked


def seeds_of(done: Sequence[refit.RefitResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in done:
        counts[result.refit.candidate.label] = counts.get(result.refit.candidate.label, 0) + 1
    return counts


def test_the_reference_is_refitted_at_every_look_and_a_variant_until_both_its_verdicts_are_in(
    second: Candidate, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, done, outcomes, asked = refit_loop(second, monkeypatch)
    assert set(outcomes) == set(
        sequential.family(["trial 1", "trial 2", "trial 3"], [BASELINE.label, second.label])
    )
    versus_baseline = sequential.against(outcomes, BASELINE.label)
    versus_second = sequential.against(outcomes, second.label)
    # Trial 1 beats both after 3 seeds: refitted no further.
    assert versus_baseline["trial 1"].verdict == versus_second["trial 1"].verdict == BETTER
    assert versus_baseline["trial 1"].settled_at == versus_second["trial 1"].settled_at == 0
    # Trial 2 beats the baseline after 3 seeds, but its verdict against the reference needs all 5.
    assert (versus_baseline["trial 2"].verdict, versus_baseline["trial 2"].settled_at) == (BETTER, 0)
    assert len(versus_baseline["trial 2"].looks) == 1
    assert (versus_second["trial 2"].verdict, versus_second["trial 2"].settled_at) == (NOT_DISTINGUISHABLE, 1)
    assert not versus_second["trial 2"].stopped_for_futility
    # Trial 3 is the baseline's equal (stopped for futility after 3 seeds) and far below the reference.
    assert (versus_second["trial 3"].verdict, versus_second["trial 3"].settled_at) == (WORSE, 0)
    assert versus_baseline["trial 3"].verdict == NOT_DISTINGUISHABLE
    assert versus_baseline["trial 3"].stopped_for_futility
    assert seeds_of(done) == {
        REPLICA.label: 5,
        BASELINE.label: 5,
        second.label: 5,
        "trial 1": 3,
        "trial 2": 5,
        "trial 3": 3,
    }
    # Each refit is asked for once, seeds in order, the companions of a look before its variants.
    assert len(asked) == len(set(asked))
    assert asked[:3] == [f"{REPLICA.label} seed=0", f"{REPLICA.label} seed=1", f"{REPLICA.label} seed=2"]
    assert asked.index(f"{second.label} seed=2") < asked.index("trial 1 seed=0")


def test_the_tables_say_whether_each_variant_and_the_champion_beat_the_reference(
    second: Candidate, monkeypatch: pytest.MonkeyPatch
) -> None:
    candidates, done, outcomes, _ = refit_loop(second, monkeypatch)
    design = Design(seeds=5, interim_seeds=(3,))
    table = results.rows(candidates, done, sequential.against(outcomes, BASELINE.label), design)
    versus = results.versus(candidates, done, sequential.against(outcomes, second.label), design, CHAMPION)
    by_label = {row.candidate.label: row for row in table}
    assert by_label[second.label].verdict == (
        "better than the baseline at 95% (unadjusted: the second reference, not one of the study's claims)"
    )
    assert not by_label[second.label].better_than_baseline
    one, two, three = versus
    assert (one.candidate.label, one.better, one.compared_seeds) == ("trial 1", True, 3)
    assert one.verdict == f"better than {CHAMPION} at 95% (settled after 3 seeds)"
    assert one.comparison is not None and one.comparison.difference == pytest.approx(0.0054, abs=1e-4)
    assert (two.better, two.compared_seeds, two.verdict) == (False, 5, f"not distinguishable from {CHAMPION}")
    assert three.verdict.startswith(f"worse than {CHAMPION} at 95%")
    # The champion is trial 1 (the first variant better than the baseline): the headline answers for it.
    text = content.headline(table, versus)
    assert f"The second reference, {second.label}: 98.46 %" in text
    assert (
        f"The champion, trial 1, against it: better than {CHAMPION} at 95% (settled after 3 seeds), +0.54 pp"
        in text
    )
    assert f"({content.PROCEDURE}, one family over every variant against both references)" in text
    section = document.to_markdown(content.reference_section(table, versus))
    assert "form one family of 6 hypotheses" in section and "5 % / 6 rather than 5 % / 3" in section
    assert "| trial 2 | +0.02 pp" in section
    summary = build.row_summary(by_label["trial 1"], one)
    assert summary["verdict_vs_reference"] == one.verdict and summary["seeds_compared_vs_reference"] == 3
    assert build.row_summary(by_label[second.label])["role"] == "reference"
    assert content.headline(table) == content.headline(table, ())
    assert "second reference" not in content.headline(table)


REPORTS = 10_000
VARIANTS = ("trial 1", "trial 2", "trial 3")
REFERENCES = ("baseline", "reference")
DESIGN = Design(seeds=5, interim_seeds=(3,))


def simulate(means: Sequence[float], stds: Sequence[float], families: Sequence[Sequence[str]], seed: int) -> list:
    """`REPORTS` simulated reports: means and stds are the baseline's, the reference's, then each variant's. Each
    report runs the procedure once per group of references in `families` (one group: the report's single family;
    one group per reference: separate families, the choice the report does not make). Returns each report's
    outcomes by hypothesis."""
    generator = np.random.default_rng(seed)
    draws = generator.normal(means, stds, size=(REPORTS, DESIGN.seeds, len(means)))
    columns = {label: index for index, label in enumerate((*REFERENCES, *VARIANTS))}
    looks: dict[tuple[int, str, str], tuple[np.ndarray, np.ndarray]] = {}
    for seeds in DESIGN.looks:
        sample = draws[:, :seeds, :]
        for variant in VARIANTS:
            for against in REFERENCES:
                a, b = sample[:, :, columns[variant]], sample[:, :, columns[against]]
                test = scipy_stats.ttest_ind(a, b, axis=1, equal_var=False)
                looks[seeds, variant, against] = (test.pvalue, a.mean(axis=1) - b.mean(axis=1))
    reports = []
    for report in range(REPORTS):

        def compare(
            seeds: int, open_claims: Sequence[Hypothesis], report: int = report
        ) -> Mapping[Hypothesis, Look]:
            return {
                claim: Look(
                    float(looks[seeds, claim.variant, claim.reference][0][report]),
                    float(looks[seeds, claim.variant, claim.reference][1][report]),
                )
                for claim in open_claims
            }

        outcomes: dict[Hypothesis, sequential.Outcome] = {}
        for group in families:
            outcomes.update(sequential.run(DESIGN, sequential.family(VARIANTS, group), compare))
        reports.append(outcomes)
    return reports


def false_verdict_rate(reports: list, true_nulls: Sequence[Hypothesis]) -> float:
    """The share of reports that called any truly-equal pair better or worse."""
    wrong = sum(any(report[claim].verdict in (BETTER, WORSE) for claim in true_nulls) for report in reports)
    return wrong / len(reports)


EVERY_CLAIM = sequential.family(VARIANTS, REFERENCES)


def test_one_family_over_both_references_keeps_the_error_rate_at_five_percent() -> None:
    # Everything equal: every one of the 6 hypotheses is true, and any verdict is a false one.
    reports = simulate([0.98] * 5, [0.0008] * 5, [REFERENCES], seed=0)
    rate = false_verdict_rate(reports, EVERY_CLAIM)
    assert rate <= 0.05
    # A procedure that never decides would pass the line above: this one spends a good part of its level.
    assert rate >= 0.015


def test_two_separate_families_would_not() -> None:
    # The choice the report does not make: Holm at 5 % against the baseline and again at 5 % against the reference
    # (each family alone keeps its 5 %, so together they make about twice the one family's false verdicts).
    reports = simulate([0.98] * 5, [0.0008] * 5, [REFERENCES[:1], REFERENCES[1:]], seed=0)
    assert false_verdict_rate(reports, EVERY_CLAIM) > 0.05


def test_a_champion_that_beats_both_references_is_found_and_the_true_nulls_stay_within_the_level() -> None:
    # The reference 0.46 points above the baseline (like the default study's champion); trial 1 0.34 above it;
    # trial 2 the reference's equal; trial 3 the baseline's.
    means = [0.9800, 0.9846, 0.9880, 0.9846, 0.9800]
    reports = simulate(means, [0.0008] * 5, [REFERENCES], seed=1)
    beats = sum(report[Hypothesis("trial 1", "reference")].verdict == BETTER for report in reports) / len(reports)
    assert beats >= 0.95
    true_nulls = [Hypothesis("trial 2", "reference"), Hypothesis("trial 3", "baseline")]
    assert false_verdict_rate(reports, true_nulls) <= 0.05
