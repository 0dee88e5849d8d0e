"""The Optuna sweeper Hydra runs for `python src/run.py -m <study>`: one module per concern.

- `settings`: `hydra.sweeper.*` as checked Python values; the sampler and pruner built once before trial 0.
- `storage`: storage URLs (sqlite, postgresql, journal file): parsed, checked, opened once per process.
- `space`: Hydra's sweep grammar as Optuna distributions; every value the space can produce checked first.
- `constraints`: bounds on a trial's costs, judged from what its job recorded; which trials are feasible.
- `sampling`: the configured sampler, reseeded from each trial's number.
- `schema`: the study's schema: the attributes a trial carries, which trials count, counts per state.
- `ledger`: the one owner of a trial's life (queue, copy, ask, start, report, tell, give back, recover).
- `liveness`: heartbeats and process identity: which RUNNING trials lost their worker.
- `known`: known configurations first (`enqueue`, `warm_start`), checked against the space.
- `parent_run`: the study's MLflow parent run, elected once across workers, and its summary.
- `stores`: a store that fails mid-sweep, told apart from a failed trial.
- `job_trial`: the job's side: reconnect to its trial, report every epoch, prune.
- `sweeper`: ask, launch the job through Hydra's launcher, tell; the progress lines; the time budget.
- `logs`: where the sweep's lines go (console, sweep.log, each job's log).

The Hydra plugin (`hydra_plugins.mnist_study_sweeper`) only checks the settings and delegates here.
"""
