"""Gradient clipping: global-norm, element-wise value and adaptive (AGC) clipping.

Why this module exists
----------------------
The training step wants one object, built from the ``gradient_clipping`` block of
the config, that it can call after ``backward()`` and before ``optimizer.step()``
and that always hands back the pre-clip total gradient norm for logging.  The
norm is returned as a *tensor* and nothing here calls ``.item()`` or branches on
a tensor value in Python, so on an accelerator clipping never forces a host
sync (the only exception is ``error_if_nonfinite=True``, which by definition has
to look at the value).

The global-norm and value modes are thin wrappers over torch's own
``clip_grad_norm_`` / ``clip_grad_value_`` / ``get_total_norm`` with the
``foreach`` kernels.  Adaptive gradient clipping (Brock et al. 2021, "High-Performance
Large-Scale Image Recognition Without Normalization", NFNets) has no torch
implementation; its vectorised implementation lives in :mod:`survopt_hydra.agc`
and :func:`adaptive_clip_grad_` is re-exported here.

Non-finite gradients are never repaired here: they propagate into the returned
norm (``inf``/``nan``) so the caller (e.g. a grad scaler or a skip-step policy)
can see them.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor, nn

from .agc import _adaptive_clip, _combine_norms, _PlanCache, adaptive_clip_grad_
from .errors import ConfigError, did_you_mean

__all__ = [
    "CLIPPING_MODES",
    "ClippingConfigError",
    "GradientClipper",
    "ParamsLike",
    "adaptive_clip_grad_",
]

CLIPPING_MODES: tuple[str, ...] = ("none", "norm", "value", "adaptive")

#: What :meth:`GradientClipper.clip_gradients` accepts: a module, a single tensor,
#: an iterable of parameters, or an iterable of ``(name, parameter)`` pairs.
ParamsLike = Union[nn.Module, Tensor, Iterable[Tensor], Iterable[tuple[str, Tensor]]]


class ClippingConfigError(ConfigError):
    """Invalid gradient-clipping configuration.

    A :class:`survopt_hydra.errors.ConfigError` (hence a ``ValueError``) so apps
    handle it like every other config problem; ``key`` is ``clipping.<field>``
    and the one-line message names it and what is allowed.
    """


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


try:  # private torch helper; if it moves, let torch choose (foreach=None)
    from torch.utils._foreach_utils import _has_foreach_support
except ImportError:  # pragma: no cover
    _has_foreach_support = None


def _foreach_flag(tensors: Sequence[Tensor]) -> bool | None:
    """``True`` when torch's foreach kernels support every tensor, else ``None``.

    ``True`` (not torch's ``None`` default) makes the choice explicit; ``None``
    where torch would refuse or not pick foreach itself - tensors on devices
    without foreach kernels or tensor subclasses such as FSDP's ``DTensor``
    gradients - so those keep torch's own per-tensor fallback.
    """
    if _has_foreach_support is None or not tensors:  # pragma: no cover
        return None
    devices = {t.device for t in tensors}
    if len(devices) == 1:
        return True if _has_foreach_support(list(tensors), next(iter(devices))) else None
    return True if all(_has_foreach_support([t], t.device) for t in tensors) else None


def _total_norm(grads: Sequence[Tensor], norm_type: float, error_if_nonfinite: bool) -> Tensor:
    """Total norm of ``grads`` via torch's own foreach implementation."""
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
    if get_total_norm is not None:  # torch >= 2.6
        return get_total_norm(grads, norm_type, error_if_nonfinite, _foreach_flag(grads))
    if len(grads) == 0:  # pragma: no cover - old torch only
        return torch.tensor(0.0)
    norms = torch._foreach_norm(list(grads), norm_type)  # pragma: no cover
    dev = grads[0].device  # pragma: no cover
    total = torch.linalg.vector_norm(torch.stack([n.to(dev) for n in norms]), norm_type)  # pragma: no cover
    if error_if_nonfinite and not bool(torch.isfinite(total)):  # pragma: no cover
        raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite")
    return total  # pragma: no cover


def _split_named(params: ParamsLike) -> tuple[list[Tensor], list[str] | None]:
    """Normalise every accepted ``params`` spelling to (tensors, names-or-None).

    Names are only known for modules and ``named_parameters()``-style pairs; they
    are what ``exclude`` patterns match against.
    """
    if isinstance(params, nn.Module):
        named = list(params.named_parameters())
        return [p for _, p in named], [n for n, _ in named]
    if isinstance(params, Tensor):
        return [params], None
    items = list(params)
    if not items:
        return [], None
    if isinstance(items[0], tuple):
        names: list[str] = []
        tensors: list[Tensor] = []
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Tensor)):
                raise TypeError(
                    "clip_gradients() got a mix of (name, parameter) pairs and other items; "
                    "pass model.parameters(), model.named_parameters() or the module itself"
                )
            names.append(str(item[0]))
            tensors.append(item[1])
        return tensors, names
    for item in items:
        if not isinstance(item, Tensor):
            raise TypeError(
                f"clip_gradients() expects tensors or (name, parameter) pairs, got {type(item).__name__}"
            )
    return items, None


# --------------------------------------------------------------------------- #
# config validation
# --------------------------------------------------------------------------- #


def _check_positive(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClippingConfigError(
            f"clipping.{field}", f"must be a number > 0, got {value!r} ({type(value).__name__})"
        )
    if not value > 0:  # also rejects nan
        raise ClippingConfigError(f"clipping.{field}", f"must be > 0, got {value!r}")
    return float(value)


def _check_norm_type(value: Any) -> float:
    if isinstance(value, str):
        if value.strip().lower() in ("inf", "+inf", "infinity"):
            return math.inf
        raise ClippingConfigError("clipping.norm_type", f"must be a number > 0 or 'inf', got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ClippingConfigError("clipping.norm_type", f"must be a number > 0 or 'inf', got {value!r}")
    return float(value)


def _check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ClippingConfigError(f"clipping.{field}", f"must be true or false, got {value!r}")
    return value


# --------------------------------------------------------------------------- #
# public class
# --------------------------------------------------------------------------- #


class GradientClipper:
    """Clip gradients in place and report the pre-clip total gradient norm.

    Modes (``mode=``):

    * ``"none"``     - no clipping; the total norm is still returned so the
      step engine can log it the same way in every mode (one foreach norm pass).
    * ``"norm"``     - :func:`torch.nn.utils.clip_grad_norm_` (global norm).
    * ``"value"``    - :func:`torch.nn.utils.clip_grad_value_` (element-wise).
    * ``"adaptive"`` - unit-wise AGC, :func:`adaptive_clip_grad_`.

    Config spellings kept for compatibility with the seed config:
    ``adaptive=True`` means ``mode="adaptive"`` (it is an error together with
    an explicit different ``mode``), and ``enabled=False`` means ``mode="none"``
    whatever else is set, so a config block can be switched off without
    deleting its other settings.  ``mode`` defaults to ``"norm"``.

    ``norm_type`` is the norm of the returned total (and the clipped norm in
    ``"norm"`` mode).  AGC itself always uses L2 unit norms; in adaptive mode a
    ``norm_type`` other than 2 costs one extra foreach pass for the returned norm.

    ``exclude`` (adaptive mode only) holds :func:`fnmatch.fnmatchcase` patterns
    of parameter names whose gradients AGC leaves alone - NFNets do not clip
    the final classifier, e.g. ``exclude=["head.*"]``.  Names are only known
    when ``clip_gradients`` gets a module or ``named_parameters()``.  Excluded
    gradients still count towards the returned total norm.

    Non-finite gradients are never repaired silently: the returned pre-clip
    norm is ``inf``/``nan`` in every mode (value mode clamps ``+-inf`` to
    ``+-clip_value`` - that is what element-wise clamping means - but still
    reports the non-finite norm).  ``error_if_nonfinite=True`` raises
    ``RuntimeError`` on a non-finite total norm before touching the gradients;
    it is the only setting that makes clipping synchronise with the device.
    """

    _FIELDS = (
        "mode",
        "adaptive",
        "enabled",
        "max_norm",
        "norm_type",
        "clip_value",
        "clip_factor",
        "eps",
        "exclude",
        "error_if_nonfinite",
    )

    def __init__(
        self,
        *,
        mode: str | None = None,
        max_norm: float = 1.0,
        norm_type: float | str = 2.0,
        clip_value: float = 1.0,
        clip_factor: float = 0.01,
        eps: float = 1e-3,
        exclude: Sequence[str] | str = (),
        error_if_nonfinite: bool = False,
        adaptive: bool = False,
        enabled: bool = True,
    ) -> None:
        adaptive = _check_bool("adaptive", adaptive)
        enabled = _check_bool("enabled", enabled)
        if mode is not None and (not isinstance(mode, str) or mode not in CLIPPING_MODES):
            raise ClippingConfigError(
                "clipping.mode", f"must be one of {'|'.join(CLIPPING_MODES)}, got {mode!r}"
            )
        if adaptive and mode not in (None, "adaptive"):
            raise ClippingConfigError(
                "clipping.adaptive", f"true conflicts with mode {mode!r}; allowed with mode adaptive only"
            )
        resolved = mode if mode is not None else ("adaptive" if adaptive else "norm")
        if not enabled:
            resolved = "none"
        self.mode: str = resolved
        self.max_norm: float = _check_positive("max_norm", max_norm)
        self.norm_type: float = _check_norm_type(norm_type)
        self.clip_value: float = _check_positive("clip_value", clip_value)
        self.clip_factor: float = _check_positive("clip_factor", clip_factor)
        self.eps: float = _check_positive("eps", eps)
        patterns = [exclude] if isinstance(exclude, str) else list(exclude)
        for pat in patterns:
            if not isinstance(pat, str):
                raise ClippingConfigError(
                    "clipping.exclude", f"must be a list of name patterns (strings), got item {pat!r}"
                )
        self.exclude: tuple[str, ...] = tuple(patterns)
        self.error_if_nonfinite: bool = _check_bool("error_if_nonfinite", error_if_nonfinite)
        self._plans = _PlanCache()
        self._mask_key: tuple[str, ...] | None = None
        self._mask: list[bool] = []
        self._warned_unmatched = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "GradientClipper":
        """Build from a config mapping (e.g. the ``gradient_clipping`` block).

        Unlike ``GradientClipper(**cfg)`` an unknown key raises
        :class:`ClippingConfigError` naming it, so a typo such as ``max_nrom`` is
        not silently ignored or reported as a bare ``TypeError``.
        """
        cfg = dict(cfg or {})
        unknown = sorted(k for k in cfg if k not in cls._FIELDS)
        if unknown:
            raise ClippingConfigError(
                f"clipping.{unknown[0]}",
                f"unknown key{did_you_mean(unknown[0], cls._FIELDS)}; allowed: {', '.join(cls._FIELDS)}",
            )
        return cls(**cfg)

    def __repr__(self) -> str:
        extra = {
            "none": "",
            "norm": f", max_norm={self.max_norm}",
            "value": f", clip_value={self.clip_value}",
            "adaptive": f", clip_factor={self.clip_factor}, eps={self.eps}, exclude={list(self.exclude)}",
        }[self.mode]
        return f"GradientClipper(mode={self.mode!r}, norm_type={self.norm_type}{extra})"

    # ------------------------------------------------------------------ #

    def _exclusion_mask(self, names: list[str]) -> list[bool]:
        key = tuple(names)
        if key != self._mask_key:
            self._mask = [
                any(fnmatch.fnmatchcase(n, pat) for pat in self.exclude) for n in names
            ]
            self._mask_key = key
            if not any(self._mask) and not self._warned_unmatched:
                self._warned_unmatched = True
                warnings.warn(
                    f"clipping.exclude patterns {list(self.exclude)} match no parameter name",
                    stacklevel=3,
                )
        return self._mask

    def clip_gradients(self, params: ParamsLike) -> Tensor:
        """Clip the gradients of ``params`` in place; return the pre-clip total norm.

        ``params`` may be a module, an iterable of parameters or of
        ``(name, parameter)`` pairs.  Parameters without a gradient are
        ignored.  The returned 0-D tensor lives on the first gradient's device
        (``tensor(0.)`` when no parameter has a gradient) and is computed
        without a host sync in every mode.
        """
        tensors, names = _split_named(params)
        grads = [p.grad for p in tensors if p.grad is not None]
        with torch.no_grad():
            if self.mode == "norm":
                return torch.nn.utils.clip_grad_norm_(
                    tensors,
                    self.max_norm,
                    self.norm_type,
                    error_if_nonfinite=self.error_if_nonfinite,
                    foreach=_foreach_flag(grads),
                )
            if self.mode == "none":
                return _total_norm(grads, self.norm_type, self.error_if_nonfinite)
            if self.mode == "value":
                total = _total_norm(grads, self.norm_type, self.error_if_nonfinite)
                if grads:
                    torch.nn.utils.clip_grad_value_(tensors, self.clip_value, foreach=_foreach_flag(grads))
                return total
            return self._clip_adaptive(tensors, names, grads)

    def _clip_adaptive(
        self, tensors: list[Tensor], names: list[str] | None, grads: list[Tensor]
    ) -> Tensor:
        excluded: list[Tensor] = []
        if self.exclude:
            if names is None:
                raise ClippingConfigError(
                    "clipping.exclude",
                    "needs parameter names; pass the module or model.named_parameters() to clip_gradients()",
                )
            mask = self._exclusion_mask(names)
            excluded = [p for p, m in zip(tensors, mask) if m and p.grad is not None]
            tensors = [p for p, m in zip(tensors, mask) if not m]
        # The AGC pass yields the L2 norm of the gradients it clips for free.  A
        # separate pre-clip pass over all gradients is needed only for another
        # norm_type, or to raise on non-finite excluded gradients before any
        # gradient is modified.
        pre_total: Tensor | None = None
        if self.norm_type != 2.0 or (self.error_if_nonfinite and excluded):
            pre_total = _total_norm(grads, self.norm_type, self.error_if_nonfinite)
        agc_total = _adaptive_clip(
            tensors,
            self.clip_factor,
            self.eps,
            error_if_nonfinite=self.error_if_nonfinite and pre_total is None,
            cache=self._plans,
        )
        if pre_total is not None:
            return pre_total
        if not excluded:
            return agc_total
        ex_total = _total_norm([p.grad for p in excluded], 2.0, False)  # type: ignore[misc]
        if not any(p.grad is not None for p in tensors):
            return ex_total
        return _combine_norms([agc_total, ex_total])
