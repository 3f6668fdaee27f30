"""Starting or joining the process group from the launcher's environment.

Split out of the settings object because it is the part that talks to launchers:
torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``, a submitit/Slurm job
with several tasks, or no launcher at all (a 1-rank in-process group when
``allow_single_process``). :func:`start` is what
:meth:`~survopt_hydra.distributed.DistributedSettings.setup` runs.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError
from .context import DistContext, kept_group, current_context

log = logging.getLogger(__package__)  # one logger for the whole survopt_hydra.distributed package

TORCHRUN_HINT = (
    "torchrun --standalone --nproc_per_node=N scripts/train.py distributed={strategy} "
    "(or set distributed.allow_single_process=true)"
)


def start(strategy: str, requested_backend: str, allow_single_process: bool, device: Any = None) -> DistContext:
    """Start (or join) the process group for ``strategy``; the body of
    :meth:`~survopt_hydra.distributed.DistributedSettings.setup` (see its doc)."""
    env, launcher = torchrun_env(), "torchrun"
    if env is None:
        env, launcher = submitit_env(), "submitit"
    if strategy == "none":
        if env is not None and env["world_size"] > 1:
            raise ConfigError("distributed.strategy", f"'none' but {launcher} started {env['world_size']} "
                              "processes (each would train alone); allowed: ddp, zero, fsdp, or launch "
                              "one process without torchrun")
        local = env["local_rank"] if env else 0
        return DistContext(device=_resolve_device(device, local), strategy="none",
                           launcher=launcher if env else "none")
    if dist.is_available() and dist.is_initialized():  # the app, a test or a previous sweep job
        ctx = current_context(strategy)
        kept = kept_group()
        if kept is not None and kept["world_size"] == ctx.world_size:
            ctx.launcher, ctx.owns_group = kept["launcher"], True
        ctx.device = _resolve_device(device, ctx.local_rank) if ctx.backend != "nccl" else ctx.device
        return ctx
    if env is None:
        if not allow_single_process:
            raise ConfigError("distributed.strategy", f"'{strategy}' needs torchrun: "
                              + TORCHRUN_HINT.format(strategy=strategy))
        dev = _resolve_device(device, 0)
        backend = _resolve_backend(requested_backend, dev)
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **kwargs)
        log.info("distributed.%s without a launcher: one process, a 1-rank %s group", strategy, backend)
        return DistContext(0, 1, 0, dev, backend, strategy, "single_process", True)
    dev = _resolve_device(device, env["local_rank"])
    backend = _resolve_backend(requested_backend, dev)
    kwargs = {"device_id": dev} if dev.type == "cuda" else {}
    _init_from_env(backend, env["rank"], env["world_size"], kwargs)
    if env["world_size"] == 1:
        log.warning("distributed.%s: %s started one process; training runs on one rank", strategy, launcher)
    return DistContext(env["rank"], env["world_size"], env["local_rank"], dev, backend, strategy, launcher, True)


# ----------------------------------------------------------------------------------
# Launcher environments
# ----------------------------------------------------------------------------------
def torchrun_env() -> dict[str, int] | None:
    """RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun (or any env:// launcher)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ConfigError("distributed", f"malformed launcher environment ({exc}); RANK, WORLD_SIZE and "
                          "LOCAL_RANK must be integers") from None
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if world > 1 and key not in os.environ:
            raise ConfigError("distributed", f"RANK/WORLD_SIZE are set but {key} is not; launch with torchrun "
                              "(it sets all of them) or export MASTER_ADDR and MASTER_PORT")
    return {"rank": rank, "world_size": world, "local_rank": local}


def submitit_env() -> dict[str, int] | None:
    """A submitit job (Hydra's submitit launcher): export torch's env:// variables.

    Each Slurm task is one rank (``hydra.launcher.tasks_per_node`` x ``nodes``);
    MASTER_ADDR is the job's first host, MASTER_PORT derived from the job id.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:  # pragma: no cover - submitit is an optional dependency
        return None
    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return {"rank": env.rank, "world_size": env.world_size, "local_rank": env.local_rank}


_INITS = 0  # process groups this process has started from a launcher's environment
_STORE: Any = None  # the launcher's store, kept for later groups of this process


def _init_from_env(backend: str, rank: int, world_size: int, kwargs: dict[str, Any]) -> None:
    """``init_process_group`` over env://; a later group in the same process (a Hydra
    ``-m`` sweep run under one torchrun: one group per job) reuses the first group's
    store under a fresh key prefix, else it would read the previous group's keys."""
    global _INITS, _STORE
    if _INITS == 0 or _STORE is None:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
        _STORE = dist.distributed_c10d._get_default_store()
    else:
        prefixed = dist.PrefixStore(f"survopt_hydra/group{_INITS}/", _STORE)
        dist.init_process_group(backend, store=prefixed, rank=rank, world_size=world_size, **kwargs)
    _INITS += 1


def _resolve_device(device: Any, local_rank: int) -> torch.device:
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("trainer.device", "cuda was requested but CUDA is not available; allowed: cpu, auto")
        count = torch.cuda.device_count()
        index = device.index if device.index is not None else local_rank
        if index >= count:
            raise ConfigError("distributed", f"LOCAL_RANK {local_rank} needs CUDA device {index} but only {count} "
                              f"are visible; launch at most {count} processes per node (--nproc_per_node={count})")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    return device


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("distributed.backend", f"'nccl' needs CUDA devices but this run uses {device}; "
                          "allowed here: gloo, auto")
    return backend


