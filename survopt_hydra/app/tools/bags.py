"""Step 3 of ``survopt-tune``: the chosen config's final runs, each seed's K fold models bagged as one model
(saved as an ensemble), and their test figures, read once."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .trial_runs import TRIAL_OVERRIDES, fold_overrides, train_kept, workers

def final_runs(base: list[str], chosen: list[str], seeds: list[int], out: Path, folds: int = 5,
               jobs: int = 1) -> dict[str, Any]:
    """The chosen config trained with each seed on each fold in kept run dirs; then, once, the test rows.

    The preset's model for one seed is the bag of its K fold models: each member early-stopped on
    its own fold, together they trained on every non-test row. The bag averages the members' risk
    scores, each standardized by its own validation mean and sd (log-risks of separate fits differ
    by shift and scale). Its test C-index, mean over ``seeds``, is the preset's figure; beside it
    each member's own figure ("single runs"), the bag of all seeds x folds, and the bags'
    out-of-fold validation C-index (every non-test row scored by the member it validated), the
    figure a user can check without the test rows. With ``folds`` 1 a seed's bag is its one run.

    Each bag is saved as one model (:func:`survopt_hydra.app.ensemble.save_ensemble`): ``ensemble_seed<s>``
    per seed and ``ensemble_all``, folders ``survopt-predict`` loads like a run dir; their risk is the score
    above (each member standardized by its validation mean and sd), so predicting the test rows with one
    gives the figure reported for its bag.

    A family other than cox has no single risk score: its bags' C-index is the family's own (Antolini's, or
    the mean cause-specific C) of the bag's mean curves, which the ensemble predicts (S(t|x) = the members'
    mean). Beside it, for every family: ``test_ibs_runs`` (the IBS of each seed's bag's mean S(t|x), the
    censoring weights and horizons from every non-test row) and ``test_curve_cindex_runs`` (Antolini's C
    of the same mean curves, a Cox bag's included), so bags of different families compare on one scale.
    """
    import numpy as np
    import torch

    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.families import FinishedRun, bag_concordance, bag_ibs
    from survopt_hydra.app.trainer import load_best
    from survopt_hydra.survival import concordance_index

    cfg = compose_train([*base, *TRIAL_OVERRIDES])
    parts = fold_overrides(cfg, folds)
    own_files = own_data_paths(cfg)  # the data files the user named: the runs' best.pt may name them back
    plan = [(k, seed) for k in range(len(parts)) for seed in seeds]
    dirs = [out / (f"final_seed{seed}" if len(parts) == 1 else f"final_seed{seed}_fold{k}") for k, seed in plan]
    overrides = [[*base, *chosen, *parts[k], f"trainer.seed={seed}"] for k, seed in plan]
    with workers(jobs) as run_all:
        members = list(run_all(train_kept, overrides, dirs))
    val_z, test_z, val_rows, scales, val_curves, test_curves = {}, {}, {}, {}, {}, {}
    for (k, seed), run_dir in zip(plan, dirs):
        settings, cohort, model, state = load_best(run_dir, own_files)
        run = FinishedRun(settings, cohort, model, state["family"])
        v, t = run.risk(cohort.val).numpy(), run.risk(cohort.test).numpy()
        mu, sd = float(v.mean()), float(v.std()) or 1.0
        val_z[k, seed], test_z[k, seed], val_rows[k], test = (v - mu) / sd, (t - mu) / sd, cohort.val, cohort.test
        val_curves[k, seed], test_curves[k, seed] = run.curves(cohort.val), run.curves(cohort.test)
        scales[k, seed] = {"run_dir": run_dir.name, "val_mean": mu, "val_sd": sd}
        causes, cox, non_test = run.causes, state["family"] is None, all_rows(cohort)
    from survopt_hydra.app.ensemble import save_ensemble
    from survopt_hydra.app.outputs import write_tool_output

    bag_dirs = {f"ensemble_seed{s}": [(k, s) for k in range(len(parts))] for s in seeds}
    bag_dirs["ensemble_all"] = plan
    for name, bag in bag_dirs.items():  # each bag as one model: survopt-predict <out>/ensemble_seed0 rows.csv
        save_ensemble(out / name, [(out / scales[m]["run_dir"], scales[m]["val_mean"], scales[m]["val_sd"])
                                   for m in bag])
    write_tool_output(out / "bags.json", json.dumps({  # how each ensemble combines its members
        "how": "risk(x) = mean over a seed's members of (member's survopt-predict risk - val_mean) / val_sd; "
               "survopt-predict <out>/ensemble_seed<s> computes it (and S(t|x), the members' mean)",
        "bags": {str(s): [scales[k, s] for k in range(len(parts))] for s in seeds}}, indent=2))
    folds_seen = range(len(parts))
    durations = torch.cat([val_rows[k].durations for k in folds_seen])
    events = torch.cat([val_rows[k].events for k in folds_seen])

    def curve_c(members: list[tuple[int, int]]) -> float:  # the bag's mean curves (the ensemble's S / CIFs)
        return bag_concordance([test_curves[m] for m in members], test.durations, test.events, causes)

    def test_c(members: list[tuple[int, int]]) -> float:
        if not cox:  # no single risk: the convention of the family's own C-index, on the bag's mean curves
            return curve_c(members)
        return concordance_index(np.mean([test_z[m] for m in members], axis=0), test.durations, test.events)

    def oof_c(bag_seeds: list[int]) -> float:  # each fold's rows scored by that fold's members only
        if not cox:
            per_fold = [(k, [val_curves[k, s] for s in bag_seeds]) for k in folds_seen]
            return bag_concordance([lambda at: torch.cat([torch.stack([c(at) for c in cs]).mean(0)
                                                          for _, cs in per_fold])], durations, events, causes)
        risk = np.concatenate([np.mean([val_z[k, s] for s in bag_seeds], axis=0) for k in folds_seen])
        return concordance_index(risk, durations, events)

    def test_ibs(members: list[tuple[int, int]]) -> float | None:  # of the bag's mean S(t|x), as the app's IBS
        return bag_ibs([test_curves[m] for m in members], test, non_test)

    bags = ([m["test_cindex"] for m in members] if len(parts) == 1  # the run's own figure, as the app scored it
            else [test_c([(k, s) for k in folds_seen]) for s in seeds])
    seed_bags = [[(k, s) for k in folds_seen] for s in seeds]
    ibs = [test_ibs(bag) for bag in seed_bags]
    singles = [m["test_cindex"] for m in members]
    return {"seeds": seeds, "folds": len(parts), "test_cindex_runs": bags, "test_cindex_mean": statistics.fmean(bags),
            "test_cindex_sd": statistics.stdev(bags) if len(bags) > 1 else 0.0,
            "test_ibs_runs": ibs, "test_ibs_mean": statistics.fmean(ibs) if None not in ibs else None,
            "test_curve_cindex_runs": [curve_c(bag) for bag in seed_bags],
            "oof_val_cindex_runs": [oof_c([s]) for s in seeds],
            "single_test_cindex_runs": singles, "single_test_cindex_mean": statistics.fmean(singles),
            "single_val_cindex_runs": [m["val_cindex"] for m in members],
            "best_epochs": [m["best_epoch"] for m in members],
            "bagged_models": len(plan), "bagged_test_cindex": test_c(plan), "bagged_oof_val_cindex": oof_c(seeds),
            "family": members[0].get("family", "cox"),
            "run_dirs": [str(d) for d in dirs], "ensembles": {name: str(out / name) for name in bag_dirs}}


def all_rows(cohort: Any) -> Any:
    """Every non-test row of a cohort (its training and validation rows): the censoring distribution and the
    horizons of a bag's IBS, the same for every fold's members."""
    import torch

    from survopt_hydra.app.data import Split

    tr, va = cohort.train, cohort.val
    return Split(torch.cat([tr.x, va.x]), torch.cat([tr.durations, va.durations]), torch.cat([tr.events, va.events]))


def own_data_paths(cfg: Any) -> dict[str, str]:
    """The data files the user's own config names (``data.path``/``data.test_path``): what the tool may
    read again when a run it trained names them (:func:`survopt_hydra.app.components.artifact_settings`)."""
    from survopt_hydra.app.components import DATA_PATH_KEYS

    return {key: str(cfg.data[key]) for key in DATA_PATH_KEYS if cfg.data.get(key)}
