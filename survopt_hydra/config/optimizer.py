"""Optimizer schemas: one dataclass per option of the ``optimizer`` config group.

Defaults are torch's own, so ``instantiate`` on a bare option behaves like the torch
class; ``conf/optimizer/<name>.yaml`` only selects the schema. Adding an optimizer is
one dataclass here (registered in :data:`OPTIMIZERS`), one YAML file and one test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

from .checks import betas, fld, ge, gt, one_of

IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")


@dataclass
class OptimizerConfig:
    """Fields every optimizer shares: the LR, decay policy and parameter grouping."""

    _target_: str = "survopt_hydra.optimizer.build_optimizer"
    name: str = "adamw"
    lr: float = fld(1e-3, gt(0), "base learning rate")
    weight_decay: float = fld(0.0, ge(0), "L2 / decoupled decay for decayed groups")
    no_weight_decay_1d: bool = fld(True, doc="no decay on biases, norm weights and other 1-D params")
    lr_mult: Dict[str, float] = fld({}, doc="fnmatch pattern on parameter names -> LR multiplier")
    implementation: str = fld("auto", one_of(*IMPLEMENTATIONS), "auto: fused where supported")


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    betas: List[float] = fld([0.9, 0.999], betas)
    eps: float = fld(1e-8, gt(0))
    amsgrad: bool = False


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = fld(1e-2, ge(0))


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    momentum: float = fld(0.9, ge(0))
    dampening: float = fld(0.0, ge(0))
    nesterov: bool = False


@dataclass
class RMSpropConfig(OptimizerConfig):
    name: str = "rmsprop"
    lr: float = fld(1e-2, gt(0))
    alpha: float = fld(0.99, gt(0))
    eps: float = fld(1e-8, gt(0))
    momentum: float = fld(0.0, ge(0))
    centered: bool = False


@dataclass
class NAdamConfig(OptimizerConfig):
    name: str = "nadam"
    lr: float = fld(2e-3, gt(0))
    betas: List[float] = fld([0.9, 0.999], betas)
    eps: float = fld(1e-8, gt(0))
    momentum_decay: float = fld(4e-3, ge(0))
    decoupled_weight_decay: bool = False


@dataclass
class RAdamConfig(OptimizerConfig):
    name: str = "radam"
    betas: List[float] = fld([0.9, 0.999], betas)
    eps: float = fld(1e-8, gt(0))
    decoupled_weight_decay: bool = False


@dataclass
class AdagradConfig(OptimizerConfig):
    name: str = "adagrad"
    lr: float = fld(1e-2, gt(0))
    lr_decay: float = fld(0.0, ge(0))
    initial_accumulator_value: float = fld(0.0, ge(0))
    eps: float = fld(1e-10, gt(0))


OPTIMIZERS: dict[str, type[OptimizerConfig]] = {
    "adam": AdamConfig,
    "adamw": AdamWConfig,
    "sgd": SGDConfig,
    "rmsprop": RMSpropConfig,
    "nadam": NAdamConfig,
    "radam": RAdamConfig,
    "adagrad": AdagradConfig,
}
