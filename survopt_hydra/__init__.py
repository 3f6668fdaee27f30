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
    "build_optimizer": "optim",
    "build_scheduler": "optim",
    "build_param_groups": "optim",
    "Stepping": "optim",
    "create_optimizer": "api.factory",
    "create_scheduler": "api.factory",
    "create_optimizer_and_scheduler": "api.factory",
    "OptimizerFactory": "api.factory",
    "GradientClipper": "engine",
    "OptimizerMonitor": "engine",
    "GradientMonitor": "engine",
    "StepEngine": "engine",
    "MixedPrecisionOptimizer": "api.mixed_precision",
    "DistributedOptimizer": "api.distributed_optimizer",
    "lightning_optimizers": "api.lightning",
    "validate_groups": "api.validation",
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
