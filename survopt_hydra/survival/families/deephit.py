"""DeepHit: a joint PMF over (cause, grid time), likelihood plus ranking loss (Lee et al. 2018).

Lee, Zame, Yoon & van der Schaar, "DeepHit: a deep learning approach to survival analysis
with competing risks", AAAI 2018. With K causes the network gives K*m logits, read as
(K, m); as in Kvamme & Borgan's version (pycox ``DeepHit``/``DeepHitSingle``) one logit 0
is appended for "no event on the grid", so y_{k,j}(x) = softmax([phi, 0])_{k,j} and the
CIF is F_k(tau_j | x) = sum_{l <= j} y_{k,l}; S(tau_j | x) = 1 - sum_k F_k(tau_j | x).

* L1 (the paper's log-likelihood): an event of cause k at grid index s gives -log y_{k,s};
  a censoring at s gives -log(1 - sum_k F_k(tau_s)) = -log(mass at grid index > s, any
  cause, plus the appended class). Masked log-sum-exps; mean over rows. For K = 1 this is
  exactly the PMF loss.
* L2 (the paper's ranking loss): sum_k sum_{i,j} A_{k,i,j} exp(-(F_k(s_i|x_i) - F_k(s_i|x_j)) / sigma),
  A_{k,i,j} = 1 when i had cause k at s_i and j outlived s_i: s_i < s_j, or s_i = s_j and j
  censored (a censoring at a cut means alive through it; pycox's ``pair_rank_mat``). It is
  divided by n^2 (pycox's normalisation) so its size does not grow with the batch. Each term
  is at most exp(1 / sigma), so sigma >= 0.02 keeps it finite in float32.
* loss = L1 + alpha * L2 (the paper's weighting; pycox's ``alpha'`` in
  alpha' L1 + (1 - alpha') L2 is the same loss times alpha' with alpha = (1 - alpha') / alpha').

The paper's L2 uses one alpha_k per cause; here one ``alpha`` serves every cause.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from .base import ArrayLike, loss_dtype, no_autocast, times_f64
from .discrete import DiscreteTimeFamily, mass_logits
from .grid import interpolate


def joint_log_pmf(phi: Tensor, n_risks: int) -> tuple[Tensor, Tensor]:
    """(log y (n, K, m), log S at each cut (n, m)) from (n, K*m) logits and the appended 0 logit."""
    n = phi.shape[0]
    padded = torch.cat([phi, torch.zeros_like(phi[:, :1])], 1)
    log_y = padded - torch.logsumexp(padded, 1, keepdim=True)
    cause = log_y[:, :-1].reshape(n, n_risks, -1)
    # log S_j = log(sum over causes of mass at grid index > j, plus the appended class)
    per_time = torch.logsumexp(cause, 1)  # (n, m): any cause at tau_j
    tail = torch.flip(torch.logcumsumexp(torch.flip(per_time, [1]), 1), [1])  # sum over l >= j
    after = torch.cat([tail[:, 1:], torch.full_like(tail[:, :1], float("-inf"))], 1)
    log_s = torch.logaddexp(after, log_y[:, -1:].expand_as(after))
    return cause, log_s


def deephit_loss(phi: Tensor, idx: Tensor, event: Tensor, n_risks: int, alpha: float, sigma: float) -> Tensor:
    """L1 + alpha * L2 (module docstring); ``event`` holds codes 0..K, ``idx`` grid indices."""
    with no_autocast(phi):
        phi = phi.to(loss_dtype(phi))
        n = phi.shape[0]
        log_y, log_s = joint_log_pmf(phi, n_risks)
        idx = idx.to(phi.device).reshape(-1)
        code = event.to(phi.device).reshape(-1).long()
        rows = torch.arange(n, device=phi.device)
        cause = (code - 1).clamp_min(0)
        ll = torch.where(code > 0, log_y[rows, cause, idx], log_s[rows, idx])
        l1 = -ll.mean()
        if alpha == 0:
            return l1
        cif = torch.cumsum(torch.exp(log_y), 2)  # (n, K, m)
        later = (idx[None, :] > idx[:, None]) | ((idx[None, :] == idx[:, None]) & (code[None, :] == 0))
        l2 = phi.new_zeros(())
        for k in range(n_risks):
            f_at = cif[:, k, :][:, idx]  # f_at[j, i] = F_k(s_i | x_j)
            own = f_at[rows, rows]  # F_k(s_i | x_i)
            pair = later & (code == k + 1)[:, None]  # A_{k,i,j}, rows i
            eta = torch.exp(-(own[:, None] - f_at.T) / sigma)  # <= exp(1 / sigma): finite for sigma >= 0.02
            l2 = l2 + torch.where(pair, eta, torch.zeros_like(eta)).sum()
        return l1 + alpha * l2 / (n * n)


@dataclasses.dataclass(frozen=True)
class DeepHit(DiscreteTimeFamily):
    """``risks``: number of causes K (1 = single risk); ``alpha``: ranking-loss weight; ``sigma``: its scale."""

    name: ClassVar[str] = "deephit"
    risks: int = 1
    alpha: float = 1.0
    sigma: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.risks, bool) or not isinstance(self.risks, int) or self.risks < 1:
            raise ValueError(f"deephit.risks: must be an integer >= 1, got {self.risks!r}")
        if not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha < float("inf"):
            raise ValueError(f"deephit.alpha: must be a finite number >= 0, got {self.alpha!r}")
        if not isinstance(self.sigma, (int, float)) or not 0.02 <= self.sigma < float("inf"):
            # each term is at most exp(1 / sigma): sigma >= 0.02 keeps it (and n^2 of them) finite in float32
            raise ValueError(f"deephit.sigma: must be a finite number >= 0.02, got {self.sigma!r}")
        if self.risks > 1 and self.interpolation == "const_hazard":
            raise ValueError("deephit.interpolation: const_hazard needs one risk; use const_pdf or step")
        super().__post_init__()

    @property
    def n_risks(self) -> int:
        return self.risks

    def loss(self, outputs: Tensor, target: dict[str, Tensor]) -> Tensor:
        return deephit_loss(self._check(outputs), target["idx"], target["event"], self.risks,
                            float(self.alpha), float(self.sigma))

    def grid_survival(self, outputs: Tensor) -> Tensor:
        return torch.exp(joint_log_pmf(outputs, self.risks)[1])

    def marginal_outputs(self, durations, events) -> Tensor:
        """log(y_kj / S_last): the grid's Aalen-Johansen masses per cause (cause-major, as the outputs are read)."""
        _, y, after = self.marginal_masses(durations, events)
        return mass_logits(y, after)

    def cif(self, outputs: Tensor, times: ArrayLike | list[float]) -> Tensor:
        """(n, K, len(times)) F_k(t | x); ``const_pdf`` is linear between cuts, ``step`` right-continuous.

        With one risk it is 1 - S (so ``const_hazard`` applies too)."""
        if self.risks == 1:
            return super().cif(outputs, times)
        phi = self._check(outputs).detach().to(torch.float64)
        grid = torch.cumsum(torch.exp(joint_log_pmf(phi, self.risks)[0]), 2)
        scheme = "const_pdf" if self.interpolation == "const_hazard" else self.interpolation
        return interpolate(self.cut_tensor(), grid, times_f64(times, grid.device), scheme, 0.0)
