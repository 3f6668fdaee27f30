"""Applying the strategy to the model: DDP for ``ddp``/``zero``, FSDP2 for ``fsdp``.

Split out because checkpoints, the optimizer builders and the seed API all need to
ask what a model was wrapped in (:func:`is_fsdp`) without the
settings object; :func:`sync_buffers` sits here because FSDP's forward hook uses it.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn

from ..engine.step_engine import unwrap_model
from .context import DistContext


def wrap_model(model: nn.Module, ctx: DistContext, strategy: str, options: Mapping[str, Any]) -> nn.Module:
    """Move to ``ctx.device`` and apply ``strategy`` (no-op without a process group).

    ``options`` are the strategy's validated settings
    (:attr:`~survopt_hydra.distributed.DistributedSettings.options`).
    """
    model = model.to(ctx.device)
    if strategy == "none" or not ctx.distributed:
        return model
    if strategy in ("ddp", "zero"):
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=options["find_unused_parameters"],
            gradient_as_bucket_view=options["gradient_as_bucket_view"],
            static_graph=options["static_graph"],
        )
    return _shard(model, ctx, options["reshard_after_forward"])


def _shard(model: nn.Module, ctx: DistContext, reshard: bool) -> nn.Module:
    """FSDP2: ``fully_shard`` every top-level child that owns parameters, then the root.

    Buffers (BatchNorm statistics) are not sharded; as DDP does by default, rank 0's
    are broadcast at the start of every training forward, so FSDP trains exactly
    like DDP on models with buffers too.
    """
    fully_shard = _fully_shard_fn()
    if fully_shard is None:  # pragma: no cover - torch < 2.4
        from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

        return FullyShardedDataParallel(
            model, device_id=ctx.device if ctx.device.type == "cuda" else None, use_orig_params=True,
            sharding_strategy=ShardingStrategy.FULL_SHARD if reshard else ShardingStrategy.SHARD_GRAD_OP,
        )
    for child in model.children():
        if any(p.requires_grad for p in child.parameters()):
            fully_shard(child, reshard_after_forward=reshard)
    fully_shard(model, reshard_after_forward=reshard)
    if ctx.world_size > 1 and any(True for _ in model.buffers()):
        def broadcast_buffers(module: nn.Module, args: Any) -> None:
            if module.training and torch.is_grad_enabled():
                sync_buffers(module, ctx)

        model.register_forward_pre_hook(broadcast_buffers)
    return model


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). Collective.

    DDP broadcasts buffers only at the start of each training forward, so after an
    epoch each rank's last forward has left its own statistics; FSDP never syncs them.
    Call this before evaluating (every rank then scores with the same model) and before
    a checkpoint (rank 0's buffers are what it saves): resumes stay exact.
    """
    if not ctx._collective():
        return
    for buf in unwrap_model(model).buffers():
        if ctx.backend == "nccl" or buf.device.type == "cpu":
            dist.broadcast(buf.data, src=0)
        else:  # gloo with a CUDA buffer: through the host
            host = buf.detach().cpu()
            dist.broadcast(host, src=0)
            buf.data.copy_(host)


# ----------------------------------------------------------------------------------
# What a model is wrapped in
# ----------------------------------------------------------------------------------
def _fully_shard_fn():
    """FSDP2's ``fully_shard`` (torch >= 2.6 public; 2.4-2.5 under ``_composable``)."""
    try:
        from torch.distributed.fsdp import fully_shard

        return fully_shard
    except ImportError:
        try:
            from torch.distributed._composable.fsdp import fully_shard  # type: ignore[no-redef]

            return fully_shard
        except ImportError:
            return None


def fully_shard_available() -> bool:
    return _fully_shard_fn() is not None


def is_fsdp(model: nn.Module) -> bool:
    """FSDP2-sharded (DTensor parameters / FSDPModule) or an FSDP1 wrapper."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel

        if isinstance(model, FullyShardedDataParallel):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover
        return False
    return any(isinstance(p, DTensor) for p in model.parameters())
