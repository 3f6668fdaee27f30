"""Cox-type survival networks: each maps inputs to a log-hazard (risk) of shape (n,).

The output layers have no bias: the Cox partial likelihood is invariant to
adding a constant to every risk, so a bias would get zero gradient and only
add an unidentifiable parameter.

The other survival families (:mod:`.families`) need a wider head: ``out_features`` outputs per
row (a logit per grid time, a location and a scale), shape (n, out_features), with ``bias=True``
(their likelihoods are not shift-invariant). With the defaults (one output, no bias) every
network is exactly the Cox network it always was: same parameters, same names, shape (n,).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

NORMS = ("batch", "layer", "none")


def squeeze_one(out: Tensor) -> Tensor:
    """(n, 1) -> (n,): a Cox head's one risk per row; wider heads keep (n, k)."""
    return out.squeeze(-1) if out.shape[-1] == 1 else out
ACTIVATIONS = {"relu": nn.ReLU, "selu": nn.SELU, "gelu": nn.GELU, "tanh": nn.Tanh}


class LinearCox(nn.Module):
    """Classical Cox regression written as a network (risk = x @ beta)."""

    def __init__(self, in_features: int, out_features: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return squeeze_one(self.linear(x))


class MLP(nn.Module):
    """DeepSurv-style network: [Linear -> norm -> activation -> dropout] * len(hidden) -> Linear.

    The defaults are the app's ``model=mlp`` defaults (one hidden layer of 16 GELU units,
    chosen by ``scripts/select_defaults.py``); ``tests/test_survival_models.py`` keeps the
    two equal.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (16,),
        dropout: float = 0.1,
        norm: str = "batch",
        activation: str = "gelu",
        out_features: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"MLP: unknown norm {norm!r}; allowed: {', '.join(NORMS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP: unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for units in hidden:
            layers.append(nn.Linear(width, units))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(units))
            elif norm == "layer":
                layers.append(nn.LayerNorm(units))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                # Plain dropout breaks SELU's self-normalisation; AlphaDropout preserves it.
                layers.append(nn.AlphaDropout(dropout) if activation == "selu" else nn.Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, out_features, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return squeeze_one(self.net(x))


class SmallCNN(nn.Module):
    """Small image model split into ``backbone`` (features) and ``head`` (risk).

    The split lets a fine-tuning setup give ``backbone.*`` parameters a lower
    learning rate than the head. ``pretrained`` loads backbone weights: a file holding a
    full model (``backbone.*`` and ``head.*`` keys), a bare backbone state dict, or either
    under a ``"model"`` key. The file's head is ignored unless ``pretrained_head`` is set:
    a head trained for another task is noise, but one trained for the same endpoint on a
    larger source cohort is the right start - a fresh head at a fine-tuning LR (1e-5)
    cannot even fix the sign of its random projection, so its ranking can come out
    inverted (C 0.50 on one of three seeds of the README's example).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32),
        hidden: int = 32,
        dropout: float = 0.1,
        pretrained: str | Path | None = None,
        pretrained_head: bool = False,
        out_features: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("SmallCNN: channels must name at least one conv block")
        blocks: list[nn.Module] = []
        width = in_channels
        for out in channels:
            blocks += [
                nn.Conv2d(width, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            width = out
        self.backbone = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_features, bias=bias)
        )
        self.in_channels = in_channels
        if pretrained is not None:
            self.load_backbone(pretrained, head=pretrained_head)
        elif pretrained_head:
            raise ValueError("SmallCNN.pretrained_head: needs pretrained (a weights file)")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SmallCNN: expected images (n, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return squeeze_one(self.head(self.backbone(x)))

    def load_backbone(self, path: str | Path, head: bool = False) -> None:
        """Load pretrained backbone weights (and the head's, with ``head``); any problem is a
        one-line ValueError."""
        from ..integrity import UntrustedFileError, load_torch_file

        if not Path(path).is_file():
            raise ValueError(f"SmallCNN.pretrained: file not found: {path}")
        try:  # bounded by what this model justifies: a few MB that inflate to GB are refused before inflating
            state = load_torch_file(path, budget=self.pretrained_budget())
        except UntrustedFileError as exc:
            raise ValueError(f"SmallCNN.pretrained: cannot load {exc}") from None
        except Exception as exc:  # torch raises many types; report one line
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ValueError(f"SmallCNN.pretrained: cannot load {path}: {type(exc).__name__}: {first}") from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        if not isinstance(state, dict):
            raise ValueError(f"SmallCNN.pretrained: {path} does not hold a state dict")
        parts = {"backbone": self.backbone, "head": self.head} if head else {"backbone": self.backbone}
        if head and not any(str(k).startswith("head.") for k in state):
            raise ValueError(f"SmallCNN.pretrained_head: {path} holds no head.* weights; set pretrained_head=false")
        if not any(str(k).startswith("backbone.") for k in state):  # a bare backbone state dict
            state = {f"backbone.{k}": v for k, v in state.items()}
        for prefix, module in parts.items():
            sub = {k[len(prefix) + 1:]: v for k, v in state.items() if str(k).startswith(prefix + ".")}
            own = module.state_dict()
            missing = sorted(set(own) - set(sub))
            unexpected = sorted(set(sub) - set(own))
            if missing or unexpected:
                raise ValueError(
                    f"SmallCNN.pretrained: {path} does not match the {prefix} "
                    f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})"
                )
            for key, value in own.items():
                if not isinstance(sub[key], Tensor) or sub[key].shape != value.shape:
                    got = tuple(sub[key].shape) if isinstance(sub[key], Tensor) else type(sub[key]).__name__
                    raise ValueError(
                        f"SmallCNN.pretrained: {path}: shape mismatch for {prefix}.{key}: "
                        f"file has {got}, model needs {tuple(value.shape)}"
                    )
                if sub[key].dtype != value.dtype:  # load_state_dict would cast int64 weights silently
                    raise ValueError(f"SmallCNN.pretrained: {path}: {prefix}.{key} is {sub[key].dtype}, the model "
                                     f"needs {value.dtype}")
                if sub[key].is_floating_point() and not bool(torch.isfinite(sub[key]).all()):
                    raise ValueError(f"SmallCNN.pretrained: {path}: {prefix}.{key} holds non-finite values")
            module.load_state_dict(sub)

    #: A pretrained file may be a bare state dict or a whole training checkpoint (weights, optimizer
    #: moments, best weights, logs): up to this many times the model's own bytes, plus room for logs.
    PRETRAINED_FACTOR, PRETRAINED_SLACK = 8, 16 << 20

    def pretrained_budget(self) -> int:
        """Bytes a pretrained file for this model may declare uncompressed and hold in tensors."""
        own = sum(t.numel() * t.element_size() for t in self.state_dict().values())
        return self.PRETRAINED_FACTOR * own + self.PRETRAINED_SLACK
