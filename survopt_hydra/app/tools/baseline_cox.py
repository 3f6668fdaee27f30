"""Classical Cox regression (lifelines ``CoxPHFitter``) on exactly the app's split and features.

    survopt-baseline [overrides ...] [--penalizer 0.01] [--json out.json]   # or: python scripts/baseline_cox.py ...
    survopt-baseline --run outputs/<date>/<time>     # paired comparison with a finished run

The config is composed with the same overrides the app takes (``data=csv data.path=...``,
``data.split_seed=3``), and the cohort comes from the app's own loader, so the rows,
the one-hot encoding and the train-only standardization are identical to a training
run: the figure is directly comparable with that run's ``test C-index``. A small
ridge penalizer keeps the fit defined when one-hot columns are collinear.

``--run DIR`` takes the config from that *finished* run's ``best.pt`` instead of overrides, scores
the run's best weights and CoxPH on the same test rows, and adds a paired bootstrap of the
difference (resampling test patients, both models on each resample; ``--resamples``,
default 2000, ``--seed``): with ~100 test patients a single C-index is noisy, and the
interval says whether a gap means anything. ``best.pt`` is untrusted data: its config is read as
plain data (never resolved) and checked like a fresh one, and a data file it names outside the
package is read only when given again on the command line (``--run DIR data.path=train.csv``,
also ``data.test_path=...``; no other override goes with ``--run``). The bootstrap is vectorized (resample counts
times pair matrices, :func:`paired_bootstrap`): seconds for SUPPORT's 1,775 test patients,
with a progress bar on stderr (``--no-progress`` turns it off).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np


def _require_tabular(settings) -> None:
    """CoxPH needs a table; the options listed come from the app's data registry."""
    from survopt_hydra.app.schemas import DATA, IMAGE_DATA

    if settings["data"]["name"] in IMAGE_DATA:
        tables = ", ".join(f"data={name}" for name in DATA if name not in IMAGE_DATA)
        raise SystemExit(f"error: baseline_cox needs tabular data ({tables})")


def _tabular_cohort(cfg):
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.app.data import load_cohort

    settings = check_app_config(cfg)
    _require_tabular(settings)
    return settings, load_cohort(settings["data"])


def _fit_cox(cohort, penalizer: float):
    """CoxPHFitter on the cohort's training rows; returns ``split -> log partial hazard``."""
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    from survopt_hydra.errors import ConfigError

    names = cohort.feature_names
    frame = pd.DataFrame(cohort.train.x.numpy(), columns=names)
    frame["T"], frame["E"] = cohort.train.durations.numpy(), cohort.train.events.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fitter = CoxPHFitter(penalizer=penalizer).fit(frame, "T", "E")
        except ConvergenceError as exc:  # e.g. penalizer 0 with collinear one-hot columns
            first = str(exc).split(". ")[0]
            raise ConfigError("--penalizer", f"CoxPHFitter did not converge with penalizer {penalizer:g} "
                                             f"({first}); use a small positive penalizer such as 0.01") from None
    return lambda split: np.asarray(
        fitter.predict_log_partial_hazard(pd.DataFrame(split.x.numpy(), columns=names)).to_numpy())


def cox_baseline(cfg, penalizer: float = 0.01) -> dict[str, float]:
    """Fit CoxPHFitter on the train split of ``cfg``'s cohort; C-index on val and test."""
    from survopt_hydra.survival import concordance_index

    _, cohort = _tabular_cohort(cfg)
    risk = _fit_cox(cohort, penalizer)
    out = {"penalizer": penalizer}
    for part in ("val", "test"):
        split = getattr(cohort, part)
        out[f"{part}_cindex"] = concordance_index(risk(split), split.durations, split.events)
    return out


def paired_bootstrap(net: np.ndarray, cox: np.ndarray, t: np.ndarray, e: np.ndarray, n_boot: int = 2000,
                     seed: int = 0, progress: bool = False, block: int | None = None) -> np.ndarray:
    """``C(net) - C(cox)`` on ``n_boot`` resamples of the test patients (both models on each resample).

    The library's bootstrap (:mod:`survopt_hydra.survival.bootstrap`): a resample is a vector of counts
    (patient i drawn w_i times, from ``rng.integers(0, n, n)`` per resample), and its C-index is a ratio
    of count-weighted sums over comparable pairs - the same number the pair count over the resampled
    rows gives - computed in O(n log n) per resample, ``block`` resamples at a time."""
    from tqdm import tqdm

    from survopt_hydra.survival.bootstrap import resample_counts
    from survopt_hydra.survival.metrics import ConcordanceCounts

    pairs = [ConcordanceCounts(risk, t, e) for risk in (net, cox)]
    chunks = resample_counts(len(t), n_boot, seed, block)
    diffs = []
    for w in tqdm(chunks, desc="paired bootstrap", unit="block", disable=not progress, file=sys.stderr):
        [(num_net, den)], [(num_cox, _)] = (p.sums(w) for p in pairs)
        diffs.append(((num_net - num_cox) / den).numpy())  # NaN: a resample without a comparable pair
    return np.concatenate(diffs)


MAX_RESAMPLES = 100_000
#: resamples x test patients: 20,000 x 1,775 (3.6e7) took 15 s of bootstrap on the shared 2-core EPYC (2026-12-07),
#: so this is ~20 s; a larger product is a typo or better served by fewer resamples.
MAX_BOOTSTRAP_CELLS = 50_000_000


def finished_run(run_dir: str) -> None:
    """ConfigError (``--run``) unless ``run_dir``'s ``last.pt`` says the run finished: the best weights of
    an unfinished run are not the run's result."""
    from pathlib import Path

    from survopt_hydra.app.checkpoint import CheckpointError, load_latest
    from survopt_hydra.errors import ConfigError

    try:
        found = load_latest(Path(run_dir) / "last.pt")
    except CheckpointError as exc:
        raise ConfigError("--run", str(exc)) from None
    if found is not None and found[0].get("finished") is True:
        return
    progress = found[0].get("progress") if found is not None else None
    done = f" (epoch {progress['epoch']})" if isinstance(progress, dict) and isinstance(progress.get("epoch"), int) else ""
    raise ConfigError("--run", f"{run_dir} holds no finished run{done}: {'no last.pt' if found is None else 'last.pt is not finished'}; "
                      "finish it first (rerun its command) - the best weights of an unfinished run are not its result")


def compare_run(run_dir: str, penalizer: float = 0.01, n_boot: int = 2000, seed: int = 0,
                progress: bool = False, data_paths: dict[str, str] | None = None) -> dict[str, float]:
    """A finished run's best weights vs CoxPH on its test rows, with a paired bootstrap of the gap.
    ``data_paths``: the data files given on the command line (see the module docstring)."""
    import torch
    from survopt_hydra.app.checkpoint import CheckpointError
    from survopt_hydra.app.trainer import load_best
    from survopt_hydra.errors import ConfigError
    from survopt_hydra.survival import concordance_index

    if not 1 <= n_boot <= MAX_RESAMPLES:
        raise ConfigError("--resamples", f"must be in 1..{MAX_RESAMPLES} bootstrap resamples, got {n_boot}")
    try:
        settings, cohort, model, state = load_best(run_dir, data_paths)
        finished_run(run_dir)
    except CheckpointError as exc:
        raise ConfigError("--run", str(exc)) from None
    _require_tabular(settings)
    test = cohort.test
    if n_boot * len(test) > MAX_BOOTSTRAP_CELLS:
        raise ConfigError("--resamples", f"{n_boot} resamples x {len(test)} test patients is more than "
                          f"{MAX_BOOTSTRAP_CELLS} (about 20 s of bootstrap); use at most {MAX_BOOTSTRAP_CELLS // len(test)}")
    with torch.no_grad():
        net = model(test.x).float().numpy().astype(np.float64)
    cox = _fit_cox(cohort, penalizer)(test).astype(np.float64)
    t, e = test.durations.numpy().astype(np.float64), test.events.numpy()
    d = paired_bootstrap(net, cox, t, e, n_boot, seed, progress)
    d = d[np.isfinite(d)]
    lo, hi = np.percentile(d, [2.5, 97.5])
    return {"penalizer": penalizer, "run_test_cindex": concordance_index(net, t, e), "best_epoch": state["epoch"],
            "coxph_test_cindex": concordance_index(cox, t, e), "diff_ci_low": float(lo), "diff_ci_high": float(hi),
            "p_run_ge_coxph": float((d >= 0).mean()), "n_boot": int(d.size), "n_test": len(t), "seed": seed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="survopt-baseline", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for scripts/train.py")
    parser.add_argument("--penalizer", type=float, default=0.01)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--run", help="a finished run's directory: paired comparison with its best.pt")
    parser.add_argument("--resamples", type=int, default=2000, help="paired bootstrap resamples (with --run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (with --run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    data_paths = {}
    if args.run:
        for override in args.overrides:
            key, eq, value = override.partition("=")
            if not eq or key not in ("data.path", "data.test_path") or not value:
                parser.error(f"--run takes the config from the run's best.pt; only data.path=... and "
                             f"data.test_path=... may go with it (to confirm the files it names), got {override!r}")
            data_paths[key[len("data."):]] = value
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.outputs import tool_file_path, write_tool_output
    from survopt_hydra.errors import ConfigError, require_package
    from survopt_hydra.survival.data import DataError

    try:
        require_package("lifelines", "survopt-baseline")  # CoxPHFitter
        if args.run:
            require_package("tqdm", "survopt-baseline --run")  # the bootstrap's progress bar
        if not (math.isfinite(args.penalizer) and args.penalizer >= 0):
            raise ConfigError("--penalizer", f"must be a finite number >= 0, got {args.penalizer:g}")
        if not 0 <= args.seed < 2**32:
            raise ConfigError("--seed", f"must be in [0, 2**32), got {args.seed}")
        if args.json:
            tool_file_path(Path(args.json), "--json")
        result = (compare_run(args.run, args.penalizer, args.resamples, args.seed, not args.no_progress, data_paths)
                  if args.run else cox_baseline(compose_train(args.overrides), args.penalizer))
        if args.json:
            write_tool_output(Path(args.json), json.dumps(result, indent=2))
    except (ConfigError, DataError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        raise SystemExit(2) from None
    if args.run:
        r = result
        print(f"run {args.run} (best epoch {r['best_epoch']}) test C-index: {r['run_test_cindex']:.4f}")
        print(f"CoxPH (lifelines, penalizer {args.penalizer:g}) test C-index: {r['coxph_test_cindex']:.4f}")
        print(f"difference run - CoxPH: {r['run_test_cindex'] - r['coxph_test_cindex']:+.4f}, paired bootstrap "
              f"95% interval [{r['diff_ci_low']:+.4f}, {r['diff_ci_high']:+.4f}] over {r['n_test']} test patients "
              f"({r['n_boot']} resamples); P(run >= CoxPH) = {r['p_run_ge_coxph']:.2f}")
        return
    print(f"CoxPH (lifelines, penalizer {args.penalizer:g}) val C-index: {result['val_cindex']:.4f}")
    print(f"CoxPH (lifelines, penalizer {args.penalizer:g}) test C-index: {result['test_cindex']:.4f}")


if __name__ == "__main__":
    main()
