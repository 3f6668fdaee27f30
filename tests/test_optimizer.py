"""The optimizer group: real torch classes, parameter groups, fused defaults, validation."""
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from survopt_hydra import ConfigError, build_optimizer
from survopt_hydra.config import OPTIMIZERS, register_configs
from survopt_hydra.optimizer import TORCH_CLASSES

CONF = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture(scope="module")
def compose_cfg():
    register_configs()

    def _compose(*overrides):
        with initialize_config_dir(config_dir=CONF, version_base=None):
            return compose(config_name=None, overrides=list(overrides))

    return _compose


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_option_instantiates_the_torch_class(compose_cfg, tiny_model, name):
    cfg = compose_cfg(f"+optimizer={name}", "optimizer.lr=0.01")
    opt = instantiate(cfg.optimizer, params=tiny_model)
    assert type(opt) is getattr(torch.optim, TORCH_CLASSES[name])
    assert all(g["lr"] == pytest.approx(0.01) for g in opt.param_groups)
    if "betas" in opt.defaults:
        assert isinstance(opt.param_groups[0]["betas"], tuple)


def test_params_can_be_module_iterable_or_groups(tiny_model):
    from_module = build_optimizer(tiny_model, "adamw", lr=1e-3, weight_decay=0.1)
    from_iter = build_optimizer(tiny_model.parameters(), "adamw", lr=1e-3, weight_decay=0.1)
    groups = [{"params": tiny_model[0].parameters(), "lr": 0.5}, {"params": tiny_model[3].parameters()}]
    from_groups = build_optimizer(groups, "sgd", lr=0.1)
    n = sum(p.numel() for p in tiny_model.parameters())
    for opt in (from_module, from_iter):
        assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == n
    assert [g["lr"] for g in from_groups.param_groups] == [0.5, 0.1]
    assert [g["name"] for g in from_groups.param_groups] == ["group0", "group1"]


def test_no_weight_decay_on_biases_and_norm_weights(tiny_model):
    opt = build_optimizer(tiny_model, "adamw", lr=1e-3, weight_decay=0.05)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["default"]["weight_decay"] == 0.05
    assert by_name["default/no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in by_name["default"]["params"])
    # two Linear biases + BatchNorm weight and bias
    assert len(by_name["default/no_decay"]["params"]) == 4
    everything = build_optimizer(tiny_model, "adamw", lr=1e-3, weight_decay=0.05, no_weight_decay_1d=False)
    assert [g["weight_decay"] for g in everything.param_groups] == [0.05]


def test_lr_multiplier_by_name_pattern():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(3, 3))
    model.add_module("head", nn.Linear(3, 1))
    opt = build_optimizer(model, "adamw", lr=1e-3, lr_mult={"backbone.*": 0.1})
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"backbone.*": 1e-4, "backbone.*/no_decay": 1e-4, "default": 1e-3, "default/no_decay": 1e-3})


def test_fused_by_default_where_supported(tiny_model):
    for name in ("adam", "adamw", "sgd", "adagrad"):
        assert build_optimizer(tiny_model, name).defaults.get("fused") is True, name
    # rmsprop has no fused kernel: silently torch's default
    assert not build_optimizer(tiny_model, "rmsprop").defaults.get("fused")
    assert build_optimizer(tiny_model, "adamw", implementation="foreach").defaults["foreach"] is True


def test_fused_step_matches_for_loop_step():
    # No BatchNorm here: a bias feeding BN has an exactly-zero true gradient, and Adam
    # turns its rounding noise into full-size steps of either sign.
    torch.manual_seed(1)
    x = torch.randn(16, 4)
    reference = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    results = []
    for impl in ("fused", "for_loop"):
        model = __import__("copy").deepcopy(reference)
        opt = build_optimizer(model, "adamw", lr=1e-2, weight_decay=0.1, implementation=impl)
        for _ in range(3):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_partial_instantiate(compose_cfg, tiny_model):
    cfg = compose_cfg("+optimizer=sgd", "+optimizer._partial_=true")
    factory = instantiate(cfg.optimizer)
    opt = factory(params=tiny_model)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9


@pytest.mark.parametrize(
    "name, options, key",
    [
        ("adamw", {"lr": 0}, "optimizer.lr"),
        ("adamw", {"lr": -1e-3}, "optimizer.lr"),
        ("adamw", {"weight_decay": -0.1}, "optimizer.weight_decay"),
        ("adam", {"betas": [0.9]}, "optimizer.betas"),
        ("adam", {"betas": [0.9, 1.0]}, "optimizer.betas"),
        ("sgd", {"momentum": -0.5}, "optimizer.momentum"),
        ("adam", {"eps": 0}, "optimizer.eps"),
        ("adamw", {"lrr": 0.1}, "optimizer.lrr"),
        ("adamw", {"lr": "abc"}, "optimizer.lr"),
        ("adamw", {"implementation": "cuda"}, "optimizer.implementation"),
        ("adamx", {}, "optimizer.name"),
        ("adamw", {"lr_mult": {"x.*": -1}}, "optimizer.lr_mult.x.*"),
    ],
)
def test_bad_values_name_the_key(tiny_model, name, options, key):
    with pytest.raises(ConfigError) as err:
        build_optimizer(tiny_model, name, **options)
    assert err.value.key == key
    assert str(err.value).startswith(key)


def test_unknown_name_lists_allowed_and_suggests(tiny_model):
    with pytest.raises(ConfigError, match=r"did you mean 'adamw'.*allowed: adagrad, adam, adamw"):
        build_optimizer(tiny_model, "adamx")


def test_numeric_strings_from_yaml_are_coerced(tiny_model):
    opt = build_optimizer(tiny_model, "adamw", lr="1e-4", weight_decay="1e-4")
    assert opt.param_groups[0]["lr"] == 1e-4 and opt.param_groups[0]["weight_decay"] == 1e-4


def test_explicit_fused_without_a_kernel_is_refused(tiny_model):
    with pytest.raises(ConfigError, match="optimizer.implementation: RMSprop has no fused kernel"):
        build_optimizer(tiny_model, "rmsprop", implementation="fused")
