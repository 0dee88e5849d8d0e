"""The results pages are generated from the benchmarks' JSON lines, and what is committed is what they say."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("results_page", ROOT / "scripts" / "results_page.py")
results_page = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(results_page)

ROW = {
    "seed": 3,
    "sweep_s": 600.0,
    "report_s": 300.0,
    "pick": "trial 9 (val 0.9880)",
    "champion": "trial 9",
    "champion_mean": 0.9851,
    "baseline_mean": 0.9802,
    "gain_points": 0.49,
    "verdict": "better",
    "date": "2026-12-02",
    "commit": "abc1234",
}


def test_the_committed_pages_match_the_recorded_rows() -> None:
    rows = results_page.read_rows(results_page.DEFAULT_STUDY)
    reference = results_page.read_rows(results_page.REFERENCE, required=False)
    frontier = results_page.read_rows(results_page.FRONTIER_STUDY, required=False)
    ablation = results_page.newest_run(results_page.read_lines(results_page.ABLATION))
    assert results_page.RESULTS_PAGE.read_text() == results_page.results_page(rows, reference, frontier, ablation)
    readme = results_page.README.read_text()
    stale = "README's results block is stale"
    assert readme == results_page.readme_with_summary(readme, rows, reference, frontier, ablation), stale


def test_a_reference_commit_measured_on_the_same_seed_gives_the_speedup() -> None:
    earlier = {**ROW, "sweep_s": 1200.0, "report_s": 600.0, "gain_points": 0.44, "commit": "2955a73"}
    summary = results_page.summary([ROW], [earlier])
    assert "sampler seed 3: 15.0 against 30.0 minutes with the defaults of commit 2955a73 (2.00x faster" in summary
    assert "champion gain +0.49 against +0.44 points" in summary
    slower = results_page.summary([{**ROW, "sweep_s": 1500.0}], [earlier])
    assert "sampler seed 3: 30.0 against 30.0 minutes" in slower and "1.00x faster" in slower
    assert "1.20x slower" in results_page.summary([{**ROW, "sweep_s": 1500.0, "report_s": 660.0}], [earlier])
    # A reference measured on another seed is no side-by-side comparison.
    assert "faster" not in results_page.summary([ROW], [{**earlier, "seed": 0}])


def test_a_row_becomes_a_table_line_and_a_summary(tmp_path: Path) -> None:
    other = {**ROW, "seed": 4, "sweep_s": 1200.0, "champion_mean": 0.9840, "gain_points": 0.38, "verdict": "n.d."}
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in (other, ROW)) + "\n")
    rows = results_page.read_rows(path)
    assert [row["seed"] for row in rows] == [3, 4]
    table = results_page.seed_table(rows)
    assert table[2] == (
        "| 3 | 10.0 min | 5.0 min | trial 9 (val 0.9880) | trial 9 | 98.51 % (5) | +0.49 | 2026-12-02 at abc1234 |"
    )
    summary = results_page.summary(rows)
    assert "98.40 to 98.51 %" in summary
    assert "+0.38 to +0.49 points" in summary
    assert "on 1 of 2 seeds" in summary
    assert "15 to 25 minutes" in summary


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="markers"):
        results_page.readme_with_summary("# no block here\n", [ROW])


def test_a_frontier_row_is_compared_with_the_default_champion() -> None:
    frontier = {
        **ROW,
        "champion_mean": 0.98746,
        "champion_refits": 3,
        "reference_mean": 0.98497,
        "vs_reference_points": 0.25,
        "verdict_vs_reference": "better than mnist-mlp_champion at 95%",
    }
    (line,) = results_page.frontier_table([frontier])[2:]
    assert "| 98.75 % (3) | +0.49 | 98.50 % | +0.25 | better than mnist-mlp_champion at 95% |" in line
    summary = results_page.frontier_summary([frontier, {**frontier, "seed": 4, "verdict_vs_reference": "n.d."}])
    assert "over 2 sampler seeds" in summary and "better than it at 95 % on 1 of 2" in summary
    page = results_page.results_page([ROW], [], [frontier])
    assert "## The frontier study" in page and line in page
    assert "## The frontier study" not in results_page.results_page([ROW])


def ablation_row(arm: str, overrides: list[str], mean: float, difference: float, interval: list[float]) -> dict:
    return {
        "arm": arm,
        "overrides": ["+experiments=frontier_champion", *overrides],
        "seeds": [0, 1, 2, 3, 4],
        "mean": mean,
        "difference_points": difference,
        "interval_points": interval,
        "experiment": "frontier_champion",
        "date": "2026-12-02",
        "commit": "abc1234",
    }


def test_an_ablation_names_the_knobs_that_cost_and_those_that_do_not() -> None:
    champion = ablation_row("champion", [], 0.9875, 0.0, [0.0, 0.0])
    depth = ablation_row("one hidden layer", ["model.layers=1"], 0.9850, -0.25, [-0.31, -0.19])
    smoothing = ablation_row("no label smoothing", ["train.label_smoothing=0"], 0.9873, -0.02, [-0.08, 0.04])
    # An earlier run of the same file is not this run; the champion comes first whatever the order written.
    earlier = {**depth, "commit": "0000000", "difference_points": -9.0}
    rows = results_page.newest_run([earlier, depth, champion, smoothing])
    assert [row["arm"] for row in rows] == ["champion", "one hidden layer", "no label smoothing"]
    table = results_page.ablation_table(rows)
    assert table[3] == "| one hidden layer | `model.layers=1` | 98.50 % (5) | -0.25 | -0.31 to -0.19 |"
    summary = results_page.ablation_summary(rows)
    expected = "from the champion's 98.75 %, one hidden layer -0.25 points; no label smoothing: no difference"
    assert expected in summary
    assert "### Which knob bought what" in results_page.results_page([ROW], [], [], rows)


def test_a_row_measured_with_overrides_says_which() -> None:
    overridden = {**ROW, "arguments": ["+hydra.sweeper.sampler.n_startup_trials=5"], "report_arguments": []}
    page = results_page.results_page([overridden])
    assert "- seed 3 at abc1234: sweep `+hydra.sweeper.sampler.n_startup_trials=5`" in page
    assert "Measured with overrides" not in results_page.results_page([ROW])
