"""Logistic-Hazard: a discrete hazard per grid interval (nnet-survival; Kvamme & Borgan's LogisticHazard).

Gensheimer & Narasimhan, "A scalable discrete-time survival model for neural networks",
PeerJ 7:e6257 (2019); Kvamme & Borgan, Lifetime Data Analysis 27 (2021), Sec. 3.2.

The network gives one logit phi_j per cut; the discrete hazard is
h_j(x) = P(T = tau_j | T > tau_{j-1}, x) = sigmoid(phi_j), so S(tau_j | x) = prod_{l <= j} (1 - h_l).
A row with grid index k and event indicator d has likelihood h_k^d (1 - h_k)^(1-d) prod_{l<k} (1 - h_l),
i.e. a sum of binary cross-entropies up to its own interval:

    -log L = sum_{l<k} softplus(phi_l) + d softplus(-phi_k) + (1-d) softplus(phi_k)

(log(1 - sigmoid(phi)) = -softplus(phi), log sigmoid(phi) = -softplus(-phi): stable for any logit).
The loss is the mean over rows (pycox's ``nll_logistic_hazard``).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import loss_dtype, no_autocast
from .discrete import MARGIN, DiscreteTimeFamily


def logistic_hazard_nll(phi: Tensor, idx: Tensor, event: Tensor) -> Tensor:
    """Mean negative log-likelihood; ``phi`` (n, m) logits, ``idx`` (n,) grid index, ``event`` (n,) 0/1."""
    with no_autocast(phi):
        phi = phi.to(loss_dtype(phi))
        grid = torch.arange(phi.shape[1], device=phi.device)
        idx = idx.to(phi.device).reshape(-1, 1)
        survived = (grid[None, :] < idx).to(phi.dtype)
        at = (grid[None, :] == idx).to(phi.dtype)
        died = (event.to(phi.device).reshape(-1, 1) > 0)
        last = torch.where(died, F.softplus(-phi), F.softplus(phi))
        return ((F.softplus(phi) * survived + last * at).sum(1)).mean()


@dataclasses.dataclass(frozen=True)
class LogisticHazard(DiscreteTimeFamily):
    name: ClassVar[str] = "logistic_hazard"

    def loss(self, outputs: Tensor, target: dict[str, Tensor]) -> Tensor:
        return logistic_hazard_nll(self._check(outputs), target["idx"], target["event"])

    def grid_survival(self, outputs: Tensor) -> Tensor:
        return torch.exp(-torch.cumsum(F.softplus(outputs), 1))

    def marginal_outputs(self, durations, events) -> Tensor:
        """logit(d_j / r_j), the grid's Kaplan-Meier hazards (clamped to a hazard in [1e-6, 1 - 1e-6])."""
        h = self.marginal_masses(durations, events)[0].clamp(MARGIN, 1 - MARGIN)
        return torch.logit(h).float()
