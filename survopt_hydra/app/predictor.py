"""A finished run as a usable model: ``predictor.json`` beside ``best.pt``, and the end-of-run survival metrics.

``predictor.json`` is plain JSON (never pickle) holding everything needed to score a new
row exactly as training did: the feature schema (columns and their order, category
levels, constant columns dropped, missing-value policy and the training-row medians,
unseen-level policy, duration/event column names), the standardization statistics of
the training rows, and Breslow's baseline cumulative hazard fitted on the training rows
with the best model. The weights stay in ``best.pt`` (loaded with ``weights_only=True``);
the artefact records the best epoch so a mismatched pair is refused.

The same baseline turns the test (and validation) risks into survival curves for the
time-dependent metrics written to ``metrics.json``: Uno's C truncated at the last
horizon, the integrated Brier score and the cumulative/dynamic AUC at the horizons (the
25/50/75% quantiles of the training rows' event times). The test C-index, Uno's C and IBS
also get 95% percentile bootstrap intervals (``test_cindex_ci`` ...: 1,000 resamples of the
test patients, seed 0, :mod:`..survival.bootstrap`; 0.1-0.2 s for SUPPORT's 1,775; above
10,000 test patients a 10,000-patient subset is bootstrapped and its spread scaled).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..survival.breslow import BreslowBaseline
from ..survival.data import DataError, Standardizer
from ..survival.schema import FeatureSchema
from ..survival.bootstrap import LEVEL, RESAMPLES, SEED, bootstrap_intervals
from ..survival.timedep import brier_contributions, cumulative_dynamic_auc, uno_cindex, uno_weights
from .data import Cohort, Split

ARTEFACT = "predictor.json"
FORMAT = "survopt-predictor/1"
HORIZON_QUANTILES = (0.25, 0.5, 0.75)
IBS_POINTS = 50
#: Test patients bootstrapped exactly; a larger test set bootstraps a random subset this large and scales
#: (:func:`..survival.bootstrap.bootstrap_intervals`), so the intervals cost 1-3 s at any n (2-core EPYC).
BOOTSTRAP_MAX_ROWS = 10_000
EVAL_ROWS = 4096  # rows per forward pass: the same chunks as the trainer's evaluate(), so the same floats


@torch.no_grad()
def split_risks(model: nn.Module, split: Split, ctx: Any = None) -> torch.Tensor:
    """Risk scores of every row in eval mode and fp32, chunked and gathered as in ``trainer.evaluate``."""
    from ..distributed import DistContext, eval_indices, gather_by_index

    model.eval()
    ctx = ctx or DistContext()
    from .components import split_forward

    idx = eval_indices(len(split), ctx).to(split.durations.device)
    risk = split_forward(model, split, idx, EVAL_ROWS).float()
    return gather_by_index(risk, idx, len(split), ctx).reshape(-1)


def horizons(train: Split) -> list[float]:
    """Evaluation times: quantiles of the training rows' event times (distinct, increasing)."""
    times = train.durations[train.events > 0].double().cpu()
    return sorted({float(torch.quantile(times, q)) for q in HORIZON_QUANTILES})


def _safe(value: Any) -> Any:
    """A figure for metrics.json: finite float or None (never NaN/inf, which is not strict JSON)."""
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return float(value) if value is not None and math.isfinite(float(value)) else None


def split_metrics(name: str, risk: torch.Tensor, split: Split, train: Split, base: BreslowBaseline,
                  at: list[float], intervals: bool = False) -> dict[str, Any]:
    """Uno's C, IBS and td-AUC of one split; a metric the split cannot define is None.

    ``intervals``: also ``<name>_cindex_ci``, ``<name>_uno_cindex_ci`` and ``<name>_ibs_ci``, 95%
    bootstrap intervals (grid, tau and censoring weights held at the full split's)."""
    t, e = split.durations.cpu().double(), split.events.cpu().double()
    tt, te = train.durations.cpu().double(), train.events.cpu().double()
    inside = [h for h in at if float(t.min()) <= h < float(t.max())]
    out: dict[str, Any] = {f"{name}_uno_cindex": None, f"{name}_ibs": None, f"{name}_td_auc": None,
                           f"{name}_td_auc_mean": None}
    risk = risk.cpu().double()
    weights = terms = None
    try:
        weights = uno_weights(t, e, tt, te, tau=max(at))
        out[f"{name}_uno_cindex"] = uno_cindex(risk, t, e, tt, te, tau=max(at))
    except ValueError:
        pass
    grid = torch.linspace(float(t.min()), min(max(at), float(t.max())), IBS_POINTS, dtype=torch.float64)
    grid = torch.unique(grid[grid < t.max()])
    if grid.numel() >= 2:  # S(t|x) a block of rows at a time: bounded memory at any n
        terms = brier_contributions(lambda rows: base.survival(risk[rows], grid), grid, t, e, tt, te)
        out[f"{name}_ibs"] = float(terms.mean())
    if inside and bool(((t <= inside[0]) & (e > 0)).any()) and bool((t > inside[-1]).any()):
        scores, mean = cumulative_dynamic_auc(risk, inside, t, e, tt, te)
        out[f"{name}_td_auc"], out[f"{name}_td_auc_mean"] = scores, mean
    if intervals:
        ci = bootstrap_intervals(risk, t, e, uno_weights=weights if out[f"{name}_uno_cindex"] is not None else None,
                                 ibs_terms=terms, resamples=RESAMPLES, seed=SEED, level=LEVEL,
                                 max_rows=BOOTSTRAP_MAX_ROWS)
        for key in ("cindex", "uno_cindex", "ibs"):
            out[f"{name}_{key}_ci"] = ci.get(key)
    return {k: _safe(v) for k, v in out.items()}


def finish_run(model: nn.Module, cohort: Cohort, config: dict[str, Any], best_epoch: int, ctx: Any = None,
               run_dir: Path | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(extra metrics, predictor artefact or None for image data) for a run's best model.

    With ``run_dir`` (rank 0 only) the test rows' durations, events, risks and predicted S(h | x)
    at the horizons go to ``test_predictions.csv``: the data behind the survival plots
    (:func:`.plots.plot_survival`), a few milliseconds to write."""
    train_risk = split_risks(model, cohort.train, ctx)
    base = BreslowBaseline.fit(train_risk, cohort.train.durations, cohort.train.events)
    at = horizons(cohort.train)
    metrics: dict[str, Any] = {"horizons": at, "uno_tau": max(at), "bootstrap_resamples": RESAMPLES,
                               "bootstrap_seed": SEED, "bootstrap_rows": min(len(cohort.test), BOOTSTRAP_MAX_ROWS)}
    for name, split in (("test", cohort.test), ("val", cohort.val)):
        risk = split_risks(model, split, ctx)
        metrics.update(split_metrics(name, risk, split, cohort.train, base, at, intervals=name == "test"))
        if name == "test" and run_dir is not None:
            write_test_predictions(Path(run_dir), risk, split, base, at)
    images = cohort.extra.get("images")
    if images is not None:  # image files: how to read new ones (app/image_predict.py) instead of a feature schema
        return metrics, {**images.artefact(), "baseline": base.to_dict(), "best_epoch": best_epoch, "horizons": at,
                         "model": config["model"], "data_source": cohort.source}
    schema = cohort.extra.get("schema")
    if schema is None or cohort.standardizer is None:
        return metrics, None
    sd = cohort.standardizer.state_dict()
    artefact = {"format": FORMAT, "schema": schema.to_dict(), "feature_names": cohort.feature_names,
                "standardizer": {k: v.tolist() for k, v in sd.items()}, "baseline": base.to_dict(),
                "best_epoch": best_epoch, "horizons": at, "model": config["model"], "data_source": cohort.source}
    return metrics, artefact


def write_test_predictions(run_dir: Path, risk: torch.Tensor, split: Split, base: BreslowBaseline,
                           at: list[float]) -> None:
    """``test_predictions.csv``: duration, event, risk and ``surv@<h>`` = S(h | x) per test row."""
    from .checkpoint import write_text_atomic
    from .plots import PREDICTIONS, SURV_PREFIX

    risk = risk.detach().cpu().double()
    cols = [split.durations.cpu().double(), split.events.cpu().double(), risk, *base.survival(risk, at).T]
    header = ",".join(["duration", "event", "risk", *(f"{SURV_PREFIX}{h:g}" for h in at)])
    body = "\n".join(",".join(map(repr, row)) for row in torch.stack(cols, 1).tolist())
    write_text_atomic(f"{header}\n{body}\n", run_dir / PREDICTIONS, durable=False)


def write_predictor(run_dir: Path, artefact: dict[str, Any] | None) -> None:
    from .checkpoint import write_text_atomic

    if artefact is not None:
        write_text_atomic(json.dumps(artefact, indent=1) + "\n", Path(run_dir) / ARTEFACT)


class Predictor:
    """A run dir's best model with its schema, standardization and baseline: new rows -> risks, S(t|x)."""

    def __init__(self, schema: FeatureSchema, scaler: Standardizer, baseline: BreslowBaseline, model: nn.Module,
                 run_dir: Path) -> None:
        self.schema, self.scaler, self.baseline, self.model, self.run_dir = schema, scaler, baseline, model, run_dir

    @classmethod
    def load(cls, run_dir: str | Path, trust: tuple[str, ...] = ()) -> "Predictor":
        """Read ``predictor.json`` and ``best.pt`` (weights_only); DataError naming the file when unusable.

        ``trust``: the ``model._target_`` paths the user repeats (``--trust``); a file never names code to import."""
        from .checkpoint import CheckpointError, load_checkpoint
        from .components import build_model

        run_dir = Path(run_dir)
        path = run_dir / ARTEFACT
        if not path.is_file():
            raise DataError(f"{path}: not found; pass the run directory of a finished survopt-train run on "
                            "tabular data")
        try:
            art = json.loads(path.read_text(encoding="utf-8"))
            if art.get("format") != FORMAT:
                raise ValueError(f"format {art.get('format')!r}, expected {FORMAT!r}")
            schema = FeatureSchema.from_dict(art["schema"])
            scaler = Standardizer()
            scaler.load_state_dict(art["standardizer"])
            baseline = BreslowBaseline.from_dict(art["baseline"])
            if len(schema.feature_names) != scaler.mean.shape[0]:
                raise ValueError("schema and standardizer disagree on the number of features")
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: unusable predictor file ({str(exc).splitlines()[0] if str(exc) else exc!r})") \
                from None
        try:
            state = load_checkpoint(run_dir / "best.pt")
        except CheckpointError as exc:
            raise DataError(str(exc)) from None
        if state.get("epoch") != art.get("best_epoch"):
            raise DataError(f"{run_dir / 'best.pt'}: holds epoch {state.get('epoch')} but {path} was fitted with "
                            f"epoch {art.get('best_epoch')}; the pair does not belong together")
        model = build_model(art["model"], (len(schema.feature_names),), trust=trust, source=str(path))
        model.load_state_dict(state["model"])
        model.eval()
        return cls(schema, scaler, baseline, model, run_dir)

    def features(self, label: str, column: dict[str, list[str]], rows: list[int]) -> torch.Tensor:
        """Standardized float32 features of raw cells, exactly as the trainer built them."""
        x = self.schema.encode(label, column, rows).astype(np.float32)
        x = self.schema.fill_missing(x)
        with np.errstate(over="ignore", invalid="ignore"):
            z = self.scaler.transform(x)
        bad = ~np.isfinite(z)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise DataError(f"{label}: column {self.schema.feature_names[j]!r} at row {rows[i]} is not finite in "
                            "float32 after standardization (an extreme value)")
        return torch.from_numpy(np.ascontiguousarray(z))

    @torch.no_grad()
    def risk(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(c) for c in x.split(EVAL_ROWS)]).float().reshape(-1)
