"""Models the user names: ``model=custom`` (any ``nn.Module`` by ``_target_``) and ``model=backbone``.

A config is code the user chose to run, so importing the class it names is fine; an artifact
(a checkpoint's or ``predictor.json``'s copy of that config) is data, so a ``_target_`` read
from one is imported only when the user repeats it (``survopt-predict --trust <dotted.path>``,
fnmatch patterns allowed) or when it is one of the app's own transforms
(:data:`.image_transforms.BUILTIN`). Nodes are built by :func:`build_node` from plain data,
never through OmegaConf, so nothing in an artifact is resolved as an interpolation.

* ``model=custom``: the target is called with the node's other keys; the app adds the input's
  shape under the keyword names the target's signature asks for (:func:`shape_keywords`).
  It must map a batch (the images, or the features; plus the covariates tensor as a second
  argument when ``data.covariate_cols`` is set) to one risk per row, shape ``(n,)`` or
  ``(n, 1)`` (another ``family``: its ``n_outputs`` per row, ``(n, n_outputs)``, the width offered
  as ``out_features``): a dry forward pass on two zero inputs checks it before anything is written.
* ``model=backbone``: the target is a feature extractor (torchvision, timm, MONAI or your
  own); its classifier is replaced by ``nn.Identity`` (``model.classifier``), its output width
  is read from a dry forward pass, and :class:`BackboneCox` puts a Cox head on it. Parameter
  names are ``backbone.*`` and ``head.*``, which ``+preset=finetune``'s ``"?backbone.*"`` LR
  multiplier finds. ``model.pretrained`` loads a local state dict into the backbone.
"""
from __future__ import annotations

import fnmatch
import inspect
import math
from pathlib import Path
from typing import Any, Collection, Mapping

import torch
from torch import Tensor, nn

from ..errors import ConfigError, did_you_mean, first_line
from ..survival.schema import DataError
from .image_transforms import BUILTIN

#: Keyword -> what the app passes when a target's signature names it and the config does not.
SHAPE_KEYWORDS = {
    "input_shape": "the input's shape without the batch dim, e.g. (1, 64, 64) or (14,)",
    "in_features": "values per row: the number of features, or channels x pixels of an image",
    "in_channels": "image channels (images only)",
    "in_chans": "image channels, timm's name (images only)",
    "n_input_channels": "image channels, MONAI's name (images only)",
    "spatial_dims": "2 for images, 3 for volumes, MONAI's name (images only)",
    "n_covariates": "manifest covariates given beside the image (data.covariate_cols; only when there are some)",
    "out_features": "outputs per row the family needs (family=...; only when it is not 1)",
}
#: Keywords of a backbone node that fetch weights; an artifact's backbone is rebuilt with them off
#: (torchvision ``weights=None``, timm / MONAI ``pretrained=False``): best.pt holds every weight.
DOWNLOAD_KEYWORDS = {"weights": None, "pretrained": False}
AUTO_CLASSIFIERS = ("fc", "classifier", "heads", "head")
RESERVED = ("_args_", "_partial_", "_recursive_", "_convert_")


# ------------------------------------------------------------------ _target_ nodes from plain data
def targets_in(node: Any, key: str) -> list[tuple[str, str]]:
    """(config key, ``_target_``) of every node in ``node``, nested ones included."""
    found: list[tuple[str, str]] = []
    if isinstance(node, Mapping):
        if "_target_" in node:
            found.append((f"{key}._target_", str(node["_target_"])))
        for k, v in node.items():
            found += targets_in(v, f"{key}.{k}")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found += targets_in(v, f"{key}[{i}]")
    return found


def check_trusted(node: Any, key: str, trust: Collection[str] | None, source: str) -> None:
    """Refuse a ``_target_`` read from an artifact (``source``) unless the user trusts it.

    ``trust``: None when ``node`` is the user's own config (anything goes); else dotted paths
    or fnmatch patterns the user repeated (``--trust``). The app's own transforms always pass."""
    if trust is None:
        return
    for where, target in targets_in(node, key):
        if target not in BUILTIN and not any(fnmatch.fnmatchcase(target, p) for p in trust):
            raise DataError(f"{source}: {where}={target}: a file never chooses code to import; if the run's training "
                            f"config named it, repeat it: --trust {target}")


def _import(target: str) -> Any:
    """``a.b.C``: import the longest importable module prefix, then read the attributes after it."""
    import importlib

    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
                continue  # this prefix is no module: try a shorter one (a.b.C.method)
            raise  # a module the target's own module imports is missing
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"No module named {parts[0]!r}")


def locate(target: str, key: str) -> Any:
    """The class or function a dotted path names (the app's transforms by lookup); ConfigError naming ``key``."""
    if target in BUILTIN:
        return BUILTIN[target]
    try:
        return _import(target)
    except Exception as exc:  # ModuleNotFoundError, AttributeError, or the module's own import-time error
        raise ConfigError(key, f"cannot import {target!r} ({type(exc).__name__}: {first_line(exc)}); is its module "
                               "installed or on PYTHONPATH (e.g. PYTHONPATH=. survopt-train ...)?") from None


def _parameters(obj: Any) -> dict[str, inspect.Parameter] | None:
    """Named keyword parameters of a callable; None when it takes ``**kwargs`` or cannot be inspected."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def call_target(target: str, kwargs: dict[str, Any], key: str, offered: Mapping[str, Any] = {}) -> Any:
    """``target(**kwargs)``, plus each of ``offered`` its signature names and ``kwargs`` lacks.

    Unknown and missing keywords are refused with the names the target takes, before calling."""
    obj = locate(target, f"{key}._target_")
    params = _parameters(obj)
    if params is not None:
        kwargs = {**{k: v for k, v in offered.items() if k in params and k not in kwargs}, **kwargs}
        for name in kwargs:
            if name not in params:
                raise ConfigError(f"{key}.{name}", f"{target} takes no keyword {name!r}{did_you_mean(name, params)}; "
                                                   f"it takes: {', '.join(params) or 'none'}")
        for name, p in params.items():
            if p.default is p.empty and name not in kwargs and name != "self":
                raise ConfigError(f"{key}.{name}", f"{target} needs {name!r}; pass +{key}.{name}=...")
    try:
        return obj(**kwargs)
    except Exception as exc:  # the user's constructor: its own message, on one line (trainer.debug=true: traceback)
        raise ConfigError(f"{key}._target_", f"{target}(...) failed: {type(exc).__name__}: {first_line(exc)}") from exc


def build_node(node: Any, key: str, offered: Mapping[str, Any] = {}) -> Any:
    """Build a plain-data node: a mapping with ``_target_`` becomes ``target(**built values)``,
    lists and other mappings are built element by element, anything else is returned as is."""
    if isinstance(node, (list, tuple)):
        return [build_node(v, f"{key}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, Mapping):
        return node
    bad = [k for k in node if str(k) in RESERVED or (str(k).startswith("_") and k != "_target_")]
    if bad:
        raise ConfigError(f"{key}.{bad[0]}", "the app calls a _target_ with keyword arguments only; allowed: _target_ "
                                             "and the target's own keywords")
    values = {str(k): build_node(v, f"{key}.{k}") for k, v in node.items() if k != "_target_"}
    if "_target_" not in node:
        return values
    return call_target(str(node["_target_"]), values, key, offered)


# ------------------------------------------------------------------ the model options
def shape_keywords(input_shape: tuple[int, ...], covariates: int = 0) -> dict[str, Any]:
    """What the app offers a model target (:data:`SHAPE_KEYWORDS`) for inputs of ``input_shape``."""
    offered: dict[str, Any] = {"input_shape": tuple(input_shape), "in_features": math.prod(input_shape)}
    if len(input_shape) >= 3:  # (channels, *spatial)
        offered.update(in_channels=input_shape[0], in_chans=input_shape[0], n_input_channels=input_shape[0],
                       spatial_dims=len(input_shape) - 1)
    if covariates:
        offered["n_covariates"] = covariates
    return offered


def dry_inputs(input_shape: tuple[int, ...], covariates: int, rows: int = 2) -> tuple[Tensor, ...]:
    x = torch.zeros(rows, *input_shape)
    return (x, torch.zeros(rows, covariates)) if covariates else (x,)


def _described(input_shape: tuple[int, ...], covariates: int) -> str:
    return f"a batch of 2 inputs of shape {tuple(input_shape)}" + (f" and 2x{covariates} covariates" if covariates
                                                                   else "")


@torch.no_grad()
def _dry_forward(module: nn.Module, input_shape: tuple[int, ...], covariates: int, key: str, target: str) -> Any:
    """One forward pass in eval mode on zeros (train mode restored): shapes, lazy modules, errors up front."""
    was = module.training
    module.eval()
    try:
        return module(*dry_inputs(input_shape, covariates))
    except Exception as exc:
        raise ConfigError(key, f"{target} failed on {_described(input_shape, covariates)}: {type(exc).__name__}: "
                               f"{first_line(exc)}") from exc
    finally:
        module.train(was)


def one_risk_per_row(module: nn.Module, args: Any, out: Tensor) -> Tensor | None:
    """Forward hook: an ``(n, 1)`` output becomes ``(n,)``, what the Cox loss takes (names and weights unchanged)."""
    return out.squeeze(-1) if isinstance(out, Tensor) and out.dim() == 2 and out.shape[-1] == 1 else None


def build_custom(model: Mapping[str, Any], input_shape: tuple[int, ...], covariates: int = 0,
                 outputs: int = 1) -> nn.Module:
    """``model=custom``: the user's module, checked to give one risk per row, or the family's ``outputs``
    per row (offered to the target as ``out_features`` when its signature names it)."""
    target = str(model["_target_"])
    node = {k: v for k, v in model.items() if k != "name"}
    offered = shape_keywords(input_shape, covariates)
    if outputs != 1:
        offered["out_features"] = outputs
    net = build_node(node, "model", offered)
    if not isinstance(net, nn.Module):
        raise ConfigError("model._target_", f"{target} built a {type(net).__name__}, not a torch.nn.Module")
    out = _dry_forward(net, input_shape, covariates, "model._target_", target)
    want = ((2,), (2, 1)) if outputs == 1 else ((2, outputs),)
    if not isinstance(out, Tensor) or tuple(out.shape) not in want:
        got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else f"a {type(out).__name__}"
        need = ("one risk per row: shape (2,) or (2, 1)" if outputs == 1 else
                f"the family's {outputs} outputs per row: shape (2, {outputs}) (the app passes out_features={outputs} "
                "when the model's signature names it)")
        raise ConfigError("model._target_", f"{target} returned {got} for {_described(input_shape, covariates)}; "
                                             f"the app needs {need}")
    if outputs == 1:
        net.register_forward_hook(one_risk_per_row)
    return net


def features(out: Any) -> Tensor:
    """A backbone's output as ``(n, width)``: the first of a tuple, feature maps averaged over space."""
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        out = out[0]
    if not isinstance(out, Tensor) or out.dim() < 2:
        raise ValueError(f"expected a tensor of shape (n, features) or (n, channels, *spatial), got "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    return out.mean(dim=tuple(range(2, out.dim()))) if out.dim() > 2 else out


class BackboneCox(nn.Module):
    """A feature extractor under a Cox head: ``risk = head([features(backbone(x)), covariates])``.

    The head is linear (``hidden=None``) or one hidden layer, ending in a bias-free linear layer
    as every Cox model here (the partial likelihood ignores a constant); another family's head
    ends in ``outputs`` units with a ``bias`` (its likelihood does not ignore one)."""

    def __init__(self, backbone: nn.Module, width: int, covariates: int = 0, hidden: int | None = None,
                 dropout: float = 0.0, outputs: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.backbone, self.covariates = backbone, covariates
        size = width + covariates
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Linear(size, hidden), nn.ReLU(inplace=True)]
            size = hidden
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.head = nn.Sequential(*layers, nn.Linear(size, outputs, bias=bias))

    def forward(self, x: Tensor, covariates: Tensor | None = None) -> Tensor:
        f = features(self.backbone(x))
        if self.covariates:
            if covariates is None:
                raise ValueError(f"BackboneCox: built for {self.covariates} covariates, called without them")
            f = torch.cat([f, covariates.to(f.dtype)], dim=1)
        out = self.head(f)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def strip_classifier(backbone: nn.Module, spec: str | None, target: str) -> str | None:
    """Replace the backbone's classifier by ``nn.Identity``; the attribute replaced (None: none)."""
    if spec is None:
        return None
    if spec == "auto":
        if callable(getattr(backbone, "reset_classifier", None)):  # timm: pooled features out
            name = _classifier_name(backbone)  # before the reset: a weights file still holds its keys
            backbone.reset_classifier(0)
            return name
        spec = next((n for n in AUTO_CLASSIFIERS if isinstance(getattr(backbone, n, None), nn.Module)), None)
        if spec is None:
            return None
    if not isinstance(getattr(backbone, spec, None), nn.Module):
        raise ConfigError("model.classifier", f"{target} has no submodule {spec!r}; name its classifier, or null to "
                                              "keep its output")
    setattr(backbone, spec, nn.Identity())
    return spec


def _classifier_name(backbone: nn.Module) -> str | None:
    """Where a timm model keeps its classifier (``fc``, ``head.fc`` ...): ``get_classifier()``'s place among its
    modules, else its ``pretrained_cfg['classifier']``."""
    get = getattr(backbone, "get_classifier", None)
    module = get() if callable(get) else None
    name = next((n for n, m in backbone.named_modules() if n and m is module), None) if module is not None else None
    cfg = getattr(backbone, "pretrained_cfg", None) or getattr(backbone, "default_cfg", None) or {}
    fallback = cfg.get("classifier") if isinstance(cfg, Mapping) else None
    return name or (fallback if isinstance(fallback, str) and fallback else None)


def load_backbone_weights(backbone: nn.Module, path: Path, stripped: str | None) -> None:
    """A local state dict into ``backbone``: keys as the backbone's own, or under ``backbone.`` /
    ``module.`` prefixes, or in a ``model`` / ``state_dict`` entry; the stripped classifier's keys
    are ignored; every other key must match in name and shape."""
    label = "model.pretrained"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(label, f"cannot load {path} ({type(exc).__name__}: {first_line(exc)}); a state dict saved "
                                 "with torch.save is needed (loaded with weights_only=True)") from None
    for entry in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(entry), dict):
            state = state[entry]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(label, f"{path} does not hold a state dict of tensors")
    for prefix in ("module.", "backbone."):
        if state and all(str(k).startswith(prefix) for k in state):
            state = {str(k)[len(prefix):]: v for k, v in state.items()}
    own = backbone.state_dict()
    skipped = [k for k in state if stripped and str(k).startswith(stripped + ".")]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConfigError(label, f"{path} does not match the backbone (missing: {missing[:3]}, unexpected: "
                                 f"{unexpected[:3]})")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise ConfigError(label, f"{path}: shape mismatch for {k}: file has {tuple(state[k].shape)}, the backbone "
                                     f"needs {tuple(v.shape)}")
    backbone.load_state_dict(state)


def build_backbone(model: Mapping[str, Any], input_shape: tuple[int, ...], covariates: int = 0,
                   from_artifact: bool = False, outputs: int = 1, bias: bool = False) -> BackboneCox:
    """``model=backbone``: the user's feature extractor, its classifier stripped, under a Cox head."""
    from ..survival.data import resolve_path

    node = dict(model["backbone"])
    target = str(node["_target_"])
    if from_artifact:  # never fetch weights while rebuilding a finished run: best.pt holds them all
        node.update({k: v for k, v in DOWNLOAD_KEYWORDS.items() if k in node})
    backbone = build_node(node, "model.backbone", shape_keywords(input_shape))
    if not isinstance(backbone, nn.Module):
        raise ConfigError("model.backbone._target_", f"{target} built a {type(backbone).__name__}, not an nn.Module")
    stripped = strip_classifier(backbone, model.get("classifier", "auto"), target)
    if model.get("pretrained") and not from_artifact:
        load_backbone_weights(backbone, resolve_path(model["pretrained"], key="model.pretrained"), stripped)
    out = _dry_forward(backbone, input_shape, 0, "model.backbone._target_", target)
    try:
        width = features(out).shape[1]
    except ValueError as exc:
        raise ConfigError("model.backbone._target_", f"{target} returned {exc}") from None
    return BackboneCox(backbone, int(width), covariates, model.get("hidden"), model.get("dropout", 0.0), outputs, bias)
