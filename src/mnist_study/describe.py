"""Run names and run descriptions: the prose a person reads on a run's MLflow page and in its figures' titles."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

# Overrides that say where a job logs or reports, not what it trains; they do not name a run.
BOOKKEEPING_PREFIXES = ("+experiments=", "experiments=", "trial.", "tracking.", "hydra.", "name=")


def run_name(cfg: DictConfig, overrides: Sequence[str] = ()) -> str:
    """What the MLflow run is called: the config's `name`, a sweep trial's number, or the overrides in use."""
    if cfg.name:
        return str(cfg.name)
    if cfg.trial.number is not None:
        return f"trial-{cfg.trial.number}"
    meaningful = [item for item in overrides if not item.startswith(BOOKKEEPING_PREFIXES)]
    return ",".join(meaningful) or "baseline"


def protocol(cfg: DictConfig) -> str:
    """How the numbers were made: honestly, or by the tutorial's fit-on-test protocol."""
    return "tutorial: fit on test, score on test" if cfg.data.fit_on == "test" else "fit on train, select on val"


def _number(value: object) -> str:
    """A hyperparameter as a person writes it: 0.001 rather than 1.0e-03, 0.25 rather than 0.25000000001."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def widths(cfg: DictConfig) -> list[int]:
    """The hidden layers' widths (one for the tutorial's network; a deeper layer without its own, the first's)."""
    layers = cfg.model.get("layers", 1)
    deeper = [cfg.model.get(f"units_{position}") for position in range(2, layers + 1)]
    return [cfg.model.units, *(cfg.model.units if width is None else width for width in deeper)]


def recipe(cfg: DictConfig) -> list[str]:
    """What the family added beyond the tutorial, in words, for the settings a run changed (none by default)."""
    extras = []
    if cfg.model.get("input_dropout"):
        extras.append(f"input dropout {_number(cfg.model.input_dropout)}")
    if cfg.model.get("max_norm"):
        extras.append(f"max-norm {_number(cfg.model.max_norm)}")
    if cfg.train.get("label_smoothing"):
        extras.append(f"label smoothing {_number(cfg.train.label_smoothing)}")
    schedule = cfg.get("schedule")
    if schedule is not None and schedule.get("name", "constant") != "constant":
        extras.append(f"{schedule.name} schedule")
    return extras


def short_description(cfg: DictConfig) -> str:
    """The parameters a sweep varies, in one line (a plot's title)."""
    regularisers = [f"dropout {_number(cfg.model.dropout)}"] if cfg.model.dropout else []
    extras = "".join(f", {extra}" for extra in [*regularisers, *recipe(cfg)])
    units = "-".join(map(str, widths(cfg)))
    return (
        f"{units} units{extras}, {cfg.optimizer.name} lr {_number(cfg.optimizer.learning_rate)}, "
        f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}"
    )


def what_it_is(cfg: DictConfig, name: str) -> str:
    """The first sentence of a run's description: a trial, the baseline, the tutorial's protocol, or a run."""
    if cfg.trial.number is not None:
        return f"Trial {cfg.trial.number} of the Optuna study `{cfg.trial.study_name}`."
    if name == "baseline":
        return "The baseline: the Keras MNIST tutorial network and hyperparameters, trained honestly."
    if cfg.data.fit_on == "test":
        return f"`{name}`: the tutorial's own protocol, kept for comparison only."
    return f"A single run: `{name}`."


def description(cfg: DictConfig, name: str, what: str | None = None) -> str:
    """The run's MLflow description (the note on its page): what it is (`what`, or as `what_it_is` says) and
    every parameter that shapes it."""
    what = what or what_it_is(cfg, name)
    knobs = [
        f"{key} {_number(value)}"
        for key, value in cfg.optimizer.items()
        if key not in ("_target_", "name", "learning_rate")
    ]
    dropout = f"dropout {_number(cfg.model.dropout)}" if cfg.model.dropout else "no dropout"
    dropout = ", ".join([dropout, *recipe(cfg)])
    hidden = " → ".join(f"{width} {cfg.model.activation}" for width in widths(cfg))
    network = (
        f"A 784 → {hidden} → 10 softmax network ({dropout}), trained with "
        f"{cfg.optimizer.name} at learning rate {_number(cfg.optimizer.learning_rate)}"
        f"{' (' + ', '.join(knobs) + ')' if knobs else ''} for {cfg.train.epochs} epochs at batch size "
        f"{cfg.train.batch_size}, seed {cfg.seed}."
    )
    if cfg.data.fit_on == "test":
        data = "Fitted on the 10 000 test images and scored on them: its test accuracy is not an honest estimate."
    else:
        subset = f"the first {cfg.data.train_subset} of " if cfg.data.train_subset is not None else ""
        data = (
            f"Fitted on {subset}the training images, selected on the last {cfg.data.val_size} of them "
            f"(`val_accuracy`), scored once on the 10 000 test images (`test_accuracy`)."
        )
    return f"{what}\n\n{network}\n\n{data}"


def outcome(history: dict[str, list[float]], test_accuracy: float | None, pruned: bool) -> str:
    """One sentence on how the run ended, appended to its description."""
    epochs = len(history.get("loss", []))
    val = history.get("val_accuracy")
    val_text = f", val_accuracy {val[-1]:.4f}" if val else ""
    if pruned:
        return f"Pruned after epoch {epochs}{val_text}."
    test_text = f", test_accuracy {test_accuracy:.4f}" if test_accuracy is not None else ""
    return f"Finished {epochs} epochs{val_text}{test_text}."
