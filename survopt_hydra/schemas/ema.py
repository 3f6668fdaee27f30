"""Weight-averaging schemas: ``none`` and ``ema`` (exponential moving average of the weights)."""
from __future__ import annotations

from dataclasses import dataclass

from .checks import fld, ge, open_unit


@dataclass
class EMAConfig:
    _target_: str = "survopt_hydra.engine.WeightAverager"
    _partial_: bool = False  # true: instantiate gives a functools.partial
    mode: str = "none"


@dataclass
class NoEMAConfig(EMAConfig):
    mode: str = "none"


@dataclass
class ExponentialEMAConfig(EMAConfig):
    mode: str = "ema"
    decay: float = fld(0.999, open_unit, "share of the old average kept per update (timm: 0.9998)")
    every_n_steps: int = fld(1, ge(1), "applied optimizer steps between updates")
    warmup: bool = fld(True, doc="use min(decay, (1 + n) / (10 + n)) for the n-th update, so early weights fade")


EMA: dict[str, type[EMAConfig]] = {"none": NoEMAConfig, "ema": ExponentialEMAConfig}
