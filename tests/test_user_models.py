"""model=custom and model=backbone (app/user_models.py): the user's nn.Module by _target_, torchvision / timm /
MONAI backbones under a Cox head, the input shape passed when asked, one-line refusals, and artifacts that
never choose code to import."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from survopt_hydra.app.components import build_model
from survopt_hydra.app.schemas import check_group
from survopt_hydra.errors import ConfigError
from survopt_hydra.survival.data import DataError

sys.path.insert(0, str(Path(__file__).parent / "user_code"))  # the user's own module, as PYTHONPATH=... would
import scan_models  # noqa: E402

IMAGE = (1, 16, 16)


def custom(target: str, **kwargs) -> dict:
    return check_group("model", {"name": "custom", "_target_": target, **kwargs})


def backbone(target: str, weights_file: str | None = None, /, **kwargs) -> dict:
    """model=backbone: ``kwargs`` go to the backbone's node (timm's own ``pretrained`` too); ``weights_file`` is
    model.pretrained."""
    return check_group("model", {"name": "backbone", "backbone": {"_target_": target, **kwargs},
                                 "pretrained": weights_file})


def test_the_users_module_gets_the_input_shape_it_asks_for() -> None:
    torch.manual_seed(0)
    net = build_model(custom("scan_models.ScanNet", width=5), IMAGE)
    assert isinstance(net, scan_models.ScanNet) and net.features[0].in_channels == 1 and net.out.in_features == 5
    x = torch.randn(7, *IMAGE)
    torch.manual_seed(0)
    reference = scan_models.ScanNet(in_channels=1, width=5)  # the same class built by hand, same init
    assert net.state_dict().keys() == reference.state_dict().keys()
    for a, b in zip(net.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b)
    net.eval(), reference.eval()
    torch.testing.assert_close(net(x), reference(x).squeeze(-1))  # (n, 1) arrives as (n,): one risk per row
    table = build_model(custom("scan_models.TableNet", hidden=3), (14,))
    assert table.net[0].in_features == 14 and table(torch.randn(4, 14)).shape == (4,)
    both = build_model(custom("scan_models.ScanWithCovariates"), IMAGE, covariates=2)
    assert both.out.in_features == 4 + 2 and both(torch.randn(3, *IMAGE), torch.randn(3, 2)).shape == (3,)


@pytest.mark.parametrize("model, shape, key, expect", [
    (lambda: custom("scan_models.ThreeOutputs"), IMAGE, "model._target_",
     "scan_models.ThreeOutputs returned shape (2, 3) for a batch of 2 inputs of shape (1, 16, 16); the app needs one "
     "risk per row: shape (2,) or (2, 1)"),
    (lambda: custom("scan_models.ScanNet", widht=4), IMAGE, "model.widht",
     "scan_models.ScanNet takes no keyword 'widht' (did you mean 'width'?); it takes: in_channels, width"),
    (lambda: custom("torch.nn.Linear"), (3,), "model.out_features", "torch.nn.Linear needs 'out_features'"),
    (lambda: custom("no_such_module.Net"), IMAGE, "model._target_",
     "cannot import 'no_such_module.Net' (ModuleNotFoundError: No module named 'no_such_module')"),
    (lambda: custom("scan_models.Nope"), IMAGE, "model._target_", "AttributeError: module 'scan_models' has no"),
    (lambda: custom("collections.OrderedDict"), IMAGE, "model._target_",
     "collections.OrderedDict built a OrderedDict, not a torch.nn.Module"),
    (lambda: custom("scan_models.TableNet"), IMAGE, "model._target_",
     "scan_models.TableNet failed on a batch of 2 inputs of shape (1, 16, 16): RuntimeError: mat1 and mat2"),
    (lambda: custom("scan_models.ScanNet", nested={"_target_": "collections.OrderedDict", "_args_": [[1]]}),
     IMAGE, "model.nested._args_", "the app calls a _target_ with keyword arguments only"),
])
def test_bad_models_are_one_line_naming_the_key(model, shape, key, expect) -> None:
    with pytest.raises(ConfigError) as exc:
        build_model(model(), shape)
    assert exc.value.key == key and expect in exc.value.message, str(exc.value)
    assert "\n" not in str(exc.value)


def test_schema_refuses_what_it_can_without_importing() -> None:
    for values, key in (({"_target_": "os"}, "model._target_"), ({"_target_": "a.b", "_partial_": True},
                                                                 "model._partial_")):
        with pytest.raises(ConfigError) as exc:
            check_group("model", {"name": "custom", **values})
        assert exc.value.key == key
    with pytest.raises(ConfigError) as exc:
        check_group("model", {"name": "backbone", "backbone": {"_target_": "???"}})
    assert exc.value.key == "model.backbone" and "_target_ is required" in exc.value.message


def test_backbone_wrapper_names_and_classifier() -> None:
    """A feature extractor with its own classifier (fc): replaced by Identity, a Cox head on its width;
    parameter names backbone.* / head.*, which +preset=finetune's "?backbone.*" multiplier finds."""
    from survopt_hydra.optim import build_optimizer

    model = build_model(backbone("scan_models.TinyEncoder", width=6), IMAGE)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["backbone.conv.weight", "backbone.conv.bias", "head.0.weight"]
    assert isinstance(model.backbone.fc, nn.Identity) and model.head[0].in_features == 6
    assert model(torch.randn(5, *IMAGE)).shape == (5,)
    opt = build_optimizer(model, "adamw", lr=1e-3, lr_mult={"?backbone.*": 0.1})
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["backbone.*"] == pytest.approx(1e-4) and lrs["default"] == pytest.approx(1e-3)
    kept = build_model(check_group("model", {"name": "backbone", "classifier": None, "hidden": 4,
                                             "backbone": {"_target_": "scan_models.TinyEncoder"}}), IMAGE)
    assert kept.head[0].in_features == 10  # the classifier's 10 outputs used as features
    with pytest.raises(ConfigError) as exc:
        build_model(check_group("model", {"name": "backbone", "classifier": "fcc",
                                          "backbone": {"_target_": "scan_models.TinyEncoder"}}), IMAGE)
    assert exc.value.key == "model.classifier" and "has no submodule 'fcc'" in exc.value.message


def test_monai_resnet18_with_local_weights(tmp_path: Path) -> None:
    """The README's MONAI path: a ResNet-18 whose weights the test writes first (nothing downloads); its
    classifier's keys in the file are ignored, every other tensor is loaded as saved."""
    nets = pytest.importorskip("monai.networks.nets", reason="MONAI is in the images extra")
    kwargs = {"spatial_dims": 2, "n_input_channels": 1, "widen_factor": 0.25}
    torch.manual_seed(123)
    source = nets.resnet18(num_classes=7, **kwargs)
    torch.save(source.state_dict(), tmp_path / "resnet18.pt")
    torch.manual_seed(0)
    model = build_model(backbone("monai.networks.nets.resnet18", str(tmp_path / "resnet18.pt"), **kwargs), IMAGE)
    saved = source.state_dict()
    own = model.backbone.state_dict()
    assert set(saved) - set(own) == {"fc.weight", "fc.bias"}
    for key, value in own.items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    assert all(n.startswith(("backbone.", "head.")) for n, _ in model.named_parameters())
    assert model.head[0].in_features == 128  # 512 x widen_factor: read from a dry forward pass
    source.fc = nn.Identity()
    source.eval(), model.eval()
    x = torch.randn(3, *IMAGE)
    torch.testing.assert_close(model(x), model.head(source(x)).squeeze(-1))
    wrong = nets.resnet18(num_classes=7, spatial_dims=2, n_input_channels=3, widen_factor=0.25)
    torch.save({"state_dict": wrong.state_dict()}, tmp_path / "rgb.pt")
    with pytest.raises(ConfigError) as exc:
        build_model(backbone("monai.networks.nets.resnet18", str(tmp_path / "rgb.pt"), **kwargs), IMAGE)
    assert "shape mismatch for conv1.weight: file has (16, 3, 7, 7), the backbone needs (16, 1, 7, 7)" in str(exc.value)


@pytest.mark.parametrize("target, kwargs, classifier", [
    ("torchvision.models.resnet18", {"weights": None}, "fc"),
    ("timm.create_model", {"model_name": "resnet18", "pretrained": False, "in_chans": 1}, None),
])
def test_torchvision_and_timm_backbones(tmp_path: Path, target: str, kwargs: dict, classifier: str | None) -> None:
    """torchvision's ResNet-18 (its fc stripped) and timm's (reset_classifier(0)) with local weights."""
    package = target.split(".")[0]
    try:
        __import__(package)
    except Exception as exc:  # noqa: BLE001 - e.g. a CUDA-only wheel that fails to import on this machine
        pytest.skip(f"{package} does not import here ({type(exc).__name__}); the code path is the same as MONAI's")
    shape = (3, 32, 32) if package == "torchvision" else (1, 32, 32)
    model = build_model(backbone(target, **kwargs), shape)
    torch.save(model.backbone.state_dict(), tmp_path / "w.pt")
    again = build_model(backbone(target, str(tmp_path / "w.pt"), **kwargs), shape)
    for key, value in again.backbone.state_dict().items():
        torch.testing.assert_close(value, model.backbone.state_dict()[key])
    assert model.head[0].in_features == 512 and model(torch.randn(2, *shape)).shape == (2,)
    if classifier:
        assert isinstance(getattr(model.backbone, classifier), nn.Identity)
    # a file as the package saves its own models: every key, the 1000-class classifier included
    torch.manual_seed(3)
    if package == "torchvision":
        import torchvision

        source = torchvision.models.resnet18(weights=None)
    else:
        import timm

        source = timm.create_model("resnet18", pretrained=False, in_chans=1)
    torch.save(source.state_dict(), tmp_path / "full.pth")
    loaded = build_model(backbone(target, str(tmp_path / "full.pth"), **kwargs), shape).backbone.state_dict()
    assert "fc.weight" in source.state_dict() and not any(k.startswith("fc.") for k in loaded)
    for key, value in loaded.items():
        torch.testing.assert_close(value, source.state_dict()[key])


def test_a_timm_style_classifier_is_reset_and_its_keys_in_a_weights_file_ignored(tmp_path: Path) -> None:
    """reset_classifier(0) for a model with timm's API; a file that still holds the classifier (timm saves
    ``head.fc``) loads, every other key checked."""
    torch.manual_seed(0)
    source = scan_models.TimmStyleEncoder(width=6)
    torch.save(source.state_dict(), tmp_path / "full.pth")
    model = build_model(backbone("scan_models.TimmStyleEncoder", str(tmp_path / "full.pth"), width=6), IMAGE)
    assert isinstance(model.backbone.head.fc, nn.Identity) and model.head[0].in_features == 6
    torch.testing.assert_close(model.backbone.conv.weight, source.conv.weight)
    assert sorted(model.backbone.state_dict()) == ["conv.bias", "conv.weight"]
    state = source.state_dict()
    state["conv.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match=r"does not match the backbone \(missing: \[\], unexpected: \['conv.extra'\]\)"):
        build_model(backbone("scan_models.TimmStyleEncoder", str(tmp_path / "other.pth"), width=6), IMAGE)


def test_artifacts_never_choose_code_to_import(monkeypatch) -> None:
    """A model read from a checkpoint or predictor.json is built only with the user's --trust, except
    the built-in options; model.pretrained and a backbone's download keywords are not used."""
    with pytest.raises(DataError) as exc:
        build_model(custom("scan_models.ScanNet"), IMAGE, trust=(), source="run/predictor.json")
    assert str(exc.value) == ("run/predictor.json: model._target_=scan_models.ScanNet: a file never chooses code to "
                              "import; if the run's training config named it, repeat it: --trust scan_models.ScanNet")
    assert isinstance(build_model(custom("scan_models.ScanNet"), IMAGE, trust=("scan_models.*",)), scan_models.ScanNet)
    cnn = check_group("model", {"name": "cnn", "pretrained": "/nonexistent/weights.pt"})
    build_model(cnn, IMAGE, trust=())  # not read: best.pt holds the weights
    with pytest.raises(DataError):
        build_model(cnn, IMAGE)  # the user's own config: read, and missing
    seen = {}

    class Recorder(nn.Module):
        def __init__(self, weights: str | None = "DEFAULT") -> None:
            super().__init__()
            seen["weights"] = weights
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x)

    monkeypatch.setattr(scan_models, "Recorder", Recorder, raising=False)
    spec = backbone("scan_models.Recorder", weights="IMAGENET1K_V1")
    build_model(spec, IMAGE, trust=("scan_models.Recorder",))
    assert seen["weights"] is None
    build_model(spec, IMAGE)
    assert seen["weights"] == "IMAGENET1K_V1"


def test_finetune_warning_rule_for_the_new_models() -> None:
    """+preset=finetune warns once for a backbone without model.pretrained; never for a user's own module
    (it may load its weights itself) or a backbone with weights (docs/prediction.md's rule)."""
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.rules import warn_finetune_without_weights as rule

    base = ["+preset=finetune", "data=images", "data.manifest=m.csv", "model=backbone",
            "model.backbone._target_=scan_models.TinyEncoder"]
    assert "set model.pretrained=<a local state dict of the backbone>" in rule(compose_train(base))
    assert rule(compose_train([*base, "model.pretrained=w.pt"])) is None
    assert rule(compose_train(["+preset=finetune", "data=images", "data.manifest=m.csv", "model=custom",
                               "model._target_=scan_models.ScanNet"])) is None
