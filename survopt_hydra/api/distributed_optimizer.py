"""The seed's ``DistributedOptimizer``: one object that wraps the model and builds its optimizer.

Kept apart because it is a compatibility surface (the seed's constructor signature
and its spellings, via :mod:`survopt_hydra.api.factory`) layered on
:class:`~survopt_hydra.distributed.DistributedSettings`, not part of the config path.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from ..errors import ConfigError
from ..distributed.context import current_context
from ..distributed.optim import is_zero
from ..distributed.settings import DistributedSettings
from ..distributed.state import consolidated_optimizer_state, load_optimizer_state
from ..distributed.wrap import is_fsdp


class DistributedOptimizer:
    """The seed's ``DistributedOptimizer(model=, optimizer_type=, learning_rate=, world_size=)``.

    Wraps ``model`` for the process group that is already initialised (torchrun +
    ``init_process_group``, or :meth:`DistributedSettings.setup`) and builds the
    optimizer; with no process group and ``world_size`` 1 (or None) it is a plain
    single-process optimizer. ``world_size`` that disagrees with the group is refused.
    Extra keyword arguments go to the optimizer (seed spellings accepted).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer_type: str = "adamw",
        learning_rate: float | None = None,
        world_size: int | None = None,
        strategy: str = "ddp",
        lr_scaling: str = "none",
        **optimizer_kwargs: Any,
    ) -> None:
        from .factory import seed_optimizer_options

        ctx = current_context(strategy)
        initialized = ctx.distributed
        if world_size is not None:
            if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
                raise ConfigError("distributed.world_size", f"must be an integer >= 1, got {world_size!r}")
            if initialized and world_size != ctx.world_size:
                raise ConfigError("distributed.world_size", f"got {world_size} but the process group has "
                                  f"{ctx.world_size} ranks; launch with torchrun --nproc_per_node={world_size} "
                                  "(x nodes) or pass world_size=None to use the group's size")
            if not initialized and world_size > 1:
                raise ConfigError("distributed.world_size", f"got {world_size} but no process group is initialized; "
                                  f"launch with torchrun --nproc_per_node={world_size} … and call "
                                  "torch.distributed.init_process_group() (or DistributedSettings(...).setup()) "
                                  "before building the optimizer")
        self.settings = DistributedSettings(strategy, lr_scaling=lr_scaling)
        self.ctx = ctx
        first = next(model.parameters(), None)
        if first is not None and ctx.backend != "nccl":
            ctx.device = first.device  # gloo / no group: keep the model where the caller put it
        opts = {"optimizer_type": optimizer_type, **optimizer_kwargs}
        if learning_rate is not None:
            opts["learning_rate"] = learning_rate
        opts = seed_optimizer_options(opts)
        self.model = self.settings.wrap_model(model, ctx)
        self.optimizer = self.settings.build_optimizer(opts, self.model, ctx)
        self.lr_scale: float = self.settings.lr_scale
        self.world_size = ctx.world_size
        self.rank = ctx.rank

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def is_main(self) -> bool:
        return self.ctx.is_main

    def step(self, closure: Any = None) -> Any:
        return self.optimizer.step(closure) if closure is not None else self.optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any] | None:
        """Full optimizer state; collective: call on every rank.

        Consolidated on rank 0 for ZeRO and FSDP (``None`` on other ranks); every rank
        gets its (identical) state for ddp / a single process.
        """
        if is_zero(self.optimizer) or is_fsdp(self.model):
            return consolidated_optimizer_state(self.optimizer, self.ctx, self.model)
        return self.optimizer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Every rank passes the full state (FSDP: only rank 0's is read)."""
        load_optimizer_state(self.optimizer, state, self.ctx, self.model)
