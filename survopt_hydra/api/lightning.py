"""Lightning's ``configure_optimizers`` from a library optimizer and scheduler, without importing Lightning.

Lightning passes the monitored metric only to schedulers it believes are plateau ones
(``reduce_on_plateau``, by default ``isinstance(s, ReduceLROnPlateau)``), so a warmup
wrapped around a plateau would be stepped without it. :func:`lightning_optimizers` says so
explicitly, and takes ``interval``, ``frequency`` and ``monitor`` from the scheduler's
:class:`~survopt_hydra.optim.Stepping` (or its config node), so the LR follows exactly the
trajectory the :class:`~survopt_hydra.engine.StepEngine` gives with the same stepping.
"""
from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..errors import ConfigError


def steps_on_metric(scheduler: Any) -> bool:
    """True when ``scheduler`` (or the plateau inside a warmup / hyper-parameter wrapper) reads a metric."""
    while scheduler is not None:
        if isinstance(scheduler, ReduceLROnPlateau):
            return True
        scheduler = getattr(scheduler, "inner", None)
    return False


def lightning_optimizers(optimizer: Optimizer, scheduler: Any = None, stepping: Any = None, *,
                         monitor: str | None = None) -> dict[str, Any]:
    """The dict ``LightningModule.configure_optimizers`` returns.

    ``stepping``: the scheduler's :class:`~survopt_hydra.optim.Stepping`, or the config node it
    was built from (``cfg.model.scheduler``: its ``interval`` and plateau ``monitor``); None:
    once per epoch, Lightning's default. ``monitor`` overrides the stepping's. A scheduler that
    reads a metric gets ``reduce_on_plateau: True`` so Lightning passes the metric to it.
    """
    from ..optim.stepping import Stepping

    if scheduler is None:
        return {"optimizer": optimizer}
    step = Stepping.of(stepping)
    config: dict[str, Any] = {"scheduler": scheduler, "interval": step.interval, "frequency": step.frequency}
    if steps_on_metric(scheduler):
        monitor = monitor or step.monitor
        if monitor is None:
            raise ConfigError("scheduler.monitor", "a plateau scheduler under Lightning needs the metric name "
                              "Lightning logs: pass the scheduler's config (scheduler.monitor=<metric>) or monitor=")
        config.update(monitor=monitor, reduce_on_plateau=True)
    return {"optimizer": optimizer, "lr_scheduler": config}
