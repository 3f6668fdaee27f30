"""Distributed training: process groups, DDP / ZeRO / FSDP2, sharded data, checkpoints.

One object, :class:`DistributedSettings` (the ``_target_`` of ``conf/distributed/*``),
turns the validated ``distributed`` group into behaviour:

* :meth:`~DistributedSettings.setup` reads the launcher's environment (torchrun's
  ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``, or a submitit/Slurm job with
  several tasks), starts the process group and returns a :class:`DistContext`;
* :meth:`~DistributedSettings.wrap_model` applies the strategy: ``ddp`` and ``zero``
  wrap in ``DistributedDataParallel`` (ZeRO shards optimizer state, not the model),
  ``fsdp`` applies FSDP2's ``fully_shard`` (parameters become sharded DTensors);
* :meth:`~DistributedSettings.build_optimizer` builds the ``optimizer`` group's torch
  optimizer (``ZeroRedundancyOptimizer`` around it for ``zero``, keeping the named
  decay / no-decay groups) and applies and records the LR scaling rule;
* :meth:`~DistributedSettings.save_checkpoint` / :meth:`~DistributedSettings.load_checkpoint`
  write one full checkpoint from rank 0 (ZeRO state consolidated, FSDP state
  gathered) or an FSDP sharded DCP checkpoint, and resume every rank from it.

Data helpers: :func:`train_sampler` (``torch.utils.data.DistributedSampler`` over
``range(n)``, ``set_epoch`` semantics), :func:`eval_indices` + :func:`gather_by_index`
(every rank ends with all ``n`` risk scores in order, so a non-decomposable metric such
as the C-index is computed identically on every rank) and
:meth:`DistContext.broadcast_object` (rank 0's early-stopping decision for all).

Without a process group everything here degrades to single-process no-ops, so an app
can call the same code for ``distributed=none``.

Layout (each module's docstring says why it is separate): :mod:`.context` (the
per-rank context and its collectives), :mod:`.launch` (process group from the
launcher's environment), :mod:`.settings` (:class:`DistributedSettings`),
:mod:`.wrap` (DDP / FSDP2 wrapping, buffer sync), :mod:`.optim` (LR scaling, ZeRO),
:mod:`.state` (full model / optimizer / engine state dicts), :mod:`.checkpoint`
(checkpoint files), :mod:`.data` (samplers, shard / eval indices, gather). The seed API's
:class:`DistributedOptimizer` is in :mod:`survopt_hydra.api`. Import from the package: the
names below are its API, the module split is not.
"""
from __future__ import annotations

from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .context import DistContext, current_context, is_main
from .data import eval_indices, gather_by_index, shard_indices, train_sampler
from .launch import TORCHRUN_HINT, submitit_env, torchrun_env
from .optim import lr_scale_factor
from .settings import DistributedSettings
from .state import (
    consolidated_optimizer_state, engine_state_dict, load_engine_state, load_model_state_dict, load_optimizer_state,
    model_state_dict,
)
from .wrap import fully_shard_available, sync_buffers

__all__ = [
    "DistContext",
    "DistributedSettings",
    "is_main",
    "current_context",
    "train_sampler",
    "shard_indices",
    "eval_indices",
    "gather_by_index",
    "lr_scale_factor",
    "consolidated_optimizer_state",
    "load_optimizer_state",
    "model_state_dict",
    "load_model_state_dict",
    "save_checkpoint",
    "load_checkpoint",
    "fully_shard_available",
    "sync_buffers",
    "engine_state_dict",
    "load_engine_state",
]
