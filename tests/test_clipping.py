"""Behaviour of survopt_hydra.engine.clipping: every expected number is derived by hand or
by an independent per-parameter reference written here, never copied from the
implementation."""
from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch
from torch import nn

from survopt_hydra.schemas.clipping import CLIPPING
from survopt_hydra.engine.clipping import ClippingConfigError, GradientClipper, adaptive_clip_grad_
from survopt_hydra.errors import ConfigError


def _param(values, grad) -> nn.Parameter:
    p = nn.Parameter(torch.tensor(values, dtype=torch.float32))
    p.grad = torch.tensor(grad, dtype=torch.float32)
    return p


def _reference_agc(params, clip_factor: float, eps: float) -> None:
    """Straightforward per-parameter AGC (the definition, one tensor at a time)."""
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            w, g = p.detach(), p.grad
            if w.ndim <= 1:
                wn, gn = w.norm(), g.norm()
            else:
                shape = (-1,) + (1,) * (w.ndim - 1)
                wn = w.reshape(w.shape[0], -1).norm(dim=1).reshape(shape)
                gn = g.reshape(g.shape[0], -1).norm(dim=1).reshape(shape)
            max_norm = clip_factor * wn.clamp(min=eps)
            scale = torch.where(gn > max_norm, max_norm / gn.clamp(min=1e-6), torch.ones_like(gn))
            g.mul_(scale)


class _Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.tensor(1.5))


def _zoo() -> nn.Module:
    """Many parameter shapes: convs (dense, depthwise, 1x1, repeated small ones),
    linears, 1-D biases/norm gains, a big 1-D vector, a 0-D scalar, a float64 layer."""
    torch.manual_seed(0)
    m = nn.ModuleDict(
        {
            "stem": nn.Conv2d(3, 16, 5),
            "bn": nn.BatchNorm2d(16),
            "dw": nn.ModuleList([nn.Conv2d(16, 16, 3, groups=16) for _ in range(5)]),
            "small": nn.ModuleList([nn.Conv2d(16, 16, 3) for _ in range(9)]),
            "pw": nn.Conv2d(16, 64, 1),
            "big": nn.Conv2d(64, 128, 3),
            "mlp": nn.Sequential(nn.Linear(128, 300), nn.LayerNorm(300), nn.Linear(300, 10)),
            "scalar": _Scalar(),
            "f64": nn.Linear(7, 5).double(),
        }
    )
    m.register_parameter("long", nn.Parameter(torch.randn(70_000)))
    return m


def _random_grads(model: nn.Module, seed: int) -> None:
    """Gradients whose per-parameter scale spans 1e-4..1e1 so that some units are
    clipped and some are not."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        scale = 10 ** (torch.rand((), generator=gen).item() * 5 - 4)
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


# --------------------------------------------------------------------------- norm


def test_norm_mode_returns_13_and_scales_by_one_thirteenth():
    a, b = _param([0.0, 0.0], [3.0, 4.0]), _param([0.0], [12.0])
    total = GradientClipper(max_norm=1.0, norm_type=2).clip_gradients([a, b])
    assert total.item() == pytest.approx(13.0)
    torch.testing.assert_close(a.grad, torch.tensor([3.0, 4.0]) / 13, rtol=1e-5, atol=0)
    torch.testing.assert_close(b.grad, torch.tensor([12.0]) / 13, rtol=1e-5, atol=0)


def test_norm_mode_inf_norm_uses_max_abs():
    a, b = _param([0.0, 0.0], [3.0, -4.0]), _param([0.0], [12.0])
    total = GradientClipper(max_norm=6.0, norm_type="inf").clip_gradients([a, b])
    assert total.item() == pytest.approx(12.0)
    torch.testing.assert_close(a.grad, torch.tensor([1.5, -2.0]), rtol=1e-5, atol=0)
    torch.testing.assert_close(b.grad, torch.tensor([6.0]), rtol=1e-5, atol=0)


def test_norm_mode_below_threshold_leaves_grads_alone():
    a = _param([0.0, 0.0], [0.3, 0.4])
    total = GradientClipper(max_norm=1.0).clip_gradients([a])
    assert total.item() == pytest.approx(0.5)
    torch.testing.assert_close(a.grad, torch.tensor([0.3, 0.4]))


# ------------------------------------------------------------------- value / none


def test_value_mode_clamps_elementwise_and_returns_preclip_norm():
    a = _param([0.0, 0.0, 0.0], [-3.0, 0.5, 2.0])
    total = GradientClipper(mode="value", clip_value=1.0).clip_gradients([a])
    assert total.item() == pytest.approx(math.sqrt(9 + 0.25 + 4))
    assert a.grad.tolist() == [-1.0, 0.5, 1.0]


def test_none_mode_reports_norm_without_touching_grads():
    a, b = _param([0.0, 0.0], [3.0, 4.0]), _param([0.0], [12.0])
    total = GradientClipper(mode="none").clip_gradients([a, b])
    assert total.item() == pytest.approx(13.0)
    assert a.grad.tolist() == [3.0, 4.0] and b.grad.tolist() == [12.0]


# ----------------------------------------------------------------------- adaptive


def test_agc_reference_example():
    w = _param([[3.0, 4.0], [0.0, 0.0]], [[0.3, 0.4], [1.0, 0.0]])
    clipper = GradientClipper(max_norm=1.0, adaptive=True, clip_factor=0.01)
    total = clipper.clip_gradients([w])
    # row 0: |W|=5 -> max 0.05, |G|=0.5 -> x0.1; row 1: |W|=0 -> eps 1e-3 -> max 1e-5, |G|=1
    torch.testing.assert_close(w.grad, torch.tensor([[0.03, 0.04], [1e-5, 0.0]]), rtol=1e-5, atol=1e-12)
    assert total.item() == pytest.approx(math.sqrt(0.25 + 1.0))


def test_agc_function_form_reference_example():
    w = _param([[3.0, 4.0], [0.0, 0.0]], [[0.3, 0.4], [1.0, 0.0]])
    total = adaptive_clip_grad_([w], clip_factor=0.01)
    torch.testing.assert_close(w.grad, torch.tensor([[0.03, 0.04], [1e-5, 0.0]]), rtol=1e-5, atol=1e-12)
    assert total.item() == pytest.approx(math.sqrt(1.25))


def test_agc_one_dim_param_is_one_unit():
    clipped = _param([3.0, 4.0], [0.6, 0.8])  # |W|=5 -> max 0.5 with factor 0.1; |G|=1
    kept = _param([3.0, 4.0], [0.03, 0.04])  # |G|=0.05 < 0.5
    adaptive_clip_grad_([clipped, kept], clip_factor=0.1)
    torch.testing.assert_close(clipped.grad, torch.tensor([0.3, 0.4]), rtol=1e-5, atol=0)
    assert torch.equal(kept.grad, torch.tensor([0.03, 0.04]))  # untouched bit for bit


def test_agc_zero_dim_param():
    s = _param(2.0, -5.0)  # max = 0.1 * 2 = 0.2
    adaptive_clip_grad_([s], clip_factor=0.1)
    assert s.grad.shape == () and s.grad.item() == pytest.approx(-0.2)


def test_agc_matches_per_parameter_reference_on_many_shapes():
    model, ref = _zoo(), _zoo()
    clipper = GradientClipper(mode="adaptive", clip_factor=0.02, eps=1e-3)
    for seed in (1, 2):  # second round reuses the cached plan with new grad tensors
        _random_grads(model, seed)
        _random_grads(ref, seed)
        before = _grads(ref)
        expected_total = torch.linalg.vector_norm(torch.cat([g.flatten().double() for g in before]))
        total = clipper.clip_gradients(model.parameters())
        _reference_agc(ref.parameters(), 0.02, 1e-3)
        changed = sum(not torch.equal(b, p.grad) for b, p in zip(before, ref.parameters()))
        assert 0 < changed < len(before)  # the comparison exercises both branches
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9, msg=name)
        assert total.item() == pytest.approx(expected_total.item(), rel=1e-5)


def test_agc_channels_last_weights():
    conv, ref = nn.Conv2d(8, 16, 3), nn.Conv2d(8, 16, 3)
    ref.load_state_dict(conv.state_dict())
    conv = conv.to(memory_format=torch.channels_last)
    g = torch.randn(16, 8, 3, 3)
    conv.weight.grad = g.clone().contiguous(memory_format=torch.channels_last)
    ref.weight.grad = g.clone()
    conv.bias.grad = torch.randn(16)
    ref.bias.grad = conv.bias.grad.clone()
    adaptive_clip_grad_(conv.parameters(), clip_factor=0.01)
    _reference_agc(ref.parameters(), 0.01, 1e-3)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(conv.bias.grad, ref.bias.grad, rtol=1e-6, atol=1e-9)


def test_agc_plan_survives_parameter_shape_change():
    lin = nn.Linear(4, 3)
    lin.weight.grad = torch.randn(3, 4)
    adaptive_clip_grad_([lin.weight], clip_factor=0.01)
    lin.weight.data = torch.randn(5, 4)  # same Parameter object, new shape
    lin.weight.grad = torch.randn(5, 4) * 10
    ref = nn.Parameter(lin.weight.detach().clone())
    ref.grad = lin.weight.grad.clone()
    adaptive_clip_grad_([lin.weight], clip_factor=0.01)
    _reference_agc([ref], 0.01, 1e-3)
    torch.testing.assert_close(lin.weight.grad, ref.grad)


def test_agc_exclude_patterns_leave_head_untouched():
    torch.manual_seed(0)
    model = nn.ModuleDict({"body": nn.Linear(6, 6), "head": nn.Linear(6, 3)})
    ref = nn.ModuleDict({"body": nn.Linear(6, 6), "head": nn.Linear(6, 3)})
    ref.load_state_dict(model.state_dict())
    for p, q in zip(model.parameters(), ref.parameters()):
        p.grad = torch.randn(p.shape) * 5  # large: every unit is clipped
        q.grad = p.grad.clone()
    head_before = [model.head.weight.grad.clone(), model.head.bias.grad.clone()]
    all_before = torch.cat([p.grad.flatten() for p in model.parameters()])
    clipper = GradientClipper(mode="adaptive", clip_factor=0.01, exclude=["head.*"])
    total = clipper.clip_gradients(model.named_parameters())
    assert torch.equal(model.head.weight.grad, head_before[0])
    assert torch.equal(model.head.bias.grad, head_before[1])
    _reference_agc(ref.body.parameters(), 0.01, 1e-3)
    torch.testing.assert_close(model.body.weight.grad, ref.body.weight.grad)
    torch.testing.assert_close(model.body.bias.grad, ref.body.bias.grad)
    # excluded gradients still count towards the reported (pre-clip) norm
    assert total.item() == pytest.approx(torch.linalg.vector_norm(all_before).item(), rel=1e-5)
    # passing the module itself gives the names too
    for p, q in zip(model.parameters(), ref.parameters()):
        p.grad = q.grad.clone() * 0 + 5
    clipper.clip_gradients(model)
    assert torch.all(model.head.weight.grad == 5)
    assert torch.all(model.body.weight.grad < 5)


def test_agc_exclude_needs_names_and_warns_when_nothing_matches():
    lin = nn.Linear(2, 2)
    for p in lin.parameters():
        p.grad = torch.ones_like(p)
    with pytest.raises(ClippingConfigError, match=r"clipping\.exclude"):
        GradientClipper(mode="adaptive", exclude=["head.*"]).clip_gradients(lin.parameters())
    with pytest.warns(UserWarning, match="match no parameter"):
        GradientClipper(mode="adaptive", exclude=["head.*"]).clip_gradients(lin)


def test_param_spellings_agree():
    results = []
    for spelling in ("module", "parameters", "named", "list"):
        model = _zoo()
        _random_grads(model, 3)
        arg = {
            "module": model,
            "parameters": model.parameters(),
            "named": model.named_parameters(),
            "list": list(model.parameters()),
        }[spelling]
        total = GradientClipper(mode="adaptive").clip_gradients(arg)
        results.append((total, _grads(model)))
    for total, grads in results[1:]:
        assert torch.equal(total, results[0][0])
        assert all(torch.equal(a, b) for a, b in zip(grads, results[0][1]))


def test_params_without_grad_are_ignored_and_empty_gives_zero():
    a, b = _param([1.0, 1.0], [3.0, 4.0]), nn.Parameter(torch.ones(3))
    for mode in ("none", "norm", "value", "adaptive"):
        a.grad = torch.tensor([3.0, 4.0])
        assert GradientClipper(mode=mode, max_norm=100.0, clip_value=100.0, clip_factor=100.0).clip_gradients(
            [a, b]
        ).item() == pytest.approx(5.0)
        assert b.grad is None
        assert GradientClipper(mode=mode).clip_gradients([]).item() == 0.0


# --------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("mode", ["none", "norm", "value", "adaptive"])
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_nonfinite_grads_give_nonfinite_norm(mode, bad):
    a, b = _param([1.0, 1.0], [bad, 1.0]), _param([[1.0, 2.0]], [[0.5, 0.5]])
    total = GradientClipper(mode=mode).clip_gradients([a, b])
    assert not torch.isfinite(total)
    if mode == "value" and bad == math.inf:
        # clamping maps +inf to clip_value by definition; the returned pre-clip
        # norm is what reports it
        assert a.grad.tolist() == [1.0, 1.0]
    else:
        assert not torch.isfinite(a.grad).all()  # not silently repaired


@pytest.mark.parametrize("mode", ["none", "norm", "value", "adaptive"])
def test_error_if_nonfinite_raises_before_touching_grads(mode):
    a, b = _param([1.0, 1.0], [math.inf, 1.0]), _param([1.0], [50.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        GradientClipper(mode=mode, error_if_nonfinite=True).clip_gradients([a, b])
    assert b.grad.item() == 50.0


def test_error_if_nonfinite_with_excluded_nonfinite_grad():
    model = nn.ModuleDict({"body": nn.Linear(2, 2), "head": nn.Linear(2, 1)})
    for p in model.parameters():
        p.grad = torch.full_like(p, 50.0)
    model.head.bias.grad.fill_(math.nan)
    clipper = GradientClipper(mode="adaptive", exclude=["head.*"], error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        clipper.clip_gradients(model)
    assert torch.all(model.body.weight.grad == 50.0)


# ------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_norm", 0.0),
        ("max_norm", -1.0),
        ("max_norm", math.nan),
        ("max_norm", "one"),
        ("clip_value", 0),
        ("clip_factor", -0.01),
        ("eps", 0.0),
        ("norm_type", 0),
        ("norm_type", -2.0),
        ("norm_type", "fro"),
        ("mode", "clip"),
        ("exclude", [3]),
        ("error_if_nonfinite", "yes"),
    ],
)
def test_bad_values_raise_naming_the_key(field, value):
    with pytest.raises(ClippingConfigError) as info:
        GradientClipper(**{field: value})
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, ConfigError)
    key = f"clipping.{field}" + ("[0]" if field == "exclude" else "")  # the schema names the bad item
    assert err.key == key
    assert str(err).startswith(f"{key}:") and "\n" not in str(err)


def test_numbers_are_coerced_like_every_config_value():
    """One validation path: the schema's coercion, so '1.0' from a YAML string is 1.0."""
    assert GradientClipper(max_norm="1.0").max_norm == 1.0


def test_bad_mode_lists_allowed():
    with pytest.raises(ValueError, match=r"clipping\.mode: unknown name 'adaptve' \(did you mean 'adaptive'\?\); allowed: adaptive, none, norm, value"):
        GradientClipper(mode="adaptve")


def test_aliases():
    # the seed's GradientClipper(max_norm=1.0, norm_type=2) names no mode and clips by norm; the
    # schema's base default mode `none` means "the clipping group selects nothing" (documented)
    assert GradientClipper().mode == "norm"
    agc = GradientClipper(max_norm=1.0, adaptive=True, clip_factor=0.1)
    assert agc.mode == "adaptive" and agc.clip_factor == 0.1
    assert GradientClipper(enabled=False, max_norm=1.0).mode == "none"
    assert GradientClipper(enabled=False, adaptive=True).mode == "none"
    assert GradientClipper(norm_type="inf").norm_type == math.inf
    with pytest.raises(ClippingConfigError, match=r"clipping\.adaptive"):
        GradientClipper(mode="value", adaptive=True)
    disabled = GradientClipper(enabled=False)
    a = _param([0.0, 0.0], [30.0, 40.0])
    assert disabled.clip_gradients([a]).item() == pytest.approx(50.0)
    assert a.grad.tolist() == [30.0, 40.0]


def test_from_config_seed_yaml_block():
    clipper = GradientClipper.from_config({"enabled": True, "max_norm": 1.0})
    assert (clipper.mode, clipper.max_norm) == ("norm", 1.0)
    assert GradientClipper.from_config({"enabled": False, "max_norm": 1.0}).mode == "none"
    hint = r"clipping\.max_nrom: unknown key \(did you mean 'max_norm'\?\)"
    with pytest.raises(ClippingConfigError, match=hint):
        GradientClipper.from_config({"max_nrom": 1.0})


def test_no_warning_from_norm_mode_on_plain_lists():
    a = _param([0.0], [2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradientClipper().clip_gradients([a])


@pytest.mark.parametrize("mode", sorted(CLIPPING))
def test_class_defaults_equal_schema_defaults(mode):
    """Every field of every clipping option defaults to the schema's value (one source)."""
    clipper, schema = GradientClipper(mode=mode), CLIPPING[mode]()
    for field in dataclasses.fields(schema):
        if not field.name.startswith("_"):
            value = getattr(clipper, field.name)
            assert (list(value) if isinstance(value, tuple) else value) == getattr(schema, field.name), field.name


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_total_norm_without_get_total_norm_matches_torch(monkeypatch: pytest.MonkeyPatch, norm_type: float) -> None:
    """torch 2.4/2.5 lack torch.nn.utils.get_total_norm: the written-out reduction gives its figure."""
    from survopt_hydra.engine.clipping import total_norm

    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(7, 3, generator=gen), torch.randn(5, generator=gen) * 10, torch.randn(2, 2, 2, generator=gen)]
    expected = torch.nn.utils.get_total_norm(grads, norm_type)
    monkeypatch.delattr(torch.nn.utils, "get_total_norm")
    assert torch.allclose(total_norm(grads, norm_type), expected, rtol=1e-6)
    with pytest.raises(RuntimeError, match="non-finite"):
        total_norm([*grads, torch.tensor([float("nan")])], norm_type, error_if_nonfinite=True)
