"""How a scheduler is stepped: the one contract between a scheduler and whoever steps it.

A torch scheduler does not know whether it advances per epoch or per optimizer step, or which
metric a plateau reads; Lightning keeps that beside the scheduler (``interval``,
``frequency``, ``monitor`` in ``configure_optimizers``), and so does this library:
:class:`Stepping` travels with the scheduler to :class:`~survopt_hydra.engine.StepEngine`
and :func:`~survopt_hydra.api.lightning.lightning_optimizers`, and :meth:`Stepping.of` reads
it from the scheduler's config node (``interval`` and ``monitor`` are fields of every
``scheduler`` option). Any scheduler, built by the library or not, is stepped by passing it
with one; without one it steps once per epoch, as under Lightning.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError
from ..schemas.scheduler import INTERVALS, SCHEDULERS


@dataclass(frozen=True)
class Stepping:
    """``interval``: "epoch" (once per epoch, after validation) or "step" (once per applied optimizer step);
    ``frequency``: every N of those; ``monitor``: the metric a plateau scheduler reads (None: none)."""

    interval: str = "epoch"
    frequency: int = 1
    monitor: str | None = None

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ConfigError("scheduler.interval", f"'{self.interval}' is not allowed; allowed: {', '.join(INTERVALS)}")
        if not isinstance(self.frequency, int) or isinstance(self.frequency, bool) or self.frequency < 1:
            raise ConfigError("scheduler.frequency", f"must be an integer >= 1, got {self.frequency!r}")
        if self.monitor is not None and not isinstance(self.monitor, str):
            raise ConfigError("scheduler.monitor", f"must be a metric name, got {self.monitor!r}")

    @classmethod
    def of(cls, config: Any) -> "Stepping":
        """The stepping a scheduler config asks for: an OmegaConf node, a mapping, a schema instance, or the
        ``functools.partial`` that ``instantiate`` makes of a ``_partial_`` node (Lightning apps hold those)."""
        if isinstance(config, Stepping):
            return config
        if config is None:
            return cls()
        if isinstance(config, functools.partial):  # instantiate(node) of a _partial_ node: its keywords are the config
            config = config.keywords
        get = config.get if isinstance(config, Mapping) or hasattr(config, "get") else \
            (lambda key, default=None: getattr(config, key, default))
        name = get("name", None)
        schema = SCHEDULERS.get(name)  # a partial mapping ({"name": "onecycle"}) gets the option's own defaults
        default = schema.__dataclass_fields__["interval"].default if schema is not None else "epoch"
        monitor = get("monitor", None) if name == "plateau" else None
        return cls(str(get("interval", default)), int(get("frequency", 1) or 1), monitor)
