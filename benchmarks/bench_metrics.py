"""Survival metrics at scale: our exact O(n log n) C-indices against lifelines and scikit-survival, how
their cost grows with n, td-AUC / IBS on 10^6 patients, the bootstrap, and per-epoch validation
against an epoch of training (issue 27 items 2-3, issue 28 item 5).

    python benchmarks/bench_metrics.py [--quick] [--out benchmarks/results/metrics.md]

Everything is measured in this one run, side by side, on synthetic cohorts: risk ~ N(0, 1) rounded
to float32 (the app's risks), event times exponential with rate exp(risk), exponential censoring,
durations in whole days (ties, as in registries). torch runs on one intra-op thread, as the app sets
for tabular data (``set_threads``) and as lifelines and scikit-survival run; each timing is the
best of ``--repeats`` calls (the references' of two, or one where a call takes seconds). Every
comparison also checks that the values agree (|difference| printed; the unit tests hold them to
1e-9). Prints the report (Markdown) and writes it to ``--out``.

Figures:

* ``harrell_vs_lifelines``: ``concordance_index`` vs ``lifelines.utils.concordance_index`` at
  n = 2x10^5 (target: >= 20x faster, same value);
* ``uno_vs_sksurv``: ``uno_cindex`` vs ``sksurv.metrics.concordance_index_ipcw`` at 3x10^4, tau at
  the 75% quantile of event times (target >= 20x, same value);
* ``growth``: Harrell's and Uno's C at 10^4, 10^5, 10^6: time / (n log2 n) should stay roughly
  flat (n log n), where an O(n^2) method would grow 100x per decade;
* ``td_auc_ibs_1e6``: ``cumulative_dynamic_auc`` at 3 horizons and the IBS over 50 times of a Breslow
  baseline's S(t|x) (blocks of rows, as the app computes it) for 10^6 test patients (target: seconds);
* ``bootstrap``: 1,000 resamples of Harrell's C, Uno's C and IBS (what the app adds to metrics.json)
  at SUPPORT's 1,775 test patients and at 10^5 (exact), and as the app bounds it (a scaled
  10,000-patient subset) at 10^5 and 10^6;
* ``final``: the app's end-of-run test metrics at 10^6 test patients through its own functions
  (Harrell's C as ``evaluate`` computes it, then ``predictor.split_metrics`` with the intervals);
* ``validation_vs_epoch``: the app's own ``Trainer`` (default config: MLP, AdamW, batch 512) on
  10^5 training rows; one ``_validate()`` of 10^5 validation rows (forward, Cox loss, C-index) vs one
  ``_train_epoch()``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def cohort(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(risk as float32 -> float64, durations in whole days, events) of ``n`` synthetic patients."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n).astype(np.float32).astype(np.float64)
    t = np.ceil(rng.exponential(500.0 * np.exp(-risk)))
    c = np.ceil(rng.exponential(800.0, n))
    return risk, np.minimum(t, c), (t <= c)


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(best wall time of ``repeats`` calls, the last result)."""
    times, out = [], None
    for _ in range(repeats):
        tic = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - tic)
    return min(times), out


def machine() -> str:
    from run import cpu_model

    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} intra-op thread), "
            f"Python {platform.python_version()}")


def harrell_vs_lifelines(n: int, repeats: int) -> dict[str, Any]:
    from lifelines.utils import concordance_index as lifelines_ci

    from survopt_hydra.survival.metrics import concordance_index

    risk, d, e = cohort(n)
    ours_s, ours = best(lambda: concordance_index(risk, d, e), repeats)
    ref_s, ref = best(lambda: lifelines_ci(d, -risk, e), 2)
    return {"n": n, "ours_s": ours_s, "lifelines_s": ref_s, "speedup": ref_s / ours_s, "abs_diff": abs(ours - ref),
            "value": ours}


def uno_vs_sksurv(n: int, repeats: int) -> dict[str, Any]:
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    from survopt_hydra.survival.timedep import uno_cindex

    risk, d, e = cohort(n, seed=1)
    tr_risk, tr_d, tr_e = cohort(2 * n, seed=2)
    keep = d < tr_d.max()  # scikit-survival needs test times inside the training follow-up
    risk, d, e = risk[keep], d[keep], e[keep]
    tau = float(np.quantile(d[e], 0.75))
    ours_s, ours = best(lambda: uno_cindex(risk, d, e, tr_d, tr_e, tau=tau), repeats)
    y_tr, y = Surv.from_arrays(tr_e, tr_d), Surv.from_arrays(e, d)
    ref_s, ref = best(lambda: concordance_index_ipcw(y_tr, y, risk, tau=tau)[0], 1)
    return {"n": int(keep.sum()), "ours_s": ours_s, "sksurv_s": ref_s, "speedup": ref_s / ours_s,
            "abs_diff": abs(ours - ref), "value": ours}


def growth(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    from survopt_hydra.survival.metrics import concordance_index
    from survopt_hydra.survival.timedep import uno_cindex

    rows = []
    for n in sizes:
        risk, d, e = cohort(n, seed=3)
        tau = float(np.quantile(d[e], 0.75))
        harrell_s, _ = best(lambda: concordance_index(risk, d, e), repeats)
        uno_s, _ = best(lambda: uno_cindex(risk, d, e, d, e, tau=tau), repeats)
        nlogn = n * math.log2(n)
        rows.append({"n": n, "harrell_s": harrell_s, "uno_s": uno_s, "harrell_ns_per_nlog2n": 1e9 * harrell_s / nlogn,
                     "uno_ns_per_nlog2n": 1e9 * uno_s / nlogn})
    return rows


def td_auc_ibs(n: int, repeats: int) -> dict[str, Any]:
    from survopt_hydra.survival.breslow import BreslowBaseline
    from survopt_hydra.survival.timedep import brier_contributions, cumulative_dynamic_auc

    tr_risk, tr_d, tr_e = cohort(n, seed=4)
    risk, d, e = cohort(n, seed=5)
    base = BreslowBaseline.fit(tr_risk, tr_d, tr_e)
    horizons = [float(np.quantile(tr_d[tr_e], q)) for q in (0.25, 0.5, 0.75)]
    rt = torch.from_numpy(risk)
    grid = torch.unique(torch.linspace(float(d.min()), horizons[-1], 50, dtype=torch.float64))
    auc_s, (_, auc) = best(lambda: cumulative_dynamic_auc(rt, horizons, d, e, tr_d, tr_e), repeats)
    ibs_s, terms = best(lambda: brier_contributions(lambda rows: base.survival(rt[rows], grid), grid, d, e, tr_d, tr_e),
                        repeats)
    return {"n": n, "td_auc_s": auc_s, "td_auc_mean": auc, "ibs_s": ibs_s, "ibs": float(terms.mean()),
            "grid": int(grid.numel())}


def bootstrap_cost(n: int, resamples: int, repeats: int, max_rows: int | None = None) -> dict[str, Any]:
    from survopt_hydra.survival.bootstrap import bootstrap_intervals
    from survopt_hydra.survival.timedep import brier_contributions, uno_weights

    risk, d, e = cohort(n, seed=6)
    tau = float(np.quantile(d[e], 0.75))
    w = uno_weights(d, e, d, e, tau)
    grid = np.linspace(d.min(), tau, 50)
    terms = brier_contributions(lambda rows: np.exp(-np.outer(np.exp(risk[rows]), grid / 500.0)), grid, d, e, d, e)
    secs, ci = best(lambda: bootstrap_intervals(risk, d, e, uno_weights=w, ibs_terms=terms, resamples=resamples,
                                                max_rows=max_rows), repeats)
    rows = n if max_rows is None else min(n, max_rows)
    return {"n": n, "resamples": resamples, "rows": rows, "seconds": secs, "ms_per_resample": 1e3 * secs / resamples,
            "cindex_ci": ci["cindex"]}


def app_final_metrics(n: int) -> dict[str, Any]:
    """What the app computes on its test split after training, through its own functions: Harrell's C
    (as ``evaluate``) and ``predictor.split_metrics`` with intervals (Uno's C, IBS, td-AUC, bootstrap)."""
    from survopt_hydra.app.data import Split
    from survopt_hydra.app.predictor import BOOTSTRAP_MAX_ROWS, horizons, split_metrics
    from survopt_hydra.survival.breslow import BreslowBaseline
    from survopt_hydra.survival.metrics import concordance_index

    def split(seed: int) -> tuple[Split, torch.Tensor]:
        risk, d, e = cohort(n, seed)
        return Split(torch.zeros(n, 1), torch.from_numpy(d).float(), torch.from_numpy(e.astype(np.float32))), \
            torch.from_numpy(risk).float()

    (train, train_risk), (test, risk) = split(10), split(11)
    base = BreslowBaseline.fit(train_risk, train.durations, train.events)
    at = horizons(train)
    harrell_s, _ = best(lambda: concordance_index(risk, test.durations, test.events), 1)
    final_s, m = best(lambda: split_metrics("test", risk, test, train, base, at, intervals=True), 1)
    return {"n": n, "harrell_s": harrell_s, "split_metrics_s": final_s, "total_s": harrell_s + final_s,
            "bootstrap_rows": min(n, BOOTSTRAP_MAX_ROWS), "test_cindex_ci": m["test_cindex_ci"]}


def validation_vs_epoch(n: int, features: int = 14) -> dict[str, Any]:
    """One epoch of the app's training and one validation, both through the app's own Trainer."""
    from survopt_hydra.app import trainer as app_trainer
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.data import Cohort, Split

    def split(seed: int) -> Split:
        risk, d, e = cohort(n, seed)
        x = torch.randn(n, features, generator=torch.Generator().manual_seed(seed))
        x[:, 0] = torch.from_numpy(risk).float()  # a feature that carries the risk
        return Split(x, torch.from_numpy(d).float(), torch.from_numpy(e.astype(np.float32)))

    synthetic = Cohort(split(7), split(8), split(9), [f"x{i}" for i in range(features)], "synthetic", "synthetic")
    from survopt_hydra.app import run_plan

    real_take = run_plan.load_cohort_once
    run_plan.load_cohort_once = lambda data: synthetic
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = app_trainer.Trainer(compose_train(["trainer.progress_bar=false"]), Path(run_dir))
            trainer._setup_outputs()
            epochs = []
            for epoch in range(3):  # the first epoch warms allocator and kernels
                tic = time.perf_counter()
                trainer._train_epoch(epoch)
                epochs.append(time.perf_counter() - tic)
            val_s, (val_c, _) = best(trainer._validate, 3)
            from survopt_hydra.survival.losses import cox_ph_loss
            from survopt_hydra.survival.metrics import concordance_index

            val = synthetic.val
            with torch.no_grad():
                forward_s, risk = best(lambda: torch.cat([trainer.model(val.x[i]) for i in torch.arange(n).split(4096)])
                                       .float(), 3)
                loss_s, _ = best(lambda: cox_ph_loss(risk, val.durations, val.events, trainer.t["ties"]), 3)
            cindex_s, _ = best(lambda: concordance_index(risk, val.durations, val.events), 3)
            trainer._close()
    finally:
        run_plan.load_cohort_once = real_take
    epoch_s = min(epochs[1:])
    return {"n": n, "batches": trainer.n_batches, "epoch_s": epoch_s, "validate_s": val_s, "cindex_s": cindex_s,
            "forward_s": forward_s, "loss_s": loss_s,
            "fraction": val_s / epoch_s, "cindex_fraction": cindex_s / epoch_s, "val_cindex": val_c,
            "threads": torch.get_num_threads()}


def report(r: dict[str, Any], started: str, load: tuple[float, float]) -> str:
    h, u, a, v = r["harrell"], r["uno"], r["td"], r["validation"]
    lines = [f"Machine: {machine()}; {started}; load average (1 min) {load[0]:.2f} before, {load[1]:.2f} after "
             "(a shared machine: other jobs ran meanwhile).", "",
             "| figure | ours | reference | ratio | target | values agree |", "|---|---|---|---|---|---|",
             f"| Harrell's C, n = {h['n']:,} | {h['ours_s']:.3f} s | lifelines {h['lifelines_s']:.3f} s | "
             f"{h['speedup']:.1f}x faster | >= 20x | |diff| {h['abs_diff']:.1e} |",
             f"| Uno's C (tau: 75% of event times), n = {u['n']:,} | {u['ours_s']:.3f} s | scikit-survival "
             f"{u['sksurv_s']:.3f} s | {u['speedup']:.1f}x faster | >= 20x | |diff| {u['abs_diff']:.1e} |",
             "", "Growth (time / (n log2 n) flat = n log n; an O(n^2) method grows 100x per decade):", "",
             "| n | Harrell's C | ns / (n log2 n) | Uno's C | ns / (n log2 n) |", "|---|---|---|---|---|"]
    for g in r["growth"]:
        lines.append(f"| {g['n']:,} | {g['harrell_s']:.4f} s | {g['harrell_ns_per_nlog2n']:.2f} | {g['uno_s']:.4f} s "
                     f"| {g['uno_ns_per_nlog2n']:.2f} |")
    first, last = r["growth"][0], r["growth"][-1]
    nlogn = last["n"] * math.log2(last["n"]) / (first["n"] * math.log2(first["n"]))
    lines += ["", f"From {first['n']:,} to {last['n']:,}: Harrell's C {last['harrell_s'] / first['harrell_s']:.0f}x, "
              f"Uno's C {last['uno_s'] / first['uno_s']:.0f}x the time, for {last['n'] // first['n']}x the rows "
              f"(n log n: {nlogn:.0f}x; n^2: {(last['n'] // first['n']) ** 2:,}x).", "",
              f"At {a['n']:,} test patients: cumulative/dynamic AUC at 3 horizons {a['td_auc_s']:.2f} s; IBS over "
              f"{a['grid']} times of a Breslow S(t|x), computed a block of rows at a time, {a['ibs_s']:.2f} s.", "",
              "Bootstrap intervals (Harrell's C, Uno's C and IBS together, what the app adds to metrics.json; "
              "the app bootstraps at most 10,000 patients exactly and a scaled 10,000-patient subset above):", "",
              "| test patients | resamples | bootstrapped | seconds | ms per resample |", "|---|---|---|---|---|"]
    for b in r["bootstrap"]:
        how = "all (exact)" if b["rows"] == b["n"] else f"subset of {b['rows']:,}, scaled"
        lines.append(f"| {b['n']:,} | {b['resamples']:,} | {how} | {b['seconds']:.2f} | {b['ms_per_resample']:.2f} |")
    f = r["final"]
    lines += ["", f"The app's final test metrics at {f['n']:,} test patients, through its own functions: Harrell's C "
              f"{f['harrell_s']:.2f} s + `split_metrics` (Uno's C, IBS, td-AUC, the three intervals) "
              f"{f['split_metrics_s']:.2f} s = {f['total_s']:.2f} s."]
    lines += ["", f"Per-epoch validation in the app ({v['threads']} thread, default config, {v['n']:,} training rows = "
              f"{v['batches']} batches): one epoch of training {v['epoch_s']:.3f} s; validating {v['n']:,} rows "
              f"{v['validate_s']:.3f} s = {100 * v['fraction']:.0f}% of the epoch; of it, separately timed: the "
              f"C-index {v['cindex_s']:.3f} s ({100 * v['cindex_fraction']:.0f}% of the epoch), the Cox loss "
              f"{v['loss_s']:.3f} s, the forward pass {v['forward_s']:.3f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run; not the committed figures)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    load0 = os.getloadavg()[0]
    q = args.quick
    r: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("harrell", lambda: harrell_vs_lifelines(20_000 if q else 200_000, args.repeats)),
        ("uno", lambda: uno_vs_sksurv(3_000 if q else 30_000, args.repeats)),
        ("growth", lambda: growth([10_000, 100_000] if q else [10_000, 100_000, 1_000_000], args.repeats)),
        ("td", lambda: td_auc_ibs(10_000 if q else 1_000_000, 1 if not q else args.repeats)),
        ("bootstrap", lambda: [bootstrap_cost(1_775, 100 if q else 1_000, args.repeats),
                               bootstrap_cost(10_000 if q else 100_000, 100 if q else 1_000, 1),
                               bootstrap_cost(100_000, 100 if q else 1_000, 1, max_rows=10_000),
                               bootstrap_cost(1_000_000, 100 if q else 1_000, 1, max_rows=10_000)]),
        ("final", lambda: app_final_metrics(10_000 if q else 1_000_000)),
        ("validation", lambda: validation_vs_epoch(10_000 if q else 100_000)),
    ]
    for name, step in steps:
        tic = time.perf_counter()
        r[name] = step()
        print(f"{name}: {time.perf_counter() - tic:.1f} s", file=sys.stderr, flush=True)
    text = report(r, started, (load0, os.getloadavg()[0]))
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
