"""DeepHit: likelihood (L1) and ranking loss (L2), single and competing risks, and its CIFs.

References: hand-computed examples, a plain-Python loop written from Lee et al. (2018), the
PMF loss (DeepHit's L1 with one cause is PMF's likelihood) and pycox's ``DeepHitSingleLoss``
/ ``DeepHitLoss`` (whose alpha' weighs alpha' L1 + (1 - alpha') L2).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from survopt_hydra.survival.families import PMF, DeepHit, family_from_dict
from survopt_hydra.survival.families.deephit import deephit_loss


def logits(rows):
    """(n, K*m) logits from per-row probability tables ([cause 1 pmf, cause 2 pmf, ...], beyond)."""
    return torch.tensor([[math.log(p / beyond) for pmf in table for p in pmf] for table, beyond in rows],
                        dtype=torch.float64)


def family(risks, **kw):
    return DeepHit(n_cuts=3, cuts=(0.0, 1.0, 2.0), risks=risks, **kw)


def test_likelihood_by_hand():
    table = ([[0.05, 0.15, 0.1], [0.05, 0.1, 0.15]], 0.4)
    phi = logits([table] * 4)
    f = family(2, alpha=0.0)
    # cause 1 at t=1 (a cut), cause 2 at t=1.5 (between cuts), censored at t=1 (a cut), censored at t=0.5
    target = f.transform([1.0, 1.5, 1.0, 0.5], [1, 2, 0, 0])
    assert target["idx"].tolist() == [1, 2, 1, 0]
    likelihood = [0.15, 0.15, 0.1 + 0.15 + 0.4, 0.15 + 0.1 + 0.1 + 0.15 + 0.4]
    assert float(f.loss(phi, target)) == pytest.approx(-np.mean(np.log(likelihood)), rel=1e-12)


def test_ranking_loss_by_hand():
    rows = [([[0.1, 0.3, 0.1], [0.1, 0.1, 0.1]], 0.2),  # a: cause 1 at index 1
            ([[0.05, 0.1, 0.2], [0.1, 0.1, 0.1]], 0.35),  # b: censored at index 1: outlived a
            ([[0.2, 0.3, 0.1], [0.1, 0.1, 0.1]], 0.1)]  # c: cause 2 at index 2: nobody outlived c
    phi = logits(rows)
    durations, events = [1.0, 1.0, 2.0], [1, 0, 2]
    nll = -np.mean(np.log([0.3, 0.2 + 0.1 + 0.35, 0.1]))
    # cause-1 pairs (a, b) and (a, c), compared on F_1(tau_1): a 0.4, b 0.15, c 0.5
    rank = (math.exp(-(0.4 - 0.15) / 0.1) + math.exp(-(0.4 - 0.5) / 0.1)) / 9
    for alpha in (0.0, 0.5, 3.0):
        f = family(2, alpha=alpha, sigma=0.1)
        assert float(f.loss(phi, f.transform(durations, events))) == pytest.approx(nll + alpha * rank, rel=1e-12)


def loop_deephit(phi, idx, code, risks, alpha, sigma):
    n, m = len(idx), len(phi[0]) // risks
    y = []
    for row in phi:
        expo = [math.exp(v) for v in row] + [1.0]
        z = sum(expo)
        y.append([[expo[k * m + j] / z for j in range(m)] for k in range(risks)] + [[expo[-1] / z]])
    nll = 0.0
    for i in range(n):
        if code[i]:
            nll -= math.log(y[i][code[i] - 1][idx[i]])
        else:
            cif = sum(y[i][k][j] for k in range(risks) for j in range(idx[i] + 1))
            nll -= math.log(1 - cif)
    rank = 0.0
    for k in range(risks):
        for i in range(n):
            if code[i] != k + 1:
                continue
            f_ii = sum(y[i][k][: idx[i] + 1])
            for j in range(n):
                if idx[i] < idx[j] or (idx[i] == idx[j] and code[j] == 0):
                    rank += math.exp(-(f_ii - sum(y[j][k][: idx[i] + 1])) / sigma)
    return nll / n + alpha * rank / n**2


def random_case(seed, risks, n=30, m=5):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(n, risks * m, generator=g, dtype=torch.float64) * 1.5
    idx = torch.randint(0, m, (n,), generator=g)
    code = torch.randint(0, risks + 1, (n,), generator=g)
    return phi, idx, code


@pytest.mark.parametrize("risks", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_a_plain_loop(risks, seed):
    phi, idx, code = random_case(seed, risks)
    for alpha, sigma in ((0.0, 0.1), (1.0, 0.1), (4.0, 0.5)):
        got = deephit_loss(phi, idx, code, risks, alpha, sigma)
        assert float(got) == pytest.approx(loop_deephit(phi.tolist(), idx.tolist(), code.tolist(), risks, alpha,
                                                        sigma), rel=1e-10)


def test_single_risk_likelihood_is_the_pmf_loss():
    phi, idx, code = random_case(5, 1)
    code = code.clamp(max=1)
    target = {"idx": idx, "event": code}
    pmf = PMF(n_cuts=5, cuts=(0.0, 1.0, 2.0, 3.0, 4.0))
    deephit = DeepHit(n_cuts=5, cuts=(0.0, 1.0, 2.0, 3.0, 4.0), alpha=0.0)
    assert float(deephit.loss(phi, target)) == pytest.approx(float(pmf.loss(phi, target)), rel=1e-12)
    assert torch.allclose(deephit.survival(phi, [0.5, 2.5, 9.0]), pmf.survival(phi, [0.5, 2.5, 9.0]), rtol=1e-12)


@pytest.mark.parametrize("risks", [1, 2])
def test_loss_matches_pycox(risks):
    loss = pytest.importorskip("pycox.models.loss")
    from pycox.models.data import pair_rank_mat

    phi, idx, code = random_case(7, risks)
    phi = phi.float()  # pycox's rank loss builds float32 helpers
    rank_mat = torch.tensor(pair_rank_mat(idx.numpy(), code.numpy()))
    for alpha_pycox, sigma in ((0.2, 0.1), (0.7, 1.0)):
        if risks == 1:
            ref = loss.DeepHitSingleLoss(alpha_pycox, sigma)(phi, idx, code.float(), rank_mat)
        else:
            ref = loss.DeepHitLoss(alpha_pycox, sigma)(phi.reshape(len(idx), risks, -1), idx, code, rank_mat)
        ours = deephit_loss(phi, idx, code, risks, (1 - alpha_pycox) / alpha_pycox, sigma)
        assert float(alpha_pycox * ours) == pytest.approx(float(ref), rel=1e-5)  # float32; pycox adds 1e-7 in logs


def test_cifs_and_survival_add_up_and_match_pycox_at_the_cuts():
    phi, _, _ = random_case(3, 2, n=6, m=3)
    f = family(2, interpolation="step")
    cif = f.cif(phi, [0.0, 1.0, 2.0])
    surv = f.survival(phi, [0.0, 1.0, 2.0])
    assert torch.allclose(cif.sum(1) + surv, torch.ones_like(surv), atol=1e-12)
    probs = torch.softmax(torch.cat([phi, torch.zeros(6, 1, dtype=phi.dtype)], 1), 1)[:, :-1].reshape(6, 2, 3)
    assert torch.allclose(cif, probs.cumsum(2), rtol=1e-12)
    models = pytest.importorskip("pycox.models")

    class Passthrough(torch.nn.Module):  # pycox needs a network with parameters
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x

    net = Passthrough()
    ref = models.DeepHit(net, duration_index=np.array([0.0, 1.0, 2.0])).predict_cif(phi.reshape(6, 2, 3), numpy=True)
    assert cif.permute(1, 2, 0).numpy() == pytest.approx(ref, rel=1e-12)  # pycox: (risks, times, rows)


def test_cif_between_cuts():
    table = ([[0.1, 0.2, 0.3], [0.05, 0.05, 0.1]], 0.2)
    phi = logits([table])
    at = [-1.0, 0.5, 1.0, 1.25, 5.0]
    assert family(2, interpolation="step").cif(phi, at)[0, 0].tolist() == pytest.approx([0, 0.1, 0.3, 0.3, 0.6])
    assert family(2, interpolation="const_pdf").cif(phi, at)[0, 0].tolist() == pytest.approx(
        [0, 0.2, 0.3, 0.375, 0.6])
    with pytest.raises(ValueError, match="const_hazard needs one risk"):
        family(2, interpolation="const_hazard")


def test_extreme_logits_give_finite_loss_and_gradient():
    f = family(2, alpha=2.0, sigma=0.02)
    target = f.transform([1.0, 1.5, 1.0, 0.5, 2.0], [1, 2, 0, 0, 1])
    for scale in (1e2, 1e4, 1e30):
        phi = (torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0, -1.0]] * 5) * scale).requires_grad_(True)
        loss = f.loss(phi, target)
        loss.backward()
        assert bool(torch.isfinite(loss)) and bool(torch.isfinite(phi.grad).all())


def test_loss_needs_no_host_sync():
    f = family(2)
    target = {k: v.to("meta") for k, v in f.transform([1.0, 1.5, 1.0, 0.5], [1, 2, 0, 0]).items()}
    assert f.loss(torch.empty(4, 6, device="meta"), target).shape == ()


def test_options_are_checked_and_round_trip():
    with pytest.raises(ValueError, match="sigma"):
        DeepHit(sigma=0.0)
    with pytest.raises(ValueError, match="alpha"):
        DeepHit(alpha=-1.0)
    with pytest.raises(ValueError, match="risks"):
        DeepHit(risks=0)
    with pytest.raises(ValueError, match=r"cause 1\.\.2"):
        family(2).transform([1.0], [3])
    fitted = DeepHit(risks=2, n_cuts=5, alpha=0.5).fit([1.0, 2.0, 3.0, 4.0, 5.0], [1, 2, 0, 1, 2])
    assert fitted.n_outputs == 2 * len(fitted.cuts)
    assert family_from_dict(fitted.to_dict()) == fitted
