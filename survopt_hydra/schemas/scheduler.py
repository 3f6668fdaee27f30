"""Scheduler schemas: one dataclass per option of the ``scheduler`` config group.

Lengths (``T_max``, ``T_0``, ``step_size``, ``milestones``, ``warmup_epochs``) are in
epochs; with ``interval: step`` they are converted to optimizer steps at build time.
The run length (``epochs``, ``steps_per_epoch``) is never stored here: it comes from
the call site, ``instantiate(cfg.scheduler, optimizer=opt, epochs=E, steps_per_epoch=S)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, List, Optional

from .checks import each, each_value, fld, ge, gt, one_of, open_unit, optional

INTERVALS = ("epoch", "step")


@dataclass
class SchedulerConfig:
    """Fields every scheduler shares: when it steps and the optional linear warmup."""

    _target_: str = "survopt_hydra.optim.build_scheduler"
    # the record (not config fields): builder in survopt_hydra.optim.scheduler, what it builds, flags
    build: ClassVar[str] = ""
    torch_class: ClassVar[str] = ""
    needs_run_length: ClassVar[bool] = False  # needs epochs= at instantiate
    own_warmup: ClassVar[bool] = False  # warmup_epochs must stay 0
    _partial_: bool = False  # true: instantiate gives a functools.partial
    name: str = "none"
    interval: str = fld("epoch", one_of(*INTERVALS), "advance per epoch or per optimizer step")
    warmup_epochs: float = fld(0.0, ge(0), "linear warmup length, composes with every option")
    warmup_fraction: Optional[float] = fld(None, optional(open_unit), "warmup as a fraction of the whole run "
                                           "instead (fits runs of any length; needs warmup_epochs: 0)")
    warmup_start_factor: float = fld(0.01, open_unit, "warmup starts at this fraction of the LR")
    hparams: Dict[str, float] = fld({}, each_value(ge(0)),
                                    "other param-group hyper-parameters (weight_decay, momentum ...) -> end factor: "
                                    "each follows a cosine from its value to value x factor over the run")


@dataclass
class NoneConfig(SchedulerConfig):
    name: str = "none"
    build: ClassVar[str] = "_constant"
    torch_class: ClassVar[str] = "ConstantLR"


@dataclass
class CosineConfig(SchedulerConfig):
    name: str = "cosine"
    build: ClassVar[str] = "_cosine"
    torch_class: ClassVar[str] = "CosineAnnealingLR (holds eta_min after T_max)"
    needs_run_length: ClassVar[bool] = True
    T_max: Optional[float] = fld(None, optional(gt(0)), "epochs of decay; default: the rest of the run")
    eta_min: float = fld(0.0, ge(0))


@dataclass
class CosineWarmRestartsConfig(SchedulerConfig):
    name: str = "cosine_warm_restarts"
    build: ClassVar[str] = "_cosine_warm_restarts"
    torch_class: ClassVar[str] = "CosineAnnealingWarmRestarts"
    T_0: float = fld(10.0, ge(1), "epochs until the first restart")
    T_mult: int = fld(1, ge(1), "period multiplier after each restart")
    eta_min: float = fld(0.0, ge(0))


@dataclass
class OneCycleConfig(SchedulerConfig):
    name: str = "onecycle"
    own_warmup: ClassVar[bool] = True
    build: ClassVar[str] = "_onecycle"
    torch_class: ClassVar[str] = "OneCycleLR (holds its last LR)"
    needs_run_length: ClassVar[bool] = True
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
    build: ClassVar[str] = "_plateau"
    torch_class: ClassVar[str] = "ReduceLROnPlateau"
    monitor: Optional[str] = fld(None, doc="metric read from end_epoch(metrics) (required unless mode is set "
                                           "and you call step(metric) yourself)")
    mode: Optional[str] = fld(None, optional(one_of("min", "max")),
                              "default: min when the monitor's name contains 'loss', else max")
    factor: float = fld(0.1, open_unit)
    patience: int = fld(10, ge(0))
    threshold: float = fld(1e-4, ge(0))
    threshold_mode: str = fld("rel", one_of("rel", "abs"))
    cooldown: int = fld(0, ge(0))
    min_lr: float = fld(0.0, ge(0))


@dataclass
class WarmupCosineConfig(CosineConfig):
    name: str = "warmup_cosine"
    build: ClassVar[str] = "_cosine"
    torch_class: ClassVar[str] = "CosineAnnealingLR after a linear warmup"
    needs_run_length: ClassVar[bool] = True
    warmup_epochs: float = fld(5.0, ge(0))


@dataclass
class StepConfig(SchedulerConfig):
    name: str = "step"
    build: ClassVar[str] = "_step"
    torch_class: ClassVar[str] = "StepLR"
    step_size: float = fld(30.0, gt(0), "epochs between decays")
    gamma: float = fld(0.1, gt(0))


@dataclass
class MultiStepConfig(SchedulerConfig):
    name: str = "multistep"
    build: ClassVar[str] = "_multistep"
    torch_class: ClassVar[str] = "MultiStepLR"
    milestones: List[float] = fld([30.0, 60.0, 90.0], each(gt(0)), "epochs at which to decay")
    gamma: float = fld(0.1, gt(0))


@dataclass
class ExponentialConfig(SchedulerConfig):
    name: str = "exponential"
    build: ClassVar[str] = "_exponential"
    torch_class: ClassVar[str] = "ExponentialLR"
    gamma: float = fld(0.95, gt(0))


@dataclass
class ConstantConfig(SchedulerConfig):
    name: str = "constant"
    build: ClassVar[str] = "_constant"
    torch_class: ClassVar[str] = "ConstantLR"


@dataclass
class PolynomialConfig(SchedulerConfig):
    name: str = "polynomial"
    build: ClassVar[str] = "_polynomial"
    torch_class: ClassVar[str] = "ShapeLR (polynomial decay, chainable like PolynomialLR)"
    needs_run_length: ClassVar[bool] = True
    power: float = fld(1.0, gt(0), "1: linear decay to eta_min at the end of the run")
    eta_min: float = fld(0.0, ge(0))


@dataclass
class InverseSqrtConfig(SchedulerConfig):
    name: str = "inverse_sqrt"
    build: ClassVar[str] = "_inverse_sqrt"
    torch_class: ClassVar[str] = "ShapeLR (inverse square root)"
    timescale: Optional[float] = fld(None, optional(gt(0)), "epochs; LR x sqrt(timescale / (t + timescale)) after "
                                                            "the warmup; default: the warmup length, else 1")


@dataclass
class WSDConfig(SchedulerConfig):
    """Warmup-stable-decay (MiniCPM): constant LR, then a decay over the last fraction of the run."""

    name: str = "wsd"
    build: ClassVar[str] = "_wsd"
    torch_class: ClassVar[str] = "ShapeLR (warmup-stable-decay)"
    needs_run_length: ClassVar[bool] = True
    decay_fraction: float = fld(0.1, lambda v: None if 0 < v <= 1 else "must be in (0, 1]", "of the whole run")
    decay_shape: str = fld("linear", one_of("linear", "cosine", "sqrt"))
    eta_min: float = fld(0.0, ge(0))


@dataclass
class LinearWarmupConfig(SchedulerConfig):
    name: str = "linear_warmup"
    build: ClassVar[str] = "_linear_warmup"
    torch_class: ClassVar[str] = "LinearLR"
    warmup_epochs: float = fld(5.0, gt(0))


#: Option name -> schema (the record), read off each class's ``name``: the name is written once.
SCHEDULERS: dict[str, type[SchedulerConfig]] = {
    cls.name: cls for cls in (
        NoneConfig, ConstantConfig, CosineConfig, WarmupCosineConfig, CosineWarmRestartsConfig, OneCycleConfig,
        PlateauConfig, StepConfig, MultiStepConfig, ExponentialConfig, LinearWarmupConfig, PolynomialConfig,
        InverseSqrtConfig, WSDConfig,
    )
}
