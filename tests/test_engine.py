"""The step engine: accumulation, AMP skips, scheduler cadence, exact resume."""
import copy
import dataclasses

import pytest
import torch
from torch import nn

from survopt_hydra import ConfigError, StepEngine, Stepping, build_optimizer, build_scheduler
from survopt_hydra.engine.amp import AmpSettings
from survopt_hydra.schemas.amp import AMP


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


def _data(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randn(n, 1, generator=g)


def _engine(model, k=1, batches=None, sched=None, amp=None, opt="sgd", **sopts):
    optimizer = build_optimizer(model, opt, lr=0.05, **({"momentum": 0.0} if opt == "sgd" else {}))
    scheduler = build_scheduler(optimizer, name=sched, **sopts) if sched else None
    return StepEngine(model, optimizer, scheduler, amp=amp, accumulate_grad_batches=k, batches_per_epoch=batches,
                      stepping=Stepping.of({"name": sched, **sopts}) if sched else None)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_accumulation_equals_one_large_batch():
    x, y = _data(32)
    big, small = _model(), _model()
    e_big, e_small = _engine(big), _engine(small, k=4)
    e_big.backward(nn.functional.mse_loss(big(x), y))
    assert e_big.step()
    applied = []
    for chunk_x, chunk_y in zip(x.chunk(4), y.chunk(4)):
        e_small.backward(nn.functional.mse_loss(small(chunk_x), chunk_y))
        applied.append(e_small.step())
    assert applied == [False, False, False, True]
    torch.testing.assert_close(_params(big), _params(small), atol=1e-6, rtol=0)


def test_short_last_window_is_scaled_by_its_own_length():
    """10 batches with k=4: windows of 4, 4 and 2; the last equals a batch of 2 x size."""
    x, y = _data(40)
    acc, ref = _model(), _model()
    e_acc = _engine(acc, k=4, batches=10)
    xs, ys = x.chunk(10), y.chunk(10)
    steps = []
    for bx, by in zip(xs, ys):
        e_acc.backward(nn.functional.mse_loss(acc(bx), by))
        steps.append(e_acc.step())
    assert steps == [False] * 3 + [True] + [False] * 3 + [True] + [False, True]
    e_ref = _engine(ref)
    for lo, hi in ((0, 16), (16, 32), (32, 40)):
        e_ref.backward(nn.functional.mse_loss(ref(x[lo:hi]), y[lo:hi]))
        e_ref.step()
    torch.testing.assert_close(_params(acc), _params(ref), atol=1e-6, rtol=0)


def test_partial_window_flushed_at_end_epoch_when_length_unknown():
    x, y = _data(24)
    acc, ref = _model(), _model()
    e_acc = _engine(acc, k=4)
    for bx, by in zip(x.chunk(3), y.chunk(3)):
        e_acc.backward(nn.functional.mse_loss(acc(bx), by))
        assert not e_acc.step()
    e_acc.end_epoch()
    e_ref = _engine(ref)
    e_ref.backward(nn.functional.mse_loss(ref(x), y))
    e_ref.step()
    assert e_acc.global_step == 1
    torch.testing.assert_close(_params(acc), _params(ref), atol=1e-6, rtol=0)


def test_step_scheduler_advances_per_applied_step_not_micro_batch():
    model = _model()
    engine = _engine(model, k=3, batches=9, sched="linear_warmup", interval="step",
                     warmup_epochs=1, epochs=5, steps_per_epoch=3)
    x, y = _data(9)
    lrs = []
    for bx, by in zip(x.chunk(9), y.chunk(9)):
        engine.backward(nn.functional.mse_loss(model(bx), by))
        engine.step()
        lrs.append(engine.optimizer.param_groups[0]["lr"])
    assert engine.global_step == 3
    assert len(set(lrs[0:2])) == 1 and lrs[2] > lrs[1]  # changes only on the 3rd micro-batch
    assert lrs[-1] == pytest.approx(0.05)  # warmup of 3 optimizer steps done


def test_onecycle_with_accumulation_ends_exactly_at_its_last_step():
    model = _model()
    epochs, batches, k = 3, 10, 4  # 3 optimizer steps per epoch
    optimizer = build_optimizer(model, "sgd", lr=0.05)
    sched = build_scheduler(optimizer, epochs=epochs, steps_per_epoch=3, name="onecycle", max_lr=0.1)
    engine = StepEngine(model, optimizer, sched, accumulate_grad_batches=k, batches_per_epoch=batches,
                        stepping=Stepping("step"))
    x, y = _data(40)
    for _ in range(epochs):
        for bx, by in zip(x.chunk(batches), y.chunk(batches)):
            engine.backward(nn.functional.mse_loss(model(bx), by))
            engine.step()
        engine.end_epoch({})
    assert engine.global_step == sched.total_steps == 9
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 25 / 1e4)


def test_nonfinite_gradient_skips_step_and_scheduler():
    model = _model()
    engine = _engine(model, sched="exponential", interval="step", gamma=0.5, epochs=2, steps_per_epoch=4)
    before = _params(model).clone()
    x, _ = _data(4)
    engine.backward(model(x).sum() * float("nan"))
    assert engine.step() is False
    assert engine.nonfinite_steps == 1 and engine.consecutive_nonfinite == 1
    assert torch.equal(_params(model), before)
    assert engine.optimizer.param_groups[0]["lr"] == 0.05
    assert all(p.grad is None for p in model.parameters())


def test_fp16_inf_gradient_skips_step_and_scheduler_stays():
    model = _model()
    engine = _engine(model, amp="fp16", sched="exponential", interval="step", gamma=0.5, epochs=5, steps_per_epoch=4)
    assert engine.scaler.is_enabled() and engine.amp_dtype == torch.float16
    x, y = _data(8)
    engine.scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    with engine.autocast():
        out = model(x)
    engine.backward(nn.functional.mse_loss(out.float(), y))
    assert engine.step() and engine.global_step == 1
    lr_after_one = engine.optimizer.param_groups[0]["lr"]
    before = _params(model).clone()
    with engine.autocast():
        out = model(x)
    engine.backward(out.float().sum() * float("inf"))
    assert engine.step() is False
    assert engine.skipped_steps == 1 and engine.global_step == 1
    assert engine.optimizer.param_groups[0]["lr"] == lr_after_one == 0.025
    assert torch.equal(_params(model), before)
    assert engine.scaler.get_scale() == 4.0


def test_bf16_autocast_without_scaler():
    engine = _engine(_model(), amp="bf16")
    assert engine.amp_dtype == torch.bfloat16 and not engine.scaler.is_enabled()
    with engine.autocast():
        out = engine.model(torch.randn(2, 6))
    assert out.dtype == torch.bfloat16


def test_plateau_reads_its_monitor_and_refuses_a_missing_metric():
    engine = _engine(_model(), sched="plateau", monitor="val_cindex", factor=0.5, patience=0)
    engine.end_epoch({"val_cindex": 0.7})
    engine.end_epoch({"val_cindex": 0.6})
    assert engine.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    with pytest.raises(ConfigError, match=r"scheduler.monitor: metric 'val_cindex' was not computed \(did you mean 'val_cidx'\?\)"):
        engine.end_epoch({"val_cidx": 0.7})


def test_amp_settings_validate():
    with pytest.raises(ConfigError, match="amp.dtype"):
        AmpSettings("fp8")
    with pytest.raises(ConfigError, match="amp.init_scale"):
        AmpSettings("fp16", init_scale=0)


@pytest.mark.parametrize("dtype", sorted(AMP))
def test_amp_class_defaults_equal_schema_defaults(dtype):
    settings, schema = AmpSettings(dtype), AMP[dtype]()
    for field in dataclasses.fields(schema):
        if not field.name.startswith("_"):
            assert getattr(settings, field.name) == getattr(schema, field.name), field.name
    assert AmpSettings().dtype == AMP["none"]().dtype == "none"


def _run(model, engine, x, y, epochs, start=0, lrs=None):
    for epoch in range(start, epochs):
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(x), generator=g)
        for idx in order.chunk(6):
            with engine.autocast():
                loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            engine.backward(loss)
            engine.step()
            if lrs is not None:
                lrs.append(engine.optimizer.param_groups[0]["lr"])
        engine.end_epoch({"val_cindex": float(loss.detach())})


@pytest.mark.parametrize("sched, opts", [
    ("warmup_cosine", {"interval": "step", "warmup_epochs": 1}),
    ("plateau", {"warmup_epochs": 1, "patience": 0, "monitor": "val_cindex"}),
    ("onecycle", {}),
])
def test_split_run_with_save_load_equals_uninterrupted_run(sched, opts):
    x, y = _data(48)

    def fresh():
        model = _model(3)
        optimizer = build_optimizer(model, "adamw", lr=1e-2)
        scheduler = build_scheduler(optimizer, epochs=6, steps_per_epoch=3, name=sched, **opts)
        return model, StepEngine(model, optimizer, scheduler, amp="bf16", accumulate_grad_batches=2, batches_per_epoch=6,
                                 stepping=Stepping.of({"name": sched, **opts}))

    model_a, engine_a = fresh()
    lrs_a = []
    _run(model_a, engine_a, x, y, 6, lrs=lrs_a)

    model_b, engine_b = fresh()
    lrs_b = []
    _run(model_b, engine_b, x, y, 3, lrs=lrs_b)
    saved = copy.deepcopy({"model": model_b.state_dict(), "engine": engine_b.state_dict()})
    model_c, engine_c = fresh()
    model_c.load_state_dict(saved["model"])
    engine_c.load_state_dict(saved["engine"])
    _run(model_c, engine_c, x, y, 6, start=3, lrs=lrs_b)
    assert lrs_a == lrs_b
    assert torch.equal(_params(model_a), _params(model_c))
    assert engine_c.global_step == engine_a.global_step


def test_will_step_marks_the_last_micro_batch_of_each_window():
    """10 batches, k=4: windows end after batches 4, 8 and 10 (the short last window)."""
    model = _model()
    engine = _engine(model, k=4, batches=10)
    x, y = _data(40)
    ends, applied = [], []
    for bx, by in zip(x.chunk(10), y.chunk(10)):
        engine.backward(nn.functional.mse_loss(model(bx), by))
        ends.append(engine.will_step())
        applied.append(engine.step())
    assert ends == applied == [False] * 3 + [True] + [False] * 3 + [True, False, True]


def test_read_loss_equals_the_host_sum_of_finite_losses():
    """read_loss() equals summing float(loss) per batch on the host, exactly; NaN batches are left out."""
    model = _model()
    engine = _engine(model, k=2, batches=6)
    x, y = _data(48)
    host = []
    for i, (bx, by) in enumerate(zip(x.chunk(6), y.chunk(6))):
        loss = nn.functional.mse_loss(model(bx), by) * (float("nan") if i == 2 else 1.0)
        if i != 2:
            host.append(float(loss.detach()))
        engine.backward(loss)
        engine.step()
    mean, count = engine.read_loss()
    assert count == 5 and mean == sum(host) / 5
    assert engine.read_loss()[1] == 0  # read resets


def test_nonfinite_streak_counts_bad_windows_and_resets_on_a_good_one():
    model = _model()
    engine = StepEngine(model, build_optimizer(model, "sgd", lr=0.01, momentum=0.0), max_nonfinite_steps=2)
    x, y = _data(8)
    flags = []
    for scale in (float("nan"), 1.0, float("inf"), float("nan")):
        engine.backward(nn.functional.mse_loss(model(x), y) * scale)
        engine.step()
        flags.append((engine.consecutive_nonfinite, engine.diverged))
    assert flags == [(1, False), (0, False), (1, False), (2, True)]
    assert engine.nonfinite_steps == 3 and engine.global_step == 1


def test_fp16_skip_with_finite_loss_is_calibration_not_divergence():
    """A GradScaler overflow skip on a finite loss leaves the streak at 0; a NaN loss counts."""
    model = _model()
    engine = _engine(model, amp="fp16")
    engine.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # the scaled loss overflows float32
    x, y = _data(8)
    engine.backward(nn.functional.mse_loss(model(x), y) * 1e3)
    assert engine.step() is False and engine.skipped_steps == 1 and engine.consecutive_nonfinite == 0
    engine.backward(nn.functional.mse_loss(model(x), y) * float("nan"))
    assert engine.step() is False and engine.consecutive_nonfinite == 1


def test_from_config_reads_only_library_groups():
    """No trainer node needed: accumulation is an argument; steps_per_epoch = ceil(batches / k)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "optimizer": {"_target_": "survopt_hydra.optim.build_optimizer", "name": "sgd", "lr": 0.1},
        "scheduler": {"_target_": "survopt_hydra.optim.build_scheduler", "name": "onecycle"},
        "trainer": {"accumulate_grad_batches": 7},  # an app's node: ignored
    })
    engine = StepEngine.from_config(cfg, _model(), batches_per_epoch=10, epochs=2, accumulate_grad_batches=4)
    assert engine.accumulate == 4 and engine.scheduler.total_steps == 2 * 3
    assert engine.clipper is None and engine.ema is None and engine.model is not None


def test_accelerator_transfer_path_gives_the_same_counts_and_loss():
    """Off CPU the norm and the losses come back in one cat+tolist; forced here on CPU
    (no accelerator needed), it must agree with the .item() path exactly."""
    results = []
    for device_type in ("cpu", "accelerator"):
        model = _model()
        engine = _engine(model, k=2, batches=6)
        engine.device_type = device_type  # only the transfer path reads it after construction
        x, y = _data(48)
        for i, (bx, by) in enumerate(zip(x.chunk(6), y.chunk(6))):
            engine.backward(nn.functional.mse_loss(model(bx), by) * (float("nan") if i == 3 else 1.0))
            engine.step()
        results.append((engine.read_loss(), engine.global_step, engine.nonfinite_steps, _params(model)))
    (loss_a, steps_a, bad_a, params_a), (loss_b, steps_b, bad_b, params_b) = results
    assert loss_a == loss_b and loss_a[1] == 5 and (steps_a, bad_a) == (steps_b, bad_b) == (2, 1)
    assert torch.equal(params_a, params_b)


def test_schedule_free_optimizer_follows_the_engines_mode():
    """optimizer=adamw_schedulefree keeps two weight sequences: the engine switches it with the model, so the
    app validates and saves the averaged weights and trains the other (schedulefree's train()/eval())."""
    model = _model()
    optimizer = build_optimizer(model, "adamw_schedulefree", lr=0.01)
    engine = StepEngine(model, optimizer)
    engine.train_mode()
    assert model.training and optimizer.param_groups[0]["train_mode"] is True
    x, y = _data()
    for _ in range(3):
        engine.backward(nn.functional.mse_loss(model(x), y))
        assert engine.step()
    trained = _params(model)
    engine.eval_mode()
    assert not model.training and optimizer.param_groups[0]["train_mode"] is False
    assert not torch.equal(_params(model), trained)  # the averaged sequence swapped in
    engine.train_mode()
    torch.testing.assert_close(_params(model), trained)  # and back
    plain = StepEngine(_model(), build_optimizer(_model(), "sgd", lr=0.1))
    plain.eval_mode()
    plain.train_mode()  # an optimizer without train()/eval() is left alone
