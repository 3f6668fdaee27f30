"""Parametric accelerated failure time models: Weibull and log-normal, with censored likelihood.

log T = a + b * (mu(x) + sigma(x) * eps): the network gives two outputs per row, the location
mu and a raw log-scale r with log sigma = 5 tanh(r / 5) (smooth, so sigma stays in
[e^-5, e^5] and z never divides by 0); (a, b) are the mean and std of the training rows'
log durations, set by ``fit``, so the network works on a unit scale. With
u = (log t - a) / b and z = (u - mu) / sigma (Kalbfleisch & Prentice, "The Statistical
Analysis of Failure Time Data", 2nd ed. 2002, Sec. 2.2.3-2.2.4 and 3.5):

* **Weibull**: eps is the standard minimum extreme-value (Gumbel) variable,
  log f_eps(z) = z - e^z, log S_eps(z) = -e^z; S(t | x) = exp(-exp(z)).
* **log-normal**: eps ~ N(0, 1), log f_eps(z) = -z^2/2 - log sqrt(2 pi),
  log S_eps(z) = log Phi(-z) (``torch.special.log_ndtr``: stable in both tails).

Loss: the mean over rows of -[d (log f_eps(z) - log sigma) + (1 - d) log S_eps(z)], the
negative log-likelihood of u. It differs from the likelihood of t only by the constant
sum over events of log(b t_i), so the optimum is the same (the tests recover lifelines'
WeibullAFTFitter / LogNormalAFTFitter fits and log-likelihoods from it). Past z = 30 the
Weibull's e^z goes on as its tangent line: there the model gives the row a likelihood below
exp(-1e13) either way, and the loss and gradients stay finite in float32 for outputs up to
~1e23 (the log-normal's z^2 up to ~1e17). Durations must be > 0 (log time).
"""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor

from .base import ArrayLike, SurvivalFamily, as_labels, loss_dtype, no_autocast, times_f64

LOG_SIGMA_CAP = 5.0
_EXP_KNEE = 30.0
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_sigma(raw: Tensor) -> Tensor:
    return LOG_SIGMA_CAP * torch.tanh(raw / LOG_SIGMA_CAP)


def _exp_linear_tail(z: Tensor) -> Tensor:
    """e^z up to z = 30, then its tangent line (finite gradients however large z gets)."""
    knee = torch.exp(z.clamp(max=_EXP_KNEE))
    return torch.where(z > _EXP_KNEE, knee * (1.0 + (z - _EXP_KNEE)), knee)


@dataclasses.dataclass(frozen=True)
class ParametricAFT(SurvivalFamily):
    log_loc: float | None = None  # set by fit: mean of the training rows' log durations
    log_scale: float | None = None  # their std

    def __post_init__(self) -> None:
        for key in ("log_loc", "log_scale"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise ValueError(f"{self.name}.{key}: must be a finite number, got {value!r}")
        if self.log_scale is not None and self.log_scale <= 0:
            raise ValueError(f"{self.name}.log_scale: must be > 0")

    @property
    def n_outputs(self) -> int:
        return 2

    def _labels(self, durations: ArrayLike, events: ArrayLike) -> tuple[Tensor, Tensor]:
        t, e = as_labels(durations, events, 1, self.name)
        if bool((t <= 0).any()):
            raise ValueError(f"{self.name}: durations must be > 0 (the model is on log time)")
        return t, e

    def fit(self, durations: ArrayLike, events: ArrayLike) -> "ParametricAFT":
        log_t = torch.log(self._labels(durations, events)[0])
        scale = float(log_t.std(unbiased=False)) if log_t.numel() > 1 else 0.0
        return dataclasses.replace(self, log_loc=float(log_t.mean()), log_scale=scale if scale > 0 else 1.0)

    def transform(self, durations: ArrayLike, events: ArrayLike) -> dict[str, Tensor]:
        """``u``: standardised log time (float64); ``event``: 0/1 (float32)."""
        t, e = self._labels(durations, events)
        return {"u": (torch.log(t) - self._require("log_loc")) / self._require("log_scale"), "event": e.float()}

    def _z(self, outputs: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        if outputs.dim() != 2 or outputs.shape[1] != 2:
            raise ValueError(f"{self.name}: outputs must have shape (n, 2) (location, log-scale), "
                             f"got {tuple(outputs.shape)}")
        ls = log_sigma(outputs[:, 1])
        return (u - outputs[:, 0]) * torch.exp(-ls), ls

    @abc.abstractmethod
    def log_density(self, z: Tensor) -> Tensor:
        """log f(z) of the standardised error distribution."""

    @abc.abstractmethod
    def log_survival(self, z: Tensor) -> Tensor:
        """log S(z) of the standardised error distribution."""

    def loss(self, outputs: Tensor, target: dict[str, Tensor]) -> Tensor:
        with no_autocast(outputs):
            outputs = outputs.to(loss_dtype(outputs))
            z, ls = self._z(outputs, target["u"].to(outputs.device, outputs.dtype))
            died = target["event"].to(outputs.device).reshape(-1) > 0
            ll = torch.where(died, self.log_density(z) - ls, self.log_survival(z))
            return -ll.mean()

    def survival(self, outputs: Tensor, times: ArrayLike | list[float]) -> Tensor:
        out = outputs.detach().to(torch.float64)
        at = times_f64(times, out.device)
        u = (torch.log(at.clamp_min(0.0)) - self._require("log_loc")) / self._require("log_scale")  # t=0: -inf
        z, _ = self._z(out[:, None, :].expand(-1, at.numel(), -1).reshape(-1, 2), u.repeat(out.shape[0]))
        s = torch.exp(self.log_survival(z)).reshape(out.shape[0], at.numel())
        return torch.where(at[None, :] <= 0, torch.ones_like(s), s)


@dataclasses.dataclass(frozen=True)
class WeibullAFT(ParametricAFT):
    name: ClassVar[str] = "weibull_aft"

    def log_density(self, z: Tensor) -> Tensor:
        return z - _exp_linear_tail(z)

    def log_survival(self, z: Tensor) -> Tensor:
        return -_exp_linear_tail(z)


@dataclasses.dataclass(frozen=True)
class LogNormalAFT(ParametricAFT):
    name: ClassVar[str] = "lognormal_aft"

    def log_density(self, z: Tensor) -> Tensor:
        return -0.5 * z * z - _LOG_SQRT_2PI

    def log_survival(self, z: Tensor) -> Tensor:
        return torch.special.log_ndtr(-z)
