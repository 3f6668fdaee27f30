"""An exponential moving average of the weights, built by the ``ema`` config group.

Why: on small, noisy cohorts and in image fine-tuning the last iterate jitters; an average of
recent weights usually scores steadier (timm's ``ModelEmaV3``, MMEngine's ``EMAHook``).
The averaging itself is torch's :class:`torch.optim.swa_utils.AveragedModel` (which also
averages BatchNorm buffers with ``use_buffers=True``); this module only adds the schedule:

* the first update copies the weights (AveragedModel's rule); the n-th later one moves the
  average by ``1 - d_n`` towards them with ``d_n = decay``, or ``min(decay, (1 + n) /
  (10 + n))`` with ``warmup`` (the TF/timm ramp, so the random init fades quickly);
* updates happen after every ``every_n_steps``-th *applied* optimizer step (a step the
  GradScaler or the non-finite guard skipped leaves the average alone).

:class:`~survopt_hydra.engine.StepEngine` calls :meth:`update` and keeps the state in its
``state_dict``, so a resumed run continues the same average.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..schemas.checks import validate
from ..schemas.ema import EMA
from ..errors import ConfigError, unknown_name


class WeightAverager:
    """Settings of the ``ema`` group; :meth:`attach` gives the live average for one model."""

    def __init__(self, mode: str = "none", **options: Any) -> None:
        """``options``: the fields of the ``ema`` schema (defaults and range checks live there)."""
        if mode not in EMA:
            raise unknown_name("ema.mode", mode, EMA)
        # mode none has no fields; it takes ema's defaults (unused: nothing is averaged)
        cfg = {**validate(EMA["ema"], {}, "ema"), **validate(EMA[mode], {"mode": mode, **options}, "ema")}
        self.mode = mode
        self.decay: float = cfg["decay"]
        self.every_n_steps: int = cfg["every_n_steps"]
        self.warmup: bool = cfg["warmup"]
        self.average: torch.optim.swa_utils.AveragedModel | None = None
        self.steps_seen = 0  # applied optimizer steps offered to update()

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def attach(self, model: nn.Module) -> "WeightAverager":
        """Start averaging ``model`` (the unwrapped module: DDP/compile wrappers add key prefixes)."""
        if self.enabled:
            from torch.optim.swa_utils import AveragedModel

            self.average = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)
        return self

    def decay_at(self, n_averaged: int) -> float:
        """The decay of the update that follows ``n_averaged`` earlier ones."""
        return min(self.decay, (1.0 + n_averaged) / (10.0 + n_averaged)) if self.warmup else self.decay

    def _lerp(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: Any) -> None:
        weight = 1.0 - self.decay_at(int(n_averaged))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        for a, c in zip(averaged, current):  # integer buffers (BatchNorm's num_batches_tracked): take the latest
            if not a.is_floating_point():
                a.copy_(c)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Call after each applied optimizer step; averages every ``every_n_steps``-th one."""
        if self.average is None:
            return
        self.steps_seen += 1
        if self.steps_seen % self.every_n_steps == 0:
            self.average.update_parameters(model)

    @property
    def module(self) -> nn.Module | None:
        """The averaged copy of the model (evaluate or save this one), ``None`` when off."""
        return self.average.module if self.average is not None else None

    def state_dict(self) -> dict[str, Any] | None:
        if self.average is None:
            return None
        return {"average": self.average.state_dict(), "steps_seen": self.steps_seen}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if (state is None) != (self.average is None):
            have = "ema=none" if self.average is None else f"ema={self.mode}"
            raise ConfigError("ema.mode", f"the checkpoint was written {'without' if state is None else 'with'} a "
                              f"weight average but this run has {have}; use the same ema option to resume")
        if state is not None:
            self.average.load_state_dict(state["average"])  # type: ignore[union-attr]
            self.steps_seen = int(state["steps_seen"])
