"""Breslow's baseline cumulative hazard: from a Cox model's risk scores to survival curves S(t | x).

H0(t) = sum over distinct times u <= t of d(u) / sum_{j: t_j >= u} exp(risk_j), with d(u)
the events at u; then S(t | x) = exp(-H0(t) exp(risk(x))), a right-continuous step
function in t. This is lifelines' ``CoxPHFitter.baseline_cumulative_hazard_`` and pycox's
``compute_baseline_hazards`` (the tests compare with lifelines). Risks are shifted by
their maximum before ``exp`` so large scores cannot overflow; the shift is stored and
cancels exactly in S.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .timedep import step_at


@dataclass
class BreslowBaseline:
    """Distinct training times, the cumulative baseline hazard at each (for risks minus ``shift``)."""

    times: Tensor  # float64, sorted
    cumhaz: Tensor  # float64
    shift: float

    @classmethod
    def fit(cls, risk: Tensor | np.ndarray, durations: Tensor | np.ndarray, events: Tensor | np.ndarray
            ) -> "BreslowBaseline":
        r = torch.as_tensor(risk).detach().cpu().double().reshape(-1)
        t = torch.as_tensor(durations).detach().cpu().double().reshape(-1)
        e = torch.as_tensor(events).detach().cpu().double().reshape(-1)
        if not bool(torch.isfinite(r).all()):
            raise ValueError("BreslowBaseline.fit: risk scores must be finite")
        shift = float(r.max())
        times, inverse = torch.unique(t, sorted=True, return_inverse=True)
        weight = torch.zeros_like(times).index_add_(0, inverse, torch.exp(r - shift))
        dead = torch.zeros_like(times).index_add_(0, inverse, e)
        at_risk = torch.flip(torch.cumsum(torch.flip(weight, [0]), 0), [0])  # sum over t_j >= u
        return cls(times, torch.cumsum(dead / at_risk, 0), shift)

    def cumulative_hazard(self, risk: Tensor | np.ndarray, times: Tensor | np.ndarray | list[float]) -> Tensor:
        """(n, len(times)) H(t | x) = H0(t) exp(risk); H0 is 0 before the first training time."""
        at = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
        h0 = torch.where(at < self.times[0], torch.zeros_like(at), step_at(self.times, self.cumhaz, at))
        r = torch.as_tensor(risk).detach().cpu().double().reshape(-1, 1)
        return h0[None, :] * torch.exp(r - self.shift)

    def survival(self, risk: Tensor | np.ndarray, times: Tensor | np.ndarray | list[float]) -> Tensor:
        """(n, len(times)) S(t | x) = exp(-H(t | x))."""
        return torch.exp(-self.cumulative_hazard(risk, times))

    def to_dict(self) -> dict[str, Any]:
        return {"times": self.times.tolist(), "cumhaz": self.cumhaz.tolist(), "shift": self.shift}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BreslowBaseline":
        times = torch.tensor(data["times"], dtype=torch.float64)
        cumhaz = torch.tensor(data["cumhaz"], dtype=torch.float64)
        if times.dim() != 1 or times.shape != cumhaz.shape or times.numel() == 0 or \
                bool((times[1:] <= times[:-1]).any()) or not bool(torch.isfinite(cumhaz).all()):
            raise ValueError("baseline: times must increase and match cumhaz in length, all finite")
        return cls(times, cumhaz, float(data["shift"]))
