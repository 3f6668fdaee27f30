"""Cox partial-likelihood losses.

The loss is the negative Cox partial log-likelihood divided by the number of
events, so its scale does not depend on the batch size and learning rates tuned
on one batch size transfer to another.

It is always evaluated in float32 (float64 when the inputs are float64), with
autocast disabled: the risk-set sums are log-sum-exps over up to the whole
batch, which overflow or lose all precision in float16/bfloat16.

Both tie corrections are vectorized: rows are sorted once by duration
(descending), so every risk set is a prefix and ``torch.logcumsumexp`` gives
all of them in one pass; tied times are handled as contiguous groups found
with ``torch.unique_consecutive``.
"""

from __future__ import annotations

import torch
from torch import Tensor

TIES = ("breslow", "efron")


def _flatten(risk: Tensor, durations: Tensor, events: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if risk.dim() == 2 and risk.shape[1] == 1:
        risk = risk.squeeze(1)
    if risk.dim() != 1:
        raise ValueError(f"cox_ph_loss: risk must have shape (n,) or (n, 1), got {tuple(risk.shape)}")
    n = risk.shape[0]
    if durations.shape != (n,) or events.shape != (n,):
        raise ValueError(
            f"cox_ph_loss: durations and events must have shape ({n},), "
            f"got {tuple(durations.shape)} and {tuple(events.shape)}"
        )
    dtype = torch.float64 if risk.dtype == torch.float64 else torch.float32
    return risk.to(dtype), durations.to(risk.device, dtype), events.to(risk.device, dtype)


def _segment_logsumexp(values: Tensor, group: Tensor, n_groups: int) -> Tensor:
    """log(sum(exp(values))) per group.

    Groups whose values are all -inf give 0 instead of -inf: callers mask them
    out, and a finite placeholder keeps NaN out of the backward pass.
    """
    neg_inf = torch.full((n_groups,), float("-inf"), dtype=values.dtype, device=values.device)
    gmax = neg_inf.scatter_reduce(0, group, values, reduce="amax", include_self=True)
    safe_max = torch.where(torch.isfinite(gmax), gmax, torch.zeros_like(gmax)).detach()
    sums = torch.zeros_like(gmax).index_add(0, group, torch.exp(values - safe_max[group]))
    return torch.log(torch.where(sums > 0, sums, torch.ones_like(sums))) + safe_max


def cox_ph_loss(risk: Tensor, durations: Tensor, events: Tensor, ties: str = "breslow") -> Tensor:
    """Negative Cox partial log-likelihood averaged over events.

    Args:
        risk: predicted log-hazard, shape (n,) or (n, 1).
        durations: observed times, shape (n,).
        events: 1 for an observed event, 0 for censored, shape (n,).
        ties: "breslow" (cheap, biased towards 0 with many ties) or "efron"
            (the default of lifelines/R survival; more accurate with ties).

    Returns a scalar; a batch without events gives a zero that still belongs
    to the autograd graph, so ``backward()`` works in every batch.
    """
    if ties not in TIES:
        raise ValueError(f"cox_ph_loss: unknown ties {ties!r}; allowed: {', '.join(TIES)}")
    with torch.autocast(device_type=risk.device.type, enabled=False):
        risk, durations, events = _flatten(risk, durations, events)
        n_events = events.sum()
        order = torch.sort(durations, descending=True, stable=True).indices
        risk, durations, events = risk[order], durations[order], events[order]
        # Group rows with equal time; the risk set of a group is every row up to its last one.
        _, group, counts = torch.unique_consecutive(durations, return_inverse=True, return_counts=True)
        ends = torch.cumsum(counts, 0) - 1
        log_risk_set = torch.logcumsumexp(risk, 0)[ends][group]  # log R(t_i) per row
        if ties == "breslow":
            log_denominator = log_risk_set
        else:
            # Efron: the l-th of d tied events (l = 0..d-1) sees R - (l/d) * S,
            # S = sum of exp(risk) over the tied events.
            n_groups = counts.shape[0]
            is_event = events > 0
            event_risk = torch.where(is_event, risk, torch.full_like(risk, float("-inf")))
            log_tied = _segment_logsumexp(event_risk, group, n_groups)[group]
            d = torch.zeros(n_groups, dtype=risk.dtype, device=risk.device).index_add(0, group, events)[group]
            before = torch.cumsum(events, 0) - events  # events strictly before each row
            starts = ends - counts + 1
            rank = before - before[starts][group]  # l: 0..d-1 among the group's events
            frac = torch.where(is_event, rank / d.clamp_min(1), torch.zeros_like(rank))
            ratio = torch.exp(torch.where(is_event, log_tied - log_risk_set, torch.zeros_like(risk)))
            log_denominator = log_risk_set + torch.log1p(-frac * ratio)
        log_lik = ((risk - log_denominator) * events).sum()
        # No host sync on the event count: a batch without events gives 0 * risk.sum().
        return torch.where(n_events > 0, -log_lik / n_events.clamp_min(1), risk.sum() * 0.0)


class CoxPHLoss(torch.nn.Module):
    """Module form of :func:`cox_ph_loss`, so the tie method can come from config."""

    def __init__(self, ties: str = "breslow") -> None:
        super().__init__()
        if ties not in TIES:
            raise ValueError(f"CoxPHLoss: unknown ties {ties!r}; allowed: {', '.join(TIES)}")
        self.ties = ties

    def forward(self, risk: Tensor, durations: Tensor, events: Tensor) -> Tensor:
        return cox_ph_loss(risk, durations, events, ties=self.ties)

    def extra_repr(self) -> str:
        return f"ties={self.ties!r}"
