"""Look at the study as a person does: MLflow's UI and optuna-dashboard, driven by headless Chromium.

Test tooling, not product: shared by the browser test (tests/test_ui_browser.py) and the README screenshots
(scripts/screenshots.py); the servers themselves are started as `make ui` / `make dashboard` start them (see
tests/servers.py). Uses Debian's Chromium through Playwright's Python client; nothing here downloads a browser.
Playwright is a development dependency, so it is imported only where a page is opened.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
# The machine's network is closed: without the background-networking flags Chromium keeps trying to reach its
# update, sync and field-trial services and floods the log with refused connections.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Rendering waits are generous: on a busy 2-core machine the first paint of MLflow's React bundle takes seconds.
WAIT_MS = 60_000


@contextlib.contextmanager
def chromium_page(width: int = 1440, height: int = 900) -> Iterator[Page]:
    """A page in a fresh headless Chromium profile (Debian's Chromium; Playwright downloads nothing)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": width, "height": height},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            context.close()


def compare_url(base: str, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> str:
    """MLflow's compare view, built the way its frontend builds it (getCompareRunPageRoute)."""
    runs = json.dumps(list(run_ids), separators=(",", ":"))
    experiments = json.dumps(list(experiment_ids), separators=(",", ":"))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}"


def artifact_url(base: str, experiment_id: str, run_id: str, path: str) -> str:
    """A run's page with one artifact selected in its artifact browser."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path}"


def wait_for_text(page: Page, pattern: str | re.Pattern[str], timeout_ms: int = WAIT_MS) -> None:
    """Wait until the rendered page shows `pattern` (a string or regex) somewhere visible."""
    page.get_by_text(pattern).first.wait_for(state="visible", timeout=timeout_ms)


def format_metric(value: float) -> str:
    """A metric as MLflow's UI prints it (its frontend's `Utils.formatMetric`), so a test can look for it."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < 0.001:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa}e{int(exponent):+d}"
    # JavaScript's Math.round rounds halves up; Python's round() would round them to even.
    for limit, scale in ((10, 1000), (100, 100)):
        if magnitude < limit:
            return js_number(math.floor(value * scale + 0.5) / scale)
    return js_number(math.floor(value * 10 + 0.5) / 10)


def js_number(value: float) -> str:
    """JavaScript's Number.toString, for values in plain notation (1e-7 <= |value| < 1e21): 2.0 prints as 2.

    Both languages print a float's shortest round-trip digits; only their exponent notations differ. The Models
    tab prints a logged model's metrics this way, unrounded.
    """
    return str(int(value)) if value == int(value) else repr(value)


def close_assistant(page: Page) -> None:
    """Close MLflow's assistant side panel if it is open: it covers a third of every screenshot."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


RUN_NAMES = '[col-id="attributes.`Run Name`"] a'


def show_experiment(page: Page, url: str, parents: Sequence[str]) -> list[str]:
    """Open `url` (the experiment's link, as `make ui` prints it) on its runs table, expand the named parent
    runs, return the run names shown in order."""
    page.goto(url)
    for parent in parents:
        wait_for_text(page, parent)
        row = page.locator('[role="row"]', has_text=parent).first
        # The expander is the button in the run-name cell; child runs stay hidden until it is pressed.
        row.locator('[col-id="attributes.`Run Name`"] button').first.click()
    names = page.locator(RUN_NAMES)
    # Children render a moment after the click: wait until the table has grown past the top-level rows.
    page.wait_for_function(f"n => document.querySelectorAll({json.dumps(RUN_NAMES)}).length > n", arg=len(parents))
    return [name.inner_text().strip() for name in names.all()]


_RUN_DATASETS = """() => {
    const names = {};
    const datasets = {};
    for (const row of document.querySelectorAll('.ag-row')) {
        const id = row.getAttribute('row-id');
        const name = row.querySelector('[col-id="attributes.`Run Name`"] a');
        if (name) names[id] = name.innerText.trim();
        const cell = row.querySelector('[col-id="attributes.`Dataset`"]');
        if (!cell) continue;
        datasets[id] = [...cell.querySelectorAll('[data-testid="open-dataset-drawer"]')].map((button) => {
            const tag = button.closest('span[title]').parentElement.querySelector('[role="status"]');
            return [button.innerText.trim(), tag ? tag.innerText.trim() : ''];
        });
    }
    return Object.fromEntries(Object.entries(names).map(([id, name]) => [name, datasets[id] || []]));
}"""


def run_datasets(page: Page) -> dict[str, list[tuple[str, str]]]:
    """The runs table's Dataset column as a person reads it, every dataset shown (Expand rows pressed):
    {run name: [("<dataset> (<digest>)", "<context>"), ...]}, for the runs on screen."""
    expand = page.get_by_text("Expand rows", exact=True)
    expand.click()
    # Expanded, a cell lists each dataset on its own line; collapsed, it shows the first and "+N".
    page.locator('[col-id="attributes.`Dataset`"].is-multiline-cell').first.wait_for()
    shown = page.evaluate(_RUN_DATASETS)
    return {name: [(label, context) for label, context in entries] for name, entries in shown.items()}


def compare_runs(page: Page, run_names: Sequence[str]) -> None:
    """In the runs table, tick the named runs and press Compare; wait until the compare view shows them all."""
    for name in run_names:
        link = page.locator(RUN_NAMES).filter(has_text=re.compile(rf"^{re.escape(name)}$"))
        row = page.locator('[role="row"]').filter(has=link).first
        row.locator(".ag-selection-checkbox input[type=checkbox]").check()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_url(re.compile(r".*#/compare-runs\?"))
    wait_for_comparison(page, run_names)


def show_comparison(
    page: Page, base: str, run_ids: Sequence[str], experiment_id: str, run_names: Sequence[str]
) -> None:
    """Open MLflow's compare view of `run_ids` and wait until every run's name has rendered."""
    page.goto(compare_url(base, run_ids, [experiment_id]))
    wait_for_comparison(page, run_names)


def wait_for_comparison(page: Page, run_names: Sequence[str]) -> None:
    """Wait until the compare view shows every run's name and its metrics table."""
    for name in run_names:
        wait_for_text(page, re.compile(rf"^{re.escape(name)}$"))
    page.get_by_text("val_accuracy", exact=True).first.wait_for()


def metric_row(page: Page, metric: str) -> list[str]:
    """The values printed on `metric`'s line of the compare view's metrics table, one per run, left to right.

    The table is a virtualised grid: the names and the values are separate grids whose rows line up on screen
    because each cell is placed at the same `top`; a value belongs to a name when it sits at the name's `top`.
    """
    label = page.locator('a[title="Plot chart"]', has_text=re.compile(rf"^{re.escape(metric)}$")).first
    label.wait_for()
    return page.evaluate(
        """(name) => {
            const label = [...document.querySelectorAll('a[title="Plot chart"]')]
                .find((a) => a.textContent.trim() === name);
            const cell = label.parentElement;
            const grids = [...document.querySelectorAll('.ReactVirtualized__Grid__innerScrollContainer')];
            const names = cell.parentElement;
            return grids
                .filter((grid) => grid !== names)
                .flatMap((grid) => [...grid.children])
                .filter((other) => other.style.top === cell.style.top)
                .sort((a, b) => parseFloat(a.style.left) - parseFloat(b.style.left))
                .map((other) => other.innerText.trim());
        }""",
        metric,
    )


def metric_row_on_screen(page: Page, metric: str) -> list[str]:
    """The values a person sees beside `metric` in the compare view: cells right of its name, level with it.

    Unlike `metric_row` this reads the screen, so it also catches the name and value grids scrolled out of step.
    """
    return page.evaluate(
        """(name) => {
            const label = [...document.querySelectorAll('a[title="Plot chart"]')]
                .find((a) => a.textContent.trim() === name);
            if (!label) return [];
            const box = label.getBoundingClientRect();
            const middle = (box.top + box.bottom) / 2;
            return [...document.querySelectorAll('.ReactVirtualized__Grid__innerScrollContainer > div')]
                .filter((cell) => {
                    const r = cell.getBoundingClientRect();
                    return r.left >= box.right && r.top <= middle && r.bottom >= middle;
                })
                .sort((a, b) => a.getBoundingClientRect().left - b.getBoundingClientRect().left)
                .map((cell) => cell.innerText.trim());
        }""",
        metric,
    )


def open_models_tab(page: Page) -> None:
    """From any page of the UI with an experiment in its side bar, open the experiment's Models tab by clicking.

    The side bar lists Models only in the UI's Model training mode. The compare view drops the link's
    `workflowType` and falls back to what the browser remembers (GenAI in a fresh one, where the same page is
    called "Agent versions"), so the mode switch is pressed first; pressing it in Model training mode changes
    nothing. MLflow remembers the choice in this browser profile from then on.
    """
    page.get_by_role("button", name="Model training", exact=True).click()
    page.get_by_role("link", name="Models", exact=True).click()
    page.wait_for_url(re.compile(r".*#/experiments/[^/?]+/models"))


# A logged model's cell holding its source run, and the Models tab's empty state (no model logged).
_SOURCE_RUN_CELLS = ".ag-center-cols-container [col-id='source_run_id']"
_NO_MODELS = "Track and compare versions of your models"
# The Models tab's column named `name` when it is wholly on screen: {row id: text of the cell under its header},
# else null. Cells are matched to the header by where they are drawn: their `col-id` is escaped differently.
_COLUMN_ON_SCREEN = """(name) => {
    const header = [...document.querySelectorAll('.ag-header-cell')]
        .find((h) => h.querySelector('.ag-header-cell-text')?.textContent.trim() === name);
    if (!header) return null;
    const view = header.closest('.ag-root').querySelector('.ag-center-cols-viewport').getBoundingClientRect();
    const box = header.getBoundingClientRect();
    if (box.width === 0 || box.left < view.left || box.right > view.right) return null;
    const values = {};
    for (const row of document.querySelectorAll('.ag-center-cols-container .ag-row')) {
        const cell = [...row.querySelectorAll(':scope > [col-id]')].find((c) => {
            const r = c.getBoundingClientRect();
            return Math.abs(r.left - box.left) < 1 && Math.abs(r.right - box.right) < 1;
        });
        if (cell) values[row.getAttribute('row-id')] = cell.innerText.trim();
    }
    return values;
}"""


def logged_models_column(page: Page, column: str, max_scrolls: int = 100) -> dict[str, str]:
    """The Models tab's `column` (a metric's name) as a person reads it: {source run's name: value shown}.

    The logged models' metrics are columns to the right of their attributes, drawn only when scrolled into view
    (the table draws the columns on screen): the table is scrolled right with the mouse wheel until `column` is
    wholly on screen, where it is read. Every model's source run is read first, before it scrolls away; an empty
    Models tab gives {}.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.locator(_SOURCE_RUN_CELLS).or_(page.get_by_text(_NO_MODELS)).first.wait_for()
    if not page.locator(_SOURCE_RUN_CELLS).count():
        return {}
    # A source run shows as its id until the UI has fetched the run's name: read the cells once every name is in.
    page.wait_for_function(
        """(selector) => [...document.querySelectorAll(selector)]
            .every((cell) => !/^[0-9a-f]{32}$/.test(cell.innerText.trim()))""",
        arg=_SOURCE_RUN_CELLS,
    )
    sources: dict[str, str] = page.evaluate(
        """(selector) => Object.fromEntries([...document.querySelectorAll(selector)]
            .map((cell) => [cell.closest('.ag-row').getAttribute('row-id'), cell.innerText.trim()]))""",
        _SOURCE_RUN_CELLS,
    )
    viewport = page.locator(".ag-center-cols-viewport").first
    viewport.hover()
    handle = viewport.element_handle()
    for _ in range(max_scrolls):
        values = page.evaluate(_COLUMN_ON_SCREEN, column)
        if values is not None:
            return {sources[row]: value for row, value in values.items()}
        before = handle.evaluate("v => v.scrollLeft")
        page.mouse.wheel(150, 0)
        # The wheel's scroll lands a frame or so later: wait until the table has moved (it stays put at its end).
        try:
            page.wait_for_function("([v, x]) => v.scrollLeft !== x", arg=[handle, before], timeout=10_000)
        except PlaywrightTimeoutError:
            break
    raise LookupError(
        f"the Models tab shows no column {column!r} (scrolled right to its end, or {max_scrolls} times)"
    )


def show_artifact(page: Page, base: str, experiment_id: str, run_id: str, path: str) -> tuple[int, int]:
    """Open a run's image artifact in its artifact browser; return the rendered image's natural size."""
    page.goto(artifact_url(base, experiment_id, run_id, path))
    wait_for_text(page, path)
    # The preview is fetched and shown as a blob: URL; wait until the browser has decoded it.
    image = page.locator("img[src^='blob:']").first
    image.wait_for(state="visible")
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle())
    width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    return int(width), int(height)


def show_dashboard_trials(page: Page, base: str, study_name: str) -> list[str]:
    """Open optuna-dashboard's study list, follow the study's link to its trial list, return the trials shown."""
    page.goto(f"{base}/dashboard/")
    links = page.locator("a[href*='/dashboard/studies/']")
    links.first.wait_for()
    # Each link reads "<id>. <name>" over "Direction: ..."; match the whole name, so `smoke:x` is not `smoke`.
    title = re.compile(rf"^\d+\. {re.escape(study_name)}$")
    matching = [link for link in links.all() if title.match(link.inner_text().splitlines()[0].strip())]
    if not matching:
        raise LookupError(f"optuna-dashboard lists no study named {study_name!r}")
    matching[0].click()
    # The side bar's "Trials (List)" entry is an icon at this width; its route is the study's page + /trials.
    page.wait_for_url(re.compile(r".*/dashboard/studies/\d+$"))
    page.goto(f"{page.url}/trials")
    # The header reads "0 Trials" until the first fetch of the trials returns (seconds on a busy machine): wait
    # for a count of one or more, as the study shown here has.
    header = page.get_by_text(re.compile(r"^[1-9]\d* Trials?$")).first
    header.wait_for()
    count = int(header.inner_text().split()[0])
    entries = page.get_by_text(re.compile(r"^Trial \d+$"))
    if count:
        # The count is drawn before the list below it: wait for the list's last entry too, not the count alone.
        entries.nth(count - 1).wait_for()
    return sorted(
        {text.strip() for text in entries.all_inner_texts()},
        key=lambda text: int(text.split()[1]),
    )
