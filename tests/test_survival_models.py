"""Survival networks: shapes, configuration errors, pretrained loading and learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival.synthetic_images import make_synthetic_images
from survopt_hydra.survival.losses import cox_ph_loss
from survopt_hydra.survival.metrics import concordance_index
from survopt_hydra.survival.models import MLP, LinearCox, SmallCNN


def test_linear_cox_is_x_times_beta_without_bias():
    model = LinearCox(3)
    assert [name for name, _ in model.named_parameters()] == ["linear.weight"]
    x = torch.randn(5, 3)
    out = model(x)
    assert out.shape == (5,)
    torch.testing.assert_close(out, x @ model.linear.weight[0])


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
@pytest.mark.parametrize("activation", ["relu", "selu", "gelu", "tanh"])
def test_mlp_variants_give_one_risk_per_row(norm, activation):
    torch.manual_seed(0)
    model = MLP(4, hidden=(8, 6), dropout=0.2, norm=norm, activation=activation)
    out = model(torch.randn(10, 4))
    assert out.shape == (10,) and torch.isfinite(out).all()
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("BatchNorm1d" in kinds) == (norm == "batch") and ("LayerNorm" in kinds) == (norm == "layer")
    assert ("AlphaDropout" in kinds) == (activation == "selu")


def test_mlp_without_hidden_layers_is_linear():
    model = MLP(3, hidden=(), dropout=0.0)
    x = torch.randn(4, 3)
    torch.testing.assert_close(model(x), x @ model.net[0].weight[0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"norm": "group"}, "unknown norm 'group'; allowed: batch, layer, none"),
        ({"activation": "swish"}, "unknown activation 'swish'; allowed: relu, selu, gelu, tanh"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_mlp_refuses_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(3, **kwargs)


def test_mlp_defaults_and_options_equal_the_app_schema():
    """One source for the MLP's settings: the class's defaults are the app's ``model=mlp``
    defaults, and every norm / activation the class knows passes the schema's check."""
    import dataclasses
    import inspect

    from survopt_hydra.app.schemas import MLPModelConfig
    from survopt_hydra.schemas.checks import validate
    from survopt_hydra.errors import ConfigError
    from survopt_hydra.survival.models import ACTIVATIONS, NORMS

    signature = inspect.signature(MLP).parameters
    schema = MLPModelConfig()
    fields = [f.name for f in dataclasses.fields(schema) if not f.name.startswith("_") and f.name != "name"]
    head = ("in_features", "out_features", "bias")  # the input and the family's head: set by the app, not the schema
    assert sorted(fields) == sorted(n for n in signature if n not in head)
    for name in fields:
        default = signature[name].default
        assert (list(default) if isinstance(default, tuple) else default) == getattr(schema, name), name
    for norm in NORMS:
        validate(MLPModelConfig, {"norm": norm}, "model")
    for activation in ACTIVATIONS:
        validate(MLPModelConfig, {"activation": activation}, "model")
    with pytest.raises(ConfigError, match="model.norm"):
        validate(MLPModelConfig, {"norm": "group"}, "model")


def test_cnn_shapes_and_parameter_groups():
    model = SmallCNN(in_channels=2, channels=(4, 8), hidden=6)
    assert model(torch.randn(3, 2, 20, 20)).shape == (3,)
    names = [name for name, _ in model.named_parameters()]
    assert names and all(n.startswith(("backbone.", "head.")) for n in names)
    assert any(n.startswith("backbone.") for n in names) and any(n.startswith("head.") for n in names)
    assert model.backbone(torch.randn(3, 2, 20, 20)).shape == (3, 8)
    with pytest.raises(ValueError, match=r"expected images \(n, 2, H, W\), got \(3, 20, 20\)"):
        model(torch.randn(3, 20, 20))


@pytest.mark.parametrize("wrap", ["full", "model_key", "backbone_only"])
def test_pretrained_backbone_round_trips(tmp_path, wrap):
    torch.manual_seed(0)
    source = SmallCNN(channels=(4, 8), hidden=6)
    with torch.no_grad():  # make BN running stats non-default so they must be loaded too
        source.backbone[1].running_mean.uniform_(-1, 1)
    state = {
        "full": source.state_dict(),
        "model_key": {"model": source.state_dict(), "epoch": 3},
        "backbone_only": source.backbone.state_dict(),
    }[wrap]
    torch.save(state, tmp_path / "w.pt")
    torch.manual_seed(1)
    target = SmallCNN(channels=(4, 8), hidden=6, pretrained=str(tmp_path / "w.pt"))
    source.eval(), target.eval()
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(target.backbone(x), source.backbone(x))
    # The head is task specific and stays freshly initialised.
    assert not torch.equal(target.head[0].weight, source.head[0].weight)


def test_pretrained_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="^SmallCNN.pretrained: file not found: .*missing.pt$"):
        SmallCNN(pretrained=str(tmp_path / "missing.pt"))
    torch.save(SmallCNN(channels=(4, 8)).state_dict(), tmp_path / "small.pt")
    with pytest.raises(ValueError) as err:
        SmallCNN(channels=(4, 16), pretrained=str(tmp_path / "small.pt"))
    assert "shape mismatch for backbone.4.weight" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="does not match the backbone"):
        SmallCNN(channels=(4, 8, 8), pretrained=str(tmp_path / "small.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint\n\nsecond line")
    with pytest.raises(ValueError, match="^SmallCNN.pretrained: cannot load") as err:
        SmallCNN(pretrained=str(tmp_path / "junk.pt"))
    assert "\n" not in str(err.value)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        SmallCNN(pretrained=str(tmp_path / "list.pt"))


def test_linear_cox_recovers_true_coefficients():
    rng = np.random.default_rng(0)
    beta = np.array([1.0, -0.5, 0.0])
    x = rng.normal(size=(2000, 3))
    event_time = rng.exponential(1.0 / np.exp(x @ beta))
    censor_time = rng.exponential(2.0, size=2000)
    durations, events = np.minimum(event_time, censor_time), (event_time <= censor_time).astype(float)
    xt, dt, et = (torch.tensor(a, dtype=torch.float32) for a in (x, durations, events))
    model = LinearCox(3)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        cox_ph_loss(model(xt), dt, et).backward()
        opt.step()
    np.testing.assert_allclose(model.linear.weight.detach().numpy()[0], beta, atol=0.12)


@pytest.fixture
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a busy runner threads contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_small_cnn_learns_synthetic_images(one_thread):
    torch.manual_seed(0)
    images, durations, events = (torch.from_numpy(a) for a in make_synthetic_images(600, size=16, seed=0))
    model = SmallCNN(channels=(4, 8), hidden=16, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    test = slice(400, 600)
    for _ in range(4):
        for batch in torch.randperm(400).split(100):
            opt.zero_grad()
            cox_ph_loss(model(images[batch]), durations[batch], events[batch]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        # Untrained ~0.5; the true hazard itself reaches ~0.8 on this data.
        assert concordance_index(model(images[test]), durations[test], events[test]) > 0.62
