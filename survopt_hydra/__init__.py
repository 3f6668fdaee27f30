"""survopt_hydra: configuration-first optimization for deep survival models.

Public names are imported lazily (PEP 562) so ``import survopt_hydra`` costs almost
nothing beyond ``import torch`` until a name is used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "errors",
    "build_optimizer": "optimizer",
    "build_scheduler": "scheduler",
    "build_param_groups": "param_groups",
    "register_configs": "config",
    "create_optimizer": "seed_api",
    "create_scheduler": "seed_api",
    "create_optimizer_and_scheduler": "seed_api",
    "OptimizerFactory": "seed_api",
    "GradientClipper": "clipping",
    "OptimizerMonitor": "monitors",
    "GradientMonitor": "monitors",
    "StepEngine": "engine",
    "MixedPrecisionOptimizer": "mixed_precision",
    "DistributedOptimizer": "distributed",
    "lightning_optimizers": "lightning",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'survopt_hydra' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
