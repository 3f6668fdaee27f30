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
implementation, so :func:`adaptive_clip_grad_` implements it, vectorised:
parameters are bucketed once (the plan is cached), whole-tensor units go through
``torch._foreach_norm``, small same-shaped tensors are stacked so one kernel
computes all their unit norms, and the clip factors of *all* units are computed
as one vector and applied with a single ``torch._foreach_mul_``.

Non-finite gradients are never repaired here: they propagate into the returned
norm (``inf``/``nan``) so the caller (e.g. a grad scaler or a skip-step policy)
can see them.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor, nn

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

# Same-shaped tensors are stacked, in chunks of at most this many elements, so one
# kernel computes all their unit norms.  Bigger stacks cost more (copy traffic and,
# on CPU, fresh page-faulting allocations) than the launches they save, measured
# on a 2-core CPU; big tensors are reduced where they are, one launch each.
_STACK_MAX_NUMEL = 1 << 14
# 1-D tensors up to this size are concatenated for one segmented reduction;
# bigger ones are better reduced where they are than copied.
_CAT_MAX_NUMEL = 1 << 16

# Floor of a unit's gradient norm in the clip factor, as in the NFNets reference
# code: avoids 0/0 for all-zero gradient units (their factor is irrelevant).
_GRAD_NORM_FLOOR = 1e-6


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


def _combine_norms(norms: Sequence[Tensor], norm_type: float = 2.0) -> Tensor:
    """Norm of partial norms (the total norm of the union of their tensors)."""
    if len(norms) == 1:
        return norms[0]
    dev = norms[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(dev) for n in norms]), norm_type)


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
# adaptive gradient clipping
# --------------------------------------------------------------------------- #


class _Bucket:
    """Precomputed AGC layout for the parameters sharing one (device, dtype).

    Unit norms are produced by a few *parts*, each a handful of kernels for many
    parameters, and concatenated into one vector so the clip factors of all
    units are computed together.  Parts are ordered by parameter rank so the
    factor vector can be cut back into per-parameter broadcastable views
    (``()``, ``(1,)`` or ``(units, 1, ..., 1)``) with one ``split`` per rank
    instead of one ``view`` per parameter.  Part kinds:

    * ``"cat"`` (CPU, float32/64): small 1-D tensors (biases, norm gains; one
      unit each) are concatenated and reduced with one ``segment_reduce`` -
      ~3x faster than ``_foreach_norm``, which loops over the tensors on CPU.
    * ``"foreach"``: remaining whole-tensor units (0-D, large or low-precision
      1-D; every 1-D tensor on accelerators) via ``torch._foreach_norm``.
    * ``"stack"``: small same-shaped tensors, stacked so one reduction computes
      all their unit norms (chunks of at most ``_STACK_MAX_NUMEL`` elements).
    * ``"single"``: the rest - big enough that a kernel launch each is noise
      next to its memory traffic, while stacking them would copy them.
    """

    __slots__ = ("params", "parts", "order", "rank_sizes", "rank_views", "lengths")

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        by_rank: dict[int, list[int]] = {}
        for i, p in enumerate(params):
            by_rank.setdefault(p.ndim, []).append(i)
        # The cat/segment_reduce route is a CPU optimisation (foreach kernels are a
        # per-tensor loop there; on accelerators ``_foreach_norm`` is one fused
        # kernel).  Low-precision dtypes keep per-tensor reductions.
        p0, g0 = params[0], params[0].grad
        assert g0 is not None
        cat_ok = p0.device.type == "cpu" and {p0.dtype, g0.dtype} <= {torch.float32, torch.float64}
        self.parts: list[tuple[str, list[int], tuple[int, ...]]] = []
        self.order: list[int] = []
        self.rank_sizes: list[int] = []  # number of units per rank, in rank order
        # per rank: (view shape of the rank's factor segment, split sizes or None=unbind)
        self.rank_views: list[tuple[tuple[int, ...], list[int] | None]] = []
        self.lengths: Tensor | None = None
        for rank in sorted(by_rank):
            positions = by_rank[rank]
            if rank <= 1:
                small = [
                    i for i in positions if rank == 1 and cat_ok and params[i].numel() <= _CAT_MAX_NUMEL
                ]
                if len(small) < 2:
                    small = []
                picked = set(small)
                other = [i for i in positions if i not in picked]
                if small:
                    self.parts.append(("cat", small, ()))
                    self.lengths = torch.tensor(
                        [params[i].numel() for i in small], device=params[0].device
                    )
                if other:
                    self.parts.append(("foreach", other, ()))
                ordered = small + other
                self.rank_sizes.append(len(ordered))
                # 0-D grads need 0-D factors (unbind); 1-D grads take (1,) slices
                self.rank_views.append(((-1,), None if rank == 0 else [1] * len(ordered)))
            else:
                by_shape: dict[tuple[int, ...], list[int]] = {}
                for i in positions:
                    by_shape.setdefault(tuple(params[i].shape), []).append(i)
                ordered = []
                singles: list[int] = []
                for shape, same in by_shape.items():
                    chunk = max(1, _STACK_MAX_NUMEL // max(1, math.prod(shape)))
                    for k in range(0, len(same), chunk):
                        group = same[k : k + chunk]
                        if len(group) > 1:
                            self.parts.append(("stack", group, tuple(range(2, rank + 1))))
                            ordered.extend(group)
                        else:
                            singles.extend(group)
                dims = tuple(range(1, rank))
                self.parts.extend(("single", [i], dims) for i in singles)
                ordered.extend(singles)
                self.rank_sizes.append(sum(params[i].shape[0] for i in ordered))
                self.rank_views.append(((-1,) + (1,) * (rank - 1), [params[i].shape[0] for i in ordered]))
            self.order.extend(ordered)

    def _norms(self, tensors: list[Tensor]) -> Tensor:
        """Unit norms of ``tensors`` (indexed like ``params``) in ``order``."""
        out: list[Tensor] = []
        for kind, pos, dims in self.parts:
            if kind == "single":
                out.append(torch.linalg.vector_norm(tensors[pos[0]], dim=dims))
            elif kind == "stack":
                stacked = torch.stack([tensors[i] for i in pos])
                out.append(torch.linalg.vector_norm(stacked, dim=dims).flatten())
            elif kind == "cat":
                flat = torch.cat([tensors[i] for i in pos]).square_()
                out.append(torch.segment_reduce(flat, "sum", lengths=self.lengths).sqrt_())
            else:
                out.append(torch.stack(torch._foreach_norm([tensors[i] for i in pos])))
        return torch.cat(out) if len(out) > 1 else out[0]

    def prepare(self, clip_factor: float, eps: float) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Compute unit norms and clip factors; return (grads, factors, total L2 norm)."""
        params = self.params
        grads: list[Tensor] = [p.grad for p in params]  # type: ignore[misc]
        w_norm = self._norms(params)  # type: ignore[arg-type]
        g_norm = self._norms(grads)
        total = torch.linalg.vector_norm(g_norm)
        # factor = min(1, clip_factor * max(|W|, eps) / max(|G|, 1e-6)); equal to
        # "scale only where |G| > max_norm" for every finite input and one
        # kernel cheaper than a torch.where.  Non-finite |G| yields a non-finite
        # factor, so bad gradients stay bad instead of being silently rescaled.
        # (w_norm is a fresh tensor - cat/stack/reduction output - so the
        # in-place ops touch nothing the caller owns.)
        factor = w_norm.clamp_min_(eps).mul_(clip_factor).div_(g_norm.clamp_min(_GRAD_NORM_FLOOR))
        factor = factor.clamp_max_(1.0)
        segments = factor.split(self.rank_sizes) if len(self.rank_sizes) > 1 else (factor,)
        views: list[Tensor] = []
        for seg, (shape, sizes) in zip(segments, self.rank_views):
            seg = seg.view(shape)
            views.extend(seg.unbind(0) if sizes is None else seg.split(sizes))
        return [grads[i] for i in self.order], views, total


class _Plan:
    """All buckets for one parameter list, plus what is needed to check it is still valid."""

    __slots__ = ("refs", "signature", "buckets", "__weakref__")

    def __init__(self, params: list[Tensor], signature: tuple[Any, ...]) -> None:
        # weak references: a cached plan must not keep a discarded model alive
        self.refs = [weakref.ref(p) for p in params]
        self.signature = signature
        by_key: dict[tuple[Any, ...], list[Tensor]] = {}
        for p in params:
            g = p.grad
            assert g is not None
            if g.is_sparse:
                raise TypeError("adaptive gradient clipping does not support sparse gradients")
            by_key.setdefault((g.device, g.dtype, p.dtype), []).append(p)
        self.buckets = [_Bucket(ps) for ps in by_key.values()]

    def matches(self, params: list[Tensor], signature: tuple[Any, ...]) -> bool:
        return signature == self.signature and all(r() is p for r, p in zip(self.refs, params))


def _signature(params: list[Tensor]) -> tuple[Any, ...]:
    # ids alone could be reused after a parameter is freed, and ``p.data = ...``
    # can change a shape/dtype/device; both invalidate a plan.
    return tuple((id(p), p.shape, p.dtype, p.device) for p in params)


class _PlanCache:
    """Tiny LRU of AGC plans keyed by the identity/layout of the parameter list."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._plans: dict[tuple[Any, ...], _Plan] = {}

    def get(self, params: list[Tensor]) -> _Plan:
        sig = _signature(params)
        plan = self._plans.get(sig)
        if plan is not None and plan.matches(params, sig):
            return plan
        plan = _Plan(params, sig)
        self._plans.pop(sig, None)
        self._plans[sig] = plan
        while len(self._plans) > self.size:
            self._plans.pop(next(iter(self._plans)))
        return plan


_DEFAULT_PLAN_CACHE = _PlanCache()


@torch.no_grad()
def _adaptive_clip(
    params: list[Tensor],
    clip_factor: float,
    eps: float,
    *,
    error_if_nonfinite: bool = False,
    cache: _PlanCache | None = None,
) -> Tensor:
    # dict.fromkeys: drop repeated (shared) parameters, which would be clipped twice
    params = [p for p in dict.fromkeys(params) if p.grad is not None and p.numel() > 0]
    if not params:
        return torch.tensor(0.0)
    plan = (cache or _DEFAULT_PLAN_CACHE).get(params)
    prepared = [b.prepare(clip_factor, eps) for b in plan.buckets]
    total = _combine_norms([t for _, _, t in prepared])
    if error_if_nonfinite and not bool(torch.isfinite(total)):  # explicit opt-in host sync
        raise RuntimeError(
            "The total gradient norm is non-finite, so the gradients cannot be clipped "
            "(clipping.error_if_nonfinite=true)"
        )
    for grads, factors, _ in prepared:
        torch._foreach_mul_(grads, factors)
    return total


def adaptive_clip_grad_(
    parameters: Tensor | Iterable[Tensor],
    clip_factor: float,
    eps: float = 1e-3,
) -> Tensor:
    """Unit-wise adaptive gradient clipping (AGC, Brock et al. 2021), in place.

    For every parameter ``W`` with gradient ``G`` and every unit (a slice along
    dim 0 for ``ndim > 1``; the whole tensor for 0-D/1-D parameters such as
    biases and norm gains)::

        max_norm = clip_factor * max(||W_unit||, eps)
        if ||G_unit|| > max_norm:  G_unit *= max_norm / max(||G_unit||, 1e-6)

    Why unit-wise: it bounds each output unit's relative update size, which is
    what keeps normaliser-free networks stable at large batch sizes, without a
    single large layer dictating the clip for all others as a global norm does.

    The computation is vectorised (see the module docstring); the bucketing plan
    is cached per parameter list so repeated calls only pay for the kernels.

    Returns the pre-clip total L2 norm of all gradients as a tensor (no host
    sync).  Non-finite gradients are not repaired; they make that norm
    non-finite.
    """
    _check_positive("clip_factor", clip_factor)
    _check_positive("eps", eps)
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return _adaptive_clip(params, float(clip_factor), float(eps))


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
