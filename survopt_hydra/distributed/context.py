"""The per-process :class:`DistContext`: rank, device, collectives and teardown.

Split out because every other part of :mod:`survopt_hydra.distributed` (launch, model
wrapping, checkpoints, data helpers) needs the context but not each other. It also
owns the process-group state kept between Hydra multirun jobs (see
:meth:`DistContext.teardown`), which :func:`~survopt_hydra.distributed.launch.start`
reads when the next job sets up.
"""
from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..errors import ConfigError

_KEPT: dict[str, Any] | None = None  # a group kept between Hydra multirun jobs (see teardown)


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
# A process group kept between Hydra multirun jobs
# ----------------------------------------------------------------------------------
def kept_group() -> dict[str, Any] | None:
    """What :meth:`DistContext.teardown` kept for the next multirun job (or ``None``)."""
    return _KEPT


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
