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
"""
from __future__ import annotations

import atexit
import functools
import gc
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.optim import Optimizer

from .config.checks import validate
from .config.distributed import DISTRIBUTED
from .errors import ConfigError, unknown_name

log = logging.getLogger(__name__)

__all__ = [
    "DistContext",
    "DistributedSettings",
    "DistributedOptimizer",
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

TORCHRUN_HINT = (
    "torchrun --standalone --nproc_per_node=N scripts/train.py distributed={strategy} "
    "(or set distributed.allow_single_process=true)"
)
CHECKPOINT_FORMAT = "survopt-distributed/1"


# ----------------------------------------------------------------------------------
# The per-process context
# ----------------------------------------------------------------------------------
@dataclass
class DistContext:
    """Where this process sits in the run, and the collectives the app needs.

    With ``world_size == 1`` (or no process group) every collective returns its input.
    Every collective must be called by every rank, in the same order.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    strategy: str = "none"
    launcher: str = "none"  # none | torchrun | submitit | single_process | external
    owns_group: bool = False  # setup() started the process group (teardown destroys it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group is up (also for a 1-rank group)."""
        return dist.is_available() and dist.is_initialized()

    def _collective(self) -> bool:
        return self.world_size > 1 and self.distributed

    # -- collectives -------------------------------------------------------------------
    def barrier(self) -> None:
        if self._collective():
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")

    def all_gather_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``t`` along dim 0, in rank order.

        Lengths may differ between ranks (sizes are gathered first and shorter
        tensors padded); the trailing dimensions and dtype must agree.
        """
        if not self._collective():
            return t
        dev = self._comm_device()
        local = t.detach().to(dev).contiguous()
        if local.dim() == 0:
            local = local.reshape(1)
        sizes = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([local.shape[0]], dtype=torch.long, device=dev))
        counts = [int(s.item()) for s in sizes]
        longest = max(counts)
        if local.shape[0] < longest:
            pad = local.new_zeros((longest - local.shape[0], *local.shape[1:]))
            local = torch.cat([local, pad])
        chunks = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(chunks, local)
        return torch.cat([c[:k] for c, k in zip(chunks, counts)]).to(t.device)

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self._collective():
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``src``'s ``obj`` on every rank (e.g. rank 0's early-stopping decision)."""
        if not self._collective():
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, device=self._comm_device() if self.backend == "nccl" else None)
        return box[0]

    def all_reduce_mean(self, x: Any) -> Any:
        """Mean over ranks of a number or tensor (returned as the same kind)."""
        if not self._collective():
            return x
        if isinstance(x, torch.Tensor):
            buf = x.detach().to(self._comm_device(), dtype=torch.float64 if not x.is_floating_point() else x.dtype).clone()
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            return (buf / self.world_size).to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float64)
        buf = torch.tensor([float(x)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return float(buf.item()) / self.world_size

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        if not self._collective():
            return x
        buf = x.detach().to(self._comm_device()).clone()
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.to(x.device)

    def agree(self, flag: bool) -> bool:
        """Rank 0's boolean on every rank (early stopping, 'checkpoint now')."""
        return bool(self.broadcast_object(bool(flag)))

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (a local non-finite loss)."""
        if not self._collective():
            return bool(flag)
        buf = torch.tensor([1.0 if flag else 0.0], device=self._comm_device())
        dist.all_reduce(buf, op=dist.ReduceOp.MAX)
        return bool(buf.item() > 0)

    def on_main(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on rank 0 only and return its result on every rank. Collective.

        For work only rank 0 can or should do (read ``last.pt`` and check its config,
        write a file). A :class:`ConfigError` raised there is raised on every rank with
        the same key and message (so every rank exits the same way, none waits); any
        other exception is re-raised on rank 0 and reported as ``RuntimeError`` elsewhere.
        """
        result, error, original = None, None, None
        if self.is_main:
            try:
                result = fn(*args, **kwargs)
            except ConfigError as exc:
                original, error = exc, ("config", exc.key, str(exc)[len(exc.key) + 2:])
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the peers know
                original, error = exc, ("other", type(exc).__name__, str(exc))
        if self._collective():
            result, error = self.broadcast_object((result, error))
        if error is not None:
            if original is not None:
                raise original
            if error[0] == "config":
                raise ConfigError(error[1], error[2])
            raise RuntimeError(f"rank 0 failed: {error[1]}: {error[2]}")
        return result

    def teardown(self) -> None:
        """Destroy the process group if :meth:`DistributedSettings.setup` created it.

        Release wrapped models and optimizers first (they hold the group). Inside a
        Hydra multirun (``torchrun app.py -m ...``: every rank runs every sweep point)
        the group is kept for the next point's :meth:`~DistributedSettings.setup` and
        destroyed at exit: destroying and re-creating groups in one process while the
        previous job's DDP objects are still being collected can hang gloo.
        """
        global _KEPT
        if self.owns_group and self.distributed:
            gc.collect()  # wrappers the app dropped but that sit in reference cycles go first
            if self.world_size > 1:
                dist.barrier()  # no rank closes its connections while a peer is still talking
            if _in_hydra_multirun():
                if _KEPT is None:
                    atexit.register(_destroy_kept_group)
                _KEPT = {"launcher": self.launcher, "backend": self.backend, "world_size": self.world_size}
            else:
                dist.destroy_process_group()
                _KEPT = None
        self.owns_group = False

    def describe(self) -> dict[str, Any]:
        """One flat dict for the app's logs."""
        return {
            "strategy": self.strategy,
            "world_size": self.world_size,
            "rank": self.rank,
            "local_rank": self.local_rank,
            "device": str(self.device),
            "backend": self.backend or "none",
            "launcher": self.launcher,
        }


def is_main() -> bool:
    """True on rank 0 or when no process group is up: only this process writes."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def current_context(strategy: str = "none") -> DistContext:
    """A context for an already initialised process group (or a single-process one)."""
    if dist.is_available() and dist.is_initialized():
        backend = str(dist.get_backend())
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        return DistContext(
            dist.get_rank(), dist.get_world_size(), local_rank, device, backend, strategy, "external", False
        )
    return DistContext(strategy=strategy)


# ----------------------------------------------------------------------------------
# Launcher environments
# ----------------------------------------------------------------------------------
def _torchrun_env() -> dict[str, int] | None:
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


def _submitit_env() -> dict[str, int] | None:
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


_KEPT: dict[str, Any] | None = None  # a group kept between Hydra multirun jobs (see teardown)


def _in_hydra_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # no Hydra, or not inside a Hydra job
        return False


def _destroy_kept_group() -> None:
    global _KEPT
    if _KEPT is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _KEPT = None


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


# ----------------------------------------------------------------------------------
# LR scaling
# ----------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------
# Strategy detection helpers
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


def _is_fsdp(model: nn.Module) -> bool:
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


def _is_zero(optimizer: Any) -> bool:
    # by name: importing torch.distributed.optim costs ~1 s and warns about torch.jit
    return any(c.__name__ == "ZeroRedundancyOptimizer" for c in type(optimizer).__mro__)


def _unwrapped(model: nn.Module) -> nn.Module:
    from .engine import _unwrapped as unwrap

    return unwrap(model)


def _plain_options(cfg_optimizer: Any) -> dict[str, Any]:
    """A composed ``cfg.optimizer`` (DictConfig or dict) as plain kwargs, ``_target_`` dropped."""
    if type(cfg_optimizer).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        cfg_optimizer = OmegaConf.to_container(cfg_optimizer, resolve=True)
    return {str(k): v for k, v in dict(cfg_optimizer or {}).items() if not str(k).startswith("_")}


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

    from .optimizer import _GROUPING, TORCH_CLASSES, optimizer_options
    from .param_groups import build_param_groups

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

    key = "distributed.overlap_with_ddp"
    if dist.get_backend() != "nccl":
        raise ConfigError(key, "needs the nccl backend (torch refuses gloo: it may hang); "
                          "allowed here: false")
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        raise ConfigError(key, "needs the model wrapped by wrap_model() (DDP) before build_optimizer()")
    if cls not in functional_optim_map:
        allowed = sorted(n for n, c in _torch_names().items() if getattr(torch.optim, c) in functional_optim_map)
        raise ConfigError(key, f"needs an optimizer with a functional form; '{name}' has none; "
                          f"allowed: {', '.join(allowed)}")
    if len(groups) != 1:
        raise ConfigError(key, f"supports one parameter group but the optimizer config makes {len(groups)} "
                          f"({', '.join(g['name'] for g in groups)}); set optimizer.no_weight_decay_1d=false "
                          "(or weight_decay=0) and no lr_mult, or distributed.overlap_with_ddp=false")
    zero = zero_cls([p for g in groups for p in g["params"]], optimizer_class=cls, overlap_with_ddp=True, **base)
    model.register_comm_hook(None, hook_with_zero_step(allreduce_hook, model, zero))
    return zero


def _torch_names() -> dict[str, str]:
    from .optimizer import TORCH_CLASSES

    return TORCH_CLASSES


# ----------------------------------------------------------------------------------
# Optimizer / model state for checkpoints
# ----------------------------------------------------------------------------------
def _state_options(**kw: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kw)


def consolidated_optimizer_state(optimizer: Optimizer, ctx: DistContext, model: nn.Module | None = None) -> dict | None:
    """The full optimizer state on rank 0 (``None`` on other ranks). Collective.

    ZeRO: ``consolidate_state_dict(to=0)`` then ``state_dict()`` (torch's int-keyed
    format, loadable into a plain optimizer). FSDP (pass ``model``): DCP's full
    optimizer state dict, keyed by parameter name. Otherwise the plain state dict.
    """
    if _is_zero(optimizer):
        optimizer.consolidate_state_dict(to=0)
        return optimizer.state_dict() if ctx.is_main else None
    if model is not None and _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = get_optimizer_state_dict(model, optimizer, options=_state_options(full_state_dict=True, cpu_offload=True))
        return state if ctx.is_main else None
    return optimizer.state_dict() if ctx.is_main else None


def load_optimizer_state(optimizer: Optimizer, state: Mapping | None, ctx: DistContext, model: nn.Module | None = None) -> None:
    """Inverse of :func:`consolidated_optimizer_state`; call on every rank.

    ``state`` must be given on every rank, except for FSDP where only rank 0's is read
    (``broadcast_from_rank0``). A name-keyed (FSDP) state loads into a plain/ZeRO
    optimizer and an int-keyed one into FSDP, provided the param groups match.
    """
    if model is not None and _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        full = _to_fqn_state(state, optimizer, model) if ctx.is_main and state is not None else {}
        set_optimizer_state_dict(
            model, optimizer, full,
            options=_state_options(full_state_dict=True, broadcast_from_rank0=ctx.world_size > 1, strict=True),
        )
        return
    if state is None:
        raise ConfigError("checkpoint", f"rank {ctx.rank} got no optimizer state to load")
    optimizer.load_state_dict(_to_index_state(state, optimizer, model))


def _param_names(optimizer: Optimizer, model: nn.Module | None) -> list[str] | None:
    """Name of each parameter in the optimizer's global (int) order."""
    if model is None:
        return None
    name_of = {id(p): n for n, p in _unwrapped(model).named_parameters()}
    names = [name_of.get(id(p)) for g in optimizer.param_groups for p in g["params"]]
    return None if any(n is None for n in names) else names  # type: ignore[return-value]


def _is_fqn_state(state: Mapping) -> bool:
    groups = state.get("param_groups") or []
    return any(isinstance(p, str) for g in groups for p in g.get("params", []))


def _to_index_state(state: Mapping, optimizer: Optimizer, model: nn.Module | None) -> dict:
    if not _is_fqn_state(state):
        return dict(state)
    names = _param_names(optimizer, model)
    if names is None:
        raise ConfigError("checkpoint", "the optimizer state is keyed by parameter name (an FSDP checkpoint); "
                          "pass model= so names can be matched to parameters")
    index = {n: i for i, n in enumerate(names)}
    return {
        "state": {index[k]: v for k, v in state["state"].items()},
        "param_groups": [dict(g, params=[index[p] for p in g["params"]]) for g in state["param_groups"]],
    }


def _to_fqn_state(state: Mapping, optimizer: Optimizer, model: nn.Module) -> dict:
    if _is_fqn_state(state):
        return dict(state)
    names = _param_names(optimizer, model)
    if names is None:  # pragma: no cover - FSDP keeps parameter identity
        raise ConfigError("checkpoint", "cannot match an index-keyed optimizer state to this FSDP model")
    return {
        "state": {names[int(k)]: v for k, v in state["state"].items()},
        "param_groups": [dict(g, params=[names[int(i)] for i in g["params"]]) for g in state["param_groups"]],
    }


def model_state_dict(model: nn.Module, ctx: DistContext, all_ranks: bool = False) -> dict | None:
    """The unwrapped model's full state dict (CPU copies) on rank 0, ``None`` elsewhere.

    ``all_ranks=True``: the full state on every rank (e.g. best-epoch weights every rank
    restores later). Collective for FSDP (parameters are all-gathered), so every rank
    must call it. Keys never carry ``module.`` or FSDP prefixes, so a checkpoint from
    any strategy loads into any other (and into a plain model).
    """
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(model, options=_state_options(full_state_dict=True, cpu_offload=not all_ranks))
        if all_ranks:
            return {k: v.detach().cpu() for k, v in state.items()}
        return state if ctx.is_main else None
    if not (ctx.is_main or all_ranks):
        return None
    return {k: v.detach().cpu().clone() for k, v in _unwrapped(model).state_dict().items()}


def load_model_state_dict(model: nn.Module, state: Mapping | None, ctx: DistContext) -> None:
    """Inverse of :func:`model_state_dict`; call on every rank.

    FSDP: only rank 0's ``state`` is read (and broadcast); other strategies: every rank
    loads the ``state`` it is given (all must pass the same one).
    """
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        full = dict(state) if (ctx.is_main and state is not None) else {}
        set_model_state_dict(model, full, options=_state_options(full_state_dict=True, broadcast_from_rank0=ctx.world_size > 1))
        return
    if state is None:
        raise ConfigError("checkpoint", f"rank {ctx.rank} got no model state to load")
    _unwrapped(model).load_state_dict(state)


# ----------------------------------------------------------------------------------
# Whole-run checkpoints (model + engine/optimizer + extra + per-rank RNG)
# ----------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    """This rank's RNG states in a ``torch.load(weights_only=True)``-safe form."""
    import random

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    except ImportError:  # pragma: no cover
        pass
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import random

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    if "numpy" in state:
        import numpy as np

        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file, fsync, ``os.replace``: never a torn checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


def _load(path: Path) -> Any:
    """Checkpoints hold tensors and plain data only (``weights_only=True``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _optimizer_of(engine: Any, optimizer: Optimizer | None) -> Optimizer:
    opt = optimizer if optimizer is not None else getattr(engine, "optimizer", None)
    if opt is None:
        raise ConfigError("checkpoint", "pass engine= (an object with .optimizer) or optimizer=")
    return opt


def engine_state_dict(engine: Any, ctx: DistContext, model: nn.Module | None = None) -> dict | None:
    """``engine.state_dict()`` with the full optimizer state, on rank 0 (``None`` elsewhere).

    Collective (ZeRO consolidates, FSDP gathers): every rank calls it. For an app that
    writes its own checkpoint files: save this and :func:`model_state_dict` from rank 0.
    """
    opt_sd = consolidated_optimizer_state(engine.optimizer, ctx, model)
    if not ctx.is_main:
        return None
    state = dict(engine.state_dict())
    state["optimizer"] = opt_sd
    return state


def load_engine_state(engine: Any, state: Mapping[str, Any], ctx: DistContext, model: nn.Module | None = None) -> None:
    """Inverse of :func:`engine_state_dict`; every rank calls it with the state.

    ZeRO ranks pick their shard from the full optimizer state; FSDP reads rank 0's
    optimizer entry only (``broadcast_from_rank0``); a name-keyed (FSDP) optimizer
    state loads into a plain or ZeRO optimizer and vice versa.
    """
    opt = engine.optimizer
    if model is not None and _is_fsdp(model):
        full = state.get("optimizer") if ctx.is_main else None
        engine.load_state_dict(dict(state, optimizer=opt.state_dict()))  # scheduler, scaler, counters
        load_optimizer_state(opt, full, ctx, model)
        return
    if state.get("optimizer") is None:
        raise ConfigError("checkpoint", f"rank {ctx.rank} got no optimizer state to load")
    engine.load_state_dict(dict(state, optimizer=_to_index_state(state["optimizer"], opt, model)))


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    ctx: DistContext,
    engine: Any = None,
    optimizer: Optimizer | None = None,
    extra: Mapping[str, Any] | None = None,
    sharded: bool = False,
) -> None:
    """Write one resumable checkpoint; call on every rank (it is collective).

    Full mode (default): rank 0 writes ``path`` atomically with the unwrapped model's
    state, ``engine.state_dict()`` (its ``optimizer`` entry replaced by the consolidated
    ZeRO / gathered FSDP state), ``extra`` and every rank's RNG state. Sharded mode
    (FSDP with ``distributed.checkpoint=sharded``): every rank writes its shards to a
    fresh DCP folder ``<path>.shards-<id>`` and rank 0 then swaps ``path`` (which
    names that folder) atomically, so a crash at any moment leaves a complete
    checkpoint. ``engine`` is duck-typed (``state_dict``/``load_state_dict``/``optimizer``).
    """
    path = Path(ctx.broadcast_object(str(path)))  # rank 0's path: Hydra run dirs can differ by rank
    opt = _optimizer_of(engine, optimizer)
    rngs = ctx.all_gather_object(_rng_state())
    shard_dir = None
    if sharded:
        if not _is_fsdp(model):
            raise ConfigError("distributed.checkpoint", "'sharded' needs distributed=fsdp; allowed here: full")
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        token = ctx.broadcast_object(uuid.uuid4().hex[:10])
        shard_dir = path.with_name(f"{path.name}.shards-{token}")
        msd, osd = get_state_dict(model, opt)
        if ctx.is_main:
            shard_dir.mkdir(parents=True, exist_ok=True)
        ctx.barrier()
        dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(shard_dir))
        model_sd, opt_sd = None, None
    else:
        model_sd = model_state_dict(model, ctx)
        opt_sd = consolidated_optimizer_state(opt, ctx, model)
    if ctx.is_main:
        engine_sd = None
        if engine is not None:
            engine_sd = dict(engine.state_dict())
            engine_sd["optimizer"] = opt_sd
        state = {
            "format": CHECKPOINT_FORMAT,
            "strategy": ctx.strategy,
            "world_size": ctx.world_size,
            "sharded": shard_dir.name if shard_dir is not None else None,
            "model": model_sd,
            "engine": engine_sd,
            "optimizer": opt_sd if engine is None else None,
            "extra": dict(extra) if extra is not None else None,
            "rng": rngs,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = _shard_dir_of(path) if shard_dir is not None else None
        _save_atomic(state, path)
        if previous is not None and previous != shard_dir and previous.exists():
            shutil.rmtree(previous, ignore_errors=True)
    ctx.barrier()


def _shard_dir_of(path: Path) -> Path | None:
    if not path.exists():
        return None
    try:
        old = _load(path)
    except Exception:  # a corrupt/foreign file: leave its neighbours alone
        return None
    name = old.get("sharded") if isinstance(old, Mapping) else None
    return path.with_name(name) if name else None


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    ctx: DistContext,
    engine: Any = None,
    optimizer: Optimizer | None = None,
    restore_rng: bool = True,
    before_load: Callable[[dict[str, Any]], None] | None = None,
    error_key: str = "checkpoint",
    error_hint: str = "",
) -> dict[str, Any] | None:
    """Resume every rank from :func:`save_checkpoint`'s file; returns ``extra``.

    ``before_load(extra)`` runs on every rank before any state is touched (e.g. refuse
    a checkpoint written with a different config, with a clear error). A file rank 0
    cannot read (truncated, foreign) raises ``ConfigError(error_key, ... + error_hint)``
    on every rank, so no rank is left waiting.

    Returns ``None`` (and changes nothing) when ``path`` does not exist on rank 0, so
    re-running the same command starts fresh or resumes; else ``extra`` (``{}`` if none). Only rank 0 reads the file;
    the state reaches other ranks by broadcast (FSDP: ``broadcast_from_rank0``), so
    no shared filesystem is needed except for sharded checkpoints (DCP reads shards
    on every rank). Per-rank RNG states are restored when the world size matches.
    """
    path = Path(ctx.broadcast_object(str(path)))
    opt = _optimizer_of(engine, optimizer)
    state, error = None, None
    if ctx.is_main and path.exists():
        try:
            state = _load(path)
        except Exception as exc:  # truncated by hand, another program's file
            first = str(exc).splitlines()[0] if str(exc) else ""
            error = f"cannot resume from {path} ({type(exc).__name__}: {first})"
        else:
            if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
                error = f"cannot resume from {path} (not a survopt_hydra.distributed checkpoint)"
    fsdp = _is_fsdp(model)
    # what every rank needs; FSDP's full model/optimizer stay on rank 0 (broadcast later)
    heavy = ("model", "optimizer") if fsdp else ()
    light = None
    if state is not None:
        light = {k: v for k, v in state.items() if k not in heavy}
        if fsdp and light.get("engine") is not None:
            light["engine"] = {k: v for k, v in light["engine"].items() if k != "optimizer"}
    light = ctx.broadcast_object({"error": error} if error else light)
    if light is not None and light.get("error"):
        raise ConfigError(error_key, light["error"] + (f"; {error_hint}" if error_hint else ""))
    if light is None:
        return None  # nothing to resume (an empty ``extra`` comes back as {})
    if before_load is not None:
        before_load(light.get("extra") or {})
    engine_sd = light.get("engine")
    if light.get("sharded"):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        if not fsdp:
            raise ConfigError("distributed.checkpoint", f"{path} is a sharded (DCP) checkpoint; resume it with "
                              "distributed=fsdp")
        msd, osd = get_state_dict(model, opt)
        target = {"model": msd, "optimizer": osd}
        dcp.load(target, checkpoint_id=str(path.with_name(light["sharded"])))
        if engine is not None and engine_sd is not None:
            engine.load_state_dict(dict(engine_sd, optimizer=opt.state_dict()))
        set_state_dict(model, opt, model_state_dict=target["model"], optim_state_dict=target["optimizer"])
    else:
        full = state if ctx.is_main else light  # FSDP: the model / optimizer state stayed on rank 0
        load_model_state_dict(model, full.get("model"), ctx)
        if engine is not None and engine_sd is not None:
            load_engine_state(engine, full["engine"], ctx, model)
        else:
            load_optimizer_state(opt, full.get("optimizer") or (full.get("engine") or {}).get("optimizer"), ctx, model)
    rngs = light.get("rng") or []
    if restore_rng and len(rngs) == ctx.world_size:
        _set_rng_state(rngs[ctx.rank])
    ctx.barrier()
    return light.get("extra") or {}


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). Collective.

    DDP broadcasts buffers only at the start of each training forward, so after an
    epoch each rank's last forward has left its own statistics; FSDP never syncs them.
    Call this before evaluating (every rank then scores with the same model) and before
    a checkpoint (rank 0's buffers are what it saves): resumes stay exact.
    """
    if not ctx._collective():
        return
    for buf in _unwrapped(model).buffers():
        if ctx.backend == "nccl" or buf.device.type == "cpu":
            dist.broadcast(buf.data, src=0)
        else:  # gloo with a CUDA buffer: through the host
            host = buf.detach().cpu()
            dist.broadcast(host, src=0)
            buf.data.copy_(host)


# ----------------------------------------------------------------------------------
# Data helpers
# ----------------------------------------------------------------------------------
def train_sampler(n: int, ctx: DistContext, seed: int = 0, shuffle: bool = True, drop_last: bool = False):
    """``DistributedSampler`` over ``range(n)`` for this rank (call ``set_epoch(e)`` each epoch).

    Every rank gets the same number of indices (padded by repeating the permutation's
    head unless ``drop_last``), so DDP/FSDP collectives line up batch for batch. With
    one process it yields ``randperm(n)`` seeded by ``seed + epoch``.
    """
    from torch.utils.data import DistributedSampler

    return DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle,
                              seed=seed, drop_last=drop_last)


def shard_indices(n: int, epoch: int, seed: int, ctx: DistContext, shuffle: bool = True,
                  drop_last: bool = False) -> torch.Tensor:
    """This rank's training indices for ``epoch`` (a ``LongTensor``), via :func:`train_sampler`."""
    sampler = train_sampler(n, ctx, seed, shuffle, drop_last)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def eval_indices(n: int, ctx: DistContext) -> torch.Tensor:
    """This rank's evaluation indices: strided, in order, the same count on every rank.

    The count is ``ceil(n / world_size)`` (the last ranks repeat early indices), so
    batching them gives every rank the same number of forward passes, which FSDP
    requires; :func:`gather_by_index` removes the repeats.
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)
    return torch.tensor(list(sampler), dtype=torch.long)


def gather_by_index(values: torch.Tensor, indices: torch.Tensor, n: int, ctx: DistContext) -> torch.Tensor:
    """All ranks' ``values`` (first dim aligned with ``indices``) as one tensor of ``n`` rows.

    Row ``i`` of the result is the value computed for example ``i``, on every rank, so
    metrics that do not decompose over shards (C-index) agree everywhere.
    """
    if values.shape[0] != indices.shape[0]:
        raise ValueError(f"values has {values.shape[0]} rows but indices has {indices.shape[0]}")
    all_values = ctx.all_gather_tensor(values)
    all_indices = ctx.all_gather_tensor(indices.to(values.device))
    out = values.new_zeros((n, *values.shape[1:]))
    out[all_indices.long()] = all_values
    seen = torch.zeros(n, dtype=torch.bool, device=values.device)
    seen[all_indices.long()] = True
    if not bool(seen.all()):
        missing = int((~seen).sum())
        raise ValueError(f"gather_by_index: {missing} of {n} examples were not computed by any rank")
    return out


# ----------------------------------------------------------------------------------
# The settings object (Hydra target)
# ----------------------------------------------------------------------------------
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
        """Start (or join) the process group for this strategy; see the module doc.

        ``device``: ``None``/``'auto'`` (CUDA when available), ``'cpu'`` or ``'cuda'``;
        with CUDA the device index is ``LOCAL_RANK``. ``strategy=none`` under a
        multi-process launcher is refused (every rank would train and write alone).
        Without a launcher, ddp/zero/fsdp need ``allow_single_process=true``: then a
        1-rank process group (in-process store, no port) runs the same wrapped code.
        """
        env, launcher = _torchrun_env(), "torchrun"
        if env is None:
            env, launcher = _submitit_env(), "submitit"
        if self.strategy == "none":
            if env is not None and env["world_size"] > 1:
                raise ConfigError("distributed.strategy", f"'none' but {launcher} started {env['world_size']} "
                                  "processes (each would train alone); allowed: ddp, zero, fsdp, or launch "
                                  "one process without torchrun")
            local = env["local_rank"] if env else 0
            return DistContext(device=_resolve_device(device, local), strategy="none",
                               launcher=launcher if env else "none")
        if dist.is_available() and dist.is_initialized():  # the app, a test or a previous sweep job
            ctx = current_context(self.strategy)
            if _KEPT is not None and _KEPT["world_size"] == ctx.world_size:
                ctx.launcher, ctx.owns_group = _KEPT["launcher"], True
            ctx.device = _resolve_device(device, ctx.local_rank) if ctx.backend != "nccl" else ctx.device
            return ctx
        if env is None:
            if not self.allow_single_process:
                raise ConfigError("distributed.strategy", f"'{self.strategy}' needs torchrun: "
                                  + TORCHRUN_HINT.format(strategy=self.strategy))
            dev = _resolve_device(device, 0)
            backend = _resolve_backend(self.backend, dev)
            kwargs = {"device_id": dev} if dev.type == "cuda" else {}
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **kwargs)
            log.info("distributed.%s without a launcher: one process, a 1-rank %s group", self.strategy, backend)
            return DistContext(0, 1, 0, dev, backend, self.strategy, "single_process", True)
        dev = _resolve_device(device, env["local_rank"])
        backend = _resolve_backend(self.backend, dev)
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        _init_from_env(backend, env["rank"], env["world_size"], kwargs)
        if env["world_size"] == 1:
            log.warning("distributed.%s: %s started one process; training runs on one rank", self.strategy, launcher)
        return DistContext(env["rank"], env["world_size"], env["local_rank"], dev, backend, self.strategy, launcher, True)

    # -- model -------------------------------------------------------------------------
    def wrap_model(self, model: nn.Module, ctx: DistContext) -> nn.Module:
        """Move to ``ctx.device`` and apply the strategy (no-op without a process group)."""
        model = model.to(ctx.device)
        if self.strategy == "none" or not ctx.distributed:
            return model
        if self.strategy in ("ddp", "zero"):
            return nn.parallel.DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=self.options["find_unused_parameters"],
                gradient_as_bucket_view=self.options["gradient_as_bucket_view"],
                static_graph=self.options["static_graph"],
            )
        return self._shard(model, ctx)

    def _shard(self, model: nn.Module, ctx: DistContext) -> nn.Module:
        """FSDP2: ``fully_shard`` every top-level child that owns parameters, then the root.

        Buffers (BatchNorm statistics) are not sharded; as DDP does by default, rank 0's
        are broadcast at the start of every training forward, so FSDP trains exactly
        like DDP on models with buffers too.
        """
        reshard = self.options["reshard_after_forward"]
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
        named param groups; otherwise the plain :func:`~survopt_hydra.optimizer.build_optimizer`
        result. The factor is in ``self.lr_scale`` / ``self.lr_scale_info`` (log it).
        """
        from .optimizer import build_optimizer, optimizer_options

        options = _plain_options(cfg_optimizer)
        name = options.pop("name", "adamw")
        factor = self.lr_factor(ctx, global_batch, base_batch)
        if factor != 1.0:
            lr = validate(optimizer_options(name), options, "optimizer")["lr"]
            options["lr"] = lr * factor
        self.lr_scale_info["lr"] = options.get("lr")
        if ctx.is_main and factor != 1.0:
            log.info("distributed.lr_scaling=%s: lr x %.4g (world size %d)", self.lr_scaling, factor, ctx.world_size)
        if self.strategy == "zero" and ctx.distributed:
            return _build_zero_optimizer(model, name, options, bool(self.options.get("overlap_with_ddp")))
        return build_optimizer(_unwrapped(model), name, **options)

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

    # -- data --------------------------------------------------------------------------
    def train_sampler(self, n: int, ctx: DistContext, seed: int = 0, shuffle: bool = True, drop_last: bool = False):
        return train_sampler(n, ctx, seed, shuffle, drop_last)

    def describe(self, ctx: DistContext) -> dict[str, Any]:
        """Everything the app should log about the distributed setup."""
        return {**ctx.describe(), **{k: v for k, v in self.lr_scale_info.items() if v is not None}}


# ----------------------------------------------------------------------------------
# The seed API
# ----------------------------------------------------------------------------------
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
        from .seed_api import _OPT, _canon, _plain

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
        opts = _canon(_plain(opts, "optimizer"), _OPT, "optimizer.")
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
        if _is_zero(self.optimizer) or _is_fsdp(self.model):
            return consolidated_optimizer_state(self.optimizer, self.ctx, self.model)
        return self.optimizer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Every rank passes the full state (FSDP: only rank 0's is read)."""
        load_optimizer_state(self.optimizer, state, self.ctx, self.model)
