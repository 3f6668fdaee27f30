"""PMF: a probability mass per grid point (Kvamme & Borgan's PMF; the likelihood DeepHit builds on).

Kvamme & Borgan, Lifetime Data Analysis 27 (2021), Sec. 3.1. The network gives logits
phi_0..phi_{m-1}; a fixed logit 0 is appended for "after the last cut" (so mass need not
end on the grid), and f_j(x) = softmax([phi, 0])_j = P(T = tau_j | x). Then
S(tau_j | x) = sum_{l > j} f_l (the appended class included). A row with grid index k and
event indicator d has likelihood f_k^d S(tau_k)^(1-d):

    -log L = logsumexp(phi, 0) - [d phi_k + (1-d) logsumexp_{l > k}(phi, 0)]

computed with masked log-sum-exps (never log of a difference). Mean over rows (pycox's
``nll_pmf``, which adds epsilon=1e-7 inside its logs; this one does not need it).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from .base import loss_dtype, no_autocast
from .discrete import DiscreteTimeFamily, mass_logits


def padded_log_softmax_tail(phi: Tensor) -> tuple[Tensor, Tensor]:
    """(log f of [phi, 0] (n, m+1), log S at each cut (n, m)) with S_j = sum_{l > j} f_l."""
    padded = torch.cat([phi, torch.zeros_like(phi[:, :1])], 1)
    log_f = padded - torch.logsumexp(padded, 1, keepdim=True)
    tail = torch.flip(torch.logcumsumexp(torch.flip(log_f, [1]), 1), [1])  # log sum_{l >= j}
    return log_f, tail[:, 1:]


def pmf_nll(phi: Tensor, idx: Tensor, event: Tensor) -> Tensor:
    """Mean negative log-likelihood; ``phi`` (n, m) logits, ``idx`` (n,) grid index, ``event`` (n,) 0/1."""
    with no_autocast(phi):
        phi = phi.to(loss_dtype(phi))
        log_f, log_s = padded_log_softmax_tail(phi)
        idx = idx.to(phi.device).reshape(-1, 1)
        died = event.to(phi.device).reshape(-1) > 0
        ll = torch.where(died, log_f.gather(1, idx).squeeze(1), log_s.gather(1, idx).squeeze(1))
        return -ll.mean()


@dataclasses.dataclass(frozen=True)
class PMF(DiscreteTimeFamily):
    name: ClassVar[str] = "pmf"

    def loss(self, outputs: Tensor, target: dict[str, Tensor]) -> Tensor:
        return pmf_nll(self._check(outputs), target["idx"], target["event"])

    def grid_survival(self, outputs: Tensor) -> Tensor:
        return torch.exp(padded_log_softmax_tail(outputs)[1])

    def marginal_outputs(self, durations, events) -> Tensor:
        """log(f_j / S_last): the grid's Kaplan-Meier masses against the appended class."""
        _, y, after = self.marginal_masses(durations, events)
        return mass_logits(y[0], after)
