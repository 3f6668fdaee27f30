"""Every code example of the seed README, run as shown (``from optimizers`` ->
``from survopt_hydra``), with the numbers each one must produce."""
from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn
from torch.optim import lr_scheduler as tls

from survopt_hydra import (
    ConfigError,
    OptimizerFactory,
    create_optimizer,
    create_optimizer_and_scheduler,
    create_scheduler,
)


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1))


def _ref_opt(lr: float = 1e-4) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=lr)


def _lrs(sched, n: int, metric=None) -> list[float]:
    """LR in use during each of ``n`` epochs (read before the epoch's ``step``)."""
    out = []
    for _ in range(n):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.step() if metric is None else sched.step(metric)
    return out


def _groups(opt) -> tuple[dict, dict]:
    decay = next(g for g in opt.param_groups if g["weight_decay"] > 0)
    no_decay = next(g for g in opt.param_groups if g["weight_decay"] == 0)
    return decay, no_decay


def _check_no_decay_on_1d(opt, model, wd: float) -> None:
    decay, no_decay = _groups(opt)
    assert decay["weight_decay"] == wd and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


# --------------------------------------------------------------------------- optimizers


def test_adam(model):
    optimizer = create_optimizer(model.parameters(), optimizer_name="adam", lr=1e-4, weight_decay=1e-5)
    assert type(optimizer) is torch.optim.Adam
    assert all(g["lr"] == 1e-4 and g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8 for g in optimizer.param_groups)
    _check_no_decay_on_1d(optimizer, model, 1e-5)


def test_adamw(model):
    optimizer = create_optimizer(model.parameters(), optimizer_name="adamw", lr=1e-4, weight_decay=1e-4)
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.param_groups[0]["lr"] == 1e-4
    _check_no_decay_on_1d(optimizer, model, 1e-4)


def test_sgd(model):
    optimizer = create_optimizer(model.parameters(), optimizer_name="sgd", lr=1e-3, weight_decay=1e-4, momentum=0.9)
    assert type(optimizer) is torch.optim.SGD
    assert all(g["lr"] == 1e-3 and g["momentum"] == 0.9 for g in optimizer.param_groups)
    _check_no_decay_on_1d(optimizer, model, 1e-4)


def test_rmsprop_with_model_and_seed_spellings(model):
    optimizer = create_optimizer(
        model=model, optimizer_type="rmsprop", learning_rate=1e-3, alpha=0.99, eps=1e-8, weight_decay=1e-4
    )
    assert type(optimizer) is torch.optim.RMSprop
    g = optimizer.param_groups[0]
    assert (g["lr"], g["alpha"], g["eps"]) == (1e-3, 0.99, 1e-8)
    _check_no_decay_on_1d(optimizer, model, 1e-4)


def test_optimizer_takes_every_params_spelling(model):
    for params in (model, model.named_parameters(), [{"params": list(model.parameters()), "lr": 0.5}]):
        opt = create_optimizer(params, type="sgd", lr=0.1)
        assert sum(len(g["params"]) for g in opt.param_groups) == 6
    assert opt.param_groups[0]["lr"] == 0.5  # an explicit group LR wins
    assert type(create_optimizer(model.parameters(), lr=1e-3)) is torch.optim.AdamW  # default name


def test_yaml_numeric_strings_are_coerced(model):
    opt = create_optimizer(model.parameters(), name="adam", lr="1e-4", eps="1e-8", betas=["0.9", "0.95"])
    assert opt.param_groups[0]["lr"] == 1e-4 and isinstance(opt.param_groups[0]["lr"], float)
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)


# --------------------------------------------------------------------------- schedulers


def test_cosine_matches_torch_and_holds_eta_min(model):
    optimizer = create_optimizer(model.parameters(), optimizer_name="adamw", lr=1e-4)
    scheduler = create_scheduler(optimizer=optimizer, scheduler_name="cosine", epochs=100, eta_min=1e-7)
    ref = tls.CosineAnnealingLR(_ref_opt(), T_max=100, eta_min=1e-7)
    ours, theirs = _lrs(scheduler, 101), _lrs(ref, 101)
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert ours[0] == 1e-4 and ours[50] == pytest.approx((1e-4 + 1e-7) / 2, rel=1e-9)
    assert ours[100] == pytest.approx(1e-7, rel=1e-9)
    assert _lrs(scheduler, 50) == pytest.approx([1e-7] * 50, rel=1e-9)  # no rebound past T_max
    assert all(g["lr"] == pytest.approx(1e-7) for g in optimizer.param_groups)  # every group


def test_cosine_warm_restarts_matches_torch(model):
    optimizer = create_optimizer(model.parameters(), optimizer_name="adamw", lr=1e-4)
    scheduler = create_scheduler(
        optimizer=optimizer, scheduler_name="cosine_warm_restarts", epochs=100, T_0=25, T_mult=2, eta_min=1e-7
    )
    ref = tls.CosineAnnealingWarmRestarts(_ref_opt(), T_0=25, T_mult=2, eta_min=1e-7)
    ours, theirs = _lrs(scheduler, 100), _lrs(ref, 100)
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert ours[0] == ours[25] == pytest.approx(1e-4) and ours[75] == pytest.approx(1e-4)
    assert ours[24] < 2e-6 and ours[74] < 2e-6  # just before each restart: near eta_min


def test_onecycle_matches_torch_and_holds_after_the_end(model):
    optimizer = create_optimizer(model.parameters(), optimizer_name="adamw", lr=1e-4)
    scheduler = create_scheduler(
        optimizer=optimizer, scheduler_name="onecycle", epochs=100, max_lr=1e-3, steps_per_epoch=100, pct_start=0.3
    )
    total = 100 * 100
    ref = tls.OneCycleLR(_ref_opt(), max_lr=1e-3, total_steps=total, pct_start=0.3)
    ours, theirs = _lrs(scheduler, total), _lrs(ref, total)
    assert ours == pytest.approx(theirs, rel=1e-9)
    # torch's convention: phase 1 ends at step pct_start * total - 1
    assert ours.index(max(ours)) == int(0.3 * total) - 1 and max(ours) == pytest.approx(1e-3, rel=1e-12)
    assert ours[0] == pytest.approx(1e-3 / 25) and ours[-1] == pytest.approx(1e-3 / 25 / 1e4, rel=1e-3)
    tail = _lrs(scheduler, 10)  # torch's OneCycleLR raises here
    assert tail == [optimizer.param_groups[0]["lr"]] * 10 and tail[0] <= ours[-1]


def test_plateau_halves_after_patience_plus_one_bad_epochs(model):
    optimizer = create_optimizer(model.parameters(), optimizer_name="adamw", lr=1e-4)
    scheduler = create_scheduler(
        optimizer=optimizer, scheduler_type="plateau", mode="max", factor=0.5, patience=10, threshold=1e-4
    )
    assert isinstance(scheduler, tls.ReduceLROnPlateau)
    after = []
    for _ in range(24):
        scheduler.step(0.7)  # the first call sets the best value; the rest do not improve on it
        after.append(optimizer.param_groups[0]["lr"])
    # epoch 1 sets the best; epochs 2..12 are 11 = patience + 1 bad epochs -> halved after the 12th
    assert after[:11] == [1e-4] * 11
    assert after[11] == pytest.approx(5e-5, rel=1e-12)
    assert after[12:22] == pytest.approx([5e-5] * 10) and after[22] == pytest.approx(2.5e-5)
    # an improvement (mode max) resets the count
    scheduler.step(0.9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-5)


def test_warmup_cosine(model):
    optimizer = create_optimizer(model.parameters(), optimizer_name="adamw", lr=1e-4)
    scheduler = create_scheduler(
        optimizer=optimizer, scheduler_type="warmup_cosine", warmup_epochs=10, max_epochs=100, eta_min=1e-6
    )
    lrs = _lrs(scheduler, 130)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # strictly rising warmup
    assert lrs[10] == pytest.approx(1e-4, rel=1e-12)
    assert all(a > b for a, b in zip(lrs[10:100], lrs[11:101]))  # decays monotonically
    assert lrs[55] == pytest.approx((1e-4 + 1e-6) / 2, rel=1e-9)  # cosine midpoint of the 90 epochs
    assert lrs[100:] == pytest.approx([1e-6] * 30, rel=1e-9)  # reaches eta_min at 100 and holds


# --------------------------------------------------------------------------- combined


def _check_adamw_cosine(opt, sched, model) -> None:
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["lr"] == 1e-4
    _check_no_decay_on_1d(opt, model, 1e-4)
    lrs = _lrs(sched, 101)
    assert lrs[50] == pytest.approx((1e-4 + 1e-7) / 2, rel=1e-9) and lrs[100] == pytest.approx(1e-7)


def test_recommended_usage(model):
    optimizer, scheduler = create_optimizer_and_scheduler(
        model.parameters(),
        optimizer_name="adamw",
        lr=1e-4,
        weight_decay=1e-4,
        scheduler_name="cosine",
        epochs=100,
        eta_min=1e-7,
    )
    _check_adamw_cosine(optimizer, scheduler, model)


def test_advanced_configuration(model):
    optimizer, scheduler = create_optimizer_and_scheduler(
        model.parameters(),
        optimizer_name="adamw",
        lr=1e-4,
        weight_decay=1e-4,
        scheduler_name="cosine_warm_restarts",
        epochs=100,
        T_0=25,
        T_mult=2,
        eta_min=1e-7,
    )
    assert isinstance(scheduler, tls.CosineAnnealingWarmRestarts)
    assert (scheduler.T_0, scheduler.T_mult, scheduler.eta_min) == (25, 2, 1e-7)
    _check_no_decay_on_1d(optimizer, model, 1e-4)


def test_python_flat_configuration(model):
    config = {
        "optimizer_name": "adamw",
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "scheduler_name": "cosine",
        "epochs": 100,
        "eta_min": 1e-7,
    }
    optimizer, scheduler = create_optimizer_and_scheduler(model.parameters(), **config)
    _check_adamw_cosine(optimizer, scheduler, model)
    optimizer, scheduler = create_optimizer_and_scheduler(model=model, config=config)  # as config=
    _check_adamw_cosine(optimizer, scheduler, model)
    optimizer, scheduler = OptimizerFactory().create_optimizer_and_scheduler(model=model, config=config)
    _check_adamw_cosine(optimizer, scheduler, model)


FINETUNE = {
    "optimizer": {"type": "adamw", "learning_rate": 1e-5, "weight_decay": 1e-4},
    "scheduler": {"type": "warmup_cosine", "warmup_epochs": 5, "max_epochs": 50},
    "gradient_clipping": {"enabled": True, "max_norm": 0.5},
}
LARGE_MODEL = {
    "optimizer": {"type": "adamw", "learning_rate": 1e-4, "weight_decay": 1e-4, "betas": [0.9, 0.95]},
    "scheduler": {"type": "cosine", "T_max": 200, "eta_min": 1e-6},
    "gradient_clipping": {"enabled": True, "max_norm": 1.0},
}
PY_NESTED = {
    "optimizer": {"type": "adamw", "learning_rate": 1e-4, "weight_decay": 1e-4},
    "scheduler": {"type": "cosine", "T_max": 100},
}


def test_finetune_config(model):
    factory = OptimizerFactory()
    optimizer, scheduler = factory.create_optimizer_and_scheduler(model=model, config=FINETUNE)
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["initial_lr"] == 1e-5
    _check_no_decay_on_1d(optimizer, model, 1e-4)
    lrs = _lrs(scheduler, 60)
    assert lrs[0] == pytest.approx(1e-7)  # warmup starts at warmup_start_factor (0.01) x LR
    assert lrs[5] == pytest.approx(1e-5) and max(lrs) == pytest.approx(1e-5)
    assert lrs[50:] == pytest.approx([0.0] * 10, abs=1e-15)  # eta_min default 0, reached at max_epochs
    clipper = factory.create_gradient_clipper(FINETUNE)
    assert (clipper.mode, clipper.max_norm) == ("norm", 0.5)


def test_large_model_config(model):
    factory = OptimizerFactory()
    optimizer, scheduler = factory.create_optimizer_and_scheduler(model=model, config=LARGE_MODEL)
    assert type(optimizer) is torch.optim.AdamW
    assert all(g["betas"] == (0.9, 0.95) and isinstance(g["betas"], tuple) for g in optimizer.param_groups)
    assert optimizer.param_groups[0]["lr"] == 1e-4
    _check_no_decay_on_1d(optimizer, model, 1e-4)
    lrs = _lrs(scheduler, 201)  # T_max: 200, no epochs needed
    assert lrs[100] == pytest.approx((1e-4 + 1e-6) / 2, rel=1e-9) and lrs[200] == pytest.approx(1e-6)
    clipper = factory.create_gradient_clipper(LARGE_MODEL)
    assert (clipper.mode, clipper.max_norm, clipper.norm_type) == ("norm", 1.0, 2.0)


def test_python_nested_configuration(model):
    optimizer, scheduler = OptimizerFactory().create_optimizer_and_scheduler(model=model, config=PY_NESTED)
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["lr"] == 1e-4
    lrs = _lrs(scheduler, 101)
    assert lrs[50] == pytest.approx(5e-5, rel=1e-9) and lrs[100] == pytest.approx(0.0, abs=1e-15)


SEED_YAML_TRAINING = """\
# config.yaml
training:
  optimizer: "adamw"
  scheduler: "cosine"
  learning_rate: 1e-4
  weight_decay: 1e-4
  eta_min: 1e-7
  max_grad_norm: 1.0
  amp: true
  compile: true
"""
SEED_YAML_NESTED = """\
# config.yaml
optimizer:
  type: 'adamw'
  learning_rate: 1e-4
  weight_decay: 1e-4
  betas: [0.9, 0.999]
  eps: 1e-8

scheduler:
  type: 'cosine'
  T_max: 100
  eta_min: 1e-6

gradient_clipping:
  enabled: true
  max_norm: 1.0
"""


def _load(tmp_path, text: str) -> dict:
    (tmp_path / "config.yaml").write_text(text)
    with open(tmp_path / "config.yaml", "r") as f:
        config = yaml.safe_load(f)
    return config


def test_yaml_nested_experiment_configuration(model, tmp_path):
    config = _load(tmp_path, SEED_YAML_NESTED)
    assert config["optimizer"]["learning_rate"] == "1e-4"  # PyYAML: a string, not a float
    factory = OptimizerFactory()
    optimizer, scheduler = factory.create_optimizer_and_scheduler(model=model, config=config)
    g = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.AdamW
    assert (g["lr"], g["betas"], g["eps"]) == (1e-4, (0.9, 0.999), 1e-8)
    _check_no_decay_on_1d(optimizer, model, 1e-4)
    lrs = _lrs(scheduler, 101)
    assert lrs[50] == pytest.approx((1e-4 + 1e-6) / 2, rel=1e-9) and lrs[100] == pytest.approx(1e-6)
    clipper = factory.create_gradient_clipper(config)
    assert (clipper.mode, clipper.max_norm) == ("norm", 1.0)
    assert factory.create_scheduler(optimizer, config=config).T_max == 100
    assert factory.create_optimizer(model=model, config=config).param_groups[0]["lr"] == 1e-4


def test_yaml_training_block(model, tmp_path):
    config = _load(tmp_path, SEED_YAML_TRAINING)
    factory = OptimizerFactory()
    optimizer, scheduler = factory.create_optimizer_and_scheduler(model=model, config=config, epochs=100)
    _check_adamw_cosine(optimizer, scheduler, model)
    clipper = factory.create_gradient_clipper(config)
    assert (clipper.mode, clipper.max_norm) == ("norm", 1.0)
    optimizer, scheduler = create_optimizer_and_scheduler(model=model, config=config, max_epochs=100)
    _check_adamw_cosine(optimizer, scheduler, model)
    with pytest.raises(ConfigError, match=r"^scheduler\.T_max: .*epochs"):  # cosine needs a run length
        factory.create_optimizer_and_scheduler(model=model, config=config)


# --------------------------------------------------------------------------- factory & training


def test_seed_unit_test(model):
    factory = OptimizerFactory()
    optimizer = factory.create_optimizer(model=model, config={"type": "adam", "learning_rate": 1e-4})

    assert optimizer is not None
    assert optimizer.param_groups[0]["lr"] == 1e-4
    assert type(optimizer) is torch.optim.Adam


@pytest.mark.parametrize("config", [PY_NESTED, LARGE_MODEL, FINETUNE], ids=["nested", "large", "finetune"])
def test_seed_integration_test_and_training_loop(model, config):
    factory = OptimizerFactory()
    optimizer, scheduler = factory.create_optimizer_and_scheduler(model=model, config=config)
    clipper = factory.create_gradient_clipper(config)
    before = [p.detach().clone() for p in model.parameters()]
    num_epochs, dataloader = 3, [torch.randn(16, 4) for _ in range(4)]
    for epoch in range(num_epochs):
        for batch in dataloader:
            loss = model(batch).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            norm = clipper.clip_gradients(model.parameters())
            assert torch.isfinite(norm)
            optimizer.step()
        scheduler.step()
        assert not torch.isnan(loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_factory_scheduler_and_clipper_variants(model):
    factory = OptimizerFactory()
    opt = factory.create_optimizer(model=model, config={"optimizer_name": "sgd", "lr": 0.1})
    assert type(opt) is torch.optim.SGD
    sched = factory.create_scheduler(opt, config={"type": "cosine", "eta_min": 0.0}, epochs=10)
    assert _lrs(sched, 11)[10] == pytest.approx(0.0, abs=1e-15)
    assert factory.create_gradient_clipper({"max_norm": 2.0}).max_norm == 2.0  # the block itself
    assert factory.create_gradient_clipper({"optimizer": {"type": "adam"}}).mode == "none"  # nothing set
    assert factory.create_gradient_clipper({"gradient_clipping": {"enabled": False, "max_norm": 1.0}}).mode == "none"
    adaptive = factory.create_gradient_clipper({"gradient_clipping": {"adaptive": True, "clip_factor": 0.1}})
    assert (adaptive.mode, adaptive.clip_factor) == ("adaptive", 0.1)
    assert factory.create_gradient_clipper({"training": {"max_grad_norm": None}}).mode == "none"


# --------------------------------------------------------------------------- gradient clipping


def test_gradient_clipper_seed_examples(model):
    from survopt_hydra import GradientClipper

    clipper = GradientClipper(max_norm=1.0, norm_type=2)
    loss = (model(torch.randn(32, 4)) * 100).pow(2).mean()
    loss.backward()
    pre = clipper.clip_gradients(model.parameters())
    post = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert pre > 1.0 and post == pytest.approx(1.0, rel=1e-5)

    adaptive_clipper = GradientClipper(max_norm=1.0, adaptive=True, clip_factor=0.1)
    assert (adaptive_clipper.mode, adaptive_clipper.clip_factor) == ("adaptive", 0.1)
    w = model[0].weight
    adaptive_clipper.clip_gradients(model)
    unit = w.grad.norm(dim=1) / w.detach().norm(dim=1).clamp_min(1e-3)
    assert (unit <= 0.1 + 1e-6).all()


# --------------------------------------------------------------------------- other seed APIs


def test_monitor_examples_run_as_shown(model):
    from survopt_hydra import GradientMonitor, OptimizerMonitor

    optimizer = create_optimizer(model.parameters(), optimizer_name="adamw", lr=1e-4)
    monitor = OptimizerMonitor(optimizer=optimizer, log_interval=100)
    gradient_monitor = GradientMonitor(model=model, log_interval=100)
    for batch_idx, batch in enumerate([torch.randn(8, 4)] * 3):
        loss = model(batch).pow(2).mean()
        loss.backward()
        gradient_monitor.log_gradients()
        optimizer.step()
        monitor.log_lr(batch_idx)


def test_mixed_precision_and_distributed_examples_construct(model):
    from survopt_hydra import MixedPrecisionOptimizer

    mp_optimizer = MixedPrecisionOptimizer(model=model, optimizer_type="adamw", learning_rate=1e-4, use_amp=True)
    assert mp_optimizer is not None
    from survopt_hydra import DistributedOptimizer

    assert DistributedOptimizer  # constructing one needs world_size=4 processes


# --------------------------------------------------------------------------- refused values

SCHED_RUN = {"epochs": 10, "steps_per_epoch": 10}


def _opt_call(**kw):
    return lambda params: create_optimizer(params, **kw)


def _sched_call(**kw):
    return lambda params: create_scheduler(create_optimizer(params, lr=1e-3), **kw)


def _clip_call(config):
    return lambda params: OptimizerFactory().create_gradient_clipper(config)


def _pair_call(config=None, **kw):
    return lambda params: create_optimizer_and_scheduler(params, config=config, **kw)


BAD = [
    ("lr0", _opt_call(lr=0), "optimizer.lr", "must be > 0"),
    ("lr-", _opt_call(optimizer_name="sgd", learning_rate=-1e-3), "optimizer.lr", "must be > 0"),
    ("wd", _opt_call(weight_decay=-1e-4), "optimizer.weight_decay", "must be >= 0"),
    ("betas-len", _opt_call(betas=[0.9]), "optimizer.betas", "two values"),
    ("betas-range", _opt_call(name="adam", betas=[0.9, 1.0]), "optimizer.betas", "[0, 1)"),
    ("betas-str", _opt_call(betas="0.9,0.99"), "optimizer.betas", "must be a list"),
    ("momentum", _opt_call(type="sgd", momentum=-0.9), "optimizer.momentum", "must be >= 0"),
    ("eps", _opt_call(eps=0), "optimizer.eps", "must be > 0"),
    ("rms-eps", _opt_call(optimizer_type="rmsprop", eps=-1e-8), "optimizer.eps", "must be > 0"),
    ("name", _opt_call(optimizer_name="adamx"), "optimizer.name", "allowed: adadelta, adafactor, adagrad, adam, adamax, adamw"),
    ("key", _opt_call(lrr=1e-3), "optimizer.lrr", "did you mean 'lr'?"),
    ("sgd-key", _opt_call(name="sgd", betas=[0.9, 0.99]), "optimizer.betas", "unknown key"),
    ("str", _opt_call(lr="abc"), "optimizer.lr", "must be a number, got 'abc'"),
    ("str-wd", _opt_call(weight_decay="1e-4x"), "optimizer.weight_decay", "must be a number"),
    ("target", _opt_call(_target_="os.system"), "optimizer._target_", "never instantiates"),
    ("two-lr", _opt_call(lr=1e-3, learning_rate=1e-4), "optimizer.lr", "given twice"),
    ("two-name", _opt_call(optimizer_name="adam", type="sgd"), "optimizer.name", "given twice"),
    ("no-params", lambda p: create_optimizer(lr=1e-3), "optimizer.params", "pass exactly one"),
    ("T_0", _sched_call(scheduler_name="cosine_warm_restarts", T_0=0), "scheduler.T_0", "must be >= 1"),
    ("T_mult", _sched_call(scheduler_name="cosine_warm_restarts", T_mult=0), "scheduler.T_mult", ">= 1"),
    ("pct0", _sched_call(scheduler_name="onecycle", pct_start=0, **SCHED_RUN), "scheduler.pct_start", "(0, 1)"),
    ("pct1", _sched_call(scheduler_name="onecycle", pct_start=1.0, **SCHED_RUN), "scheduler.pct_start", "(0, 1)"),
    ("factor1", _sched_call(scheduler_type="plateau", factor=1.0), "scheduler.factor", "(0, 1)"),
    ("factor0", _sched_call(scheduler_type="plateau", factor=0), "scheduler.factor", "(0, 1)"),
    ("patience", _sched_call(scheduler_type="plateau", patience=-1), "scheduler.patience", "must be >= 0"),
    ("plateau-mode", _sched_call(scheduler_type="plateau", mode="maximum"), "scheduler.mode", "allowed: min, max"),
    ("gamma", _sched_call(name="step", gamma=0), "scheduler.gamma", "must be > 0"),
    ("gamma-exp", _sched_call(name="exponential", gamma=-0.5), "scheduler.gamma", "must be > 0"),
    ("eta_min", _sched_call(name="cosine", epochs=10, eta_min=-1e-7), "scheduler.eta_min", "must be >= 0"),
    ("sched-name", _sched_call(scheduler_name="cosin"), "scheduler.name", "did you mean 'cosine'?"),
    ("sched-key", _sched_call(name="cosine", epochs=10, etamin=0.1), "scheduler.etamin", "did you mean 'eta_min'"),
    ("sched-str", _sched_call(name="cosine", epochs=10, eta_min="abc"), "scheduler.eta_min", "must be a number"),
    ("epochs", _sched_call(name="cosine", epochs=0), "scheduler.epochs", "integer >= 1"),
    ("epochs-float", _sched_call(name="cosine", epochs=2.5), "scheduler.epochs", "integer"),
    ("two-epochs", _sched_call(name="cosine", epochs=100, max_epochs=50), "scheduler.epochs", "given twice"),
    ("clip-0", _clip_call({"gradient_clipping": {"enabled": True, "max_norm": 0}}),
     "gradient_clipping.max_norm", "must be > 0"),
    ("clip-factor", _clip_call({"gradient_clipping": {"adaptive": True, "clip_factor": 0}}),
     "gradient_clipping.clip_factor", "must be > 0"),
    ("clip-key", _clip_call({"gradient_clipping": {"max_nrom": 1.0}}), "gradient_clipping.max_nrom",
     "did you mean 'max_norm'"),
    ("clip-mode", _clip_call({"gradient_clipping": {"mode": "nrom"}}), "gradient_clipping.mode", "did you mean 'norm'"),
    ("clip-adaptive-mode", _clip_call({"gradient_clipping": {"adaptive": True, "mode": "value"}}),
     "gradient_clipping.adaptive", "conflicts"),
    ("clip-enabled", _clip_call({"gradient_clipping": {"enabled": "yes"}}), "gradient_clipping.enabled",
     "true or false"),
    ("max_grad_norm", _clip_call({"training": {"max_grad_norm": -1.0}}), "training.max_grad_norm", "must be > 0"),
    ("clip-target", _clip_call({"gradient_clipping": {"_target_": "os.system"}}), "gradient_clipping._target_",
     "never instantiates"),
    ("flat-key", _pair_call(lrr=1e-3, scheduler_name="cosine", epochs=10), "lrr", "did you mean 'lr'?"),
    ("flat-sched-key", _pair_call(scheduler_name="cosine", epochs=10, etamin=0), "etamin", "eta_min"),
    ("flat-type", _pair_call(type="adam"), "type", "optimizer_name"),
    ("flat-conflict", _pair_call(config={"learning_rate": 1e-4}, lr=1e-3), "optimizer.lr", "given twice"),
    ("nested-target", _pair_call(config={"optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}}),
     "optimizer._target_", "never instantiates"),
    ("training-target", _pair_call(config={"training": {"optimizer": "adamw", "_target_": "x"}}),
     "training._target_", "never instantiates"),
    ("deep-target", _pair_call(config={"optimizer": {"lr_mult": {"_target_": "x"}}}),
     "optimizer.lr_mult._target_", "never instantiates"),
    ("training-key", _pair_call(config={"training": {"optimizer": "adamw", "learning_rat": 1e-4}}),
     "training.learning_rat", "did you mean"),
    ("training-str", _pair_call(config={"training": {"learning_rate": "abc"}}), "optimizer.lr", "'abc'"),
    ("nested-name", _pair_call(config={"optimizer": {"type": "adamx"}}), "optimizer.name", "allowed"),
    ("nested-wd", _pair_call(config={"optimizer": {"weight_decay": -1}}), "optimizer.weight_decay", ">= 0"),
    ("config-str", _pair_call(config="config.yaml"), "config", "must be a mapping"),
    ("nested-sched-key", _pair_call(config={"scheduler": {"type": "cosine", "T_maxx": 3}}),
     "scheduler.T_maxx", "did you mean 'T_max'"),
]


@pytest.mark.parametrize("call, key, allowed", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values_are_refused_naming_the_key(model, call, key, allowed):
    with pytest.raises(ConfigError) as err:
        call(model.parameters())
    assert isinstance(err.value, ValueError)
    assert err.value.key == key and str(err.value).startswith(f"{key}: "), str(err.value)
    assert allowed in str(err.value), str(err.value)


def test_unknown_optimizer_name_suggests_the_near_miss(model):
    with pytest.raises(ConfigError) as err:
        create_optimizer(model.parameters(), optimizer_name="adamx")
    msg = str(err.value)
    assert "did you mean 'adam" in msg  # 'adam' and 'adamw' are one edit away; difflib prefers 'adam'
    assert all(name in msg.split("allowed:")[1] for name in ("adam", "adamw", "sgd", "rmsprop"))


def test_gradient_clipper_refuses_bad_values_directly():
    from survopt_hydra import GradientClipper

    for kwargs, key in (({"max_norm": 0}, "clipping.max_norm"), ({"clip_factor": -1, "adaptive": True},
                                                                  "clipping.clip_factor")):
        with pytest.raises(ValueError, match=rf"^{key}"):
            GradientClipper(**kwargs)


def test_hydra_nodes_are_accepted_but_targets_are_not(model):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"optimizer": {"type": "sgd", "lr": "1e-2"}, "scheduler": {"type": "cosine", "T_max": 5}})
    opt, sched = create_optimizer_and_scheduler(model=model, config=cfg)
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["lr"] == 1e-2
    assert math.isclose(_lrs(sched, 6)[5], 0.0, abs_tol=1e-15)
    with pytest.raises(ConfigError, match=r"^optimizer\._target_"):
        create_optimizer(model.parameters(), **OmegaConf.create({"_target_": "os.system"}))
