"""Cox loss checked against plain double-loop numpy references and against lifelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival.losses import CoxPHLoss, cox_ph_loss


def reference_breslow(risk, time, event):
    """Textbook Breslow: every event divides by the sum over its whole risk set."""
    total = 0.0
    for i in range(len(time)):
        if event[i]:
            risk_set = sum(np.exp(risk[j]) for j in range(len(time)) if time[j] >= time[i])
            total += risk[i] - np.log(risk_set)
    return -total / event.sum()


def reference_efron(risk, time, event):
    """Textbook Efron: the l-th of d tied events removes l/d of the tied events' hazard."""
    total = 0.0
    for t in np.unique(time[event == 1]):
        tied = [i for i in range(len(time)) if time[i] == t and event[i] == 1]
        risk_set = sum(np.exp(risk[j]) for j in range(len(time)) if time[j] >= t)
        tied_sum = sum(np.exp(risk[i]) for i in tied)
        d = len(tied)
        total += sum(risk[i] for i in tied)
        total -= sum(np.log(risk_set - l / d * tied_sum) for l in range(d))
    return -total / event.sum()


def tied_data(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    risk = rng.normal(0.0, 1.5, n)
    time = rng.integers(1, 6, n).astype(np.float64)  # 5 distinct times -> heavy ties
    event = (rng.random(n) < 0.6).astype(np.float64)
    return risk, time, event


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ties,reference", [("breslow", reference_breslow), ("efron", reference_efron)])
def test_matches_double_loop_reference_with_ties(seed, ties, reference):
    risk, time, event = tied_data(seed)
    expected = reference(risk, time, event)
    got64 = cox_ph_loss(torch.tensor(risk), torch.tensor(time), torch.tensor(event), ties=ties)
    got32 = cox_ph_loss(torch.tensor(risk, dtype=torch.float32), torch.tensor(time), torch.tensor(event), ties=ties)
    assert got64.dtype == torch.float64 and got32.dtype == torch.float32
    assert got64.item() == pytest.approx(expected, abs=1e-10)
    assert got32.item() == pytest.approx(expected, abs=1e-5)


def test_efron_and_breslow_differ_only_with_tied_events():
    risk, _, event = tied_data(5)
    distinct = np.arange(len(risk), dtype=np.float64)
    args = torch.tensor(risk), torch.tensor(distinct), torch.tensor(event)
    breslow = cox_ph_loss(*args, ties="breslow").item()
    assert cox_ph_loss(*args, ties="efron").item() == pytest.approx(breslow, abs=1e-12)
    risk, time, event = tied_data(5)
    args = torch.tensor(risk), torch.tensor(time), torch.tensor(event)
    assert abs(cox_ph_loss(*args, ties="efron").item() - cox_ph_loss(*args, ties="breslow").item()) > 1e-3


def test_efron_fit_matches_lifelines_coefficients():
    pd = pytest.importorskip("pandas")
    lifelines = pytest.importorskip("lifelines")
    rng = np.random.default_rng(7)
    n = 120
    x = rng.normal(size=(n, 2))
    hazard = np.exp(x @ np.array([0.8, -0.5]))
    time = np.ceil(rng.exponential(1.0 / hazard) * 4)  # integer times -> many ties
    event = (rng.random(n) < 0.75).astype(float)
    df = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "T": time, "E": event})
    cph = lifelines.CoxPHFitter(penalizer=0.0).fit(df, "T", "E")  # lifelines uses Efron ties

    beta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    xt, tt, et = torch.tensor(x), torch.tensor(time), torch.tensor(event)
    opt = torch.optim.LBFGS([beta], lr=1.0, max_iter=200, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = cox_ph_loss(xt @ beta, tt, et, ties="efron")
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(beta.detach().numpy(), cph.params_[["x0", "x1"]].to_numpy(), atol=1e-3)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_no_events_gives_zero_that_backpropagates(ties):
    risk = torch.randn(8, requires_grad=True)
    loss = cox_ph_loss(risk, torch.arange(8.0), torch.zeros(8), ties=ties)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(risk.grad, torch.zeros(8))


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_gradient_is_correct_and_finite(ties):
    risk, time, event = tied_data(11, n=15)
    r = torch.tensor(risk, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: cox_ph_loss(v, torch.tensor(time), torch.tensor(event), ties=ties), (r,))


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_half_precision_and_autocast_compute_in_float32(half, ties):
    risk, time, event = tied_data(3)
    r_half = torch.tensor(risk, dtype=half)
    expected = reference_breslow if ties == "breslow" else reference_efron
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = cox_ph_loss(r_half, torch.tensor(time, dtype=half), torch.tensor(event, dtype=half), ties=ties)
    assert loss.dtype == torch.float32
    # Exact against the reference evaluated on the already-rounded half inputs.
    assert loss.item() == pytest.approx(expected(r_half.double().numpy(), time, event), abs=1e-5)


def test_autocast_linear_output_gives_float32_loss():
    layer = torch.nn.Linear(3, 1)
    x = torch.randn(32, 3)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        risk = layer(x)
        assert risk.dtype == torch.bfloat16
        loss = cox_ph_loss(risk, torch.rand(32), torch.ones(32), ties="efron")
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_invariant_to_row_permutation_and_risk_shift(ties):
    risk, time, event = tied_data(4)
    base = cox_ph_loss(torch.tensor(risk), torch.tensor(time), torch.tensor(event), ties=ties).item()
    perm = np.random.default_rng(0).permutation(len(risk))
    permuted = cox_ph_loss(torch.tensor(risk[perm]), torch.tensor(time[perm]), torch.tensor(event[perm]), ties=ties)
    assert permuted.item() == pytest.approx(base, abs=1e-12)
    # Stable for huge logits: a naive exp() would overflow at 800.
    shifted = cox_ph_loss(torch.tensor(risk + 800.0), torch.tensor(time), torch.tensor(event), ties=ties)
    assert shifted.item() == pytest.approx(base, abs=1e-9)


def test_column_risk_and_module_wrapper():
    risk, time, event = tied_data(2)
    r = torch.tensor(risk).unsqueeze(1)
    module = CoxPHLoss(ties="efron")
    assert module.ties == "efron"
    expected = reference_efron(risk, time, event)
    assert module(r, torch.tensor(time), torch.tensor(event)).item() == pytest.approx(expected, abs=1e-10)


def test_bad_arguments_are_refused():
    r, t, e = torch.zeros(4), torch.arange(4.0), torch.ones(4)
    with pytest.raises(ValueError, match="allowed: breslow, efron"):
        cox_ph_loss(r, t, e, ties="exact")
    with pytest.raises(ValueError, match="allowed: breslow, efron"):
        CoxPHLoss(ties="peto")
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, 1\)"):
        cox_ph_loss(torch.zeros(4, 2), t, e)
    with pytest.raises(ValueError, match="durations and events"):
        cox_ph_loss(r, torch.arange(3.0), e)
