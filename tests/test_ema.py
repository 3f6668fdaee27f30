"""The ``ema`` group: weight averaging on torch's AveragedModel, driven by the step engine."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from survopt_hydra import ConfigError, StepEngine
from survopt_hydra.schemas.ema import EMA, ExponentialEMAConfig
from survopt_hydra.engine.ema import WeightAverager
from survopt_hydra.api.validation import validate_groups

ROOT = Path(__file__).resolve().parents[1]


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_average_follows_the_closed_form_without_warmup() -> None:
    model = nn.Linear(3, 1)
    ema = WeightAverager("ema", decay=0.8, warmup=False).attach(model)
    expected = None
    for value in (1.0, 2.0, 4.0, -1.0):
        _set(model, value)
        ema.update(model)
        expected = value if expected is None else 0.8 * expected + 0.2 * value  # first update copies
        for p in ema.module.parameters():
            assert torch.allclose(p, torch.full_like(p, expected), atol=1e-6)
    assert expected == pytest.approx(0.8 * (0.8 * (0.8 * 1 + 0.2 * 2) + 0.2 * 4) + 0.2 * -1)


def test_warmup_ramp_and_update_cadence() -> None:
    ema = WeightAverager("ema", decay=0.99, warmup=True)
    assert [ema.decay_at(n) for n in (0, 1, 8, 1000)] == pytest.approx([0.1, 2 / 11, 0.5, 0.99])
    model = nn.Linear(2, 1, bias=False)
    init = float(model.weight.detach()[0, 0])
    ema = WeightAverager("ema", decay=0.5, every_n_steps=3, warmup=False).attach(model)
    seen = []
    for step in range(1, 10):
        _set(model, float(step))
        ema.update(model)
        seen.append(float(ema.module.weight.detach()[0, 0]))
    # updates at steps 3, 6, 9: copy 3, then 0.5*3 + 0.5*6, then 0.5*4.5 + 0.5*9; the average holds in between
    assert seen == pytest.approx([init, init, 3, 3, 3, 4.5, 4.5, 4.5, 6.75])
    assert int(ema.average.n_averaged) == 3 and ema.steps_seen == 9


def test_batchnorm_statistics_are_averaged_and_counters_copied() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = WeightAverager("ema", decay=0.5, warmup=False).attach(model)
    bn = model[1]
    for mean in (2.0, 4.0):
        bn.running_mean.fill_(mean)
        bn.num_batches_tracked += 5
        ema.update(model)
    avg_bn = ema.module[1]
    assert torch.allclose(avg_bn.running_mean, torch.full((2,), 3.0))  # 0.5 * 2 + 0.5 * 4
    assert int(avg_bn.num_batches_tracked) == 10  # an integer counter is copied, not averaged


def _engine(ema: WeightAverager | None, seed: int = 0) -> tuple[nn.Module, StepEngine]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, StepEngine(model, opt, ema=ema)


def _steps(model: nn.Module, engine: StepEngine, batches: range, nan_at: int | None = None) -> None:
    for i in batches:
        g = torch.Generator().manual_seed(i)
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
        loss = nn.functional.mse_loss(model(x), y)
        engine.backward(loss * float("nan") if i == nan_at else loss)
        engine.step()


def test_engine_updates_the_average_only_on_applied_steps() -> None:
    model, engine = _engine(WeightAverager("ema", decay=0.9))
    _steps(model, engine, range(5), nan_at=2)
    assert engine.nonfinite_steps == 1 and engine.global_step == 4
    assert engine.ema.steps_seen == 4 and int(engine.ema.average.n_averaged) == 4
    raw = torch.cat([p.flatten() for p in model.parameters()])
    avg = torch.cat([p.flatten() for p in engine.ema.module.parameters()])
    assert not torch.allclose(raw, avg)  # an average, not a copy of the last iterate


def test_engine_state_round_trip_continues_the_same_average() -> None:
    model, engine = _engine(WeightAverager("ema", decay=0.9, every_n_steps=2))
    _steps(model, engine, range(8))
    reference = [p.clone() for p in engine.ema.module.parameters()]

    model, engine = _engine(WeightAverager("ema", decay=0.9, every_n_steps=2))
    _steps(model, engine, range(3))
    saved = {"model": {k: v.clone() for k, v in model.state_dict().items()},
             "engine": copy.deepcopy(engine.state_dict())}
    model, engine = _engine(WeightAverager("ema", decay=0.9, every_n_steps=2), seed=1)  # other init
    model.load_state_dict(saved["model"])
    engine.load_state_dict(saved["engine"])
    _steps(model, engine, range(3, 8))
    for a, b in zip(engine.ema.module.parameters(), reference):
        assert torch.equal(a, b)


def test_resuming_with_another_ema_option_is_refused() -> None:
    _, with_ema = _engine(WeightAverager("ema"))
    _, without = _engine(None)
    with pytest.raises(ConfigError, match="ema.mode: the checkpoint was written with a weight average"):
        without.load_state_dict(with_ema.state_dict())
    with pytest.raises(ConfigError, match="ema.mode: the checkpoint was written without"):
        with_ema.load_state_dict(without.state_dict())


def test_group_instantiates_and_rejects_bad_values() -> None:
    averager = instantiate(OmegaConf.structured(ExponentialEMAConfig(decay=0.95, every_n_steps=4)))
    assert isinstance(averager, WeightAverager) and (averager.decay, averager.every_n_steps) == (0.95, 4)
    with pytest.raises(ConfigError, match=r"ema.decay: must be in the open interval \(0, 1\), got 1.0"):
        WeightAverager("ema", decay=1.0)
    with pytest.raises(ConfigError, match=r"ema.every_n_steps: must be >= 1, got 0"):
        WeightAverager("ema", every_n_steps=0)
    with pytest.raises(ConfigError, match=r"ema.mode: unknown name 'swa'; allowed: ema, none"):
        WeightAverager("swa")
    with pytest.raises(ConfigError, match="ema.mode: 'ema' averages whole parameters, but distributed=fsdp"):
        validate_groups({"ema": {"mode": "ema"}, "distributed": {"strategy": "fsdp"}})
    validate_groups({"ema": {"mode": "ema"}, "distributed": {"strategy": "ddp"}})  # fine


@pytest.mark.slow
def test_app_scores_the_average_and_resumes_it_exactly(tmp_path: Path) -> None:
    run = ["trainer.max_epochs=12", "trainer.early_stopping_patience=null", "trainer.batch_size=128",
           "ema=ema", "ema.decay=0.9"]

    def train(run_dir: Path, *extra: str) -> dict:
        proc = subprocess.run([sys.executable, "scripts/train.py", f"hydra.run.dir={run_dir}", *run, *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        path = run_dir / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    full = train(tmp_path / "full")
    assert train(tmp_path / "resumed", "trainer.stop_after_epochs=5") == {}
    resumed = train(tmp_path / "resumed")
    full.pop("train_seconds"), resumed.pop("train_seconds")
    assert full == resumed
    # best.pt holds the average: scoring it reproduces the reported validation C-index
    from survopt_hydra.app.trainer import evaluate, load_best

    settings, cohort, model, _ = load_best(tmp_path / "full")
    val_c, _ = evaluate(model, cohort.val, settings["trainer"]["ties"])
    assert val_c == pytest.approx(full["val_cindex"], abs=1e-12)
    last = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    assert last["engine"]["ema"]["steps_seen"] == full["optimizer_steps"] == 12 * math.ceil(full["n_train"] / 128)


@pytest.mark.parametrize("mode", sorted(EMA))
def test_class_defaults_equal_schema_defaults(mode) -> None:
    """WeightAverager(mode) holds exactly the schema's defaults (one source of truth)."""
    ema, schema = WeightAverager(mode), EMA[mode]()
    for field in dataclasses.fields(schema):
        if not field.name.startswith("_"):
            assert getattr(ema, field.name) == getattr(schema, field.name), field.name
    assert WeightAverager().mode == EMA["none"]().mode == "none"
