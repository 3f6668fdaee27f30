"""Optimizers for a wrapped model: the LR scaling rule and ZeRO.

Split out because building a ``ZeroRedundancyOptimizer`` over the named decay /
no-decay groups (optionally stepping inside DDP's backward) is its own piece of
torch plumbing; :meth:`~survopt_hydra.distributed.DistributedSettings.build_optimizer`
picks between it and the plain :func:`survopt_hydra.optim.build_optimizer`.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim import Optimizer

from ..errors import ConfigError, unknown_name
from ..optim.optimizer import TORCH_CLASSES


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


def is_zero(optimizer: Any) -> bool:
    """Whether ``optimizer`` is a ``ZeroRedundancyOptimizer``."""
    # by name: importing torch.distributed.optim costs ~1 s and warns about torch.jit
    return any(c.__name__ == "ZeroRedundancyOptimizer" for c in type(optimizer).__mro__)


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


def build_zero_optimizer(plain: Optimizer, model: nn.Module, overlap: bool) -> Optimizer:
    """A ``ZeroRedundancyOptimizer`` sharding ``plain``, the library's optimizer for the model.

    ``plain`` comes from :func:`survopt_hydra.optim.build_optimizer` (validation, named
    decay / no-decay / lr_mult groups and the implementation choice happen there, once);
    ZeRO takes its class, its resolved constructor arguments (``defaults``) and its param
    groups, and partitions every group across ranks, so group names, per-group LR and
    weight decay survive. ``plain`` itself never steps and holds no state.
    """
    cls, groups = type(plain), [dict(g) for g in plain.param_groups]
    accepted = inspect.signature(cls.__init__).parameters  # defaults may hold internal keys (AdamW's)
    kwargs = {k: v for k, v in plain.defaults.items() if k in accepted}
    if overlap:
        return _build_overlapping_zero(_zero_class(), cls, groups, kwargs, model)
    return _zero_class()(groups, optimizer_class=cls, **kwargs)


def _build_overlapping_zero(zero_cls, cls, groups, base, model) -> Optimizer:
    """ZeRO with ``overlap_with_ddp``: the step runs in DDP's last gradient bucket hook."""
    from torch.distributed.algorithms.ddp_comm_hooks.ddp_zero_hook import hook_with_zero_step
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.distributed.optim.utils import functional_optim_map

    key = "distributed.overlap_with_ddp"
    if dist.get_backend() != "nccl":
        raise ConfigError(key, "needs the nccl backend (torch refuses gloo: it may hang); "
                          "allowed here: false")
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        raise ConfigError(key, "needs the model wrapped by wrap_model() (DDP) before build_optimizer()")
    if cls not in functional_optim_map:
        allowed = sorted(n for n, c in TORCH_CLASSES.items() if getattr(torch.optim, c) in functional_optim_map)
        raise ConfigError(key, f"needs an optimizer with a functional form; {cls.__name__} has none; "
                          f"allowed: {', '.join(allowed)}")
    if len(groups) != 1:
        raise ConfigError(key, f"supports one parameter group but the optimizer config makes {len(groups)} "
                          f"({', '.join(g['name'] for g in groups)}); set optimizer.no_weight_decay_1d=false "
                          "(or weight_decay=0) and no lr_mult, or distributed.overlap_with_ddp=false")
    accepted = inspect.signature(functional_optim_map[cls].__init__).parameters  # the functional form's
    base = {k: v for k, v in base.items() if k in accepted}
    zero = zero_cls([p for g in groups for p in g["params"]], optimizer_class=cls, overlap_with_ddp=True, **base)
    model.register_comm_hook(None, hook_with_zero_step(allreduce_hook, model, zero))
    return zero
