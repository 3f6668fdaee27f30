"""The time grid of the discrete-time families: cut points, the label transform, interpolation.

Conventions follow Kvamme & Borgan, "Continuous and discrete-time survival prediction with
neural networks", Lifetime Data Analysis 27 (2021) 710-736 (arXiv:1910.06724), Sec. 4 and
pycox's ``LabTransDiscreteTime``:

* **Cuts** tau_0 = 0 < tau_1 < ... < tau_{m-1}; the network gives one output per cut.
  ``equidistant``: ``linspace(0, max duration, m)``. ``quantiles``: equidistant levels of
  the training Kaplan-Meier curve, s_k = linspace(min KM, 1, m); cut_k is the largest
  training duration with KM >= s_k (so the grid is dense where events are frequent);
  repeated cuts are dropped, so there can be fewer than ``n_cuts``.
* **Labels**: an event at t goes to the first cut >= t (events in (tau_{j-1}, tau_j] belong
  to index j); a censoring at t to the last cut <= t (the row is known to be alive through
  that cut; a censoring exactly at a cut keeps that cut). Rows past the last cut are
  censored at it (administrative censoring: validation/test rows may outlive the grid).
* **S(t) between cuts** (Kvamme & Borgan Sec. 4.2): ``step`` (right-continuous, the value
  at the last cut <= t), ``const_pdf`` (constant density in each interval: S linear between
  cuts; pycox ``InterpolateDiscrete`` scheme ``const_pdf``), ``const_hazard`` (constant
  hazard: log S linear between cuts, scheme ``const_hazard``). Before tau_0, S = 1; after
  the last cut S keeps its last value (no extrapolation).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..timedep import kaplan_meier

SCHEMES = ("quantiles", "equidistant")
INTERPOLATIONS = ("const_pdf", "const_hazard", "step")


def make_cuts(durations: Tensor, events: Tensor, n_cuts: int, scheme: str) -> Tensor:
    """float64 cut points from the training rows (``events`` > 0 counts as an event of any cause)."""
    t = torch.as_tensor(durations, dtype=torch.float64).reshape(-1)
    if scheme == "equidistant":
        if float(t.max()) <= 0:
            raise ValueError("make_cuts: every duration is 0; no grid to build")
        return torch.linspace(0.0, float(t.max()), n_cuts, dtype=torch.float64)
    if scheme != "quantiles":
        raise ValueError(f"make_cuts: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    km_t, km_s = kaplan_meier(t, torch.as_tensor(events).reshape(-1) > 0)
    km_t = km_t.clone()
    km_t[0] = 0.0  # the leading (-inf, 1) point: the grid starts at time 0
    levels = torch.linspace(float(km_s.min()), 1.0, n_cuts, dtype=torch.float64)
    last = torch.searchsorted(-km_s, -levels, right=True) - 1  # last point with KM >= level
    cuts = torch.unique(km_t[last])
    cuts[0] = 0.0
    cuts = torch.unique(cuts)
    if cuts.numel() < 2:
        raise ValueError("make_cuts: the durations give fewer than 2 distinct cut points")
    return cuts


def discretize(cuts: Tensor, durations: Tensor, events: Tensor) -> tuple[Tensor, Tensor]:
    """(grid index int64, event code int64): events to the first cut >= t, censorings to the last cut <= t."""
    t = durations.to(torch.float64)
    beyond = t > cuts[-1]
    t = torch.where(beyond, cuts[-1], t)
    e = torch.where(beyond, torch.zeros_like(events), events)
    up = torch.searchsorted(cuts, t, right=False)
    down = torch.searchsorted(cuts, t, right=True) - 1
    return torch.where(e > 0, up, down).to(torch.int64), e.to(torch.int64)


def interpolate(cuts: Tensor, grid: Tensor, times: Tensor, scheme: str, before: float) -> Tensor:
    """``grid[..., j]`` holds a curve at ``cuts[j]``; its values at ``times`` (last dim) by ``scheme``.

    ``before`` is the value for times < cuts[0] (1 for S, 0 for a CIF)."""
    cuts = cuts.to(grid.device, grid.dtype)
    times = times.to(grid.device, grid.dtype)
    m = cuts.numel()
    j = torch.searchsorted(cuts, times.contiguous(), right=True) - 1  # last cut <= t
    lo = j.clamp(0, m - 1)
    hi = (j + 1).clamp(0, m - 1)
    left, right = grid[..., lo], grid[..., hi]
    width = (cuts[hi] - cuts[lo]).clamp_min(torch.finfo(grid.dtype).tiny)
    frac = torch.where(hi > lo, (times - cuts[lo]) / width, torch.zeros_like(times)).clamp(0.0, 1.0)
    if scheme == "step":
        value = left
    elif scheme == "const_pdf":
        value = left + frac * (right - left)
    elif scheme == "const_hazard":
        tiny = torch.finfo(grid.dtype).tiny
        log_left, log_right = torch.log(left.clamp_min(tiny)), torch.log(right.clamp_min(tiny))
        value = torch.exp(log_left + frac * (log_right - log_left))
    else:
        raise ValueError(f"interpolate: scheme must be one of {', '.join(INTERPOLATIONS)}, got {scheme!r}")
    return torch.where(j < 0, torch.full_like(value, before), value)
