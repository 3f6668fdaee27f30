"""Gradient-clipping schemas: ``none``, ``norm``, ``value`` and ``adaptive`` (AGC)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

from .checks import fld, gt


@dataclass
class ClippingConfig:
    _target_: str = "survopt_hydra.engine.GradientClipper"
    _partial_: bool = False  # true: instantiate gives a functools.partial
    mode: str = "none"


@dataclass
class NoClippingConfig(ClippingConfig):
    mode: str = "none"


@dataclass
class NormClippingConfig(ClippingConfig):
    mode: str = "norm"
    max_norm: float = fld(1.0, gt(0))
    norm_type: float = fld(2.0, gt(0), "2 for the L2 norm; inf (or .inf) for the max norm", allow_inf=True)


@dataclass
class ValueClippingConfig(ClippingConfig):
    mode: str = "value"
    clip_value: float = fld(1.0, gt(0))


@dataclass
class AdaptiveClippingConfig(ClippingConfig):
    mode: str = "adaptive"
    clip_factor: float = fld(0.01, gt(0), "max ratio of unit grad norm to unit weight norm")
    eps: float = fld(1e-3, gt(0), "floor on the weight norm, so zero-init units can move")
    exclude: List[str] = fld([], doc="fnmatch patterns of parameter names AGC skips (e.g. head.*)")


CLIPPING: dict[str, type[ClippingConfig]] = {
    "none": NoClippingConfig,
    "norm": NormClippingConfig,
    "value": ValueClippingConfig,
    "adaptive": AdaptiveClippingConfig,
}
