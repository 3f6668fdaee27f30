"""A user's own models, as they would write them in their project: plain torch, nothing from survopt_hydra.

The app tests train them through ``scripts/train.py model=custom model._target_=scan_models.ScanNet``
with this folder on ``PYTHONPATH``.
"""
from __future__ import annotations

import torch
from torch import nn


class ScanNet(nn.Module):
    """Two convolutions, global pooling, one output: one risk per image, shape (n, 1)."""

    def __init__(self, in_channels: int, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class ScanWithCovariates(nn.Module):
    """Images and the manifest's covariates (the app passes them as a second argument)."""

    def __init__(self, in_channels: int, n_covariates: int, width: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(width + n_covariates, 1, bias=False)

    def forward(self, x: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.features(x), covariates], dim=1)).squeeze(-1)


class TableNet(nn.Module):
    """A tabular model: the app passes the number of features as in_features."""

    def __init__(self, in_features: int, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class ThreeOutputs(nn.Module):
    """A classifier by mistake: three numbers per row where the app needs one risk."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyEncoder(nn.Module):
    """A feature extractor with its own classifier (``fc``), as torchvision's models have one."""

    def __init__(self, in_channels: int = 1, width: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class TimmStyleEncoder(nn.Module):
    """timm's classifier API (``get_classifier`` / ``reset_classifier``), its classifier nested at
    ``head.fc`` as in timm's ConvNeXt and ViT families."""

    def __init__(self, in_chans: int = 1, width: int = 6, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.head = nn.Module()
        self.head.pool = nn.AdaptiveAvgPool2d(1)
        self.head.fc = nn.Linear(width, num_classes) if num_classes else nn.Identity()
        self.width = width

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.head.fc = nn.Linear(self.width, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.fc(torch.flatten(self.head.pool(torch.relu(self.conv(x))), 1))
