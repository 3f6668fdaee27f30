"""The one interface every survival family implements, so a trainer needs no special cases.

A family is a small immutable dataclass. Its life cycle, in the order a trainer calls it:

1. ``family = family.fit(durations, events)``: learn what the labels need from the
   *training* rows only (a time grid, a time scale). Returns a fitted copy.
2. ``family.n_outputs`` (and ``family.time_input``: the network gets one more input column,
   the time) sizes the network's last layer.
3. ``target = family.transform(durations, events)``: a dict of per-row tensors (first
   dimension n), so a batch is ``select(target, idx)``.
4. per batch: ``outputs = family.forward(net, x, target)`` (``net(x)`` except for Cox-Time,
   which samples controls), then ``family.loss(outputs, target)``: a scalar, float32 or
   float64, autocast off, no host sync.
5. ``family = family.fit_baseline(net, x, durations, events)`` after training (Cox-Time's
   Breslow-type baseline; the others return themselves). Call ``net.eval()`` first.
6. ``out = family.predict(net, x)`` (no grad), then ``family.survival(out, times)`` ->
   (n, len(times)) S(t | x), or ``family.cif(out, times)`` -> (n, n_risks, len(times)).
7. ``family.to_dict()`` / ``family_from_dict(d)`` (in ``families/__init__``) for a predictor
   file: plain numbers and lists only, checked on the way in.

Event codes: 0 = censored, 1..K = cause. Single-risk families accept 0/1 only.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def select(target: dict[str, Tensor], idx: Tensor | slice) -> dict[str, Tensor]:
    """The rows ``idx`` of every entry of a target."""
    return {k: v[idx] for k, v in target.items()}


def as_labels(durations: ArrayLike, events: ArrayLike, n_risks: int = 1, who: str = "family"
              ) -> tuple[Tensor, Tensor]:
    """(float64 durations, int64 event codes) on the CPU, checked once per data set (not per batch)."""
    t = torch.as_tensor(durations).detach().cpu().to(torch.float64).reshape(-1)
    e_raw = torch.as_tensor(events).detach().cpu().reshape(-1)
    if t.shape != e_raw.shape:
        raise ValueError(f"{who}: durations and events differ in length ({t.numel()} vs {e_raw.numel()})")
    if t.numel() == 0:
        raise ValueError(f"{who}: no rows")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{who}: durations must be finite and >= 0")
    e = e_raw.to(torch.float64)
    if not bool(torch.isfinite(e).all()) or bool((e != e.round()).any()) or bool((e < 0).any()) \
            or bool((e > n_risks).any()):
        allowed = "0 (censored) or 1 (event)" if n_risks == 1 else f"0 (censored) or a cause 1..{n_risks}"
        raise ValueError(f"{who}: events must be {allowed}")
    return t, e.to(torch.int64)


def loss_dtype(outputs: Tensor) -> torch.dtype:
    """Losses run in float32 (float64 for float64 outputs): half precision loses the log-sums."""
    return torch.float64 if outputs.dtype == torch.float64 else torch.float32


def no_autocast(t: Tensor) -> contextlib.AbstractContextManager[Any]:
    """Autocast off on ``t``'s device (meta tensors, which the tests use to prove a loss never syncs, have none)."""
    return contextlib.nullcontext() if t.device.type == "meta" else torch.autocast(t.device.type, enabled=False)


def event_mean(per_row: Tensor, weight: Tensor) -> Tensor:
    """sum(weight * per_row) / sum(weight); 0 (still in the graph) when the weights sum to 0, with no host sync."""
    total = weight.sum()
    return torch.where(total > 0, (per_row * weight).sum() / total.clamp_min(1), per_row.sum() * 0.0)


@dataclasses.dataclass(frozen=True)
class SurvivalFamily(abc.ABC):
    """Base class: the defaults are those of a family whose network maps x -> outputs directly."""

    name: ClassVar[str] = ""
    time_input: ClassVar[bool] = False  # Cox-Time: the network's last input column is the (scaled) time

    @property
    def n_risks(self) -> int:
        return 1

    @property
    @abc.abstractmethod
    def n_outputs(self) -> int:
        """Outputs the network gives per row."""

    def fit(self, durations: ArrayLike, events: ArrayLike) -> "SurvivalFamily":
        as_labels(durations, events, self.n_risks, self.name)
        return self

    @abc.abstractmethod
    def transform(self, durations: ArrayLike, events: ArrayLike) -> dict[str, Tensor]:
        """The loss's targets of these labels (tensors, one row per label)."""

    def forward(self, net: torch.nn.Module, x: Tensor, target: dict[str, Tensor]) -> Any:
        return net(x)

    @abc.abstractmethod
    def loss(self, outputs: Any, target: dict[str, Tensor]) -> Tensor:
        """The batch's mean negative log-likelihood (fp32), from :meth:`forward`'s outputs and the targets."""

    def fit_baseline(self, net: torch.nn.Module, x: Tensor, durations: ArrayLike, events: ArrayLike
                     ) -> "SurvivalFamily":
        return self

    def marginal_outputs(self, durations: ArrayLike, events: ArrayLike) -> Tensor | None:
        """(n_outputs,) float32 outputs that give every row the training rows' own curve (the loss's
        featureless optimum), for a network's output bias to start from; None where 0 already starts
        near it (the AFT families on their standardised log time) or a constant means nothing (Cox-Time)."""
        return None

    def predict(self, net: torch.nn.Module, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = net(x)
        return out.reshape(out.shape[0], -1)

    @abc.abstractmethod
    def survival(self, outputs: Tensor, times: ArrayLike) -> Tensor:
        """(n, len(times)) S(t | x) in float64."""

    def cif(self, outputs: Tensor, times: ArrayLike) -> Tensor:
        """(n, n_risks, len(times)); for one risk CIF = 1 - S."""
        return (1.0 - self.survival(outputs, times)).unsqueeze(1)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"family": self.name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def _require(self, field: str) -> Any:
        value = getattr(self, field)
        if value is None:
            raise ValueError(f"{self.name}: call fit(durations, events) on the training rows first")
        return value


def times_f64(times: ArrayLike | list[float], device: torch.device) -> Tensor:
    t = torch.as_tensor(times, dtype=torch.float64).reshape(-1).to(device)
    if bool(torch.isnan(t).any()):
        raise ValueError("survival: times contain NaN")
    return t
