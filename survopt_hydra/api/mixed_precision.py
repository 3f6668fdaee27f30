"""The seed's one-object AMP optimizer, kept as a thin shell over :class:`StepEngine`.

Its own module (not :mod:`survopt_hydra.engine.amp`) because it needs both the engine and the
seed API, while the engine needs :mod:`~survopt_hydra.engine.amp`: living in ``amp`` made an
import circle.
"""
from __future__ import annotations

from typing import Any, ContextManager

import torch
from torch import nn

from ..engine.amp import AmpSettings
from ..engine.step_engine import StepEngine
from .factory import create_optimizer


class MixedPrecisionOptimizer:
    """The seed's one-object AMP optimizer: a :class:`~survopt_hydra.engine.StepEngine`.

    ``MixedPrecisionOptimizer(model=m, optimizer_type='adamw', learning_rate=1e-4,
    use_amp=True)``; extra keyword arguments go to the optimizer (seed spellings).
    ``amp_dtype`` picks ``'fp16'`` (default) or ``'bf16'``.
    """

    def __init__(self, model: nn.Module, use_amp: bool = True, amp_dtype: str = "fp16", **optimizer_kwargs: Any) -> None:
        optimizer = create_optimizer(model=model, **optimizer_kwargs)
        settings = AmpSettings(amp_dtype if use_amp else "none")
        self.engine = StepEngine(model, optimizer, amp=settings)
        self.optimizer = optimizer
        self.model = model

    def autocast(self) -> ContextManager:
        return self.engine.autocast()

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> bool:
        return self.engine.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.engine.scaler

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def state_dict(self) -> dict[str, Any]:
        return self.engine.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state)
