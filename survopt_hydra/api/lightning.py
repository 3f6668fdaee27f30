"""Lightning's ``configure_optimizers`` from a library optimizer and scheduler, without importing Lightning.

Lightning passes the monitored metric only to schedulers it believes are plateau ones
(``reduce_on_plateau``, by default ``isinstance(s, ReduceLROnPlateau)``), so a warmup
wrapped around a plateau would be stepped without it. :func:`lightning_optimizers` says so
explicitly, and reads ``interval`` and ``monitor`` off the scheduler
(:func:`~survopt_hydra.optim.build_scheduler` sets them), so the LR follows exactly
the trajectory the :class:`~survopt_hydra.engine.StepEngine` gives.
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


def lightning_optimizers(optimizer: Optimizer, scheduler: Any = None, monitor: str | None = None,
                         frequency: int = 1) -> dict[str, Any]:
    """The dict ``LightningModule.configure_optimizers`` returns.

    ``interval`` comes from the scheduler (``"epoch"``/``"step"``), ``monitor`` from the
    scheduler's own ``monitor`` unless given here; a scheduler that reads a metric gets
    ``reduce_on_plateau: True`` so Lightning passes the metric to it.
    """
    if scheduler is None:
        return {"optimizer": optimizer}
    config: dict[str, Any] = {"scheduler": scheduler, "interval": getattr(scheduler, "interval", "epoch"),
                              "frequency": int(frequency)}
    if steps_on_metric(scheduler):
        monitor = monitor or getattr(scheduler, "monitor", None)
        if monitor is None:
            raise ConfigError("scheduler.monitor", "a plateau scheduler under Lightning needs the metric name "
                              "Lightning logs: set scheduler.monitor=<metric> or pass monitor=")
        config.update(monitor=monitor, reduce_on_plateau=True)
    return {"optimizer": optimizer, "lr_scheduler": config}
