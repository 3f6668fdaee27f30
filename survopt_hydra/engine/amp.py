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

from ..schemas.amp import AMP
from ..schemas.checks import validate
from ..errors import unknown_name

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
        # the scaler fields exist only in fp16's schema; other modes take its defaults (unused there)
        cfg = {**validate(AMP["fp16"], {}, "amp"), **validate(AMP[dtype], {"dtype": dtype, **options}, "amp")}
        self.dtype: str = cfg["dtype"]
        self.init_scale: float = cfg["init_scale"]
        self.growth_interval: int = cfg["growth_interval"]
        self.fallback_to_bf16: bool = cfg["fallback_to_bf16"]

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
