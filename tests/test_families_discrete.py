"""Logistic-Hazard and PMF: the grid, the label transform, both losses and S(t) between cuts.

References: a hand-computed six-row example (ties, an event and a censoring exactly at a
cut, rows between cuts and past the last cut), plain-Python loops written from the
likelihoods, and pycox (``nll_logistic_hazard``, ``nll_pmf``, ``LabTransDiscreteTime``,
its interpolation) when it is installed.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from survopt_hydra.survival.families import PMF, LogisticHazard, make_family
from survopt_hydra.survival.families.grid import discretize, interpolate, make_cuts
from survopt_hydra.survival.families.logistic_hazard import logistic_hazard_nll
from survopt_hydra.survival.families.pmf import pmf_nll

CUTS = [0.0, 1.0, 2.0, 4.0]
# A: event between cuts; B: event at a cut; C: censored at a cut; D: censored between cuts;
# E: event past the last cut (censored there); F: event tied with A.
DURATIONS = [1.5, 2.0, 2.0, 1.5, 5.0, 1.5]
EVENTS = [1, 1, 0, 0, 1, 1]


def fitted(cls, **kw):
    return cls(n_cuts=4, cuts=tuple(CUTS), **kw)


def test_labels_of_the_hand_example():
    idx, code = discretize(torch.tensor(CUTS, dtype=torch.float64), torch.tensor(DURATIONS, dtype=torch.float64),
                           torch.tensor(EVENTS))
    assert idx.tolist() == [2, 2, 2, 1, 3, 2]
    assert code.tolist() == [1, 1, 0, 0, 0, 1]
    target = fitted(LogisticHazard).transform(DURATIONS, EVENTS)
    assert target["idx"].tolist() == [2, 2, 2, 1, 3, 2] and target["event"].tolist() == [1, 1, 0, 0, 0, 1]


def test_logistic_hazard_loss_by_hand():
    h = [0.1, 0.2, 0.4, 0.25]
    phi = torch.tensor([[math.log(p / (1 - p)) for p in h]] * 6, dtype=torch.float64)
    alive2 = 0.9 * 0.8  # survived intervals 0 and 1
    likelihood = [alive2 * 0.4, alive2 * 0.4, alive2 * 0.6, alive2, alive2 * 0.6 * 0.75, alive2 * 0.4]
    expected = -np.mean(np.log(likelihood))
    family = fitted(LogisticHazard)
    got = family.loss(phi, family.transform(DURATIONS, EVENTS))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    # S at the cuts is the product of (1 - h)
    assert family.grid_survival(phi[:1]).flatten().tolist() == pytest.approx([0.9, 0.72, 0.432, 0.324], rel=1e-12)


def test_pmf_loss_by_hand():
    pmf, beyond = [0.1, 0.2, 0.3, 0.1], 0.3
    phi = torch.tensor([[math.log(p / beyond) for p in pmf]] * 6, dtype=torch.float64)
    likelihood = [0.3, 0.3, 0.1 + beyond, 0.3 + 0.1 + beyond, beyond, 0.3]
    family = fitted(PMF)
    got = family.loss(phi, family.transform(DURATIONS, EVENTS))
    assert float(got) == pytest.approx(-np.mean(np.log(likelihood)), rel=1e-12)
    assert family.grid_survival(phi[:1]).flatten().tolist() == pytest.approx([0.9, 0.7, 0.4, 0.3], rel=1e-12)


def loop_logistic_hazard(phi, idx, event):
    total = 0.0
    for i in range(len(idx)):
        ll = 0.0
        for j in range(idx[i]):
            ll += math.log(1 - 1 / (1 + math.exp(-phi[i][j])))
        h = 1 / (1 + math.exp(-phi[i][idx[i]]))
        ll += math.log(h) if event[i] else math.log(1 - h)
        total += ll
    return -total / len(idx)


def loop_pmf(phi, idx, event):
    total = 0.0
    for i in range(len(idx)):
        expo = [math.exp(v) for v in phi[i]] + [1.0]
        z = sum(expo)
        total += math.log(expo[idx[i]] / z) if event[i] else math.log(sum(expo[idx[i] + 1:]) / z)
    return -total / len(idx)


def random_case(seed, n=40, m=7):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(n, m, generator=g, dtype=torch.float64) * 2
    idx = torch.randint(0, m, (n,), generator=g)
    event = (torch.rand(n, generator=g) < 0.6).long()
    return phi, idx, event


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_losses_match_plain_loops(seed):
    phi, idx, event = random_case(seed)
    args = (phi.tolist(), idx.tolist(), event.tolist())
    assert float(logistic_hazard_nll(phi, idx, event)) == pytest.approx(loop_logistic_hazard(*args), rel=1e-10)
    assert float(pmf_nll(phi, idx, event)) == pytest.approx(loop_pmf(*args), rel=1e-10)


def test_losses_match_pycox():
    loss = pytest.importorskip("pycox.models.loss")
    for seed in range(3):
        phi, idx, event = random_case(seed)
        assert float(logistic_hazard_nll(phi, idx, event)) == pytest.approx(
            float(loss.nll_logistic_hazard(phi, idx, event.double())), rel=1e-10)
        # pycox adds 1e-7 inside its logs
        assert float(pmf_nll(phi, idx, event)) == pytest.approx(float(loss.nll_pmf(phi, idx, event.double())), rel=1e-6)


@pytest.mark.parametrize("scheme", ["quantiles", "equidistant"])
def test_cuts_and_labels_match_pycox(scheme):
    lt = pytest.importorskip("pycox.preprocessing.label_transforms")
    rng = np.random.default_rng(3)
    t = np.round(rng.exponential(10, 300), 1) + 0.1  # rounded: ties, and rows at cut points
    e = (rng.random(300) < 0.7).astype(np.float64)
    ref = lt.LabTransDiscreteTime(12, scheme=scheme)
    ref_idx, ref_event = ref.fit_transform(t, e)
    family = LogisticHazard(n_cuts=12, scheme=scheme).fit(t, e)
    assert family.cuts == pytest.approx(tuple(ref.cuts), rel=1e-12)
    target = family.transform(t, e)
    assert target["idx"].tolist() == ref_idx.tolist()
    assert target["event"].tolist() == ref_event.tolist()
    # rows the grid never saw (longer follow-up) are censored at the last cut, as in pycox
    t2 = t * 1.5
    ref_idx2, ref_event2 = ref.transform(t2, e)
    target2 = family.transform(t2, e)
    assert target2["idx"].tolist() == ref_idx2.tolist() and target2["event"].tolist() == ref_event2.tolist()


def test_quantile_cuts_follow_the_kaplan_meier_curve():
    """Without censoring KM(k) = 1 - k/101 at t = k: the last time with KM >= 3/4 is 25, and so on."""
    t = torch.arange(1.0, 102.0, dtype=torch.float64)
    assert make_cuts(t, torch.ones(101), 5, "quantiles").tolist() == [0.0, 25.0, 50.0, 75.0, 101.0]
    assert make_cuts(t, torch.ones(101), 5, "equidistant").tolist() == [0.0, 25.25, 50.5, 75.75, 101.0]


def test_interpolation_by_hand():
    cuts = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    s = torch.tensor([[1.0, 0.8, 0.2]], dtype=torch.float64)
    at = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 9.0], dtype=torch.float64)
    assert interpolate(cuts, s, at, "step", 1.0).flatten().tolist() == [1.0, 1.0, 1.0, 0.8, 0.8, 0.2, 0.2]
    assert interpolate(cuts, s, at, "const_pdf", 1.0).flatten().tolist() == pytest.approx(
        [1.0, 1.0, 0.9, 0.8, 0.5, 0.2, 0.2], rel=1e-12)
    assert interpolate(cuts, s, at, "const_hazard", 1.0).flatten().tolist() == pytest.approx(
        [1.0, 1.0, math.sqrt(0.8), 0.8, math.sqrt(0.8 * 0.2), 0.2, 0.2], rel=1e-12)


@pytest.mark.parametrize("cls,scheme", [(LogisticHazard, "const_hazard"), (LogisticHazard, "const_pdf"),
                                        (PMF, "const_pdf")])
def test_interpolation_matches_pycox(cls, scheme):
    models = pytest.importorskip("pycox.models")
    from pycox.models.utils import make_subgrid

    torch.manual_seed(0)
    cuts = np.array([0.0, 0.5, 2.0, 3.0, 7.0])
    net = torch.nn.Linear(3, 5).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    ref_cls = models.LogisticHazard if cls is LogisticHazard else models.PMF
    ref = ref_cls(net, duration_index=cuts).interpolate(sub=4, scheme=scheme)
    expected = ref.predict_surv(x.numpy(), numpy=True)
    grid = np.array(make_subgrid(cuts, 4), dtype=np.float64)
    family = cls(n_cuts=5, cuts=tuple(cuts), interpolation=scheme)
    got = family.survival(family.predict(net, x), grid).numpy()
    assert got == pytest.approx(expected, abs=2e-7)  # pycox adds 1e-7 to 1 - h in const_hazard


def test_survival_at_the_cuts_is_the_grid_and_decreases():
    phi, _, _ = random_case(4, n=5, m=4)
    for cls in (LogisticHazard, PMF):
        for scheme in ("step", "const_pdf", "const_hazard"):
            family = fitted(cls, interpolation=scheme)
            at_cuts = family.survival(phi, CUTS)
            assert torch.allclose(at_cuts, family.grid_survival(phi), rtol=1e-12)
            dense = family.survival(phi, torch.linspace(0, 6, 200))
            assert bool((dense[:, 1:] <= dense[:, :-1] + 1e-15).all())


@pytest.mark.parametrize("cls", [LogisticHazard, PMF])
def test_extreme_logits_give_finite_loss_and_gradient(cls):
    family = fitted(cls)
    target = family.transform(DURATIONS, EVENTS)
    for scale in (1e2, 1e4, 1e30):
        for dtype in (torch.float32, torch.bfloat16):
            phi = (torch.tensor([[1.0, -1.0, 1.0, -1.0]] * 6) * scale).to(dtype).requires_grad_(True)
            loss = family.loss(phi, target)
            loss.backward()
            assert loss.dtype == torch.float32
            assert bool(torch.isfinite(loss)) and bool(torch.isfinite(phi.grad).all())


@pytest.mark.parametrize("name", ["logistic_hazard", "pmf"])
def test_loss_needs_no_host_sync(name):
    """On the meta device any .item()/bool()/float() of a tensor raises: the loss must not need one."""
    family = make_family(name, n_cuts=4, cuts=tuple(CUTS))
    target = {k: v.to("meta") for k, v in family.transform(DURATIONS, EVENTS).items()}
    loss = family.loss(torch.empty(6, 4, device="meta"), target)
    assert loss.device.type == "meta" and loss.shape == ()


def test_bad_options_and_outputs_are_one_line_errors():
    with pytest.raises(ValueError, match="n_cuts"):
        LogisticHazard(n_cuts=1)
    with pytest.raises(ValueError, match="scheme"):
        PMF(scheme="log")
    with pytest.raises(ValueError, match="interpolation"):
        PMF(interpolation="spline")
    with pytest.raises(ValueError, match="call fit"):
        PMF().transform(DURATIONS, EVENTS)
    with pytest.raises(ValueError, match="events must be 0"):
        fitted(PMF).transform(DURATIONS, [0, 1, 2, 0, 1, 1])
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        fitted(PMF).loss(torch.zeros(6, 3), fitted(PMF).transform(DURATIONS, EVENTS))
