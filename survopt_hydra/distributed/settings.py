"""The settings object: the ``_target_`` of ``conf/distributed/*``, and what it does.

Kept apart so the Hydra-facing class reads as the app's sequence of calls (setup ->
wrap -> optimizer -> checkpoints -> data); each step delegates to the module that
implements it (:mod:`.launch`, :mod:`.wrap`, :mod:`.optim`, :mod:`.checkpoint`,
:mod:`.data`). Only the LR scaling bookkeeping (``lr_scale``, ``lr_scale_info``)
lives here, because it is state the app logs.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

from torch import nn
from torch.optim import Optimizer

from ..schemas.checks import validate
from ..schemas.distributed import DISTRIBUTED
from ..errors import unknown_name
from ..optim.optimizer import build_optimizer, optimizer_options
from ..schemas.checks import plain_values
from .checkpoint import load_checkpoint, save_checkpoint
from .context import DistContext
from .launch import start as _start
from .optim import build_zero_optimizer, lr_scale_factor
from .state import consolidated_optimizer_state, load_optimizer_state
from ..engine.step_engine import unwrap_model
from .wrap import wrap_model as _wrap_model

log = logging.getLogger(__package__)  # one logger for the whole survopt_hydra.distributed package


class DistributedSettings:
    """The validated ``distributed`` config group, and what it does.

    ``instantiate(cfg.distributed)`` gives one; the app then calls, in order:
    ``ctx = s.setup()``, ``model = s.wrap_model(model, ctx)``,
    ``opt = s.build_optimizer(cfg.optimizer, model, ctx, ...)`` and, per checkpoint,
    ``s.save_checkpoint(...)`` / ``s.load_checkpoint(...)``; ``ctx.teardown()`` at the end.
    """

    def __init__(self, strategy: str = "none", **options: Any) -> None:
        if strategy not in DISTRIBUTED:
            raise unknown_name("distributed.strategy", strategy, DISTRIBUTED)
        values = validate(DISTRIBUTED[strategy], {**options, "strategy": strategy}, "distributed")
        self.strategy: str = values.pop("strategy")
        self.backend: str = values.pop("backend")
        self.lr_scaling: str = values.pop("lr_scaling")
        self.allow_single_process: bool = values.pop("allow_single_process")
        self.options: dict[str, Any] = values  # strategy-specific (find_unused_parameters, ...)
        self.lr_scale: float = 1.0
        self.lr_scale_info: dict[str, Any] = {"lr_scaling": self.lr_scaling, "lr_scale": 1.0}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return (f"DistributedSettings(strategy={self.strategy!r}, backend={self.backend!r}, "
                f"lr_scaling={self.lr_scaling!r}{', ' + opts if opts else ''})")

    @property
    def checkpoint_sharded(self) -> bool:
        return self.strategy == "fsdp" and self.options.get("checkpoint") == "sharded"

    # -- process group -----------------------------------------------------------------
    def setup(self, device: Any = None) -> DistContext:
        """Start (or join) the process group for this strategy; see :mod:`survopt_hydra.distributed`.

        ``device``: ``None``/``'auto'`` (CUDA when available), ``'cpu'`` or ``'cuda'``;
        with CUDA the device index is ``LOCAL_RANK``. ``strategy=none`` under a
        multi-process launcher is refused (every rank would train and write alone).
        Without a launcher, ddp/zero/fsdp need ``allow_single_process=true``: then a
        1-rank process group (in-process store, no port) runs the same wrapped code.
        """
        return _start(self.strategy, self.backend, self.allow_single_process, device)

    # -- model -------------------------------------------------------------------------
    def wrap_model(self, model: nn.Module, ctx: DistContext) -> nn.Module:
        """Move to ``ctx.device`` and apply the strategy (no-op without a process group)."""
        return _wrap_model(model, ctx, self.strategy, self.options)

    # -- optimizer ---------------------------------------------------------------------
    def lr_factor(self, ctx: DistContext, global_batch: float | None = None, base_batch: float | None = None) -> float:
        """The LR multiplier of ``lr_scaling`` and record it in ``lr_scale_info``.

        ``global_batch`` defaults to ``base_batch * world_size`` (each rank runs the
        configured batch); ``base_batch`` is the batch the configured LR was tuned
        for (default: the per-rank batch, i.e. ratio = world size).
        """
        if global_batch is None and base_batch is None:
            ratio_g, ratio_b = float(ctx.world_size), 1.0
        elif global_batch is None:
            ratio_g, ratio_b = float(base_batch) * ctx.world_size, float(base_batch)  # type: ignore[arg-type]
        elif base_batch is None:
            ratio_g, ratio_b = float(global_batch), float(global_batch) / ctx.world_size
        else:
            ratio_g, ratio_b = float(global_batch), float(base_batch)
        factor = lr_scale_factor(self.lr_scaling, ratio_g, ratio_b)
        self.lr_scale = factor
        self.lr_scale_info = {
            "lr_scaling": self.lr_scaling,
            "lr_scale": factor,
            "world_size": ctx.world_size,
            "global_batch": global_batch if global_batch is not None else (
                base_batch * ctx.world_size if base_batch is not None else None),
            "base_batch": base_batch,
        }
        return factor

    def build_optimizer(
        self,
        cfg_optimizer: Any,
        model: nn.Module,
        ctx: DistContext,
        global_batch: float | None = None,
        base_batch: float | None = None,
    ) -> Optimizer:
        """The ``optimizer`` group's optimizer for the (wrapped) model; LR scaled.

        Build it AFTER :meth:`wrap_model` (FSDP replaces parameters by DTensors).
        ``zero`` with a process group gives a ``ZeroRedundancyOptimizer`` over the same
        named param groups; otherwise the plain :func:`~survopt_hydra.optim.build_optimizer`
        result. The factor is in ``self.lr_scale`` / ``self.lr_scale_info`` (log it).
        """
        options = plain_values(cfg_optimizer)
        target = (cfg_optimizer or {}).get("_target_")
        if target is not None:  # the builder honours (and checks) an optimizer _target_ override
            options["_target_"] = target
        name = options.pop("name", "adamw")
        factor = self.lr_factor(ctx, global_batch, base_batch)
        if factor != 1.0:
            lr = validate(optimizer_options(name), options, "optimizer")["lr"]
            options["lr"] = lr * factor
        self.lr_scale_info["lr"] = options.get("lr")
        if ctx.is_main and factor != 1.0:
            log.info("distributed.lr_scaling=%s: lr x %.4g (world size %d)", self.lr_scaling, factor, ctx.world_size)
        optimizer = build_optimizer(unwrap_model(model), name, **options)
        if self.strategy == "zero" and ctx.distributed:
            return build_zero_optimizer(optimizer, model, bool(self.options.get("overlap_with_ddp")))
        return optimizer

    # -- checkpoints -------------------------------------------------------------------
    def consolidated_optimizer_state(self, optimizer: Optimizer, ctx: DistContext, model: nn.Module | None = None):
        return consolidated_optimizer_state(optimizer, ctx, model)

    def load_optimizer_state(self, optimizer: Optimizer, state: Mapping | None, ctx: DistContext,
                             model: nn.Module | None = None) -> None:
        load_optimizer_state(optimizer, state, ctx, model)

    def save_checkpoint(self, path: str | os.PathLike, model: nn.Module, ctx: DistContext, engine: Any = None,
                        optimizer: Optimizer | None = None, extra: Mapping[str, Any] | None = None) -> None:
        """:func:`save_checkpoint` in this strategy's mode (``checkpoint=sharded`` for FSDP)."""
        save_checkpoint(path, model, ctx, engine, optimizer, extra, sharded=self.checkpoint_sharded)

    def load_checkpoint(self, path: str | os.PathLike, model: nn.Module, ctx: DistContext, engine: Any = None,
                        optimizer: Optimizer | None = None, restore_rng: bool = True,
                        before_load: Callable[[dict[str, Any]], None] | None = None,
                        error_key: str = "checkpoint", error_hint: str = "") -> dict[str, Any] | None:
        """:func:`load_checkpoint` (the file says whether it is sharded)."""
        return load_checkpoint(path, model, ctx, engine, optimizer, restore_rng, before_load, error_key, error_hint)

    def describe(self, ctx: DistContext) -> dict[str, Any]:
        """Everything the app should log about the distributed setup."""
        return {**ctx.describe(), **{k: v for k, v in self.lr_scale_info.items() if v is not None}}
