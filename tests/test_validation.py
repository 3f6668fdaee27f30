"""Whole-config validation before a run: ranges and cross-group checks name the key."""
import pytest

from survopt_hydra import ConfigError
from survopt_hydra.validation import validate_groups

BASE = {"optimizer": {"name": "adamw", "lr": 1e-3}, "scheduler": {"name": "cosine"}, "clipping": {"mode": "norm"}}


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"optimizer": {"name": "adamw", "lr": 0.0}}, "optimizer.lr"),
        ({"optimizer": {"name": "adamx"}}, "optimizer.name"),
        ({"scheduler": {"name": "warmup_cosine", "warmup_epochs": 12}}, "scheduler.warmup_epochs"),
        ({"scheduler": {"name": "cosine", "interval": "step"}}, "scheduler.interval"),
        ({"clipping": {"mode": "norm", "max_norm": 0}}, "clipping.max_norm"),
        ({"clipping": {"mode": "adaptive", "clip_factor": -1}}, "clipping.clip_factor"),
        ({"amp": {"dtype": "fp8"}}, "amp.dtype"),
        ({"distributed": {"strategy": "mpi"}}, "distributed.strategy"),
        ({"distributed": {"strategy": "ddp", "backend": "mpi"}}, "distributed.backend"),
    ],
)
def test_bad_config_is_refused_before_the_run(patch, key):
    with pytest.raises(ConfigError) as err:
        validate_groups({**BASE, **patch}, epochs=10)
    assert err.value.key == key


def test_good_config_passes_and_step_schedules_need_steps_per_epoch():
    validate_groups(BASE, epochs=10)
    cfg = {**BASE, "scheduler": {"name": "onecycle"}}
    validate_groups(cfg, epochs=10, steps_per_epoch=5)
    with pytest.raises(ConfigError, match="scheduler.interval"):
        validate_groups(cfg, epochs=10)


@pytest.mark.parametrize(
    "group, target, message",
    [
        ("scheduler", "builtins.dict", "scheduler._target_: 'builtins.dict' cannot take this option's fields"),
        ("scheduler", "torch.optim.lr_scheduler.StepLR", "scheduler._target_: 'torch.optim.lr_scheduler.StepLR' cannot"),
        ("clipping", "os.system", "clipping._target_: 'os.system' is not survopt_hydra.clipping.GradientClipper"),
        ("optimizer", "subprocess.run", "optimizer._target_: 'subprocess.run' is not a torch.optim.Optimizer subclass"),
        ("optimizer", "nope.Nope", "optimizer._target_: cannot import 'nope.Nope'"),
    ],
)
def test_target_overrides_of_the_wrong_kind_are_refused_without_calling(monkeypatch, group, target, message):
    """Issue 13 defect 8: the check imports the target and looks at it; nothing is called."""
    import os

    monkeypatch.setattr(os, "system", lambda *a: pytest.fail("os.system was called"))
    cfg = {**BASE, group: {**BASE[group], "_target_": target}}
    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        validate_groups(cfg, epochs=10)


def test_target_of_the_right_kind_passes():
    validate_groups({**BASE, "optimizer": {**BASE["optimizer"], "_target_": "torch.optim.Adamax"},
                     "clipping": {**BASE["clipping"], "_target_": "survopt_hydra.clipping.GradientClipper"}}, epochs=10)


def test_closure_driven_optimizer_is_refused_for_the_engine():
    with pytest.raises(ConfigError, match=r"^optimizer.name: lbfgs is closure-driven .* without a closure"):
        validate_groups({**BASE, "optimizer": {"name": "lbfgs"}}, epochs=10)


def test_inf_norm_accepted_and_overflowing_init_scale_refused():
    """Issue 13: the max norm is norm_type=inf; a loss scale beyond float32 overflows at the first step."""
    validate_groups({**BASE, "clipping": {"mode": "norm", "norm_type": float("inf")}}, epochs=10)
    with pytest.raises(ConfigError, match=r"^clipping.norm_type: must be a finite number"):
        validate_groups({**BASE, "clipping": {"mode": "norm", "norm_type": float("nan")}}, epochs=10)
    with pytest.raises(ConfigError, match=r"^amp.init_scale: must be > 0 and fit in float32"):
        validate_groups({**BASE, "amp": {"dtype": "fp16", "init_scale": 1e300}}, epochs=10)
