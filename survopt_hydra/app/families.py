"""The model family seam of the trainer: one object per run that turns the network's outputs into a
loss per batch, a validation figure per epoch, and at the end the test metrics and the predictor.

``family=cox`` (:class:`CoxRun`, the default) is the app as it always was: one risk per row, the Cox
partial likelihood (``trainer.ties``), Harrell's C, Breslow's baseline (:mod:`.predictor`). Every
other family (:class:`CurveRun`) is a library family (:mod:`survopt_hydra.survival.families`) fitted
to the training rows by the pre-flight (:func:`.family_fit.fit_family`). The trainer calls the same
methods whatever the family:

* ``head``: what the network's last layer gives (:class:`.family_fit.Head`);
* ``prepare(cohort)``: the training rows' targets (grid indices, scaled times) once, on the device,
  so a batch is an index into them: no host sync per batch;
* per batch, ``forward(model, inputs, idx)`` inside the engine's autocast, then ``loss(out, durations,
  events, idx)``: the family's loss, float32 with autocast off;
* per epoch, ``evaluate(model, split, ctx)`` -> (``val_cindex``, ``val_loss``); at the end, with
  ``final=True`` on the test rows, then ``finish(...)`` (metrics, ``predictor.json``).

What the C-index means (docs/families.md): Harrell's C of the risk for cox; Antolini's time-dependent C
of S(t | x), each event read at its own time, for every other single-risk family (for curves that never
cross, such as a proportional-hazards model's, it equals Harrell's C of the risk, so the figures rank
alike across families); with competing causes (DeepHit, ``data.causes`` > 1) the mean over causes of the
cause-specific C of CIF_k (Wolbers et al.). Cox-Time's curves need its Breslow-type baseline: per epoch it
is fitted on a fixed subset of :data:`VAL_BASELINE_ROWS` training rows (one network pass per row and
event time), on the test rows and in ``predictor.json`` on every training row.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..distributed import DistContext
from ..survival import cox_ph_loss
from ..survival.families import select
from ..survival.families.metrics import own_time_concordance
from .components import evaluate, split_outputs
from .data import EVAL_ROWS
from .family_fit import COX_HEAD, Head, head_of

#: Training rows whose Breslow-type baseline scores Cox-Time's curves each epoch (seeded, fixed).
VAL_BASELINE_ROWS = 2048
#: Grid times Cox-Time's g(t, x) is read at when scoring an epoch, and at most for the final model (above it,
#: every event time uses the nearest of these many; :class:`~..survival.families.CoxTime`). Exact curves cost
#: (rows x event times) network passes: on SUPPORT (874 event times) scoring an epoch cost 48x its training.
VAL_BASELINE_TIMES = 64
FINAL_BASELINE_TIMES = 256


#: The output layer of each built-in model (app/components.build_model; user_models.BackboneCox).
OUTPUT_LAYER: dict[str, Callable[[nn.Module], nn.Module]] = {
    "linear": lambda m: m.linear, "mlp": lambda m: m.net[-1], "cnn": lambda m: m.head[-1],
    "backbone": lambda m: m.head[-1]}


def run_family(settings: dict[str, dict[str, Any]], family: Any) -> "CoxRun | CurveRun":
    """The seam for a checked run: ``family`` is the plan's fitted library family (None for cox)."""
    if family is None:
        return CoxRun(settings["trainer"]["ties"])
    return CurveRun(family, int(settings["data"].get("causes", 1)))


class CoxRun:
    """``family=cox``: the risk, the partial likelihood and Breslow's baseline, unchanged."""

    name = "cox"
    causes = 1
    family = None
    head: Head = COX_HEAD

    def __init__(self, ties: str) -> None:
        self.ties = ties

    def prepare(self, cohort: Any) -> None:
        pass

    def init_head(self, model: nn.Module, name: str) -> None:
        pass

    def forward(self, model: nn.Module, inputs: tuple[Tensor, ...], idx: Tensor) -> Tensor:
        return model(*inputs)

    def loss(self, out: Tensor, durations: Tensor, events: Tensor, idx: Tensor) -> Tensor:
        return cox_ph_loss(out, durations, events, self.ties)  # fp32 by design

    def evaluate(self, model: nn.Module, split: Any, ctx: DistContext | None = None,
                 final: bool = False) -> tuple[float, float]:
        return evaluate(model, split, self.ties, ctx)

    def finish(self, model: nn.Module, cohort: Any, config: dict[str, Any], best_epoch: int, ctx: Any,
               run_dir: Any, timings: Any = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        from .predictor import finish_run

        return finish_run(model, cohort, config, best_epoch, ctx, run_dir, timings=timings)


def _net(model: nn.Module, inputs: tuple[Tensor, ...]) -> Callable[[Tensor], Tensor]:
    """``model`` as a function of the first input (images with covariates pass the rest along)."""
    return model if len(inputs) == 1 else (lambda x: model(x, *inputs[1:]))


def family_concordance(family: Any, out: Tensor, durations: Tensor, events: Tensor, causes: int) -> float:
    """Antolini's C of S(t | x) (one cause), or the mean over causes of the cause-specific C of CIF_k;
    each event read at its own time. NaN when no pair can be ranked."""
    d, e = durations.detach().cpu().double(), events.detach().cpu().double()
    if causes == 1:
        try:
            return own_time_concordance(lambda at: family.survival(out, at), d, e)
        except ValueError:
            return math.nan
    per = []
    for k in range(1, causes + 1):
        try:
            per.append(own_time_concordance(lambda at, k=k: family.cif(out, at)[:, k - 1], d, e, k, True))
        except ValueError:  # no event of this cause in the split: it ranks nothing
            continue
    return statistics.fmean(per) if per else math.nan


class CurveRun:
    """A library family: targets on the device, its loss per batch, curves for every figure."""

    def __init__(self, family: Any, causes: int = 1) -> None:
        self.family, self.causes, self.name = family, causes, family.name
        self.head = head_of(family)
        self.train_target: dict[str, Tensor] = {}
        self._final: Any = None
        self._baseline_rows: Tensor | None = None

    # -- training ------------------------------------------------------------------------
    def prepare(self, cohort: Any) -> None:
        """The training rows' targets on their device, and the cohort the baselines are fitted on."""
        train = cohort.train
        target = self.family.transform(train.durations.cpu(), train.events.cpu())
        self.train_target = {k: v.to(train.durations.device) for k, v in target.items()}
        self.cohort = cohort
        n = len(train)
        g = torch.Generator().manual_seed(0)
        rows = torch.randperm(n, generator=g)[:VAL_BASELINE_ROWS] if n > VAL_BASELINE_ROWS else torch.arange(n)
        self._baseline_rows = torch.sort(rows).values

    def init_head(self, model: nn.Module, name: str) -> None:
        """Start a built-in model's output bias at the family's featureless fit of the training rows (the
        grid's Kaplan-Meier / Aalen-Johansen masses, :meth:`~..survival.families.SurvivalFamily.marginal_outputs`):
        every row starts at the training curve instead of, for Logistic-Hazard, a hazard of 1/2 per interval
        (S = 2^-20 at the last of 20 cuts). The user's own ``model=custom`` keeps its own initialisation."""
        bias = self.family.marginal_outputs(self.cohort.train.durations.cpu(), self.cohort.train.events.cpu())
        last = OUTPUT_LAYER.get(name, lambda m: None)(model)
        if bias is not None and last is not None and last.bias is not None and last.bias.shape == bias.shape:
            with torch.no_grad():
                last.bias.copy_(bias.to(last.bias.device, last.bias.dtype))

    def forward(self, model: nn.Module, inputs: tuple[Tensor, ...], idx: Tensor) -> Any:
        return self.family.forward(_net(model, inputs), inputs[0], select(self.train_target, idx))

    def loss(self, out: Any, durations: Tensor, events: Tensor, idx: Tensor) -> Tensor:
        return self.family.loss(out, select(self.train_target, idx))

    # -- scoring -------------------------------------------------------------------------
    def fitted(self, model: nn.Module, final: bool = False) -> Any:
        """The family ready to give curves: Cox-Time with its baseline (every training row and event time up to
        :data:`FINAL_BASELINE_TIMES` when ``final``, else the fixed subset on :data:`VAL_BASELINE_TIMES` grid
        times), the others as fitted by the pre-flight. ``model`` in eval mode."""
        if not self.family.time_input:
            return self.family
        if final and self._final is not None:
            return self._final
        train = self.cohort.train
        rows = slice(None) if final else self._baseline_rows.to(train.durations.device)
        fitted = self.family.fit_baseline(model, train.x[rows], train.durations[rows].cpu(), train.events[rows].cpu(),
                                          max_times=FINAL_BASELINE_TIMES if final else VAL_BASELINE_TIMES)
        if final:
            self._final = fitted
        return fitted

    @torch.no_grad()
    def outputs(self, model: nn.Module, split: Any, ctx: DistContext | None = None, family: Any = None) -> Tensor:
        """Every row's outputs in eval mode and float32 (n, k), gathered on every rank; Cox-Time's are
        g(t_j, x) at its baseline's times (``family``: the fitted one), computed on every rank."""
        model.eval()
        if self.family.time_input:
            return (family or self.fitted(model)).predict(model, split.x).float()
        out = split_outputs(model, split, ctx)
        return out.reshape(out.shape[0], -1)

    @torch.no_grad()
    def split_loss(self, model: nn.Module, split: Any, out: Tensor) -> float:
        """The family's loss on every row of ``split`` (Cox-Time: controls drawn by a generator seeded 0,
        so an epoch's figure does not depend on the global random stream)."""
        try:
            target = self.family.transform(split.durations.cpu(), split.events.cpu())
        except ValueError:  # labels this family cannot score (fit_family warned): no loss, the C-index stands
            return math.nan
        target = {k: v.to(split.durations.device) for k, v in target.items()}
        if self.family.time_input:
            g = torch.Generator(device=split.x.device).manual_seed(0)
            return float(self.family.loss(self.family.forward(model, split.x, target, generator=g), target))
        return float(self.family.loss(out.to(split.durations.device), target))

    def evaluate(self, model: nn.Module, split: Any, ctx: DistContext | None = None,
                 final: bool = False) -> tuple[float, float]:
        """(C-index as the module docstring defines it, the family's loss) of ``split``; NaNs when an output
        is not finite."""
        family = self.fitted(model.eval(), final)
        out = self.outputs(model, split, ctx, family)
        if not bool(torch.isfinite(out).all()):
            return math.nan, math.nan
        loss = self.split_loss(model, split, out)
        return family_concordance(family, out.cpu(), split.durations, split.events, self.causes), loss

    def finish(self, model: nn.Module, cohort: Any, config: dict[str, Any], best_epoch: int, ctx: Any,
               run_dir: Any, timings: Any = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        from .family_metrics import finish_curve_run

        return finish_curve_run(self, model, cohort, config, best_epoch, ctx, run_dir, timings=timings)


class FinishedRun:
    """A finished run's best model as scores for a tool (``survopt-tune``'s bags): a split's risk and its
    curves at any times, the same numbers ``survopt-predict`` gives (:mod:`.predictor`).

    Cox: the network's log-hazard and Breslow's S(t | x) from the training rows' risks; another family:
    1 - S(t_50 | x) (:func:`.family_metrics.risk_time`) and the family's own S(t | x) / CIF_k(t | x)."""

    def __init__(self, settings: dict[str, dict[str, Any]], cohort: Any, model: nn.Module, family: Any) -> None:
        self.cohort, self.model = cohort, model.eval()
        self.run = run_family(settings, family)
        self.causes = self.run.causes
        if family is None:
            from ..survival.breslow import BreslowBaseline

            self.baseline = BreslowBaseline.fit(self._cox_risk(cohort.train), cohort.train.durations,
                                                cohort.train.events)
        else:
            from .family_metrics import risk_time

            self.run.prepare(cohort)
            self.family, self.t50 = self.run.fitted(model, final=True), risk_time(cohort.train)

    @torch.no_grad()
    def _cox_risk(self, split: Any) -> Tensor:
        return torch.cat([self.model(c) for c in split.x.split(EVAL_ROWS)]).double().reshape(-1)

    def _outputs(self, split: Any) -> Tensor:
        return self.run.outputs(self.model, split, None, self.family).cpu()

    def risk(self, split: Any) -> Tensor:
        """float64 (n,): higher = earlier event."""
        if self.run.family is None:
            return self._cox_risk(split)
        return 1.0 - self.family.survival(self._outputs(split), [self.t50])[:, 0]

    def curves(self, split: Any) -> Callable[[Tensor], Tensor]:
        """times -> float64 (n, causes + 1, len(times)): S(t | x), then CIF_k(t | x) for each competing cause."""
        if self.run.family is None:
            risk = self._cox_risk(split)
            return lambda times: self.baseline.survival(risk, times)[:, None, :]
        out = self._outputs(split)
        if self.causes == 1:
            return lambda times: self.family.survival(out, times)[:, None, :]
        return lambda times: torch.cat([self.family.survival(out, times)[:, None, :], self.family.cif(out, times)], 1)


def bag_concordance(curves: list[Callable[[Tensor], Tensor]], durations: Tensor, events: Tensor, causes: int) -> float:
    """Antolini's C (or the mean cause-specific C) of the bag's mean curves: the mixture of its members."""
    def mean(times: Tensor) -> Tensor:
        return torch.stack([c(times) for c in curves]).mean(0)

    d, e = durations.cpu().double(), events.cpu().double()
    if causes == 1:
        return own_time_concordance(lambda at: mean(at)[:, 0], d, e)
    per = []
    for k in range(1, causes + 1):
        try:
            per.append(own_time_concordance(lambda at, k=k: mean(at)[:, k], d, e, k, True))
        except ValueError:  # no event of this cause among these rows
            continue
    return statistics.fmean(per) if per else math.nan


def bag_ibs(curves: list[Callable[[Tensor], Tensor]], test: Any, non_test: Any) -> float | None:
    """The integrated Brier score of the bag's mean S(t | x) on the ``test`` rows, as a run's ``test_ibs``
    (:mod:`.predictor`: 50 times from the first test time to the last horizon) with the horizons and the
    censoring distribution of the ``non_test`` rows (every fold's members share them); None without a grid."""
    from ..survival.timedep import integrated_brier_score
    from .predictor import IBS_POINTS, horizons

    t, e = test.durations.cpu().double(), (test.events.cpu() > 0).double()
    grid = torch.linspace(float(t.min()), min(max(horizons(non_test)), float(t.max())), IBS_POINTS,
                          dtype=torch.float64)
    grid = torch.unique(grid[grid < t.max()])
    if grid.numel() < 2:
        return None
    mean = torch.stack([c(grid)[:, 0] for c in curves]).mean(0)
    return integrated_brier_score(mean, grid, t, e, non_test.durations.cpu(), non_test.events.cpu() > 0)
