"""The report's parts without training: selection on real Optuna and MLflow stores, the rerun comparison, and
the HTML being self-contained."""

from __future__ import annotations

import html.parser
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from mlflow_stores import new_store
from mnist_study.report import content, document, figures, refit, results, selection
from mnist_study.report.registry import Registered
from mnist_study.report.rerun import compare
from mnist_study.report.sequential import BETTER, NOT_DISTINGUISHABLE, Design, Outcome
from mnist_study.sweep.schema import MLFLOW_RUN_ATTR, WARM_START_ATTR

DISTRIBUTIONS = {
    "model.units": IntDistribution(32, 4096, log=True),
    "optimizer": CategoricalDistribution(["rmsprop", "adam"]),
}


def add(
    study: optuna.Study,
    client: MlflowClient,
    experiment: str,
    params: dict,
    val: float | None,
    test: float,
    **attrs,
) -> None:
    """A finished trial whose MLflow run logged `test` as its test accuracy."""
    run_id = client.create_run(experiment).info.run_id
    client.log_metric(run_id, "test_accuracy", test)
    state = TrialState.COMPLETE if val is not None else TrialState.PRUNED
    study.add_trial(
        create_trial(
            params=params,
            distributions=DISTRIBUTIONS,
            value=val,
            state=state,
            user_attrs={MLFLOW_RUN_ATTR: run_id, **attrs},
        )
    )


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One study and one MLflow store for the module."""
    tmp_path = tmp_path_factory.mktemp("selection")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="S", storage=storage, direction="maximize")
    client = MlflowClient(new_store(tmp_path))
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "mlruns").as_uri())
    add(study, client, experiment, {"model.units": 512, "optimizer": "rmsprop"}, 0.980, 0.979, baseline=True)
    # Great on the test set, poor on validation: must never be chosen.
    add(study, client, experiment, {"model.units": 64, "optimizer": "adam"}, 0.950, 0.999)
    add(study, client, experiment, {"model.units": 1024, "optimizer": "adam"}, 0.985, 0.970)
    add(study, client, experiment, {"model.units": 256, "optimizer": "rmsprop"}, 0.983, 0.971)
    add(study, client, experiment, {"model.units": 2048, "optimizer": "adam"}, None, 0.998)  # PRUNED
    return storage


@pytest.fixture
def study(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="S", storage=storage)


def test_top_trials_rank_by_the_objective_never_by_test(study: optuna.Study) -> None:
    assert [trial.number for trial in selection.top_trials(study, 2)] == [2, 3]
    # Even asked for every trial, the pruned one is left out and the baseline is not a variant.
    assert [trial.number for trial in selection.top_trials(study, 10)] == [2, 3, 1]


def test_a_trial_copied_by_a_warm_start_is_never_a_variant() -> None:
    # The copy ranks first, but it does not count in this study (the schema's rule) and has no run here.
    study = optuna.create_study(direction="maximize")
    for units, value, attrs in ((64, 0.99, {WARM_START_ATTR: "earlier.db#earlier/3"}), (128, 0.98, {})):
        distributions = {"model.units": DISTRIBUTIONS["model.units"]}
        study.add_trial(
            create_trial(params={"model.units": units}, distributions=distributions, value=value, user_attrs=attrs)
        )
    assert [trial.number for trial in selection.top_trials(study, 2)] == [1]


def test_candidates_are_replica_baseline_then_variants_as_overrides(study: optuna.Study) -> None:
    rows = selection.candidates(study, selection.top_trials(study, 1))
    assert [(row.role, row.label) for row in rows] == [
        ("replica", "seed_replica (fits on test)"),
        ("baseline", "baseline (trial 0)"),
        ("variant", "trial 2"),
    ]
    assert rows[0].overrides == ("+experiments=seed_replica", "model.units=512", "optimizer=rmsprop")
    assert rows[2].overrides == ("model.units=1024", "optimizer=adam")


def test_fixed_params_are_part_of_a_trials_overrides(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db", direction="maximize")
    study.add_trial(
        create_trial(
            params={"model.units": 99},
            distributions={"model.units": DISTRIBUTIONS["model.units"]},
            value=0.9,
            user_attrs={"fixed.optimizer": "adam", "fixed.optimizer.learning_rate": "0.01"},
        )
    )
    assert selection.trial_overrides(study.trials[0]) == (
        "optimizer=adam",
        "optimizer.learning_rate=0.01",
        "model.units=99",
    )


def test_missing_study_and_bad_counts_are_report_errors(study: optuna.Study, storage: str) -> None:
    with pytest.raises(selection.ReportError, match="holds: S"):
        selection.load_study("nope", storage)
    with pytest.raises(selection.ReportError):
        selection.top_trials(study, -1)


def test_later_overrides_win_per_key() -> None:
    merged = refit.merge_overrides(
        ["model.units=512", "train.epochs=5", "+experiments=seed_replica"], ["train.epochs=1"], ["seed=3"]
    )
    assert merged == ("model.units=512", "train.epochs=1", "+experiments=seed_replica", "seed=3")


LOGGED = {"loss": {1: 0.5, 2: 0.25}, "val_accuracy": {1: 0.9, 2: 0.95}, "test_accuracy": {0: 0.97}}


def test_compare_says_bit_identical_only_when_every_value_is_equal() -> None:
    same = compare("r", LOGGED, {key: dict(steps) for key, steps in LOGGED.items()})
    assert same.identical and same.verdict == "bit-identical (5 values)"
    tampered = compare("r", {**LOGGED, "test_accuracy": {0: 0.9701}}, LOGGED)
    assert not tampered.identical
    assert tampered.largest_at == "test_accuracy at step 0"
    assert tampered.largest_difference == pytest.approx(0.0001)
    missing = compare("r", LOGGED, {**LOGGED, "loss": {1: 0.5}})
    assert not missing.identical and "loss" in missing.verdict


class Links(html.parser.HTMLParser):
    """Every tag name and every src/href value in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href"):
                self.references.append(value or "")
                if tag == "img":
                    self.images.append(value or "")


def assert_self_contained(page: str) -> None:
    """Images are data URIs, and nothing points to a file or the web (no links, scripts or style sheets)."""
    links = Links()
    links.feed(page)
    assert links.images, "the page has no images"
    assert all(src.startswith("data:image/png;base64,") for src in links.images)
    assert all(ref.startswith("data:") for ref in links.references)
    assert not {"script", "link", "iframe", "object"} & set(links.tags)


def test_html_is_self_contained(tmp_path: Path) -> None:
    figure, axes = plt.subplots()
    axes.plot([1, 2], [3, 4])
    blocks = [
        document.Heading("Title `code`", 1),
        document.Paragraph("See <https://example.com> and `a|b`"),
        document.Table(("a", "b"), (("1", "x|y"),)),
        document.Image("f.png", "a figure", figures.png(figure)),
        document.Code("python src/report.py"),
    ]
    markdown, page = document.write(blocks, tmp_path, "t")
    assert_self_contained(page.read_text())
    assert (tmp_path / "figures" / "f.png").read_bytes().startswith(b"\x89PNG")
    assert "![a figure](figures/f.png)" in markdown.read_text()
    assert "&lt;https://example.com&gt;" in page.read_text()


def refit_of(label: str, role: str, seed: int, accuracy: float, reused: bool = False) -> refit.RefitResult:
    """A refit's result as the report holds it (no training: the numbers are given)."""
    candidate = selection.Candidate(label, role, ())
    return refit.RefitResult(
        refit.Refit(candidate, seed, (), None), f"run-{label}-{seed}", accuracy, 0.1, reused=reused
    )


def test_a_two_objective_study_names_each_objective_and_the_serving_hint_names_its_model() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    cfg = OmegaConf.create(
        {
            "study_name": "mnist-pareto",
            "top_k": 3,
            "storage": "sqlite:///optuna.db",
            "tracking": {"experiment": "mnist-pareto"},
        }
    )
    text = document.to_markdown(content.selection_section(cfg, study, [], ["val_accuracy", "n_params"]))
    assert "set out to maximize `val_accuracy` and minimize `n_params`" in text
    assert "Pareto front" in text and "study objectives (val_accuracy, n_params)" in text
    unnamed = document.to_markdown(content.selection_section(cfg, study, [], []))
    assert "maximize its first objective and minimize its second objective" in unnamed
    baseline = [refit_of("baseline (trial 0)", "baseline", seed, 0.98) for seed in (0, 1)]
    (row,) = results.rows([baseline[0].refit.candidate], baseline, {}, Design(seeds=2, interim_seeds=()))
    hint = document.to_markdown(content.models_section(cfg, [Registered(row, "3", ("baseline", "champion"))]))
    assert "make serve MODEL=models:/mnist-pareto@champion" in hint


def test_the_report_says_how_many_refits_it_reused() -> None:
    trained = [refit_of("baseline (trial 0)", "baseline", seed, 0.98) for seed in (0, 1)]
    assert content.reuse_text(trained) == "This report trained all 2 refits."
    partly = [trained[0], refit_of("baseline (trial 0)", "baseline", 1, 0.98, reused=True)]
    assert content.reuse_text(partly).startswith("This report reused 1 of its 2 refits")
    (row,) = results.rows([partly[0].refit.candidate], partly, {}, Design(seeds=2, interim_seeds=()))
    text = document.to_markdown(content.results_section([row]))
    assert "`run-baseline (trial 0)-1` (reused)" in text and "`run-baseline (trial 0)-0` (reused)" not in text


def test_a_variant_settled_early_is_compared_on_the_seeds_that_settled_it() -> None:
    design = Design(seeds=5, interim_seeds=(3,))
    baseline = [refit_of("baseline (trial 0)", "baseline", seed, 0.9800 + 0.0001 * seed) for seed in range(5)]
    strong = [refit_of("trial 7", "variant", seed, 0.9850 + 0.0001 * seed) for seed in range(3)]
    equal = [refit_of("trial 3", "variant", seed, 0.9802 - 0.0002 * (seed % 2)) for seed in range(3)]
    candidates = [baseline[0].refit.candidate, strong[0].refit.candidate, equal[0].refit.candidate]
    outcomes = {
        "trial 7": Outcome(BETTER, settled_at=0, evidence=0),
        "trial 3": Outcome(NOT_DISTINGUISHABLE, settled_at=0, evidence=0, stopped_for_futility=True),
    }
    base, seven, three = results.rows(candidates, [*baseline, *strong, *equal], outcomes, design)
    assert base.verdict == "the reference" and base.compared_seeds is None
    assert seven.better_than_baseline and seven.compared_seeds == 3
    assert seven.verdict == "better than the baseline at 95% (settled after 3 seeds)"
    # The comparison uses the baseline's first three seeds, as the procedure did, not all five.
    assert seven.comparison.difference == pytest.approx(0.0050)
    assert not three.better_than_baseline
    assert three.verdict.startswith("not distinguishable from the baseline (refits stopped after 3 seeds")


def test_the_report_command_it_records_hides_a_store_password() -> None:
    """report.md, the champion file and the report run's tag quote this command: a password must not reach them."""
    from mnist_study.report.build import report_command

    given = ["storage=postgresql://optuna:s3cret@db.example/optuna", "seeds=3"]
    command = report_command(given)
    assert "s3cret" not in command
    assert command == "python src/report.py storage=postgresql://optuna:***@db.example/optuna seeds=3"
