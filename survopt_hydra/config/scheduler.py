"""Scheduler schemas: one dataclass per option of the ``scheduler`` config group.

Lengths (``T_max``, ``T_0``, ``step_size``, ``milestones``, ``warmup_epochs``) are in
epochs; with ``interval: step`` they are converted to optimizer steps at build time.
The run length (``epochs``, ``steps_per_epoch``) is never stored here: it comes from
the call site, ``instantiate(cfg.scheduler, optimizer=opt, epochs=E, steps_per_epoch=S)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from .checks import each, fld, ge, gt, one_of, open_unit, optional

INTERVALS = ("epoch", "step")


@dataclass
class SchedulerConfig:
    """Fields every scheduler shares: when it steps and the optional linear warmup."""

    _target_: str = "survopt_hydra.scheduler.build_scheduler"
    _partial_: bool = False  # true: instantiate gives a functools.partial
    name: str = "none"
    interval: str = fld("epoch", one_of(*INTERVALS), "advance per epoch or per optimizer step")
    warmup_epochs: float = fld(0.0, ge(0), "linear warmup length, composes with every option")
    warmup_start_factor: float = fld(0.01, open_unit, "warmup starts at this fraction of the LR")


@dataclass
class NoneConfig(SchedulerConfig):
    name: str = "none"


@dataclass
class CosineConfig(SchedulerConfig):
    name: str = "cosine"
    T_max: Optional[float] = fld(None, optional(gt(0)), "epochs of decay; default: the rest of the run")
    eta_min: float = fld(0.0, ge(0))


@dataclass
class CosineWarmRestartsConfig(SchedulerConfig):
    name: str = "cosine_warm_restarts"
    T_0: float = fld(10.0, ge(1), "epochs until the first restart")
    T_mult: int = fld(1, ge(1), "period multiplier after each restart")
    eta_min: float = fld(0.0, ge(0))


@dataclass
class OneCycleConfig(SchedulerConfig):
    name: str = "onecycle"
    interval: str = fld("step", one_of(*INTERVALS))
    max_lr: Optional[float] = fld(None, optional(gt(0)), "peak LR; default: the optimizer's LR")
    pct_start: float = fld(0.3, open_unit)
    anneal_strategy: str = fld("cos", one_of("cos", "linear"))
    div_factor: float = fld(25.0, gt(0))
    final_div_factor: float = fld(1e4, gt(0))
    three_phase: bool = False
    cycle_momentum: bool = True


@dataclass
class PlateauConfig(SchedulerConfig):
    name: str = "plateau"
    monitor: str = fld("val_cindex", doc="metric name read from end_epoch(metrics)")
    mode: str = fld("max", one_of("min", "max"), "max for C-index, min for a loss")
    factor: float = fld(0.1, open_unit)
    patience: int = fld(10, ge(0))
    threshold: float = fld(1e-4, ge(0))
    threshold_mode: str = fld("rel", one_of("rel", "abs"))
    cooldown: int = fld(0, ge(0))
    min_lr: float = fld(0.0, ge(0))


@dataclass
class WarmupCosineConfig(CosineConfig):
    name: str = "warmup_cosine"
    warmup_epochs: float = fld(5.0, ge(0))


@dataclass
class StepConfig(SchedulerConfig):
    name: str = "step"
    step_size: float = fld(30.0, gt(0), "epochs between decays")
    gamma: float = fld(0.1, gt(0))


@dataclass
class MultiStepConfig(SchedulerConfig):
    name: str = "multistep"
    milestones: List[float] = fld([30.0, 60.0, 90.0], each(gt(0)), "epochs at which to decay")
    gamma: float = fld(0.1, gt(0))


@dataclass
class ExponentialConfig(SchedulerConfig):
    name: str = "exponential"
    gamma: float = fld(0.95, gt(0))


@dataclass
class LinearWarmupConfig(SchedulerConfig):
    name: str = "linear_warmup"
    warmup_epochs: float = fld(5.0, gt(0))


SCHEDULERS: dict[str, type[SchedulerConfig]] = {
    "none": NoneConfig,
    "cosine": CosineConfig,
    "cosine_warm_restarts": CosineWarmRestartsConfig,
    "onecycle": OneCycleConfig,
    "plateau": PlateauConfig,
    "warmup_cosine": WarmupCosineConfig,
    "step": StepConfig,
    "multistep": MultiStepConfig,
    "exponential": ExponentialConfig,
    "linear_warmup": LinearWarmupConfig,
}
