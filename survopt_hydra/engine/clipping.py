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
implementation; its vectorised implementation lives in :mod:`survopt_hydra.engine.agc`
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
from torch.utils._foreach_utils import _has_foreach_support  # torch's own test, as clip_grad_norm_ uses

from .agc import adaptive_clip, adaptive_clip_grad_, combine_norms, PlanCache
from ..schemas.checks import validate
from ..schemas.clipping import CLIPPING
from ..errors import ConfigError, unknown_name

__all__ = [
    "CLIPPING_MODES",
    "ClippingConfigError",
    "GradientClipper",
    "ParamsLike",
    "adaptive_clip_grad_",
]

CLIPPING_MODES: tuple[str, ...] = tuple(CLIPPING)

#: What :meth:`GradientClipper.clip_gradients` accepts: a module, a single tensor,
#: an iterable of parameters, or an iterable of ``(name, parameter)`` pairs.
ParamsLike = Union[nn.Module, Tensor, Iterable[Tensor], Iterable[tuple[str, Tensor]]]

#: Old name of the error; every clipping error is a plain :class:`ConfigError`.
ClippingConfigError = ConfigError

_INF_SPELLINGS = ("inf", "+inf", "infinity")


def _foreach_flag(tensors: Sequence[Tensor]) -> bool | None:
    """``True`` when torch's foreach kernels support every tensor, else ``None``.

    ``True`` (not torch's ``None`` default) makes the choice explicit; ``None``
    where torch would refuse or not pick foreach itself - tensors on devices
    without foreach kernels or tensor subclasses such as FSDP's ``DTensor``
    gradients - so those keep torch's own per-tensor fallback.
    """
    if not tensors:
        return None
    devices = {t.device for t in tensors}
    if len(devices) == 1:
        return True if _has_foreach_support(list(tensors), next(iter(devices))) else None
    return True if all(_has_foreach_support([t], t.device) for t in tensors) else None


def total_norm(grads: Sequence[Tensor], norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Total norm of ``grads`` (``tensor(0.)`` for none): torch's own foreach implementation,
    ``torch.nn.utils.get_total_norm`` (torch >= 2.6); on torch 2.4/2.5 the same reduction
    written out - the norm of the per-tensor norms - which is all that function does."""
    if not grads:
        return torch.tensor(0.0)
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
    if get_total_norm is not None:
        return get_total_norm(grads, norm_type, error_if_nonfinite, _foreach_flag(grads))
    device = grads[0].device
    norms = [torch.linalg.vector_norm(g.detach(), norm_type).to(device) for g in grads]
    total = torch.linalg.vector_norm(torch.stack(norms), norm_type)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(f"The total norm of order {float(norm_type)} for gradients from `parameters` is "
                           "non-finite, so it cannot be clipped.")
    return total


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
    if not items or not isinstance(items[0], tuple):
        for item in items:
            if not isinstance(item, Tensor):
                raise TypeError(
                    f"clip_gradients() expects tensors or (name, parameter) pairs, got {type(item).__name__}"
                )
        return items, None
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Tensor)):
            raise TypeError(
                "clip_gradients() got a mix of (name, parameter) pairs and other items; "
                "pass model.parameters(), model.named_parameters() or the module itself"
            )
    return [p for _, p in items], [str(n) for n, _ in items]


def _options(mode: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every clipping field: ``mode``'s schema checks its own; a field of another mode
    (the seed's ``GradientClipper(max_norm=1.0, adaptive=True)``) is checked by the
    schema that has it and kept but unused; defaults come from the schemas."""
    values: dict[str, Any] = {}
    for schema in CLIPPING.values():
        values.update(validate(schema, {}, "clipping"))
    own = CLIPPING[mode]
    foreign = {k: v for k, v in given.items() if k not in validate(own, {}, "clipping")}
    for key, value in foreign.items():
        owner = next((s for s in CLIPPING.values() if key in validate(s, {}, "clipping")), own)
        values.update(validate(owner, {key: value}, "clipping"))  # an unknown key: refused, did-you-mean
    values.update(validate(own, {k: v for k, v in given.items() if k not in foreign}, "clipping"))
    del values["mode"]
    return values


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
    deleting its other settings.  ``mode`` defaults to ``"norm"`` (the seed's
    ``GradientClipper(max_norm=1.0)``); the config group's default option is
    ``none`` because there it means "no clipping selected".  Every other default
    is the schema's (:mod:`survopt_hydra.schemas.clipping`).

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

    def __init__(
        self,
        *,
        mode: str | None = None,
        adaptive: bool = False,
        enabled: bool = True,
        error_if_nonfinite: bool = False,
        **options: Any,
    ) -> None:
        """``options``: the clipping schemas' fields (``max_norm``, ``norm_type``, ``clip_value``,
        ``clip_factor``, ``eps``, ``exclude``); defaults and range checks live there."""
        if mode is not None and mode not in CLIPPING:
            raise unknown_name("clipping.mode", mode, CLIPPING)
        for key, flag in (("adaptive", adaptive), ("enabled", enabled), ("error_if_nonfinite", error_if_nonfinite)):
            if not isinstance(flag, bool):
                raise ConfigError(f"clipping.{key}", f"must be true or false, got {flag!r}")
        if adaptive and mode not in (None, "adaptive"):
            raise ConfigError("clipping.adaptive", f"true conflicts with mode {mode!r}; allowed with mode adaptive only")
        configured = mode if mode is not None else ("adaptive" if adaptive else "norm")
        if isinstance(options.get("exclude"), str):
            options["exclude"] = [options["exclude"]]
        norm_type = options.get("norm_type")
        max_norm_type = norm_type == math.inf or (isinstance(norm_type, str) and norm_type.strip().lower() in _INF_SPELLINGS)
        if max_norm_type:  # the max norm: allowed, though the schema's number check refuses inf
            del options["norm_type"]
        values = _options(configured, options)
        self.mode: str = configured if enabled else "none"
        self.max_norm: float = values["max_norm"]
        self.norm_type: float = math.inf if max_norm_type else values["norm_type"]
        self.clip_value: float = values["clip_value"]
        self.clip_factor: float = values["clip_factor"]
        self.eps: float = values["eps"]
        self.exclude: tuple[str, ...] = tuple(values["exclude"])
        self.error_if_nonfinite = error_if_nonfinite
        self._plans = PlanCache()
        self._mask_key: tuple[str, ...] | None = None
        self._mask: list[bool] = []

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "GradientClipper":
        """Build from a config mapping (e.g. the seed's ``gradient_clipping`` block); an
        unknown key such as ``max_nrom`` is refused naming it, with a did-you-mean."""
        return cls(**{str(k): v for k, v in dict(cfg or {}).items()})

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
            if not any(self._mask) and self._mask_key is None:
                warnings.warn(
                    f"clipping.exclude patterns {list(self.exclude)} match no parameter name",
                    stacklevel=3,
                )
            self._mask_key = key
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
                return total_norm(grads, self.norm_type, self.error_if_nonfinite)
            if self.mode == "value":
                total = total_norm(grads, self.norm_type, self.error_if_nonfinite)
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
                raise ConfigError(
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
            pre_total = total_norm(grads, self.norm_type, self.error_if_nonfinite)
        agc_total = adaptive_clip(
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
        ex_total = total_norm([p.grad for p in excluded], 2.0, False)  # type: ignore[misc]
        if not any(p.grad is not None for p in tensors):
            return ex_total
        return combine_norms([agc_total, ex_total])
