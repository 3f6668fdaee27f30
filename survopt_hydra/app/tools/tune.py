"""Tune the app's hyper-parameters on the validation C-index (Optuna TPE, seeded), then test once.

    survopt-tune data=gbsg2 --trials 40                      # or --seconds 300; = python scripts/tune.py ...
    survopt-tune data=csv data.path=train.csv data.test_path=test.csv --seconds 240
    survopt-tune data=gbsg2 optimizer.lr=1e-2 --trials 20    # a fixed key is not searched
    survopt-tune data=gbsg2 --families all --trials 40       # also choose the model family (docs/families.md)

Protocol (docs/sweeps.md):

1. **Search, validation only.** Each trial trains the app in-process (the same code as
   ``scripts/train.py``, a throw-away run dir) with overrides drawn by Optuna's TPE sampler
   (``--sampler-seed``): LR, weight decay, width x depth, dropout, batch size and the Cox ties
   method (:data:`SPACE`); with ``--families`` also the model family and its own few settings
   (:data:`FAMILY_SPACE`), every family scored by the same validation C-index. Trial 0 is the base config
   itself (``--no-baseline`` drops it), so
   the choice is never a config that validated worse than the untuned one. The objective is the
   run's monitored validation figure (``trainer.monitor``, the value the app hands any
   sweeper), averaged over ``--folds`` (default 5) event-stratified folds of the non-test rows
   (``data.folds``/``data.fold``: every such row validates once; the test rows never move),
   because one small validation split ranks configs by noise. The trial keeps that figure, the
   best epoch and the epochs run; the app's test score of the trial is dropped unread and never
   reaches the sampler, the trial records or the choice.
2. **Choose** the trial with the best validation figure.
3. **Test once.** Only then the chosen overrides train with each of ``--final-seeds`` (default
   0 1 2) on each fold, in kept run dirs under ``--out``. The preset's model for a seed is the
   bag of its K fold models (together they trained on every non-test row); the mean over seeds
   of the bags' test C-index is the preset's figure, decided before any test row was read.
   Reported beside it: each single model's test C-index, the bag of all seeds x folds, and the
   bags' out-of-fold validation C-index.

Writes ``trials.csv`` (every trial: overrides, validation figure, best epoch, seconds),
``optimization_results.yaml`` (``best_params``/``best_value``, the layout of Hydra's Optuna
sweeper), ``result.json``, the final run dirs and each bag as one ensemble (``ensemble_seed<s>``,
``ensemble_all``: ``survopt-predict`` loads one like a run dir) into ``--out`` (default a fresh
``outputs/tune/<date>/<time>/``), and prints the command that reruns the chosen config.

**One study, several processes** (``--storage sqlite:///study.db --study-name NAME``; PostgreSQL or
MySQL URLs across machines): the study lives in Optuna's RDB storage and every process naming it
adds its ``--trials`` to it (``--search-only``: nothing else); ``--final-only`` then chooses among
all the study's complete trials, by their validation figures as above, and runs step 3 once.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .search_space import (COX_ONLY, FAMILY_SPACE, SPACE, override_key, baseline_params,  # noqa: F401 (tune.SPACE ...)
                           draw_overrides, search_families, searched)
from .study_storage import check_storage_flags, check_study, open_study, study_records, study_settings
from .trial_runs import TRIAL_OVERRIDES, fold_overrides, run_validation_only, workers
from .bags import final_runs  # noqa: F401 (tune.final_runs)

def search(base: list[str], trials: int | None, seconds: float | None, sampler_seed: int = 0,
           log: Callable[[str], None] = print, folds: int = 5, baseline: bool = True, jobs: int = 1,
           prune: bool = True, storage: str | None = None,
           study_name: str | None = None, families: list[str] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """Optuna study maximizing (val_cindex) or minimizing (val_loss) the monitored validation figure.

    With ``folds`` > 1 a trial's value is the mean over K validation folds of the non-test rows
    (:func:`fold_overrides`): one 55-230-patient validation C-index alone is too noisy to rank
    configs. With ``baseline`` the base config itself is trial 0. ``jobs`` > 1 trains a trial's
    folds side by side in worker processes (:func:`workers`).

    With ``prune`` (Optuna's ``MedianPruner``, after 5 complete trials) a trial reports the mean
    of the folds it has run after each group of ``jobs`` folds and stops when that is worse than
    the median of earlier trials at the same number of folds: a config that loses on the first
    folds rarely wins on the rest, and the budget goes to more trials. A pruned trial is recorded
    (``pruned``, its partial mean) but can never be the choice; a complete trial's value is the
    mean over all K folds, as without pruning. A fold that ends in a :class:`~survopt_hydra.app.divergence.TrainingError`
    (diverged, or learnt nothing) fails its trial there: recorded with the reason (``failed``), never
    the choice, and the search goes on.

    With ``storage`` (an RDB URL, :func:`open_study`) the study ``study_name`` lives in that database and
    several processes, on one machine or many, add trials to it; ``trials`` counts this process's. The
    returned records are every trial of the study that has one (all processes'), by trial number.

    ``families`` (``--families``): the families the preset chooses among, each trial drawing one and its
    own hyper-parameters (:data:`FAMILY_SPACE`), all compared on the same validation folds by their
    validation C-index (Antolini's for the families other than cox: docs/families.md); default: the base
    config's family alone (the Cox-only preset draws exactly what it always drew).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = searched(base)
    from survopt_hydra.app.compose import compose_train

    cfg = compose_train([*base, *TRIAL_OVERRIDES])
    parts = fold_overrides(cfg, folds)
    chosen_families = search_families(cfg, base, families)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if prune and len(parts) > 1
              else optuna.pruners.NopPruner())
    study, created = open_study(storage, study_name, study_settings(base, cfg, len(parts), space, chosen_families),
                                sampler_seed, pruner)
    direction = "minimize" if study.direction == optuna.study.StudyDirection.MINIMIZE else "maximize"
    start = baseline_params(cfg, space, chosen_families, {override_key(o) for o in base}) if baseline else None
    if start is not None and created:  # one baseline per study, by the process that created it
        study.enqueue_trial(start, user_attrs={"baseline": True})
    elif baseline and start is None:
        log("the base config is off the search grid (model.hidden not one width x 1-3 layers, or its family or "
            "family options outside the searched ones): no baseline trial")
    records: list[dict[str, Any]] = []  # this process's, for its log lines

    def objective(trial: Any) -> float:
        drawn = draw_overrides(trial, base, space, chosen_families)
        results: list[dict[str, Any]] = []
        pruned = False
        for first in range(0, len(parts), width):  # a group of folds side by side, then a look at the pruner
            results += run_all(run_validation_only, [[*base, *drawn, *part] for part in parts[first:first + width]])
            if any(r.get("failed") for r in results):  # a fold diverged: the config failed, its other folds are moot
                break
            if len(results) < len(parts):
                trial.report(statistics.fmean(r["value"] for r in results), step=len(results))
                if trial.should_prune():
                    pruned = True
                    break
        result = {"monitor": results[0]["monitor"],
                  "value": statistics.fmean(r["value"] for r in results),
                  "val_cindex": statistics.fmean(r["val_cindex"] for r in results),
                  "val_cindex_folds": " ".join(f"{r['val_cindex']:.4f}" for r in results),
                  "best_epoch": max(r["best_epoch"] for r in results),
                  "epochs_run": max(r["epochs_run"] for r in results),
                  "seconds": round(sum(r["seconds"] for r in results), 3), "pruned": pruned,
                  "failed": next((r["failed"] for r in results if r.get("failed")), "")}
        trial.set_user_attr("overrides", drawn)
        for k in ("best_epoch", "epochs_run", "seconds"):
            trial.set_user_attr(k, result[k])
        tag = "baseline" if trial.user_attrs.get("baseline") else ""
        records.append({"trial": trial.number, "overrides": " ".join(drawn), "baseline": bool(tag), **result})
        trial.set_user_attr("record", records[-1])  # trials.csv's row, for whichever process writes it
        done = [r["value"] for r in records if not r["pruned"] and not r.get("failed")]
        best = (max if direction == "maximize" else min)(done) if done else float("nan")
        state = (f"failed on fold {len(results)} ({result['failed']})" if result["failed"] else
                 f"pruned after {len(results)} of {len(parts)} folds" if pruned else f"{result['monitor']}")
        log(f"trial {trial.number}{' (the base config)' if tag else ''}: {state} {result['value']:.4f} "
            f"(best {best:.4f}) {result['seconds']:.1f}s  {' '.join(drawn)}")
        if pruned or result["failed"]:  # recorded, never the choice (a failed one: a pruned trial to Optuna)
            raise optuna.TrialPruned()
        return result["value"]

    width = min(jobs, len(parts))
    with workers(width) as run_all:
        study.optimize(objective, n_trials=trials, timeout=seconds, catch=())
    return study, study_records(study)


def write_trials(records: list[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_tool_output(path, buffer.getvalue())


def write_tool_output(path: Path, text: str) -> None:
    from survopt_hydra.app.outputs import write_tool_output as write

    write(path, text)


def make_output_dir(out: Path) -> None:
    from survopt_hydra.errors import ConfigError

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--out", f"{out}: cannot create it ({exc.strerror or exc}); choose another --out") from None


#: Bounds of the search flags: each is what a day of tuning on this machine could use, far above the defaults.
MAX_TRIALS, MAX_SECONDS, MAX_FOLDS, MAX_SEEDS, MAX_JOBS = 100_000, 7 * 86400.0, 100, 100, 256


def check_flags(trials: int | None, seconds: float | None, folds: int, jobs: int, seeds: list[int],
                sampler_seed: int) -> None:
    """One-line ConfigError naming the flag for a budget or count the search cannot run with."""
    from survopt_hydra.errors import ConfigError

    if seconds is not None and not math.isfinite(seconds):
        raise ConfigError("--seconds", f"must be a finite number of seconds, got {seconds:g}")
    if (trials is not None and trials < 1) or (seconds is not None and seconds <= 0):
        raise ConfigError("--trials/--seconds", "the budget must be positive")
    if (trials or 0) > MAX_TRIALS or (seconds or 0) > MAX_SECONDS:
        raise ConfigError("--trials/--seconds", f"at most {MAX_TRIALS} trials and {MAX_SECONDS:g} s (a week)")
    if folds < 1:
        raise ConfigError("--folds", f"must be >= 1, got {folds}")
    if folds > MAX_FOLDS:
        raise ConfigError("--folds", f"at most {MAX_FOLDS}, got {folds}")
    if not 1 <= jobs <= MAX_JOBS:
        raise ConfigError("--jobs", f"must be in 1..{MAX_JOBS}, got {jobs}")
    if not 1 <= len(seeds) <= MAX_SEEDS or not all(0 <= s < 2**32 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError("--final-seeds", f"1..{MAX_SEEDS} distinct seeds in [0, 2**32), got {seeds}")
    if not 0 <= sampler_seed < 2**32:
        raise ConfigError("--sampler-seed", f"must be in [0, 2**32), got {sampler_seed}")
    from survopt_hydra.app.ensemble import MAX_MEMBERS

    if len(seeds) * folds > MAX_MEMBERS:  # the bag of all seeds x folds is saved as one ensemble
        raise ConfigError("--final-seeds/--folds", f"{len(seeds)} seeds x {folds} folds = {len(seeds) * folds} final "
                          f"runs; at most {MAX_MEMBERS}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="survopt-tune", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for survopt-train (not searched)")
    parser.add_argument("--trials", type=int, help="number of trials of this process (default 40 unless --seconds "
                        "is given)")
    parser.add_argument("--seconds", type=float, help="search time budget; the running trial finishes")
    parser.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler")
    parser.add_argument("--final-seeds", type=int, nargs="+", default=[0, 1, 2], help="trainer.seed of the test runs")
    parser.add_argument("--folds", type=int, default=5, help="K validation folds of the non-test rows a trial "
                        "averages over, and members of each seed's final bag (default 5; 1: the app's one split)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="trainings side by side in worker processes (default: 2 on a machine with 2+ cores)")
    parser.add_argument("--no-baseline", action="store_true", help="do not start the search from the base config")
    parser.add_argument("--no-prune", action="store_true", help="run every trial on all folds (no MedianPruner)")
    parser.add_argument("--storage", help="an RDB URL holding the study, shared by every process that names it "
                        "(sqlite:///study.db; postgresql://... or mysql+pymysql://... across machines)")
    parser.add_argument("--study-name", help="the study's name in --storage")
    parser.add_argument("--search-only", action="store_true", help="with --storage: add trials to the study, "
                        "write nothing else (no choice, no test rows)")
    parser.add_argument("--final-only", action="store_true", help="with --storage: no new trials; choose among the "
                        "study's complete trials, then train and test the final runs")
    parser.add_argument("--families", type=lambda v: [f.strip() for f in v.split(",")], default=None,
                        help="model families to choose among on the validation folds, e.g. cox,deephit,weibull_aft "
                        "or all (default: the base config's family; docs/families.md)")
    parser.add_argument("--out", type=Path, help="output dir (default: a new outputs/tune/<date>/<time>/)")
    parser.add_argument("--quiet", action="store_true", help="no per-trial lines on stderr")
    args = parser.parse_args(argv)
    from survopt_hydra.errors import ConfigError, require_package

    try:
        require_package("optuna", "survopt-tune")  # before any import or check that costs time
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    trials = args.trials if args.trials is not None or args.seconds is not None else 40
    logging.disable(logging.WARNING)  # the app's per-epoch log lines; errors still surface
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.outputs import tool_output_path
    from survopt_hydra.survival.data import DataError

    log = (lambda _: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        check_flags(trials, args.seconds, args.folds, args.jobs, args.final_seeds, args.sampler_seed)
        check_storage_flags(args.storage, args.study_name, args.search_only, args.final_only)
        if not args.search_only:  # a search-only process writes nothing: its trials are in the study
            out = tool_output_path(args.out, "tune", "result.json", force=True).parent  # an old result: refused below
            if (out / "result.json").exists():
                raise ConfigError("--out", f"{out} already holds a tuning result; pass another --out")
        cfg = compose_train([*args.overrides, *TRIAL_OVERRIDES])  # a bad override fails here, before any trial
        parts = fold_overrides(cfg, args.folds)  # a bad --folds fails here too
        tic = time.perf_counter()
        families = search_families(cfg, args.overrides, args.families)  # a bad --families fails here too
        settings = study_settings(args.overrides, cfg, len(parts), searched(args.overrides), families)
        if args.final_only:  # the study is checked before the output dir is made
            study, _ = open_study(args.storage, args.study_name, settings, args.sampler_seed, create=False)
            records = study_records(study)
        elif args.storage is not None:
            check_study(args.storage, args.study_name, settings)
        if not args.search_only:
            make_output_dir(out)  # the last check before the search: a folder that cannot be made is one line now
        if not args.final_only:
            study, records = search(args.overrides, trials, args.seconds, args.sampler_seed, log, args.folds,
                                    baseline=not args.no_baseline, jobs=args.jobs, prune=not args.no_prune,
                                    storage=args.storage, study_name=args.study_name, families=args.families)
        search_s = time.perf_counter() - tic
        complete = [r for r in records if not r["pruned"] and not r.get("failed")]
        if args.search_only:
            best = (f", best validation {study.best_value:.4f} (trial {study.best_trial.number})" if complete else "")
            print(f"searched for {search_s:.0f} s; the study {args.study_name!r} holds {len(records)} finished trials "
                  f"({len(complete)} complete){best}; choose and test with --final-only")
            return 0
        if not complete:
            raise ConfigError("--study-name" if args.final_only else "--trials",
                              "no complete trial to choose from yet; run (more of) the search first")
        running = sum(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False))
        if running:
            log(f"{running} trial(s) of the study are still running; the choice is among the {len(complete)} complete")
        chosen = list(study.best_trial.user_attrs["overrides"])  # the choice: validation only
        write_trials(records, out / "trials.csv")
        import yaml

        best_params = dict(_o.split("=", 1) for _o in chosen)
        write_tool_output(out / "optimization_results.yaml", yaml.safe_dump(
            {"name": "survopt-tune", "best_params": best_params, "best_value": float(study.best_value)}))
        final = final_runs(args.overrides, chosen, args.final_seeds, out, args.folds, args.jobs)  # first look at test
        result = {"base_overrides": args.overrides, "chosen_overrides": chosen, "best_trial": study.best_trial.number,
                  "best_value": study.best_value, "trials": len(records), "search_seconds": round(search_s, 1),
                  "trial_seconds": round(sum(r["seconds"] for r in records), 1), "sampler_seed": args.sampler_seed,
                  "study_name": args.study_name, "baseline_trial": any(r["baseline"] for r in records), **final}
        write_tool_output(out / "result.json", json.dumps(result, indent=2))
    except (ConfigError, DataError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    command = " ".join(["survopt-train", *args.overrides, *chosen])
    where = f"in the study {args.study_name!r}" if args.storage else f"in {search_s:.0f} s"
    print(f"{len(records)} trials {where}; best validation {study.best_value:.4f} (trial "
          f"{study.best_trial.number}): {' '.join(chosen)}")
    print(f"rerun one model: {command}")
    print(f"wrote {out / 'result.json'}, {out / 'trials.csv'}, the {final['bagged_models']} final run dirs and their "
          f"bags as ensembles: survopt-predict {final['ensembles'][f'ensemble_seed{args.final_seeds[0]}']} rows.csv")
    runs = ", ".join(f"{c:.4f}" for c in final["test_cindex_runs"])
    seeds = " ".join(map(str, args.final_seeds))
    if final["folds"] > 1:
        oof = ", ".join(f"{c:.4f}" for c in final["oof_val_cindex_runs"])
        print(f"each seed's bag of its {final['folds']} fold models: out-of-fold validation C-index {oof}; "
              f"single models' mean test C-index {final['single_test_cindex_mean']:.4f}; "
              f"the bag of all {final['bagged_models']}: test {final['bagged_test_cindex']:.4f}")
        print(f"test C-index of the preset (each seed's bag): {final['test_cindex_mean']:.4f} (seeds {seeds}: {runs})")
    else:
        print(f"seed ensemble: test C-index {final['bagged_test_cindex']:.4f}")
        print(f"test C-index of the chosen config: {final['test_cindex_mean']:.4f} (seeds {seeds}: {runs})")
    return 0 if all(math.isfinite(c) for c in final["test_cindex_runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
