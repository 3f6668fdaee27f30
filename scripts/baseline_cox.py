"""Classical Cox regression (lifelines ``CoxPHFitter``) on exactly the app's split and features.

    python scripts/baseline_cox.py [overrides ...] [--penalizer 0.01] [--json out.json]

The config is composed with the same overrides the app takes (``data=csv data.path=...``,
``data.split_seed=3``), and the cohort comes from the app's own loader, so the rows,
the one-hot encoding and the train-only standardization are identical to a training
run: the figure is directly comparable with that run's ``test C-index``. A small
ridge penalizer keeps the fit defined when one-hot columns are collinear.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_module

    from survopt_hydra.app.config import register_app_configs
    from survopt_hydra.config import register_configs

    register_app_configs()
    register_configs()
    with initialize_config_module("survopt_hydra.conf", version_base=None):
        return hydra_compose("train", overrides=overrides)


def cox_baseline(cfg, penalizer: float = 0.01) -> dict[str, float]:
    """Fit CoxPHFitter on the train split of ``cfg``'s cohort; C-index on val and test."""
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    from survopt_hydra.errors import ConfigError

    from survopt_hydra.app.config import check_app_config
    from survopt_hydra.app.data import load_cohort
    from survopt_hydra.survival import concordance_index

    data = check_app_config(cfg)["data"]
    if data["name"] == "synthetic_images":
        raise SystemExit("error: baseline_cox needs tabular data (data=gbsg2 or data=csv)")
    cohort = load_cohort(data)
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
    out = {"penalizer": penalizer}
    for part in ("val", "test"):
        split = getattr(cohort, part)
        risk = fitter.predict_log_partial_hazard(pd.DataFrame(split.x.numpy(), columns=names)).to_numpy()
        out[f"{part}_cindex"] = concordance_index(np.asarray(risk), split.durations, split.events)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for scripts/train.py")
    parser.add_argument("--penalizer", type=float, default=0.01)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    from survopt_hydra.errors import ConfigError
    from survopt_hydra.survival.data import DataError

    try:
        result = cox_baseline(compose(args.overrides), args.penalizer)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    print(f"CoxPH (lifelines, penalizer {args.penalizer:g}) val C-index: {result['val_cindex']:.4f}")
    print(f"CoxPH (lifelines, penalizer {args.penalizer:g}) test C-index: {result['test_cindex']:.4f}")


if __name__ == "__main__":
    main()
