"""Optimizers for a wrapped model: the LR scaling rule and ZeRO.

Split out because building a ``ZeroRedundancyOptimizer`` over the named decay /
no-decay groups (optionally stepping inside DDP's backward) is its own piece of
torch plumbing; :meth:`~survopt_hydra.distributed.DistributedSettings.build_optimizer`
picks between it and the plain :func:`survopt_hydra.optimizer.build_optimizer`.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.optim import Optimizer

from ..config.checks import validate
from ..errors import ConfigError, unknown_name
from .wrap import _unwrapped


def lr_scale_factor(rule: str, global_batch: float, base_batch: float) -> float:
    """``linear``: global/base; ``sqrt``: sqrt(global/base); ``none``: 1."""
    if rule == "none":
        return 1.0
    if base_batch <= 0 or global_batch <= 0:
        raise ConfigError("distributed.lr_scaling", f"needs positive batch sizes, got global {global_batch} "
                          f"and base {base_batch}")
    ratio = float(global_batch) / float(base_batch)
    if rule == "linear":
        return ratio
    if rule == "sqrt":
        return math.sqrt(ratio)
    raise unknown_name("distributed.lr_scaling", rule, ("none", "linear", "sqrt"))


def _is_zero(optimizer: Any) -> bool:
    # by name: importing torch.distributed.optim costs ~1 s and warns about torch.jit
    return any(c.__name__ == "ZeroRedundancyOptimizer" for c in type(optimizer).__mro__)


def _plain_options(cfg_optimizer: Any) -> dict[str, Any]:
    """A composed ``cfg.optimizer`` (DictConfig or dict) as plain kwargs; ``_target_`` kept (the builder honours it)."""
    if type(cfg_optimizer).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        cfg_optimizer = OmegaConf.to_container(cfg_optimizer, resolve=True)
    return {str(k): v for k, v in dict(cfg_optimizer or {}).items() if not str(k).startswith("_") or k == "_target_"}


# ----------------------------------------------------------------------------------
# ZeRO optimizer
# ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _zero_class() -> type:
    from torch.distributed.optim import ZeroRedundancyOptimizer

    class SurvoptZeroRedundancyOptimizer(ZeroRedundancyOptimizer):
        """ZeRO whose ``step()`` is silent when the step runs inside DDP's backward."""

        def step(self, closure=None, **kwargs):  # type: ignore[override]
            if self._overlap_with_ddp:
                return None
            return super().step(closure=closure, **kwargs)

    return SurvoptZeroRedundancyOptimizer


def _build_zero_optimizer(model: nn.Module, name: str, options: Mapping[str, Any], overlap: bool) -> Optimizer:
    """``ZeroRedundancyOptimizer`` over our named param groups (decay / no-decay / lr_mult).

    ZeRO accepts param-group dicts and partitions every group across ranks (a rank's
    local optimizer holds its share of each group), so group names, per-group LR and
    weight decay survive. The fastest implementation is picked as for plain optimizers.
    """
    import inspect

    from ..optimizer import _GROUPING, TORCH_CLASSES, optimizer_options
    from ..param_groups import build_param_groups

    cfg = validate(optimizer_options(name), options, "optimizer")
    groups = build_param_groups(
        _unwrapped(model), cfg["lr"], cfg["weight_decay"], cfg["no_weight_decay_1d"], cfg["lr_mult"]
    )
    kwargs = {k: v for k, v in cfg.items() if k not in _GROUPING}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    cls = getattr(torch.optim, TORCH_CLASSES[name])
    zero_cls = _zero_class()
    base = dict(lr=cfg["lr"], weight_decay=cfg["weight_decay"], **kwargs)
    if overlap:
        return _build_overlapping_zero(zero_cls, cls, name, groups, base, model)
    accepted = inspect.signature(cls.__init__).parameters
    impl = cfg["implementation"]
    if impl == "foreach" and "foreach" in accepted:
        return zero_cls(groups, optimizer_class=cls, foreach=True, **base)
    if impl == "for_loop" and "foreach" in accepted:
        return zero_cls(groups, optimizer_class=cls, foreach=False, **base)
    if impl in ("auto", "fused") and "fused" in accepted:
        try:
            return zero_cls(groups, optimizer_class=cls, fused=True, **base)
        except (RuntimeError, ValueError, TypeError):
            if impl == "fused":
                raise
    return zero_cls(groups, optimizer_class=cls, **base)


def _build_overlapping_zero(zero_cls, cls, name, groups, base, model) -> Optimizer:
    """ZeRO with ``overlap_with_ddp``: the step runs in DDP's last gradient bucket hook."""
    from torch.distributed.algorithms.ddp_comm_hooks.ddp_zero_hook import hook_with_zero_step
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.distributed.optim.utils import functional_optim_map

    from ..optimizer import TORCH_CLASSES

    key = "distributed.overlap_with_ddp"
    if dist.get_backend() != "nccl":
        raise ConfigError(key, "needs the nccl backend (torch refuses gloo: it may hang); "
                          "allowed here: false")
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        raise ConfigError(key, "needs the model wrapped by wrap_model() (DDP) before build_optimizer()")
    if cls not in functional_optim_map:
        allowed = sorted(n for n, c in TORCH_CLASSES.items() if getattr(torch.optim, c) in functional_optim_map)
        raise ConfigError(key, f"needs an optimizer with a functional form; '{name}' has none; "
                          f"allowed: {', '.join(allowed)}")
    if len(groups) != 1:
        raise ConfigError(key, f"supports one parameter group but the optimizer config makes {len(groups)} "
                          f"({', '.join(g['name'] for g in groups)}); set optimizer.no_weight_decay_1d=false "
                          "(or weight_decay=0) and no lr_mult, or distributed.overlap_with_ddp=false")
    zero = zero_cls([p for g in groups for p in g["params"]], optimizer_class=cls, overlap_with_ddp=True, **base)
    model.register_comm_hook(None, hook_with_zero_step(allreduce_hook, model, zero))
    return zero
