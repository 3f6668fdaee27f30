"""Mixed precision: which autocast dtype to use and whether a GradScaler is needed.

``AmpSettings`` is the ``_target_`` of the ``amp`` group. fp16 needs loss scaling
(``torch.amp.GradScaler``) because small gradients underflow in half precision; bf16
has fp32's exponent range and needs none. Where fp16 autocast is unavailable for the
device, fp16 falls back to bf16 and says so once.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, ContextManager

import torch
from torch import nn

from .config.amp import AMP
from .config.checks import validate
from .errors import unknown_name

_DTYPES = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}
_warned: set[str] = set()


def _autocast_supports(device_type: str, dtype: torch.dtype) -> bool:
    """torch warns and disables autocast for an unsupported dtype; treat that as no."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autocast(device_type=device_type, dtype=dtype):
                pass
        except (RuntimeError, ValueError):
            return False
    return not any("autocast" in str(w.message).lower() for w in caught)


class AmpSettings:
    """Validated AMP options; :meth:`resolve` picks the dtype for a device."""

    def __init__(self, dtype: str = "none", **options: Any) -> None:
        if dtype not in AMP:
            raise unknown_name("amp.dtype", dtype, AMP)
        cfg = validate(AMP[dtype], {"dtype": dtype, **options}, "amp")
        self.dtype: str = cfg["dtype"]
        self.init_scale: float = cfg.get("init_scale", 2.0**16)
        self.growth_interval: int = cfg.get("growth_interval", 2000)
        self.fallback_to_bf16: bool = cfg.get("fallback_to_bf16", True)

    def resolve(self, device_type: str) -> tuple[torch.dtype | None, bool]:
        """Return (autocast dtype or None, use a GradScaler) for ``device_type``."""
        dtype = _DTYPES[self.dtype]
        if dtype is None:
            return None, False
        supported = _autocast_supports(device_type, dtype)
        if not supported and dtype is torch.float16 and self.fallback_to_bf16:
            if device_type not in _warned:
                _warned.add(device_type)
                warnings.warn(f"amp: fp16 autocast is not supported on {device_type}; using bf16 instead")
            return torch.bfloat16, False
        if not supported:
            raise unknown_name("amp.dtype", self.dtype, [k for k, v in _DTYPES.items() if v is None or _autocast_supports(device_type, v)])
        return dtype, dtype is torch.float16

    def __repr__(self) -> str:
        return f"AmpSettings(dtype={self.dtype!r})"


def autocast(device_type: str, dtype: torch.dtype | None) -> ContextManager:
    """Autocast for ``dtype``, or a no-op context when AMP is off."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


class MixedPrecisionOptimizer:
    """The seed's one-object AMP optimizer: a :class:`~survopt_hydra.engine.StepEngine`.

    ``MixedPrecisionOptimizer(model=m, optimizer_type='adamw', learning_rate=1e-4,
    use_amp=True)``; extra keyword arguments go to the optimizer (seed spellings).
    ``amp_dtype`` picks ``'fp16'`` (default) or ``'bf16'``.
    """

    def __init__(self, model: nn.Module, use_amp: bool = True, amp_dtype: str = "fp16", **optimizer_kwargs: Any) -> None:
        from .engine import StepEngine
        from .seed_api import create_optimizer

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
