"""Shared part of the grid families (Logistic-Hazard, PMF, DeepHit): config, fit, labels, S(t).

Config: ``n_cuts`` (cut points, the first at time 0), ``scheme`` (``quantiles`` or
``equidistant``, :mod:`.grid`), ``interpolation`` between cuts (``const_pdf``,
``const_hazard``, ``step``). ``fit`` stores the cuts; the network then needs
``len(cuts) * n_risks`` outputs. A subclass only says how outputs become survival (and
CIF) values at the cuts, and what its loss is.
"""
from __future__ import annotations

import abc
import dataclasses

import torch
from torch import Tensor

from .base import ArrayLike, SurvivalFamily, as_labels, times_f64
from .grid import INTERPOLATIONS, SCHEMES, discretize, interpolate, make_cuts


#: Probabilities a featureless start (:meth:`DiscreteTimeFamily.marginal_masses`) is kept away from 0 and 1
#: by, so its logits stay finite (an interval without events starts at a hazard of 1e-6, not 0).
MARGIN = 1e-6


def mass_logits(y: Tensor, after: Tensor) -> Tensor:
    """Logits of the masses ``y`` against the appended logit 0 of "after the last cut" (mass ``after``):
    log y - log after, each probability at least :data:`MARGIN`."""
    return (torch.log(y.clamp_min(MARGIN)) - torch.log(after.clamp_min(MARGIN))).reshape(-1).float()


@dataclasses.dataclass(frozen=True)
class DiscreteTimeFamily(SurvivalFamily):
    n_cuts: int = 20
    scheme: str = "quantiles"
    interpolation: str = "const_pdf"
    cuts: tuple[float, ...] | None = None  # set by fit

    def __post_init__(self) -> None:
        if isinstance(self.n_cuts, bool) or not isinstance(self.n_cuts, int) or self.n_cuts < 2:
            raise ValueError(f"{self.name}.n_cuts: must be an integer >= 2, got {self.n_cuts!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"{self.name}.scheme: must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"{self.name}.interpolation: must be one of {', '.join(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")
        if self.cuts is not None:
            c = torch.tensor(self.cuts, dtype=torch.float64)
            if c.dim() != 1 or c.numel() < 2 or not bool(torch.isfinite(c).all()) or float(c[0]) != 0.0 \
                    or bool((c[1:] <= c[:-1]).any()) or c.numel() > self.n_cuts:
                raise ValueError(f"{self.name}.cuts: must be 2..n_cuts increasing finite numbers starting at 0")
            object.__setattr__(self, "cuts", tuple(float(v) for v in c))

    @property
    def n_grid(self) -> int:
        return len(self._require("cuts"))

    @property
    def n_outputs(self) -> int:
        return self.n_grid * self.n_risks

    def cut_tensor(self) -> Tensor:
        return torch.tensor(self._require("cuts"), dtype=torch.float64)

    def fit(self, durations: ArrayLike, events: ArrayLike) -> "DiscreteTimeFamily":
        t, e = as_labels(durations, events, self.n_risks, self.name)
        return dataclasses.replace(self, cuts=tuple(make_cuts(t, e, self.n_cuts, self.scheme).tolist()))

    def transform(self, durations: ArrayLike, events: ArrayLike) -> dict[str, Tensor]:
        """``idx``: grid index (int64); ``event``: event code after censoring at the last cut (int64)."""
        t, e = as_labels(durations, events, self.n_risks, self.name)
        idx, code = discretize(self.cut_tensor(), t, e)
        return {"idx": idx, "event": code}

    def grid_hazards(self, durations: ArrayLike, events: ArrayLike) -> tuple[Tensor, Tensor]:
        """(d (n_risks, m) events of each cause at each grid index, r (m,) rows at risk there) of the
        discretised labels: a row at index k was at risk at every index up to k (a censoring at k is
        alive through it), so the featureless maximum-likelihood hazard at index j is d_j / r_j, the
        Kaplan-Meier (and per cause Aalen-Johansen) estimate on the grid."""
        target = self.transform(durations, events)
        idx, code = target["idx"], target["event"]
        m = self.n_grid
        r = torch.flip(torch.cumsum(torch.flip(torch.bincount(idx, minlength=m).double(), [0]), 0), [0])
        d = torch.zeros(self.n_risks, m, dtype=torch.float64)
        for k in range(1, self.n_risks + 1):
            d[k - 1] = torch.bincount(idx[code == k], minlength=m).double()
        return d, r

    def marginal_masses(self, durations: ArrayLike, events: ArrayLike) -> tuple[Tensor, Tensor, Tensor]:
        """(hazard h_j (m,), mass of each cause at each index y_kj (n_risks, m), S after the last cut) of
        the featureless fit :meth:`grid_hazards` describes."""
        d, r = self.grid_hazards(durations, events)
        h = torch.where(r > 0, d.sum(0) / r.clamp_min(1), torch.zeros_like(r))
        s = torch.cumprod(1.0 - h, 0)
        before = torch.cat([torch.ones(1, dtype=torch.float64), s[:-1]])
        y = before[None, :] * torch.where(r > 0, d / r.clamp_min(1), torch.zeros_like(d))
        return h, y, s[-1]

    def _check(self, outputs: Tensor) -> Tensor:
        if outputs.dim() != 2 or outputs.shape[1] != self.n_outputs:
            raise ValueError(f"{self.name}: outputs must have shape (n, {self.n_outputs}), got {tuple(outputs.shape)}")
        return outputs

    @abc.abstractmethod
    def grid_survival(self, outputs: Tensor) -> Tensor:
        """(n, m) S(cut_j | x) in float64."""

    def survival(self, outputs: Tensor, times: ArrayLike | list[float]) -> Tensor:
        """(n, len(times)) S(t | x), interpolated between cuts by ``self.interpolation``."""
        grid = self.grid_survival(self._check(outputs).detach().to(torch.float64))
        return interpolate(self.cut_tensor(), grid, times_f64(times, grid.device), self.interpolation, 1.0)
