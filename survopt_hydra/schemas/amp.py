"""Mixed-precision schemas: ``none``, ``fp16`` (autocast + GradScaler) and ``bf16`` (autocast)."""
from __future__ import annotations

from dataclasses import dataclass

from .checks import fld, gt

FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max, without importing torch


@dataclass
class AmpConfig:
    _target_: str = "survopt_hydra.engine.AmpSettings"
    _partial_: bool = False  # true: instantiate gives a functools.partial
    dtype: str = "none"


@dataclass
class NoAmpConfig(AmpConfig):
    dtype: str = "none"


@dataclass
class FP16Config(AmpConfig):
    dtype: str = "fp16"
    init_scale: float = fld(2.0**16, lambda v: None if 0 < v <= FLOAT32_MAX else
                            f"must be > 0 and fit in float32 (<= {FLOAT32_MAX:.4g}, where the scale lives)")
    growth_interval: int = fld(2000, gt(0))
    fallback_to_bf16: bool = fld(True, doc="use bf16 (and say so) where fp16 autocast is unsupported")


@dataclass
class BF16Config(AmpConfig):
    dtype: str = "bf16"


AMP: dict[str, type[AmpConfig]] = {"none": NoAmpConfig, "fp16": FP16Config, "bf16": BF16Config}
