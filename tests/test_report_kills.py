"""The report killed (SIGKILL) at each of its steps and started again each time converges like the sweep does.

A copy of the session's smoke study, then one report command run until it finishes: killed first during a refit
(seen from outside: a refit RUNNING in the MLflow store), stopped by SIGTERM during the next one, then killed after
the refits, between creating the model versions and moving the aliases, between the two aliases, during the rerun
check (seen from outside: its progress line) and while writing the documents. The kills at a call inside the
process come from `tests/kill_seam/sitecustomize.py`, test tooling the product does not know of. At the end:
nothing RUNNING, every stray closed and tagged by the report that closed it, each refit trained once and reused by
every later start, the rerun check's outcome reused once it was whole, the aliases sound after every kill, the
champion scoring what its run logged, the documents whole.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest
from hydra import initialize_config_dir
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import PROJECT_ROOT, SmokeStudy, store_overrides
from kill_points import SEAM, SEAM_VARIABLE
from mnist_study.data import load_mnist
from mnist_study.report import refit, selection, workers
from mnist_study.report.refit import REUSED_TAG_PREFIX
from mnist_study.report.strays import CLOSED_BY_TAG, CLOSED_REASON_TAG
from mnist_study.serving import BASELINE_ALIAS, CHAMPION_ALIAS
from mnist_study.tracking import tracked_run
from test_report_cli import report_argv

pytestmark = pytest.mark.slow

SEAM_MARKER = "test seam: SIGKILL at"
# Three configurations (replica, baseline, the top trial) at two seeds: six refits of 1 000 images, one epoch.
SHRINK = ("data.train_subset=1000", "train.epochs=1", "tracking.plots=false")
# The report's default two refit workers: kills must reach the refits they train, and restarts reuse them.
ARGUMENTS = ("study_name=smoke", "seeds=2", "top_k=1", "workers=2", *SHRINK)
REFITS = 3 * 2
MODEL = "mnist-mlp"


class Report:
    """One `python src/report.py` process on the shared stores, its output read as it comes."""

    def __init__(self, folder: Path, kill_at: str | None = None) -> None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        environment.pop(SEAM_VARIABLE, None)
        if kill_at is not None:
            environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SEAM), environment.get("PYTHONPATH")]))
            environment[SEAM_VARIABLE] = kill_at
        self.process = subprocess.Popen(
            report_argv(folder, *ARGUMENTS),
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group, so a kill from outside takes the rerun check's subprocess with it.
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 600) -> None:
        """Poll until `condition()`; fail with the output if the process ends first or the time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"never saw {what}; exit {self.process.returncode}\n{self.output}")
            time.sleep(0.2)

    def kill(self) -> int:
        """SIGKILL the report and every process it started."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.finish()

    def finish(self, timeout: float = 900) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=60)
        return code


@dataclass
class Step:
    """One start of the report and what the stores held once it ended."""

    name: str
    how: str  # "outside" (SIGKILL from outside), "seam" (SIGKILL at a call), "SIGTERM", or "" (let finish)
    code: int
    output: str
    report_run_id: str
    finished_refits: set[str]
    running: int
    aliases: dict[str, str]
    versions: int


@dataclass
class Story:
    folder: Path
    steps: list[Step] = field(default_factory=list)
    # report.md as it was before the kill while writing the documents, and as that kill left it.
    sentinel: str = ""
    left_by_the_kill: str = ""
    temporaries_left: list[str] = field(default_factory=list)

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.folder}/mlflow.db")


def all_runs(client: MlflowClient) -> list[Run]:
    experiment = client.get_experiment_by_name(MODEL).experiment_id
    return client.search_runs([experiment], max_results=1000)


def refit_runs(client: MlflowClient) -> list[Run]:
    return [run for run in all_runs(client) if "report.configuration" in run.data.tags]


def report_runs(client: MlflowClient) -> list[Run]:
    """The report runs of study `smoke`, oldest first."""
    found = [run for run in all_runs(client) if run.info.run_name == "report smoke"]
    return sorted(found, key=lambda run: run.info.start_time)


def refit_state(client: MlflowClient) -> tuple[int, int]:
    """(FINISHED, RUNNING) refits now; (0, 0) while the store is busy being written."""
    try:
        statuses = [run.info.status for run in refit_runs(client)]
    except Exception:  # The report may hold SQLite's write lock for a moment; ask again at the next poll.
        return 0, 0
    return statuses.count("FINISHED"), statuses.count("RUNNING")


def alias_runs(client: MlflowClient) -> dict[str, str]:
    """alias -> the run id of the version it points at (none before the model is registered)."""
    try:
        model = client.get_registered_model(MODEL)
    except MlflowException:
        return {}
    return {alias: client.get_model_version(MODEL, version).run_id for alias, version in model.aliases.items()}


def version_count(client: MlflowClient) -> int:
    return len(client.search_model_versions(f"name='{MODEL}'"))


def record(story: Story, name: str, how: str, report: Report, code: int) -> None:
    client = story.client
    finished = {run.info.run_id for run in refit_runs(client) if run.info.status == "FINISHED"}
    running = sum(run.info.status == "RUNNING" for run in all_runs(client))
    newest = report_runs(client)[-1].info.run_id
    story.steps.append(
        Step(name, how, code, report.output, newest, finished, running, alias_runs(client), version_count(client))
    )


@pytest.fixture(scope="module")
def story(smoke_study: SmokeStudy, tmp_path_factory: pytest.TempPathFactory) -> Story:
    """A copy of the session's smoke study, then the report killed at each step and started again, and finally
    let finish."""
    folder = tmp_path_factory.mktemp("report-kills")
    smoke_study.copy(folder)
    story = Story(folder)
    client = story.client

    # During a refit: once one refit has finished and the next is RUNNING in the store, from outside.
    report = Report(folder)
    report.wait_for(lambda: refit_state(client)[0] >= 1 and refit_state(client)[1] >= 1, "a refit RUNNING")
    record(story, "during a refit", "outside", report, report.kill())

    # SIGTERM, what a batch system sends first, during the next refit it trains: it closes its own runs.
    report = Report(folder)
    done = len(story.steps[-1].finished_refits)
    report.wait_for(lambda: refit_state(client)[0] > done and refit_state(client)[1] >= 1, "a new refit RUNNING")
    report.process.send_signal(signal.SIGTERM)
    record(story, "SIGTERM during a refit", "SIGTERM", report, report.finish())

    # Inside the process, at a call: after the refits, before any model is registered; between creating the
    # versions and moving the aliases; between moving `baseline` and moving `champion`.
    for name, kill_at in (
        ("after the refits", "mnist_study.report.registry:promote"),
        ("between the versions and the aliases", "mnist_study.report.registry:move_aliases"),
        ("between the two aliases", "mlflow.tracking.client:MlflowClient.set_registered_model_alias:2"),
    ):
        report = Report(folder, kill_at)
        record(story, name, "seam", report, report.finish())

    # During the rerun check, from outside: a few seconds after it says it started its subprocess.
    report = Report(folder)
    report.wait_for(lambda: "rerun check: re-deriving" in report.output, "the rerun check start")
    time.sleep(3)
    record(story, "during the rerun check", "outside", report, report.kill())

    # While writing the documents: a complete report.md from before is there; the kill comes as the fourth
    # temporary copy begins (the champion's experiment file was the first, then the figures).
    documents = folder / "report"
    documents.mkdir(exist_ok=True)
    story.sentinel = "# the previous report, complete\n"
    (documents / "report.md").write_text(story.sentinel)
    report = Report(folder, "mnist_study.whole_files:temporary_copy:4")
    record(story, "while writing the documents", "seam", report, report.finish())
    story.left_by_the_kill = (documents / "report.md").read_text()
    story.temporaries_left = sorted(path.name for path in documents.rglob("*.tmp"))

    report = Report(folder)
    record(story, "to the end", "", report, report.finish())
    return story


def test_each_start_was_stopped_at_its_step_and_the_last_finished(story: Story) -> None:
    for step in story.steps:
        if step.how in ("outside", "seam"):
            assert step.code == -signal.SIGKILL, f"{step.name}: exit {step.code}\n{step.output}"
        assert (SEAM_MARKER in step.output) == (step.how == "seam"), f"{step.name}:\n{step.output}"
        # TensorFlow's start-up noise stays hidden in the report and in its refit workers alike.
        assert "oneDNN" not in step.output and "cuda" not in step.output.lower(), f"{step.name}:\n{step.output}"
    steps = {step.name: step for step in story.steps}
    assert "rerun check: re-deriving" in steps["during the rerun check"].output
    # SIGTERM is taken as Ctrl-C: one line that says how to resume, no traceback, the shell's status for it.
    stopped = steps["SIGTERM during a refit"]
    assert stopped.code == 128 + signal.SIGINT, stopped.output
    assert "interrupted: run the same command again to resume" in stopped.output
    assert "Traceback" not in stopped.output
    assert story.steps[-1].code == 0, story.steps[-1].output


def test_nothing_is_left_running_and_every_stray_says_which_report_closed_it(story: Story) -> None:
    client = story.client
    runs = all_runs(client)
    assert [run.info.run_name for run in runs if run.info.status == "RUNNING"] == []
    by_id = {run.info.run_id: run for run in runs}
    reports = [step.report_run_id for step in story.steps]
    for step, following in itertools.pairwise(story.steps):
        report = by_id[step.report_run_id]
        assert report.info.status == "KILLED", step.name
        if step.how == "SIGTERM":
            # It closed its own runs, the refit it was training included: nothing for the next start to close.
            assert report.data.tags["error"] == "interrupted (SIGINT or SIGTERM)"
            assert CLOSED_BY_TAG not in report.data.tags and step.running == 0
        else:
            # A SIGKILL leaves its runs RUNNING; the next start closes them and says which report did and why.
            assert report.data.tags[CLOSED_BY_TAG] == following.report_run_id, step.name
            assert "was gone (killed)" in report.data.tags[CLOSED_REASON_TAG]
            assert f"closed {step.running} run(s) a killed report left RUNNING" in following.output, following.name
    assert by_id[reports[-1]].info.status == "FINISHED"
    # The report run and the refits its two workers were training (the second may not have started yet).
    assert story.steps[0].running in (2, 3)
    for run in runs:
        if run.info.status == "KILLED":
            closed_by_a_report = run.data.tags.get(CLOSED_BY_TAG) in reports
            closed_itself = run.data.tags.get("error", "").startswith("interrupted")
            assert closed_by_a_report or closed_itself, run.info.run_name
    # A refit killed by SIGKILL and one stopped by SIGTERM during training are among them.
    killed_refits = [run for run in refit_runs(client) if run.info.status == "KILLED"]
    assert {CLOSED_BY_TAG in run.data.tags for run in killed_refits} == {True, False}


def test_every_restart_reused_every_refit_that_had_finished_and_none_was_trained_twice(story: Story) -> None:
    client = story.client
    by_id = {run.info.run_id: run for run in all_runs(client)}
    for before, after in itertools.pairwise(story.steps):
        tags = by_id[after.report_run_id].data.tags
        reused = {key.removeprefix(REUSED_TAG_PREFIX) for key in tags if key.startswith(REUSED_TAG_PREFIX)}
        assert before.finished_refits <= reused, f"{after.name}: did not reuse what {before.name} left"
    assert 1 <= len(story.steps[0].finished_refits) < REFITS
    finished = [run for run in refit_runs(client) if run.info.status == "FINISHED"]
    trained = sorted((run.data.tags["report.configuration"], run.data.tags["report.seed"]) for run in finished)
    assert len(trained) == REFITS and len(set(trained)) == REFITS
    markdown = (story.folder / "report" / "report.md").read_text()
    assert f"This report reused {REFITS} of its {REFITS} refits" in markdown
    assert by_id[story.steps[-1].report_run_id].data.tags["report.refits_reused"] == str(REFITS)


def test_the_aliases_were_sound_after_every_kill_and_complete_at_the_end(story: Story) -> None:
    client = story.client
    finished = {run.info.run_id for run in refit_runs(client) if run.info.status == "FINISHED"}
    for step in story.steps:
        # Never `champion` without `baseline`; never on a run that is not FINISHED.
        assert CHAMPION_ALIAS not in step.aliases or BASELINE_ALIAS in step.aliases, step.name
        assert set(step.aliases.values()) <= finished, step.name
    steps = {step.name: step for step in story.steps}
    assert steps["after the refits"].versions == 0
    # The versions exist, and the aliases are where they were: nowhere yet.
    assert steps["between the versions and the aliases"].versions == 2
    assert steps["between the versions and the aliases"].aliases == {}
    assert set(steps["between the two aliases"].aliases) == {BASELINE_ALIAS}
    last = story.steps[-1]
    assert set(last.aliases) == {BASELINE_ALIAS, CHAMPION_ALIAS}
    # Five starts reached the registry; the baseline's and the variant's seed-0 refits are still two versions.
    assert last.versions == 2


def test_the_rerun_check_killed_midway_ran_again_once_and_the_last_start_reused_it(story: Story) -> None:
    steps = {step.name: step for step in story.steps}
    ran = steps["while writing the documents"]
    assert "rerun check: re-deriving" in ran.output and "rerun check: bit-identical" in ran.output, ran.output
    last = story.steps[-1]
    assert "rerun check: re-deriving" not in last.output, last.output
    assert f"rerun check: bit-identical (6 values) (reused: report run {ran.report_run_id} reran it" in last.output
    tags = story.client.get_run(last.report_run_id).data.tags
    assert tags["rerun.reused_from"] == ran.report_run_id and tags["rerun.verdict"].startswith("bit-identical")
    markdown = (story.folder / "report" / "report.md").read_text()
    assert f"That rerun ran in report run `{ran.report_run_id}`, with the same code and data" in markdown


def test_the_champion_loads_and_scores_its_runs_logged_accuracy(story: Story) -> None:
    client = story.client
    run = client.get_run(client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).run_id)
    assert run.info.status == "FINISHED"
    mlflow.set_tracking_uri(f"sqlite:///{story.folder}/mlflow.db")
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION_ALIAS}")
    finally:
        mlflow.set_tracking_uri(None)
    _, (images, labels) = load_mnist()
    correct = int((model.predict(images)["digit"].to_numpy() == labels).sum())
    assert correct == round(run.data.metrics["test_accuracy"] * len(labels))


def test_the_documents_were_written_whole_or_not_at_all(story: Story) -> None:
    documents = story.folder / "report"
    killed_while_writing = next(step for step in story.steps if step.name == "while writing the documents")
    assert killed_while_writing.code == -signal.SIGKILL
    # The kill left the earlier report.md as it was, and the figures it had copied in hidden temporaries.
    assert story.left_by_the_kill == story.sentinel
    assert [name.split(".")[1] for name in story.temporaries_left] == ["accuracy", "learning_curves"]
    # The last start replaced it whole and removed the temporaries.
    markdown = (documents / "report.md").read_text()
    assert markdown.startswith("# Reproducibility report: study `smoke`")
    assert "## Commands" in markdown and markdown.rstrip().endswith("```")
    assert (documents / "report.html").read_text().endswith("</body></html>\n")
    for name in ("accuracy", "learning_curves", "optimization_history", "param_importances"):
        assert (documents / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert [path.name for path in documents.rglob("*.tmp")] == []
    assert f"make serve MODEL=models:/{MODEL}@{CHAMPION_ALIAS}" in markdown
    assert "it set out to maximize `val_accuracy`, as each trial's seed-0 run measured it" in markdown


def test_a_reused_refit_equals_a_fresh_one(story: Story) -> None:
    """The baseline's seed-0 refit, planned as the report plans it: reused from the store, then trained afresh."""
    import optuna

    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{story.folder}/optuna.db")
    stores = store_overrides(story.folder)[:2]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        candidates = selection.candidates(study, selection.top_trials(study, 1))
        baseline = next(candidate for candidate in candidates if candidate.role == "baseline")
        # As the report plans it with its default two workers: each refit sized to one worker's share of the cores.
        threads = workers.thread_overrides(2)
        (planned,) = refit.plan([baseline], [0], [*SHRINK, *stores, *threads])
    # The check's own run gets a seed no refit has, so that its key is no refit's.
    with tracked_run(OmegaConf.merge(planned.cfg, {"seed": 12345}), "reuse check") as tracked:
        (reused,) = refit.run_refits([planned], tracked, "smoke", reuse=True, workers=None)
        # Trained afresh as the report trains it: in a worker process (one is enough for one refit).
        with workers.RefitWorkers(1) as trainers:
            (fresh,) = refit.run_refits([planned], tracked, "smoke", reuse=False, workers=trainers)
    assert reused.reused and not fresh.reused
    original = story.client.get_run(reused.run_id)
    assert (original.data.tags["report.configuration"], original.data.tags["report.seed"]) == (baseline.label, "0")
    assert fresh.run_id != reused.run_id
    assert fresh.test_accuracy == reused.test_accuracy
    assert fresh.test_loss == reused.test_loss
    assert fresh.history == reused.history
    assert set(fresh.history) == {"loss", "accuracy"}
