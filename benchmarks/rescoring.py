"""What the report's re-scoring step changes, measured on studies that `default_study.py --keep` kept.

    .venv/bin/python benchmarks/rescoring.py DIR/seed_0 DIR/seed_1 ... [--trials 5] [--seeds 1 2]

Each folder holds a default study and the report that ran on it without re-scoring (its refits' 5-seed test
accuracies are in the report run's results.json). For each study this runs the report's own re-scoring step
(`report.rescore`: the best trials at more seeds, validation only), lets it choose the variants and their order,
refits with seeds 0-4 only the variants the earlier report did not, and applies the report's own statistics and
champion rule (`report.results`, `report.registry.champion`). Training is deterministic: one refit the earlier
report ran is run again and must give the same test accuracy, which is checked and printed. So the champion and
gain printed are what `python src/report.py` with re-scoring would hand over on that study, at a fraction of its
cost. Nothing is written to the folders' stores. Last line: `min_gain=X seeds=N` over the folders.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
from hydra import initialize_config_dir
from mlflow.tracking import MlflowClient
from report_runs import STUDY, report_results, store_uris

import mnist_study.paths  # noqa: F401  (registers the ${project_root:} resolver)
from mnist_study.report import refit, registry, rescore, results, selection, sequential

ROOT = Path(__file__).resolve().parents[1]
REFIT_SEEDS = tuple(range(5))


def earlier_refits(folder: Path) -> dict[str, dict]:
    """The earlier report's results.json: configuration label -> its overrides and 5 test accuracies."""
    client = MlflowClient(store_uris(folder)["mlflow"])
    return report_results(client, client.get_model_version_by_alias(STUDY, "champion").tags["report_run_id"])


def measure(folder: Path, trials: int, seeds: list[int]) -> dict:
    """Re-score one kept study; the champion the report would promote after it, and its gain."""
    from mnist_study.train import train

    study = optuna.load_study(study_name=STUDY, storage=store_uris(folder)["optuna"])
    earlier = earlier_refits(folder)
    pool = selection.top_trials(study, max(3, trials))
    rescored = rescore.run(rescore.plan(pool[:trials], seeds, []))
    order = rescore.ranked(pool, rescored, maximize=True)[:3]
    chosen = [candidate for candidate in selection.candidates(study, order) if candidate.role != "replica"]
    plans = refit.plan(chosen, REFIT_SEEDS, ["train.verbose=0"])
    done, checked = [], None
    for planned in plans:
        known = earlier.get(planned.candidate.label)
        if known is not None and tuple(known["overrides"]) == planned.candidate.overrides:
            accuracy = known["test_accuracy"][planned.seed]
            if checked is None:  # Determinism: the first reused refit is trained again and must agree.
                again = train(planned.cfg)["test_accuracy"]
                checked = f"{planned.candidate.label} seed {planned.seed}: {accuracy:.4f} then {again:.4f}"
                if again != accuracy:
                    raise SystemExit(f"error: refits are not deterministic here ({checked})")
        else:
            accuracy = train(planned.cfg)["test_accuracy"]
            print(f"refit {planned.candidate.label} seed={planned.seed}: {accuracy:.4f}", flush=True)
        done.append(refit.RefitResult(planned, "", accuracy, float("nan")))
    # The procedure the earlier reports used: every variant refitted with every seed, tested once (Holm).
    design = sequential.Design(seeds=len(REFIT_SEEDS), interim_seeds=())
    accuracies = {c.label: [r.test_accuracy for r in done if r.refit.candidate.label == c.label] for c in chosen}
    baseline_label = next(c.label for c in chosen if c.role == "baseline")
    table = results.rows(chosen, done, sequential.decide(design, accuracies, baseline_label), design)
    winner = registry.champion(table)
    baseline = next(row for row in table if row.candidate.role == "baseline")
    return {
        "folder": folder.name,
        "study_pick": f"trial {study.best_trial.number}",
        "rescored": {f"trial {entry.trial.number}": [round(s, 4) for s in entry.scores] for entry in rescored},
        "order": [row.candidate.label for row in table if row.candidate.role == "variant"],
        "means": {row.candidate.label: round(100 * row.accuracy.mean, 2) for row in table},
        "verdicts": {row.candidate.label: row.verdict for row in table},
        "champion": winner.candidate.label,
        "gain_points": 100 * (winner.accuracy.mean - baseline.accuracy.mean),
        "determinism": checked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="folders kept by default_study.py --keep")
    parser.add_argument("--trials", type=int, default=5, help="trials re-scored (the report's rescore.trials)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="re-scoring seeds (rescore.seeds)")
    args = parser.parse_args()
    rows = []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for folder in args.folders:
            row = measure(folder.resolve(), args.trials, args.seeds)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("| study | study's pick | re-scored order | champion | gain (points) |")
    print("|---|---|---|---|---|")
    for row in rows:
        order, gain = ", ".join(row["order"]), f"{row['gain_points']:+.2f}"
        print("| " + " | ".join((row["folder"], row["study_pick"], order, row["champion"], gain)) + " |")
    print(f"min_gain={min(row['gain_points'] for row in rows):.2f} seeds={len(rows)}")


if __name__ == "__main__":
    main()
