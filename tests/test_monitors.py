"""Behaviour of survopt_hydra.engine.monitors; expected values are recomputed here by hand."""
from __future__ import annotations

import csv
import logging
import math
import sys

import pytest
import torch
from torch import nn

from survopt_hydra.errors import ConfigError
from survopt_hydra.engine.monitors import (
    CSVSink,
    GradientMonitor,
    ListSink,
    MonitorConfigError,
    OptimizerMonitor,
    SinkUnavailableError,
    TensorBoardSink,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def _backward(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(11, 5, generator=gen)
    model.zero_grad(set_to_none=True)
    model(x).pow(2).sum().backward()


# -------------------------------------------------------------------- optimizer


def test_lr_recorded_at_log_steps_for_named_groups():
    model = _model()
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1, "name": "encoder"},
            {"params": model[2].parameters(), "lr": 0.01, "name": "head"},
        ],
        lr=1.0,
    )
    sink = ListSink()
    monitor = OptimizerMonitor(optimizer=opt, log_interval=100, sink=sink)
    returned = []
    for step in range(250):
        if step == 150:
            opt.param_groups[0]["lr"] = 0.05
        returned.append(monitor.log_lr(step))
    assert [r["step"] for r in sink.records] == [0, 100, 200]
    assert sink.records[0] == {"step": 0, "lr/encoder": 0.1, "lr/head": 0.01}
    assert sink.records[1] == {"step": 100, "lr/encoder": 0.1, "lr/head": 0.01}
    assert sink.records[2] == {"step": 200, "lr/encoder": 0.05, "lr/head": 0.01}
    assert sum(r is not None for r in returned) == 3 and returned[200] == sink.records[2]


def test_lr_group_names_default_and_duplicates():
    model = _model()
    opt = torch.optim.SGD(
        [
            {"params": [model[0].weight], "lr": 0.3},
            {"params": [model[0].bias], "lr": 0.2, "name": "x"},
            {"params": model[2].parameters(), "lr": 0.1, "name": "x"},
        ]
    )
    record = OptimizerMonitor(opt, log_interval=1).log_lr(7)
    assert record == {"step": 7, "lr/group0": 0.3, "lr/x": 0.2, "lr/x#2": 0.1}


def test_lr_follows_a_scheduler():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    sink = ListSink()
    monitor = OptimizerMonitor(opt, log_interval=10, sink=sink)
    for step in range(31):
        monitor.log_lr(step)
        opt.step()
        sched.step()
    assert sink.values("lr/group0") == [(0, 1.0), (10, 0.5), (20, 0.25), (30, 0.125)]


# --------------------------------------------------------------------- gradients


def test_grad_and_weight_norms():
    model = _model()
    _backward(model, 1)
    record = GradientMonitor(model=model, log_interval=100).log_gradients(step=300)
    grads = {n: p.grad for n, p in model.named_parameters()}
    everything = torch.cat([g.flatten() for g in grads.values()])
    assert record["step"] == 300
    assert record["grad_norm/global"] == pytest.approx(torch.linalg.vector_norm(everything).item(), rel=1e-6)
    for name, p in model.named_parameters():
        assert record[f"grad_norm/{name}"] == pytest.approx(p.grad.norm().item(), rel=1e-6)
        assert record[f"weight_norm/{name}"] == pytest.approx(p.detach().norm().item(), rel=1e-6)
    assert set(record) == {"step", "grad_norm/global"} | {
        f"{kind}/{n}" for kind in ("grad_norm", "weight_norm") for n in grads
    }


def test_params_without_grad_are_skipped():
    model = _model()
    model[0].weight.requires_grad_(False)
    _backward(model, 2)
    record = GradientMonitor(model, log_interval=1).log_gradients()
    assert "grad_norm/0.weight" not in record and "weight_norm/0.weight" not in record
    expected = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert record["grad_norm/global"] == pytest.approx(expected.norm().item(), rel=1e-6)


def test_update_ratio_after_sgd_step():
    model = _model()
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)  # no momentum: dW = -lr * G
    sink = ListSink()
    monitor = GradientMonitor(model, log_interval=4, sink=sink)
    for step in range(9):
        _backward(model, step)
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        weights = {n: p.detach().clone() for n, p in model.named_parameters()}
        monitor.log_gradients(step)
        opt.step()
        record = monitor.log_update(step)
        if step % 4:
            assert record is None
            continue
        assert record["step"] == step
        for name in grads:
            expected = lr * grads[name].norm().item() / weights[name].norm().item()
            assert record[f"update_ratio/{name}"] == pytest.approx(expected, rel=1e-4)
        g_all = torch.cat([g.flatten() for g in grads.values()])
        w_all = torch.cat([w.flatten() for w in weights.values()])
        expected_global = lr * g_all.norm().item() / w_all.norm().item()
        assert record["update_ratio/global"] == pytest.approx(expected_global, rel=1e-4)
    assert [r["step"] for r in sink.records if "update_ratio/global" in r] == [0, 4, 8]


def test_update_ratio_uses_internal_counter():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, log_interval=3)
    steps = []
    for i in range(7):
        _backward(model, i)
        rec = monitor.log_gradients()
        opt.step()
        upd = monitor.log_update()
        if rec is not None:
            steps.append(rec["step"])
            assert upd is not None and upd["step"] == rec["step"]
        else:
            assert upd is None
    assert steps == [0, 3, 6]


def test_nothing_computed_on_non_log_steps(monkeypatch):
    model = _model()
    sink = ListSink()
    monitor = GradientMonitor(model, log_interval=10, sink=sink)
    calls = []
    real = torch._foreach_norm
    monkeypatch.setattr(torch, "_foreach_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    _backward(model, 0)
    for step in range(1, 10):
        assert monitor.log_gradients(step) is None
        assert monitor._pending is None  # no weight snapshot either
        assert monitor.log_update(step) is None
    assert calls == [] and sink.records == []
    monitor.log_gradients(10)
    assert len(calls) == 2 and len(sink.records) == 1  # one call for grads, one for weights


def test_per_layer_false_records_globals_only():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _backward(model, 0)
    monitor = GradientMonitor(model, log_interval=1, per_layer=False)
    rec = monitor.log_gradients()
    opt.step()
    upd = monitor.log_update()
    assert set(rec) == {"step", "grad_norm/global"}
    assert set(upd) == {"step", "update_ratio/global"} and upd["update_ratio/global"] > 0


def test_logger_receives_records(caplog):
    model = _model()
    _backward(model, 0)
    with caplog.at_level(logging.DEBUG, logger="survopt_hydra.engine.monitors"):
        GradientMonitor(model, log_interval=1).log_gradients()
    assert any("grad_norm/global" in r.getMessage() for r in caplog.records)


def test_bad_log_interval():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(MonitorConfigError) as info:
            GradientMonitor(_model(), log_interval=bad)
        assert info.value.key == "monitors.log_interval" and isinstance(info.value, ConfigError)
    with pytest.raises(MonitorConfigError, match=r"monitors\.log_interval"):
        OptimizerMonitor(torch.optim.SGD(_model().parameters(), lr=0.1), log_interval=0)


# -------------------------------------------------------------------------- sinks


def test_csv_sink_long_format_parses(tmp_path):
    path = tmp_path / "logs" / "metrics.csv"
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    records = []
    with CSVSink(path) as sink:
        gm = GradientMonitor(model, log_interval=2, sink=[sink, records.append])
        for step in range(4):
            _backward(model, step)
            gm.log_gradients(step)
            opt.step()
            gm.log_update(step)
    with CSVSink(path) as again:  # appending to an existing file adds no second header
        again({"step": 99, "extra/key": 1.5})
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "key", "value"]
    assert ["step", "key", "value"] not in rows[1:]
    expected = [(r["step"], k, v) for r in records for k, v in r.items() if k != "step"]
    expected.append((99, "extra/key", 1.5))
    assert len(rows) - 1 == len(expected)
    for row, (step, key, value) in zip(rows[1:], expected):
        assert int(row[0]) == step and row[1] == key and float(row[2]) == value


def test_tensorboard_sink_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    sink = TensorBoardSink(tmp_path / "tb")
    sink({"step": 3, "lr/head": 0.5, "note": "not a scalar"})
    sink.close()
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["lr/head"]
    (event,) = acc.Scalars("lr/head")
    assert (event.step, event.value) == (3, 0.5)


def test_tensorboard_sink_epoch_rows_skip_nonfinite(tmp_path):
    """An app's per-epoch rows: the step is the ``epoch`` key, a NaN value is left out."""
    pytest.importorskip("tensorboard")
    sink = TensorBoardSink(tmp_path / "tb", step_key="epoch")
    sink({"epoch": 2, "val_cindex": 0.61, "val_loss": float("nan")})
    sink.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["val_cindex"]
    (event,) = acc.Scalars("val_cindex")
    assert event.step == 2 and event.value == pytest.approx(0.61)


def test_tensorboard_missing_raises_at_construction(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with pytest.raises(SinkUnavailableError, match="tensorboard") as info:
        TensorBoardSink(tmp_path / "tb")
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)
    assert info.value.key == "monitors.sink"


def test_update_ratio_is_inf_for_zero_weights():
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.bias.zero_()
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    lin(torch.ones(4, 3)).sum().backward()
    monitor = GradientMonitor(lin, log_interval=1)
    monitor.log_gradients()
    opt.step()
    assert math.isinf(monitor.log_update()["update_ratio/bias"])


def test_stale_snapshot_is_dropped_and_gradless_log_step_records_nothing():
    model = _model()
    sink = ListSink()
    monitor = GradientMonitor(model, log_interval=2, sink=sink)
    assert monitor.log_gradients(0) is None and sink.records == []  # no backward yet
    _backward(model, 0)
    monitor.log_gradients(2)
    assert monitor._pending is not None
    monitor.log_gradients(3)  # log_update(2) was never called
    assert monitor._pending is None and monitor.log_update(2) is None
    assert monitor.log_update() is None
