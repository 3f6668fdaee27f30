"""Scheduler semantics: torch-equal trajectories, warmup composition, holding at the end."""
import math

import pytest
import torch
from torch.optim import lr_scheduler as tls

from survopt_hydra import ConfigError, build_optimizer, build_scheduler
from survopt_hydra.schemas import SCHEDULERS


def _opt(lr=0.1):
    return build_optimizer([torch.nn.Parameter(torch.zeros(3))], "sgd", lr=lr, momentum=0.9)


def _trajectory(sched, n, metrics=None):
    lrs = []
    for i in range(n):
        lrs.append(sched.optimizer.param_groups[0]["lr"])
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
    return lrs


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_option_is_a_torch_lr_scheduler(name):
    opt = _opt()
    extra = {"monitor": "val_loss"} if name == "plateau" else {}
    sched = build_scheduler(opt, epochs=20, steps_per_epoch=5, name=name, **extra)
    assert isinstance(sched, tls.LRScheduler)
    metrics = [0.5] * 150 if name == "plateau" else None
    lrs = _trajectory(sched, 150, metrics)  # far past the end: never raises
    assert all(math.isfinite(v) and v >= 0 for v in lrs)
    if name not in ("cosine_warm_restarts", "exponential", "inverse_sqrt"):  # periodic / unbounded by design
        assert lrs[-1] == lrs[-2]  # finite schedules hold their last LR


def test_cosine_equals_torch_and_holds_eta_min():
    opt_a, opt_b = _opt(), _opt()
    ours = build_scheduler(opt_a, epochs=100, name="cosine", eta_min=1e-4)
    ref = tls.CosineAnnealingLR(opt_b, T_max=100, eta_min=1e-4)
    a, b = _trajectory(ours, 101), _trajectory(ref, 101)
    assert a == pytest.approx(b, rel=1e-9)
    assert a[50] == pytest.approx((0.1 + 1e-4) / 2, rel=1e-12)
    tail = _trajectory(ours, 50)
    assert tail == pytest.approx([1e-4] * 50)  # torch's rebounds here


def test_step_interval_converts_epochs_to_steps():
    opt = _opt()
    sched = build_scheduler(opt, epochs=10, steps_per_epoch=7, name="cosine", interval="step", warmup_epochs=2)
    lrs = _trajectory(sched, 70)
    peak = lrs.index(max(lrs))
    assert peak == 14  # 2 warmup epochs x 7 steps
    assert all(x < y for x, y in zip(lrs[:14], lrs[1:15]))
    assert lrs[14] == pytest.approx(0.1)


def test_warm_restarts_equal_torch():
    opt_a, opt_b = _opt(), _opt()
    ours = build_scheduler(opt_a, epochs=100, name="cosine_warm_restarts", T_0=25, T_mult=2, eta_min=1e-7)
    ref = tls.CosineAnnealingWarmRestarts(opt_b, T_0=25, T_mult=2, eta_min=1e-7)
    a, b = _trajectory(ours, 100), _trajectory(ref, 100)
    assert a == pytest.approx(b, rel=1e-12)
    assert a[25] == pytest.approx(0.1) and a[75] == pytest.approx(0.1)


def test_onecycle_equals_torch_then_holds():
    opt_a = _opt()
    opt_b = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1, momentum=0.9)
    ours = build_scheduler(opt_a, epochs=4, steps_per_epoch=25, name="onecycle", max_lr=1.0, pct_start=0.3)
    ref = tls.OneCycleLR(opt_b, max_lr=1.0, total_steps=100, pct_start=0.3)
    a, b = _trajectory(ours, 100), _trajectory(ref, 100)
    assert a == pytest.approx(b, rel=1e-12)
    assert max(a) == pytest.approx(1.0) and a.index(max(a)) == 29
    assert _trajectory(ours, 20) == pytest.approx([a[-1]] * 20)  # torch raises here


def test_warmup_then_plateau():
    opt = _opt()
    sched = build_scheduler(opt, epochs=40, name="plateau", warmup_epochs=3, factor=0.5, patience=2,
                            monitor="val_cindex")  # mode follows the name: max
    lrs = _trajectory(sched, 12, metrics=[0.6] * 12)
    assert lrs[:4] == pytest.approx([0.001, 0.001 + 0.099 / 3, 0.001 + 2 * 0.099 / 3, 0.1])
    # after warmup: first metric sets best, then patience=2 bad epochs, halved on the 3rd
    assert lrs[4:7] == pytest.approx([0.1] * 3)
    assert lrs[7] == pytest.approx(0.05)


@pytest.mark.parametrize("name", ["step", "multistep", "exponential", "cosine"])
def test_warmup_peaks_at_base_then_matches_unwarmed_shape(name):
    """After W warmup epochs the inner schedule starts from its own step 0 at the base LR."""
    opt_w, opt_p = _opt(), _opt()
    opts = {"step": {"step_size": 3, "gamma": 0.5}, "multistep": {"milestones": [2, 5]},
            "exponential": {"gamma": 0.9}, "cosine": {"T_max": 10}}[name]
    warmed = build_scheduler(opt_w, epochs=20, name=name, warmup_epochs=4, **opts)
    plain = build_scheduler(opt_p, epochs=20, name=name, **opts)
    a, b = _trajectory(warmed, 14), _trajectory(plain, 10)
    assert a[4] == pytest.approx(0.1)
    assert a[4:] == pytest.approx(b, rel=1e-12)


def test_linear_warmup_then_constant():
    sched = build_scheduler(_opt(), epochs=10, name="linear_warmup", warmup_epochs=4, warmup_start_factor=0.25)
    assert _trajectory(sched, 8) == pytest.approx([0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1, 0.1, 0.1])


def test_onecycle_keeps_group_lr_multipliers():
    model = torch.nn.Sequential()
    model.add_module("backbone", torch.nn.Linear(2, 2, bias=False))
    model.add_module("head", torch.nn.Linear(2, 1, bias=False))
    opt = build_optimizer(model, "adamw", lr=1e-3, lr_mult={"backbone.*": 0.1})
    sched = build_scheduler(opt, epochs=1, steps_per_epoch=10, name="onecycle", max_lr=1e-2)
    assert [g["initial_lr"] for g in opt.param_groups] == pytest.approx([1e-3 / 25 * 1, 1e-2 / 25])
    # the whole trajectory equals torch's OneCycleLR given one max_lr per group (the multiplier applied)
    ref_opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in range(2)], lr=1e-3)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=[1e-3, 1e-2], total_steps=10)
    for _ in range(10):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in ref_opt.param_groups])
        opt.step()
        sched.step()
        ref_opt.step()
        ref.step()


def test_state_dict_round_trip_continues_identically():
    def make():
        return build_scheduler(_opt(), epochs=30, name="warmup_cosine", warmup_epochs=5, eta_min=1e-3)

    a = make()
    full = _trajectory(a, 30)
    b = make()
    _trajectory(b, 12)
    state = b.state_dict()
    c = make()
    c.load_state_dict(state)
    for group, lr in zip(c.optimizer.param_groups, b.optimizer.param_groups):
        group["lr"] = lr["lr"]
    assert _trajectory(c, 18) == full[12:]


@pytest.mark.parametrize(
    "name, options, runtime, key",
    [
        ("cosine_warm_restarts", {"T_0": 0}, {}, "scheduler.T_0"),
        ("cosine_warm_restarts", {"T_mult": 0}, {}, "scheduler.T_mult"),
        ("onecycle", {"pct_start": 1.0}, {"epochs": 2, "steps_per_epoch": 2}, "scheduler.pct_start"),
        ("onecycle", {"pct_start": 0}, {"epochs": 2, "steps_per_epoch": 2}, "scheduler.pct_start"),
        ("plateau", {"factor": 1.0}, {}, "scheduler.factor"),
        ("plateau", {"patience": -1}, {}, "scheduler.patience"),
        ("plateau", {"mode": "maximum"}, {}, "scheduler.mode"),
        ("step", {"gamma": 0}, {}, "scheduler.gamma"),
        ("exponential", {"gamma": -0.5}, {}, "scheduler.gamma"),
        ("cosine", {"warmup_epochs": 10}, {"epochs": 10}, "scheduler.warmup_epochs"),
        ("cosine", {}, {}, "scheduler.T_max"),
        ("cosine", {"interval": "batch"}, {"epochs": 3}, "scheduler.interval"),
        ("cosine", {"interval": "step"}, {"epochs": 3}, "scheduler.interval"),
        ("cosinee", {}, {}, "scheduler.name"),
        ("cosine", {"eta_mn": 0.1}, {"epochs": 3}, "scheduler.eta_mn"),
        ("plateau", {"interval": "step"}, {"steps_per_epoch": 3}, "scheduler.interval"),
        ("cosine", {}, {"epochs": 0}, "scheduler.epochs"),
    ],
)
def test_bad_scheduler_values_name_the_key(name, options, runtime, key):
    with pytest.raises(ConfigError) as err:
        build_scheduler(_opt(), name=name, **runtime, **options)
    assert err.value.key == key, str(err.value)


# ------------------------------------------------------------------ issue 14, item 6
def test_plateau_needs_a_monitor_and_mode_follows_its_name():
    with pytest.raises(ConfigError, match=r"^scheduler.monitor: plateau needs the metric it watches"):
        build_scheduler(_opt(), epochs=10, name="plateau")
    assert build_scheduler(_opt(), epochs=10, name="plateau", monitor="val_loss").mode == "min"
    assert build_scheduler(_opt(), epochs=10, name="plateau", monitor="val_cindex").mode == "max"
    assert build_scheduler(_opt(), epochs=10, name="plateau", monitor="train_loss", mode="max").mode == "max"
    seed_style = build_scheduler(_opt(), epochs=10, name="plateau", mode="min")  # steps with step(metric) itself
    assert seed_style.mode == "min"


def _factors(name, epochs=20, **kw):
    opt = _opt()
    base = opt.param_groups[0]["lr"]
    return [lr / base for lr in _trajectory(build_scheduler(opt, epochs=epochs, name=name, **kw), epochs + 3)]


def test_wsd_is_stable_then_decays_over_the_last_fraction():
    for shape, fn in (("linear", lambda p: 1 - p), ("cosine", lambda p: (1 + math.cos(math.pi * p)) / 2),
                      ("sqrt", lambda p: 1 - math.sqrt(p))):
        got = _factors("wsd", decay_fraction=0.25, decay_shape=shape)
        want = [1.0] * 16 + [fn(k / 5) for k in range(1, 6)] + [0.0] * 2  # 0 reached at the run's end (t=20)
        assert got == pytest.approx(want, abs=1e-12), shape
    warm = _factors("wsd", decay_fraction=0.25, warmup_epochs=2)
    assert warm[2:15] == pytest.approx([1.0] * 13) and warm[19] == pytest.approx(1 / 5)


def test_polynomial_matches_torch_and_inverse_sqrt_formula():
    opt = _opt()
    ref = _trajectory(tls.PolynomialLR(opt, total_iters=20, power=2.0), 23)
    got = _trajectory(build_scheduler(_opt(), epochs=20, name="polynomial", power=2.0), 23)
    assert got == pytest.approx(ref, rel=1e-9)
    inv = _factors("inverse_sqrt", warmup_epochs=4)
    assert inv[4:10] == pytest.approx([math.sqrt(4 / (t + 4)) for t in range(6)])
    assert _factors("constant", warmup_epochs=2)[2:] == pytest.approx([1.0] * 21)


def test_weight_decay_and_momentum_follow_their_own_cosine():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD([{"params": [model.weight], "weight_decay": 0.1},
                           {"params": [model.bias], "weight_decay": 0.0}], lr=0.1, momentum=0.9)
    sched = build_scheduler(opt, epochs=10, name="cosine", hparams={"weight_decay": 0.5, "momentum": 0.5})
    for t in range(1, 13):
        sched.step()
        cos = (1 + math.cos(math.pi * min(t, 10) / 10)) / 2
        assert opt.param_groups[0]["weight_decay"] == pytest.approx(0.1 * (0.5 + 0.5 * cos))
        assert opt.param_groups[1]["weight_decay"] == 0.0
        assert opt.param_groups[0]["momentum"] == pytest.approx(0.9 * (0.5 + 0.5 * cos))
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * cos, abs=1e-15)  # the LR's own cosine, untouched
    with pytest.raises(ConfigError, match=r"^scheduler.hparams.betaz: not a number"):
        build_scheduler(opt, epochs=10, name="cosine", hparams={"betaz": 0.5})


def test_eta_min_above_the_lr_and_rounded_warmup_are_refused_clearly():
    with pytest.raises(ConfigError, match=r"^scheduler.eta_min: 0.5 is above the LR .* the LR would climb"):
        build_scheduler(_opt(), epochs=10, name="cosine", eta_min=0.5)
    with pytest.raises(ConfigError) as err:
        build_scheduler(_opt(), epochs=6, name="warmup_cosine", warmup_epochs=5.999)
    assert "is 6 epochs once rounded, not shorter than the run (6 epochs); allowed: at most 5 epochs" in str(err.value)


# ------------------------------------------------------------------ issue 26 item 6: schedules compose like torch's
def _chain(schedulers, n, plateau=None, metrics=None):
    """LR per epoch of schedulers stepped one after the other each epoch (a plateau last, on ``metrics``)."""
    opt = schedulers[0].optimizer
    lrs = []
    for i in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        for s in schedulers:
            s.step()
        if plateau is not None:
            plateau.step(metrics[i])
    return lrs


@pytest.mark.parametrize("pair", ["cosine+step", "polynomial+exponential", "cosine+multistep"])
def test_library_schedules_chain_like_torchs_own(pair):
    """torch's ChainedScheduler of our two schedules equals ChainedScheduler of torch's classes."""
    first, second = pair.split("+")
    ours_opt, ref_opt = _opt(), _opt()
    opts = {"cosine": {}, "polynomial": {"power": 2.0}, "step": {"step_size": 3, "gamma": 0.5},
            "exponential": {"gamma": 0.9}, "multistep": {"milestones": [4, 7], "gamma": 0.3}}
    ours = tls.ChainedScheduler([build_scheduler(ours_opt, name=first, epochs=10, **opts[first]),
                                 build_scheduler(ours_opt, name=second, epochs=10, **opts[second])])
    torch_first = {"cosine": lambda o: tls.CosineAnnealingLR(o, T_max=10),
                   "polynomial": lambda o: tls.PolynomialLR(o, total_iters=10, power=2.0)}[first](ref_opt)
    torch_second = {"step": lambda o: tls.StepLR(o, step_size=3, gamma=0.5),
                    "exponential": lambda o: tls.ExponentialLR(o, gamma=0.9),
                    "multistep": lambda o: tls.MultiStepLR(o, milestones=[4, 7], gamma=0.3)}[second](ref_opt)
    ref = tls.ChainedScheduler([torch_first, torch_second])
    assert _trajectory(ours, 10) == pytest.approx(_trajectory(ref, 10), rel=1e-12)


@pytest.mark.parametrize("name, opts", [("cosine", {}), ("polynomial", {"power": 1.0}), ("wsd", {"decay_fraction": 0.5}),
                                        ("inverse_sqrt", {"timescale": 2.0})])
def test_a_plateau_cut_survives_the_next_step_of_a_decay(name, opts):
    """Cosine (or any decay) and plateau on one optimizer: each keeps its effect, as torch's cosine and
    ReduceLROnPlateau do (the plateau's halving is scaled by the decay, never overwritten)."""
    metrics = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    opt = _opt()
    decay = build_scheduler(opt, name=name, epochs=8, **opts)
    plateau = build_scheduler(opt, name="plateau", epochs=8, monitor="val_loss", patience=1, factor=0.5)
    got = _chain([decay], 8, plateau, metrics)
    alone = _trajectory(build_scheduler(_opt(), name=name, epochs=8, **opts), 8)
    cuts = [0.5 ** max(0, (i - 1) // 2) for i in range(8)]  # patience 1: halved after epochs 2, 4, 6 (0-based 1, 3, 5)
    assert got == pytest.approx([a * c for a, c in zip(alone, cuts)], rel=1e-9)
    if name == "cosine":
        ref_opt = _opt()
        ref_cos = tls.CosineAnnealingLR(ref_opt, T_max=8)
        ref_plateau = tls.ReduceLROnPlateau(ref_opt, mode="min", patience=1, factor=0.5)
        assert got == pytest.approx(_chain([ref_cos], 8, ref_plateau, metrics), rel=1e-12)
