"""The end of a run of a family other than cox: test and validation metrics from its curves, the test
rows' predictions and the ``predictor.json`` entry (format ``survopt-predictor/3``).

The same figures as a Cox run's (:func:`.predictor.split_metrics`), each from the family's own
S(t | x), and for competing risks the cause-specific ones beside them:

* ``test_cindex`` (from :meth:`.families.CurveRun.evaluate`): Antolini's C, or with competing causes
  the mean cause-specific C; its bootstrap interval ``test_cindex_ci`` resamples the same pairs
  (:func:`..survival.families.metrics.bootstrap_concordance`, the same draws as the other intervals);
* ``risk``: a family has no single risk score, so the app's is the probability of an event by the
  median training event time, 1 - S(t_50 | x) (``risk_time`` in metrics.json and predictor.json);
  Uno's C (truncated at the last horizon) ranks by it, of any event with competing causes;
* the integrated Brier score and the time-dependent AUC of S(t | x) (AUC scores 1 - S(h | x) at
  each horizon h), with any cause counted as the event;
* with K competing causes: ``<split>_cindex_cause<k>`` (Wolbers' cause-specific C of CIF_k) and
  ``<split>_ibs_cause<k>`` (the IPCW Brier score of CIF_k integrated like the IBS, Schoop et al.).
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch

from ..survival.bootstrap import LEVEL, RESAMPLES, SEED, bootstrap_intervals, subset_rows
from ..survival.families.metrics import bootstrap_concordance, integrated_cause_specific_brier, own_time_concordance
from ..survival.timedep import brier_contributions, cumulative_dynamic_auc, uno_cindex, uno_weights
from .predictor import BOOTSTRAP_MAX_ROWS, FORMAT_FAMILY, IBS_POINTS, PREDICTION_ROWS, horizons

CIF_PREFIX = "cif{k}@"  # test_predictions.csv: CIF_k(h | x) per cause k and horizon h (competing risks)


def risk_time(train: Any) -> float:
    """The median of the training rows' event times: where a family's risk score reads its curve."""
    times = train.durations[train.events > 0].double().cpu()
    return float(torch.quantile(times, 0.5))


def _safe(value: Any) -> Any:
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return float(value) if value is not None and math.isfinite(float(value)) else None


def curve_split_metrics(name: str, family: Any, out: torch.Tensor, split: Any, train: Any, at: list[float],
                        t50: float, causes: int, intervals: bool = False) -> dict[str, Any]:
    """Uno's C of the risk, IBS and td-AUC of S(t | x), the cause-specific figures with ``causes`` > 1; a
    metric the split cannot define is None. ``intervals``: bootstrap intervals as a Cox run's."""
    t, codes = split.durations.cpu().double(), split.events.cpu().double()
    e = (codes > 0).double()
    tt, tcodes = train.durations.cpu().double(), train.events.cpu().double()
    te = (tcodes > 0).double()
    out = out.cpu()
    risk = 1.0 - family.survival(out, [t50])[:, 0]
    res: dict[str, Any] = {f"{name}_uno_cindex": None, f"{name}_ibs": None, f"{name}_td_auc": None,
                           f"{name}_td_auc_mean": None}
    weights = terms = None
    try:
        weights = uno_weights(t, e, tt, te, tau=max(at))
        res[f"{name}_uno_cindex"] = uno_cindex(risk, t, e, tt, te, tau=max(at))
    except ValueError:
        pass
    grid = torch.linspace(float(t.min()), min(max(at), float(t.max())), IBS_POINTS, dtype=torch.float64)
    grid = torch.unique(grid[grid < t.max()])
    if grid.numel() >= 2:
        terms = brier_contributions(lambda rows: family.survival(out[rows], grid), grid, t, e, tt, te)
        res[f"{name}_ibs"] = float(terms.mean())
    inside = [h for h in at if float(t.min()) <= h < float(t.max())]
    if inside and bool(((t <= inside[0]) & (e > 0)).any()) and bool((t > inside[-1]).any()):
        res[f"{name}_td_auc"], res[f"{name}_td_auc_mean"] = cumulative_dynamic_auc(
            1.0 - family.survival(out, inside), inside, t, e, tt, te)
    scored = [(lambda times: family.survival(out, times), None, False)]
    if causes > 1:
        scored = []
        for k in range(1, causes + 1):
            def cif(times: Any, k: int = k) -> torch.Tensor:
                return family.cif(out, times)[:, k - 1]
            try:
                res[f"{name}_cindex_cause{k}"] = own_time_concordance(cif, t, codes, k, True)
                scored.append((cif, k, True))
            except ValueError:
                res[f"{name}_cindex_cause{k}"] = None
            res[f"{name}_ibs_cause{k}"] = (integrated_cause_specific_brier(cif(grid), grid, t, codes, k, tt, tcodes)
                                           if grid.numel() >= 2 else None)
    if intervals:
        ci = bootstrap_intervals(risk, t, e, uno_weights=weights if res[f"{name}_uno_cindex"] is not None else None,
                                 ibs_terms=terms, resamples=RESAMPLES, seed=SEED, level=LEVEL,
                                 max_rows=BOOTSTRAP_MAX_ROWS)
        res[f"{name}_cindex_ci"] = (bootstrap_concordance(scored, t, codes, resamples=RESAMPLES, seed=SEED,
                                                          level=LEVEL) if scored else None)
        res[f"{name}_uno_cindex_ci"], res[f"{name}_ibs_ci"] = ci.get("uno_cindex"), ci.get("ibs")
    return {k: _safe(v) for k, v in res.items()}


def finish_curve_run(run: Any, model: torch.nn.Module, cohort: Any, config: dict[str, Any], best_epoch: int,
                     ctx: Any = None, run_dir: Path | None = None,
                     timings: Any = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(extra metrics, predictor artefact or None) for a family run's best model (``run``: its
    :class:`.families.CurveRun`); with ``run_dir`` the test rows' predictions to ``test_predictions.csv``
    (timed as a write in ``timings``, :class:`.timings.Timings`, when given)."""
    family = run.fitted(model.eval(), final=True)
    at, t50 = horizons(cohort.train), risk_time(cohort.train)
    metrics: dict[str, Any] = {"family": run.name, "cindex_kind": "antolini" if run.causes == 1 else
                               "cause_specific_mean", "risk_time": t50, "causes": run.causes, "horizons": at,
                               "uno_tau": max(at), "bootstrap_resamples": RESAMPLES, "bootstrap_seed": SEED,
                               "bootstrap_rows": min(len(cohort.test), BOOTSTRAP_MAX_ROWS),
                               "test_predictions_rows": min(len(cohort.test), PREDICTION_ROWS)}
    for name, split in (("test", cohort.test), ("val", cohort.val)):
        out = run.outputs(model, split, ctx, family)
        metrics.update(curve_split_metrics(name, family, out, split, cohort.train, at, t50, run.causes,
                                           intervals=name == "test"))
        if name == "test" and run_dir is not None:
            with timings.phase("writes") if timings is not None else contextlib.nullcontext():
                write_curve_predictions(Path(run_dir), family, out.cpu(), split, at, t50, run.causes)
    common = {"family": family.to_dict(), "risk_time": t50, "causes": run.causes, "best_epoch": best_epoch,
              "horizons": at, "model": config["model"], "data_source": cohort.source}
    images = cohort.extra.get("images")
    if images is not None:
        return metrics, {**images.artefact(), **common}
    schema = cohort.extra.get("schema")
    if schema is None or cohort.standardizer is None:
        return metrics, None
    sd = cohort.standardizer.state_dict()
    return metrics, {"format": FORMAT_FAMILY, "schema": schema.to_dict(), "feature_names": cohort.feature_names,
                     "standardizer": {k: v.tolist() for k, v in sd.items()}, **common}


def write_curve_predictions(run_dir: Path, family: Any, out: torch.Tensor, split: Any, at: list[float], t50: float,
                            causes: int) -> None:
    """``test_predictions.csv`` as a Cox run writes it (duration, event, risk, ``surv@<h>``; the same
    bounded subset of rows, :func:`.predictor.write_test_predictions`), plus ``cif<k>@<h>`` per cause
    with competing risks (the event column holds the cause)."""
    from .checkpoint import write_text_atomic
    from .plots import PREDICTIONS, SURV_PREFIX

    rows = torch.from_numpy(subset_rows(len(split), PREDICTION_ROWS, SEED))
    out = out[rows]
    risk = 1.0 - family.survival(out, [t50])[:, 0]
    cols = [split.durations.cpu().double()[rows], split.events.cpu().double()[rows], risk,
            *family.survival(out, at).T]
    header = ["duration", "event", "risk", *(f"{SURV_PREFIX}{h:g}" for h in at)]
    if causes > 1:
        cif = family.cif(out, at)
        for k in range(causes):
            cols += [*cif[:, k].T]
            header += [f"{CIF_PREFIX.format(k=k + 1)}{h:g}" for h in at]
    body = "\n".join(",".join(map(repr, row)) for row in torch.stack(cols, 1).tolist())
    write_text_atomic(f"{','.join(header)}\n{body}\n", run_dir / PREDICTIONS, durable=False)
