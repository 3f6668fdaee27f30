"""A finished run as a usable model: ``predictor.json`` beside ``best.pt``, and the end-of-run survival metrics.

``predictor.json`` is plain JSON (never pickle) holding everything needed to score a new
row exactly as training did: the feature schema (columns and their order, category
levels, constant columns dropped, missing-value policy and the training-row medians,
unseen-level policy, duration/event column names), the standardization statistics of
the training rows, and Breslow's baseline cumulative hazard fitted on the training rows
with the best model. The weights stay in ``best.pt`` (loaded with ``weights_only=True``);
the artefact records the best epoch so a mismatched pair is refused.

The file stays small at any n (:func:`..survival.compaction.compact_baseline`): the baseline keeps only the times at
which it rises (the event times, losslessly), exactly up to :data:`BASELINE_KNOTS` of them; above
that it keeps at most that many knots, spaced so that the cumulative hazard changes by at most a
stated ratio between two, and the worst error this causes in any S(t | x) is written beside it
(``baseline.max_abs_error``).

Reading it (:meth:`Predictor.load`) treats it as untrusted data: its size is bounded, the model
keys are checked against the model's schema, the model is built on the meta device and checked
against ``best.pt``'s weights before anything is allocated, and no path in it is ever opened.

The same baseline turns the test (and validation) risks into survival curves for the
time-dependent metrics written to ``metrics.json``: Uno's C truncated at the last
horizon, the integrated Brier score and the cumulative/dynamic AUC at the horizons (the
25/50/75% quantiles of the training rows' event times). The test C-index, Uno's C and IBS
also get 95% percentile bootstrap intervals (``test_cindex_ci`` ...: 1,000 resamples of the
test patients, seed 0, :mod:`..survival.bootstrap`; 0.1-0.2 s for SUPPORT's 1,775; above
10,000 test patients a 10,000-patient subset is bootstrapped and its spread scaled).
"""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..survival.breslow import BreslowBaseline
from ..survival.compaction import compact_baseline
from ..survival.data import DataError
from ..survival.standardize import Standardizer
from ..survival.schema import FeatureSchema
from ..survival.bootstrap import LEVEL, RESAMPLES, SEED, bootstrap_intervals, subset_rows
from ..survival.timedep import brier_contributions, cumulative_dynamic_auc, kaplan_meier, uno_cindex, uno_weights
from .data import EVAL_ROWS, Cohort, Split
from .family_artifact import checked_family, curve_columns, family_predictions

ARTEFACT = "predictor.json"
FORMAT = "survopt-predictor/2"  # /2: the baseline is compacted (event times only, or bounded knots)
#: A run of another family than cox (app/family_metrics.py): the fitted family instead of a Breslow baseline.
FORMAT_FAMILY = "survopt-predictor/3"
FORMATS = ("survopt-predictor/1", FORMAT, FORMAT_FAMILY)  # /1 (every training time) reads as /2
#: The most baseline times of a Cox-Time family a predictor file may hold: one network pass per time per row.
MAX_BYTES = 64 << 20  # a predictor.json is KB to a few MB (schema, levels, <= BASELINE_KNOTS knots)
#: The most knots the baseline keeps: exact up to this many event times, compacted above.
BASELINE_KNOTS = 2000
TABLE_MODELS = ("linear", "mlp")  # what a tabular run (the only kind with a predictor.json) trains
HORIZON_QUANTILES = (0.25, 0.5, 0.75)
IBS_POINTS = 50
#: Test patients bootstrapped exactly; a larger test set bootstraps a random subset this large and scales
#: (:func:`..survival.bootstrap.bootstrap_intervals`), so the intervals cost 1-3 s at any n (2-core EPYC).
BOOTSTRAP_MAX_ROWS = 10_000
#: The most rows test_predictions.csv holds: every test row up to this many, above it the patients the bootstrap
#: draws (:func:`..survival.bootstrap.subset_rows`), so the file stays ~1 MB at any n (10^6 rows took 15 MB, 1 s).
PREDICTION_ROWS = BOOTSTRAP_MAX_ROWS


@torch.no_grad()
def split_risks(model: nn.Module, split: Split, ctx: Any = None) -> torch.Tensor:
    """Risk scores of every row in eval mode and fp32, chunked and gathered as in ``trainer.evaluate``."""
    from .components import split_outputs

    model.eval()
    return split_outputs(model, split, ctx).reshape(-1)


def horizons(train: Split) -> list[float]:
    """Evaluation times: quantiles of the training rows' event times (distinct, increasing)."""
    times = train.durations[train.events > 0].double().cpu()
    at = torch.quantile(times, torch.tensor(HORIZON_QUANTILES, dtype=torch.float64))  # one sort for all three
    return sorted({float(h) for h in at})


def _safe(value: Any) -> Any:
    """A figure for metrics.json: finite float or None (never NaN/inf, which is not strict JSON)."""
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return float(value) if value is not None and math.isfinite(float(value)) else None


def split_metrics(name: str, risk: torch.Tensor, split: Split, train: Split, base: BreslowBaseline,
                  at: list[float], intervals: bool = False,
                  censoring: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """Uno's C, IBS and td-AUC of one split; a metric the split cannot define is None.

    ``intervals``: also ``<name>_cindex_ci``, ``<name>_uno_cindex_ci`` and ``<name>_ibs_ci``, 95%
    bootstrap intervals (grid, tau and censoring weights held at the full split's). ``censoring``: the
    training rows' censoring KM when the caller fitted it (:func:`censoring_of`), else fitted here."""
    t, e = split.durations.cpu().double(), split.events.cpu().double()
    tt, te = train.durations.cpu().double(), train.events.cpu().double()
    g = censoring if censoring is not None else censoring_of(train)
    inside = [h for h in at if float(t.min()) <= h < float(t.max())]
    out: dict[str, Any] = {f"{name}_uno_cindex": None, f"{name}_ibs": None, f"{name}_td_auc": None,
                           f"{name}_td_auc_mean": None}
    risk = risk.cpu().double()
    weights = terms = None
    try:
        weights = uno_weights(t, e, tt, te, tau=max(at), censoring=g)
        out[f"{name}_uno_cindex"] = uno_cindex(risk, t, e, tt, te, tau=max(at), censoring=g)
    except ValueError:
        pass
    grid = torch.linspace(float(t.min()), min(max(at), float(t.max())), IBS_POINTS, dtype=torch.float64)
    grid = torch.unique(grid[grid < t.max()])
    if grid.numel() >= 2:  # S(t|x) a block of rows at a time: bounded memory at any n
        terms = brier_contributions(lambda rows: base.survival(risk[rows], grid), grid, t, e, tt, te, censoring=g)
        out[f"{name}_ibs"] = float(terms.mean())
    if inside and bool(((t <= inside[0]) & (e > 0)).any()) and bool((t > inside[-1]).any()):
        scores, mean = cumulative_dynamic_auc(risk, inside, t, e, tt, te, censoring=g)
        out[f"{name}_td_auc"], out[f"{name}_td_auc_mean"] = scores, mean
    if intervals:
        ci = bootstrap_intervals(risk, t, e, uno_weights=weights if out[f"{name}_uno_cindex"] is not None else None,
                                 ibs_terms=terms, resamples=RESAMPLES, seed=SEED, level=LEVEL,
                                 max_rows=BOOTSTRAP_MAX_ROWS)
        for key in ("cindex", "uno_cindex", "ibs"):
            out[f"{name}_{key}_ci"] = ci.get(key)
    return {k: _safe(v) for k, v in out.items()}


def censoring_of(train: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """The KM estimate of the training rows' censoring, G: every IPCW metric of a run reads it (fitted once)."""
    return kaplan_meier(train.durations.cpu().double(), train.events.cpu().double(), reverse=True)


def finish_run(model: nn.Module, cohort: Cohort, config: dict[str, Any], best_epoch: int, ctx: Any = None,
               run_dir: Path | None = None, timings: Any = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(extra metrics, predictor artefact or None for image data) for a run's best model.

    With ``run_dir`` (rank 0 only) the test rows' durations, events, risks and predicted S(h | x)
    at the horizons go to ``test_predictions.csv``: the data behind the survival plots
    (:func:`.plots.plot_survival`), a few milliseconds to write."""
    train_risk = split_risks(model, cohort.train, ctx)
    base = BreslowBaseline.fit(train_risk, cohort.train.durations, cohort.train.events)
    at = horizons(cohort.train)
    metrics: dict[str, Any] = {"horizons": at, "uno_tau": max(at), "bootstrap_resamples": RESAMPLES,
                               "bootstrap_seed": SEED, "bootstrap_rows": min(len(cohort.test), BOOTSTRAP_MAX_ROWS),
                               "test_predictions_rows": min(len(cohort.test), PREDICTION_ROWS)}
    g = censoring_of(cohort.train)
    for name, split in (("test", cohort.test), ("val", cohort.val)):
        risk = split_risks(model, split, ctx)
        metrics.update(split_metrics(name, risk, split, cohort.train, base, at, intervals=name == "test", censoring=g))
        if name == "test" and run_dir is not None:
            with timings.phase("writes") if timings is not None else contextlib.nullcontext():
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
    """``test_predictions.csv``: duration, event, risk and ``surv@<h>`` = S(h | x) per test row, in test order;
    above :data:`PREDICTION_ROWS` test rows, those of the bootstrap's subset only (``metrics.json``:
    ``test_predictions_rows``). Every test row's risk is one ``survopt-predict`` away; this file feeds
    the plots (calibration deciles, risk tertiles), for which a 10,000-patient sample is plenty."""
    from .checkpoint import write_text_atomic
    from .plots import PREDICTIONS, SURV_PREFIX

    rows = torch.from_numpy(subset_rows(len(split), PREDICTION_ROWS, SEED))
    risk = risk.detach().cpu().double()[rows]
    cols = [split.durations.cpu().double()[rows], split.events.cpu().double()[rows], risk,
            *base.survival(risk, at).T]
    header = ",".join(["duration", "event", "risk", *(f"{SURV_PREFIX}{h:g}" for h in at)])
    body = "\n".join(",".join(map(repr, row)) for row in torch.stack(cols, 1).tolist())
    write_text_atomic(f"{header}\n{body}\n", run_dir / PREDICTIONS, durable=False)


def write_predictor(run_dir: Path, artefact: dict[str, Any] | None) -> None:
    """``predictor.json``, a Cox run's baseline compacted (:func:`compact_baseline`; a family run holds its own)."""
    from .checkpoint import write_text_atomic

    if artefact is not None:
        if "baseline" in artefact:
            artefact = dict(artefact, baseline=compact_baseline(artefact["baseline"], BASELINE_KNOTS))
        write_text_atomic(json.dumps(artefact, indent=1) + "\n", Path(run_dir) / ARTEFACT)


def _checked_baseline(data: Any) -> BreslowBaseline:
    """A baseline from predictor.json: increasing finite times, a finite non-negative non-decreasing
    hazard, a finite shift (ValueError otherwise)."""
    if not isinstance(data, dict):
        raise ValueError("baseline: expected times, cumhaz and shift")
    base = BreslowBaseline.from_dict(data)
    if not math.isfinite(base.shift) or not bool(torch.isfinite(base.times).all()) \
            or bool((base.cumhaz < 0).any()) or bool((base.cumhaz[1:] < base.cumhaz[:-1]).any()):
        raise ValueError("baseline: times and shift must be finite, cumhaz >= 0 and non-decreasing")
    error = data.get("max_abs_error", 0.0)
    if type(error) not in (int, float) or not 0 <= error < 1:
        raise ValueError(f"baseline.max_abs_error: {error!r} is not an error bound in [0, 1)")
    return base


def read_artifact_json(path: Path, what: str, max_bytes: int, formats: Sequence[str]) -> dict[str, Any]:
    """A JSON artifact as untrusted data: a regular file (never read through a link), at most ``max_bytes``,
    a mapping whose ``format`` is one of ``formats``; DataError (one line) naming the file otherwise."""
    from .checkpoint import file_kind

    kind = file_kind(path)
    if kind != "file":
        raise DataError(f"{path}: {kind}, not {'an' if what[0] in 'aeiou' else 'a'} {what} file; artifacts are never "
                        "read through links")
    if path.stat().st_size > max_bytes:
        raise DataError(f"{path}: {path.stat().st_size} bytes, more than {'an' if what[0] in 'aeiou' else 'a'} {what} "
                        f"file holds ({max_bytes})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") not in formats:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else None!r}, expected "
                             f"{formats[-1]!r}")
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: unusable {what} file ({' '.join(str(exc).split())[:300] or repr(exc)})") from None
    return data


def _model_settings(model: Any, trust: tuple[str, ...] = (), where: Any = "") -> dict[str, Any]:
    """predictor.json's ``model`` checked by the schema of a tabular model (ValueError, one line); a user's
    own ``model=custom`` only with its ``_target_`` in ``trust`` (its keywords are then checked against the
    class's signature when it is built)."""
    from ..schemas.checks import validate
    from ..errors import ConfigError
    from .schemas import MODELS
    from .user_models import check_trusted

    if isinstance(model, dict) and model.get("name") == "custom":
        try:
            check_trusted(model, "model", trust, str(where))
        except ConfigError as exc:  # its own line: the fix is a flag, not a damaged file
            raise DataError(str(exc)) from None
        return dict(model)
    if not isinstance(model, dict) or model.get("name") not in TABLE_MODELS:
        name = model.get("name") if isinstance(model, dict) else model
        raise ValueError(f"model.name: {name!r}; a predictor file holds a tabular model ({', '.join(TABLE_MODELS)}, "
                         "or custom with --trust)")
    hidden = [k for k in model if str(k).startswith("_")]
    if hidden:
        raise ValueError(f"model.{hidden[0]}: an artifact never names code to run")
    try:
        return {"name": model["name"], **validate(MODELS[model["name"]], model, "model")}
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class Predictor:
    """A run dir's best model with its schema, standardization and baseline: new rows -> risks, S(t|x)."""

    def __init__(self, schema: FeatureSchema, scaler: Standardizer, baseline: BreslowBaseline | None,
                 model: nn.Module, run_dir: Path) -> None:
        self.schema, self.scaler, self.baseline, self.model, self.run_dir = schema, scaler, baseline, model, run_dir
        self.baseline_error = 0.0  # the largest |S(t|x) - the run's own S(t|x)| its compacted baseline allows
        self.family: Any = None  # a family run's fitted library family (format /3), else None: Breslow's Cox
        self.risk_time = math.nan  # a family run's risk: 1 - S(risk_time | x)

    @classmethod
    def load(cls, run_dir: str | Path, trust: tuple[str, ...] = ()) -> "Predictor":
        """Read ``predictor.json`` and ``best.pt`` as untrusted data; DataError (one line) naming the file.

        ``predictor.json`` (a regular file, not a link, at most :data:`MAX_BYTES`) must hold a model of
        the tabular schema (``linear``/``mlp``, every key checked by the schema; a ``pretrained`` or
        ``_target_`` key is refused, so no path in it is ever loaded), a baseline whose times increase
        and whose hazard is finite, non-negative and non-decreasing, and a standardization of the
        schema's width. The model is then built on the meta device and checked against ``best.pt``'s
        weights (:func:`.components.model_from_artifact`) before a byte of it is allocated. A user's own
        model (``model=custom``) is rebuilt only when the user repeats its ``_target_`` in ``trust``
        (``--trust``): a file never names code to import."""
        from .checkpoint import CheckpointError, file_kind, load_checkpoint
        from .components import model_from_artifact
        from .family_fit import head_of

        run_dir = Path(run_dir)
        path = run_dir / ARTEFACT
        if file_kind(path) == "missing":
            raise DataError(f"{path}: not found; pass the run directory of a finished survopt-train run on "
                            "tabular data")
        art = read_artifact_json(path, "predictor", MAX_BYTES, FORMATS)
        try:
            schema = FeatureSchema.from_dict(art["schema"])
            scaler = Standardizer()
            scaler.load_state_dict(art["standardizer"])
            width = len(schema.feature_names)
            if width != scaler.mean.shape[0] or width != scaler.std.shape[0] or width == 0:
                raise ValueError("schema and standardizer disagree on the number of features")
            if not (np.isfinite(scaler.mean).all() and np.isfinite(scaler.std).all() and (scaler.std > 0).all()):
                raise ValueError("standardizer: mean and std must be finite, std > 0")
            family = None
            if art["format"] == FORMAT_FAMILY:
                family, t50 = checked_family(art)
                baseline = None
            else:
                baseline = _checked_baseline(art["baseline"])
            model = _model_settings(art["model"], trust, path)
        except DataError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise DataError(f"{path}: unusable predictor file ({' '.join(str(exc).split())[:300] or repr(exc)})") \
                from None
        try:
            state = load_checkpoint(run_dir / "best.pt")
            if state.get("epoch") != art.get("best_epoch"):
                raise DataError(f"{run_dir / 'best.pt'}: holds epoch {state.get('epoch')} but {path} was fitted with "
                                f"epoch {art.get('best_epoch')}; the pair does not belong together")
            head = head_of(family)
            net = model_from_artifact(model, head.input_shape((width,)), state.get("model"), run_dir / "best.pt",
                                      trust=trust, head=head)
        except CheckpointError as exc:
            raise DataError(str(exc)) from None
        predictor = cls(schema, scaler, baseline, net, run_dir)
        if family is not None:
            predictor.family, predictor.risk_time = family, t50
        else:
            predictor.baseline_error = float(art["baseline"].get("max_abs_error", 0.0))
        return predictor

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
        """A Cox run's risk (log-hazard) of each row; a family run's 1 - S(risk_time | x)."""
        if self.family is not None:
            return 1.0 - self.family.survival(self.outputs(x), [self.risk_time])[:, 0]
        return torch.cat([self.model(c) for c in x.split(EVAL_ROWS)]).float().reshape(-1)

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """A family run's network outputs (n, k) for standardized rows (Cox-Time: g(t_j, x) at its baseline's times)."""
        if self.family.time_input:
            return self.family.predict(self.model, x).float()
        return torch.cat([self.model(c).reshape(len(c), -1) for c in x.split(EVAL_ROWS)]).float()

    @property
    def causes(self) -> int:
        """Competing causes whose CIFs the predictions give (1: S(t|x))."""
        return self.family.n_risks if self.family is not None else 1

    def curve_columns(self, times: Sequence[float]) -> list[str]:
        """The output columns after ``risk``: ``S(t)`` per time, or ``CIF_k(t)`` per cause then time."""
        return curve_columns(self.causes, times)

    # What survopt-predict asks of a model, shared with .ensemble.Ensemble (several runs as one):
    @property
    def columns(self) -> list[str]:
        """The input columns the model reads (in any order in a file)."""
        return [c.name for c in self.schema.columns]

    @property
    def missing(self) -> str:
        """The run's ``data.missing``: only ``impute`` fills missing cells of new rows."""
        return self.schema.missing

    def set_unseen(self, policy: str) -> None:
        """``refuse`` or ``zero`` for category levels unseen in training (``--unseen``)."""
        self.schema.unseen = policy

    def predict(self, label: str, column: dict[str, list[str]], rows: list[int],
                times: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(risk, the :meth:`curve_columns` values at ``times`` or None when there are none) of raw cells:
        S(t|x) (n, len(times)), or with competing causes CIF_k(t|x) (n, causes x len(times), cause-major)."""
        x = self.features(label, column, rows)
        if self.family is None:
            risk = self.risk(x)
            return risk, (self.baseline.survival(risk, times) if times else None)
        return family_predictions(self.family, self.outputs(x), self.risk_time, times)
