"""Whole-config validation before a run: ranges and cross-group checks name the key."""
import pytest

from survopt_hydra import ConfigError
from survopt_hydra.api.validation import validate_groups

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
        ("clipping", "os.system", "clipping._target_: 'os.system' is not survopt_hydra.engine.GradientClipper"),
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
                     "clipping": {**BASE["clipping"], "_target_": "survopt_hydra.engine.GradientClipper"}}, epochs=10)


def test_closure_driven_optimizer_is_refused_for_the_engine_and_the_app_not_for_your_own_loop():
    """LBFGS is right in an app's own step(closure) loop (validate_groups accepts it), wrong for a loop that
    steps once per batch: the StepEngine and the app's check refuse it in one line."""
    import torch

    from survopt_hydra import StepEngine, build_optimizer
    from survopt_hydra.api.validation import check_no_closure

    lbfgs = {**BASE, "optimizer": {"name": "lbfgs"}}
    validate_groups(lbfgs, epochs=10)
    with pytest.raises(ConfigError, match=r"^optimizer.name: lbfgs is closure-driven .* without a closure"):
        check_no_closure(lbfgs)
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ConfigError, match=r"^optimizer.name: lbfgs is closure-driven .* without a closure"):
        StepEngine(model, build_optimizer(model, "lbfgs"))


def test_inf_norm_accepted_and_overflowing_init_scale_refused():
    """Issue 13: the max norm is norm_type=inf; a loss scale beyond float32 overflows at the first step."""
    validate_groups({**BASE, "clipping": {"mode": "norm", "norm_type": float("inf")}}, epochs=10)
    with pytest.raises(ConfigError, match=r"^clipping.norm_type: must be a finite number"):
        validate_groups({**BASE, "clipping": {"mode": "norm", "norm_type": float("nan")}}, epochs=10)
    with pytest.raises(ConfigError, match=r"^amp.init_scale: must be > 0 and fit in float32"):
        validate_groups({**BASE, "amp": {"dtype": "fp16", "init_scale": 1e300}}, epochs=10)


@pytest.mark.parametrize("spelling", [float("inf"), "inf", ".inf", "+inf", "+.inf", "Infinity", "INF", " .Inf "])
def test_every_spelling_of_infinity_is_the_max_norm(spelling):
    """Issue 13 defect 9: inf / .inf / +inf / Infinity, as a float or as text, mean float('inf')."""
    import math

    import torch

    from survopt_hydra.engine.clipping import GradientClipper
    from survopt_hydra.schemas.checks import validate
    from survopt_hydra.schemas.clipping import NormClippingConfig

    assert validate(NormClippingConfig, {"norm_type": spelling}, "clipping")["norm_type"] == math.inf
    validate_groups({**BASE, "clipping": {"mode": "norm", "norm_type": spelling}}, epochs=10)
    grads = torch.tensor([3.0, -4.0, 1.0])
    ours, reference = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    ours.grad, reference.grad = grads.clone(), grads.clone()
    norm = GradientClipper(mode="norm", norm_type=spelling, max_norm=0.5).clip_gradients([ours])
    expected = torch.nn.utils.clip_grad_norm_([reference], 0.5, norm_type=float("inf"))
    assert float(norm) == float(expected) == 4.0  # the max norm, not the L2 norm (5.1)
    torch.testing.assert_close(ours.grad, reference.grad)


@pytest.mark.parametrize("spelling", ["-inf", "-.inf", "nan", ".nan", "infinite", float("-inf")])
def test_negative_infinity_and_nan_norms_are_refused(spelling):
    with pytest.raises(ConfigError, match=r"^clipping.norm_type: must be a"):
        validate_groups({**BASE, "clipping": {"mode": "norm", "norm_type": spelling}}, epochs=10)


def test_command_line_yaml_infinity_reaches_the_schema_as_inf():
    """Hydra's grammar reads `.inf` as text, which the float field of the composed config refuses:
    the pre-flight rewrites YAML's spelling to `inf` for the checks and for hydra.main (sys.argv)."""
    import math

    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.preflight import yaml_infinity
    from survopt_hydra.app.rules import check_config

    argv = yaml_infinity(["clipping.norm_type=.inf", "clipping.max_norm=+.inf", "x=-.INF", "y=a.inf", "-m"])
    assert argv == ["clipping.norm_type=inf", "clipping.max_norm=+inf", "x=-inf", "y=a.inf", "-m"]
    task = compose_train(argv[:1])
    check_config(task)
    from survopt_hydra.schemas.checks import validate
    from survopt_hydra.schemas.clipping import NormClippingConfig
    from survopt_hydra.api.validation import plain_values

    assert validate(NormClippingConfig, plain_values(task.clipping), "clipping")["norm_type"] == math.inf
    with pytest.raises(ConfigError, match=r"^clipping.max_norm: must be a finite number, got inf"):
        validate_groups({**BASE, "clipping": {**plain_values(task.clipping), "max_norm": math.inf}}, epochs=10)


def test_dummy_optimizer_keeps_torchs_own_checks_without_importing_dynamo():
    """The run-length check builds its throwaway optimizer with torch's constructor (torch's value
    checks: one copy of the rules) but without the first-call ``import torch._dynamo``; afterwards
    torch's lazy dynamo wrapper is back in place for the run's real optimizer."""
    import torch

    from survopt_hydra.api.validation import dynamo_free

    raw = torch.optim.Optimizer.add_param_group.__wrapped__
    cfg = {**BASE, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": True}}
    with pytest.raises(ConfigError, match=r"^optimizer: SGD refused the settings: Nesterov momentum requires"):
        validate_groups(cfg, epochs=10)
    with pytest.raises(ConfigError, match=r"^optimizer: Adam refused the settings: .*fused.*differentiable"):
        validate_groups({**BASE, "optimizer": {"name": "adam", "lr": 0.1, "differentiable": True,
                                               "fused": True}}, epochs=10)
    assert "__dynamo_disable" not in vars(raw) or "torch._dynamo" in __import__("sys").modules
    with dynamo_free():
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and "__dynamo_disable" not in vars(raw) \
        or "torch._dynamo" in __import__("sys").modules
