"""Cox-Time: the case-control loss, the control sampler, the Breslow-type baseline and S(t | x).

References: hand-computed values, plain-Python loops, the Cox-PH Breslow baseline
(:class:`BreslowBaseline`, itself checked against lifelines) for a network that ignores
time, and pycox's ``cox_cc_loss`` / ``CoxTime`` when pycox is installed.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from survopt_hydra.survival import BreslowBaseline
from survopt_hydra.survival.families import CoxTime, family_from_dict
from survopt_hydra.survival.families.cox_time import cox_time_loss, sample_controls


def test_loss_by_hand():
    case = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    control = torch.tensor([[1.0, 0.0], [3.0, -2.0], [0.0, 0.0], [5.0, 5.0]], dtype=torch.float64)
    valid = torch.tensor([True, True, False, True])  # row 2: nobody else at risk
    event = torch.tensor([1.0, 1.0, 1.0, 0.0])  # row 3: censored
    rows = [math.log(1 + math.exp(0.5) + math.exp(-0.5)), math.log(1 + math.exp(4.0) + math.exp(-1.0))]
    assert float(cox_time_loss(case, control, valid, event)) == pytest.approx(sum(rows) / 2, rel=1e-12)
    no_event = cox_time_loss(case.requires_grad_(True), control, valid, torch.zeros(4))
    no_event.backward()
    assert float(no_event.detach()) == 0.0 and bool(torch.isfinite(case.grad).all())


def test_loss_matches_pycox_cox_cc_loss():
    loss = pytest.importorskip("pycox.models.loss")
    g = torch.Generator().manual_seed(0)
    case, control = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, 3, generator=g,
                                                                                   dtype=torch.float64)
    ours = cox_time_loss(case, control, torch.ones(50, dtype=torch.bool), torch.ones(50))
    ref = loss.cox_cc_loss(case[:, None], tuple(control[:, k : k + 1] for k in range(3)))
    assert float(ours) == pytest.approx(float(ref), rel=1e-12)


def test_controls_come_from_the_risk_set_uniformly():
    time = torch.tensor([5.0, 3.0, 3.0, 8.0, 1.0, 3.0, 9.0])
    control, valid = sample_controls(time, 20000, torch.Generator().manual_seed(1))
    assert valid.tolist() == [True] * 6 + [False]  # the latest time has nobody else at risk
    for i in range(7):
        risk_set = [j for j in range(7) if j != i and time[j] >= time[i]]
        if not risk_set:
            assert bool((control[i] == i).all())
            continue
        counts = torch.bincount(control[i], minlength=7)
        assert set(torch.nonzero(counts).flatten().tolist()) == set(risk_set)  # ties in, self out
        p = 1 / len(risk_set)
        sd = math.sqrt(p * (1 - p) / 20000)
        assert (counts[risk_set].double() / 20000 - p).abs().max() <= 5 * sd


class TimeAsOutput(torch.nn.Module):
    """g(t, x) = t + 0 * x . w: reveals which time each row was evaluated at."""

    def __init__(self, features):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(features))
        self.calls = 0

    def forward(self, z):
        self.calls += 1
        return z[:, -1] + z[:, :-1] @ self.w


def test_forward_evaluates_cases_and_controls_at_the_case_time_in_one_call():
    family = CoxTime(n_control=3).fit([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 1])
    target = family.transform([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 1])
    net = TimeAsOutput(2)
    out = family.forward(net, torch.zeros(4, 2), target)
    assert net.calls == 1
    assert torch.equal(out.case, target["time"]) and torch.equal(out.control, target["time"][:, None].expand(4, 3))
    assert out.valid.tolist() == [True, True, True, False]


def loop_baseline(g, durations, events):
    """Plain loop: at each distinct event time t_j, d_j / sum_{k at risk} exp(g(t_j, x_k))."""
    times = sorted({d for d, e in zip(durations, events) if e})
    hazards = []
    for j, t in enumerate(times):
        d = sum(1 for dd, e in zip(durations, events) if e and dd == t)
        hazards.append(d / sum(math.exp(g(t, k)) for k in range(len(durations)) if durations[k] >= t))
    return times, hazards


def cohort(seed, n=60):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    durations = np.round(rng.exponential(5.0, n), 0) + 1.0  # ties
    events = (rng.random(n) < 0.7).astype(np.int64)
    return x, durations, events


def test_baseline_and_survival_match_plain_loops():
    x, durations, events = cohort(0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    family = CoxTime().fit(durations, events)
    xt = torch.tensor(x, dtype=torch.float64)

    def g(t, k):
        z = torch.cat([xt[k], family.scale_time(torch.tensor([t], dtype=torch.float64))])
        return float(net(z[None]).detach())

    family = family.fit_baseline(net, xt, durations, events)
    times, hazards = loop_baseline(g, durations.tolist(), events.tolist())
    assert list(family.base_times) == times
    assert np.exp(family.base_log_hazard) == pytest.approx(hazards, rel=1e-10)
    at = [0.5, times[0], 4.5, times[-1] + 3]
    surv = family.survival(family.predict(net, xt[:5]), at)
    for r in range(5):
        for c, t in enumerate(at):
            cumhaz = sum(h * math.exp(g(tj, r)) for tj, h in zip(times, hazards) if tj <= t)
            assert float(surv[r, c]) == pytest.approx(math.exp(-cumhaz), rel=1e-10)


def test_baseline_on_a_time_grid_matches_a_plain_loop_with_g_read_at_the_nearest_grid_time():
    """max_times: g(t_j, x) is read at the grid time nearest t_j on the scaled axis; d_j, the risk sets
    and the steps stay those of every event time."""
    x, durations, events = cohort(4, n=80)
    durations = durations + np.random.default_rng(4).uniform(0, 0.5, 80)  # many distinct event times
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    family = CoxTime(log_time=True).fit(durations, events)
    xt = torch.tensor(x, dtype=torch.float64)
    exact = family.fit_baseline(net, xt, durations, events)
    grid = family.fit_baseline(net, xt, durations, events, max_times=7)
    times = sorted({d for d, e in zip(durations, events) if e})
    assert len(times) > 7 and grid.bin_times is not None and len(grid.bin_times) == 7
    assert grid.bin_times[0] == times[0] and grid.bin_times[-1] == times[-1] and set(grid.bin_times) <= set(times)
    assert grid.base_times == exact.base_times and exact.bin_times is None

    def scaled(t):
        return (math.log1p(t) - family.time_loc) / family.time_scale

    def nearest(t):  # the first of the closest grid times on the network's time axis
        return min(grid.bin_times, key=lambda b: (abs(scaled(b) - scaled(t)), b))

    def g(t, k):
        z = torch.cat([xt[k], family.scale_time(torch.tensor([nearest(t)], dtype=torch.float64))])
        return float(net(z[None]).detach())

    ref_times, hazards = loop_baseline(g, durations.tolist(), events.tolist())
    assert list(grid.base_times) == ref_times
    assert np.exp(grid.base_log_hazard) == pytest.approx(hazards, rel=1e-10)
    outputs = grid.predict(net, xt[:4])
    assert outputs.shape == (4, 7)
    at = [0.5, times[3], float(np.median(times)), times[-1] + 1]
    surv = grid.survival(outputs, at)
    for r in range(4):
        for c, t in enumerate(at):
            cumhaz = sum(h * math.exp(g(tj, r)) for tj, h in zip(ref_times, hazards) if tj <= t)
            assert float(surv[r, c]) == pytest.approx(math.exp(-cumhaz), rel=1e-10)
    assert family_from_dict(grid.to_dict()) == grid
    # a smooth network's curves move little; one that ignores time gets the exact baseline
    assert float((grid.survival(outputs, at) - exact.survival(exact.predict(net, xt[:4]), at)).abs().max()) < 0.05
    linear = torch.nn.Linear(3, 1).double()
    flat = lambda z: linear(z[:, :-1])  # noqa: E731
    a = family.fit_baseline(flat, xt, durations, events)
    b = family.fit_baseline(flat, xt, durations, events, max_times=5)
    assert torch.allclose(torch.tensor(a.base_log_hazard), torch.tensor(b.base_log_hazard), rtol=1e-12)
    assert torch.allclose(a.survival(a.predict(flat, xt), at), b.survival(b.predict(flat, xt), at), rtol=1e-10)


def test_a_time_grid_bounds_the_network_rows_at_rows_times_grid():
    x, durations, events = cohort(5, n=50)
    durations = durations + np.random.default_rng(5).uniform(0, 0.5, 50)
    family = CoxTime().fit(durations, events)
    net = TimeAsOutput(3)
    rows = []
    counting = lambda z: (rows.append(z.shape[0]), net(z))[1]  # noqa: E731
    n_times = len({d for d, e in zip(durations, events) if e})
    family.fit_baseline(counting, torch.zeros(50, 3), durations, events)
    assert sum(rows) == 50 * n_times
    rows.clear()
    fitted = family.fit_baseline(counting, torch.zeros(50, 3), durations, events, max_times=6)
    assert sum(rows) == 50 * 6
    rows.clear()
    fitted.predict(counting, torch.zeros(9, 3))
    assert sum(rows) == 9 * 6
    with pytest.raises(ValueError, match="max_times"):
        family.fit_baseline(counting, torch.zeros(50, 3), durations, events, max_times=0)
    with pytest.raises(ValueError, match="bin_times"):
        family_from_dict({**fitted.to_dict(), "bin_times": list(fitted.bin_times)[::-1]})
    with pytest.raises(ValueError, match="outputs must be"):
        fitted.survival(torch.zeros(2, n_times), [1.0])


def test_a_network_that_ignores_time_gives_the_cox_breslow_curves():
    x, durations, events = cohort(1)
    torch.manual_seed(1)
    linear = torch.nn.Linear(3, 1).double()
    net = lambda z: linear(z[:, :-1])  # noqa: E731 - drops the time column
    xt = torch.tensor(x, dtype=torch.float64)
    family = CoxTime(log_time=True).fit(durations, events).fit_baseline(net, xt, durations, events)
    risk = linear(xt).detach().flatten()
    ref = BreslowBaseline.fit(risk, durations, events)
    at = np.linspace(0, durations.max() + 1, 25)
    assert torch.allclose(family.survival(family.predict(net, xt), at), ref.survival(risk, at), rtol=1e-10)


def test_baseline_and_survival_match_pycox():
    models = pytest.importorskip("pycox.models")
    x, durations, events = cohort(2)
    # pycox's baseline wants rows sorted by time, and its risk set of an event time starts at the first
    # *event* row with that time: events first within ties, so rows censored at that time stay at risk
    order = np.lexsort((-events, durations))
    x, durations, events = x[order], durations[order].astype(np.float32), events[order]
    labtrans = models.CoxTime.label_transform()
    scaled, _ = labtrans.fit_transform(durations, events.astype(np.float32))
    torch.manual_seed(2)
    body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    class Net(torch.nn.Module):  # pycox calls net(x, t)
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x, t):
            return self.body(torch.cat([x, t], 1))

    ref = models.CoxTime(Net(), labtrans=labtrans)
    ref.compute_baseline_hazards(x, (scaled, events.astype(np.float32)))
    expected = ref.predict_surv_df(x[:7])  # index: the event times

    family = CoxTime().fit(durations, events)
    assert family.transform(durations, events)["time"].numpy() == pytest.approx(scaled, abs=1e-6)
    xt = torch.tensor(x)
    family = family.fit_baseline(body, xt, durations, events)
    got = family.survival(family.predict(body, xt[:7]), expected.index.values.astype(np.float64))
    assert got.T.numpy() == pytest.approx(expected.values, rel=2e-5)  # pycox evaluates in float32


def test_extreme_outputs_give_finite_loss_and_gradient():
    for scale in (1e2, 1e4, 1e30):
        case = (torch.tensor([1.0, -1.0, 1.0]) * scale).requires_grad_(True)
        control = (torch.tensor([[-1.0], [1.0], [1.0]]) * scale).requires_grad_(True)
        loss = cox_time_loss(case, control, torch.tensor([True, True, False]), torch.ones(3))
        loss.backward()
        assert bool(torch.isfinite(loss)) and bool(torch.isfinite(case.grad).all())
        assert bool(torch.isfinite(control.grad).all())


def test_sampling_and_loss_need_no_host_sync():
    family = CoxTime(n_control=2).fit([1.0, 2.0, 3.0], [1, 1, 0])
    target = {k: v.to("meta") for k, v in family.transform([1.0, 2.0, 3.0], [1, 1, 0]).items()}
    net = torch.nn.Linear(3, 1).to("meta")
    out = family.forward(net, torch.empty(3, 2, device="meta"), target)
    assert family.loss(out, target).shape == ()


def test_options_are_checked_and_round_trip():
    with pytest.raises(ValueError, match="n_control"):
        CoxTime(n_control=0)
    with pytest.raises(ValueError, match="call fit"):
        CoxTime().transform([1.0], [1])
    with pytest.raises(ValueError, match="no event"):
        CoxTime().fit([1.0, 2.0], [0, 0]).fit_baseline(torch.nn.Linear(2, 1), torch.zeros(2, 1), [1.0, 2.0], [0, 0])
    x, durations, events = cohort(3)
    net = torch.nn.Linear(4, 1)
    fitted = CoxTime(n_control=2).fit(durations, events).fit_baseline(net, torch.tensor(x), durations, events)
    assert family_from_dict(fitted.to_dict()) == fitted
    with pytest.raises(ValueError, match="base_times"):
        family_from_dict({**fitted.to_dict(), "base_times": fitted.to_dict()["base_times"][::-1]})
