"""The LightningModule and data of the template-layout app (importable as ``lht_app``)."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn

from survopt_hydra import lightning_optimizers


def toy_data(n: int, features: int, batch_size: int) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    y = x[:, :1] * 2 - x[:, 1:2]
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


class LitNet(pl.LightningModule):
    """``backbone`` (numbered blocks) and ``head``: names the presets and layer decay rely on."""

    def __init__(self, optimizer, scheduler, clipping, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(6, width), *[nn.Linear(width, width) for _ in range(depth - 1)])
        self.head = nn.Linear(width, 1)
        self.make_optimizer, self.make_scheduler, self.clipper = optimizer, scheduler, clipping
        self.lrs, self.wds, self.val_losses = [], [], []

    def forward(self, x):
        return self.head(torch.tanh(self.backbone(x)))

    def training_step(self, batch, _):
        if len(self.lrs) == self.current_epoch:
            group = self.optimizers().param_groups[0]
            self.lrs.append(group["lr"])
            self.wds.append(group["weight_decay"])
        x, y = batch
        return (self(x) - y).pow(2).mean()

    def validation_step(self, batch, _):
        self.log("val_loss", 1.0)  # constant: plateau cuts the LR once its patience is spent

    def configure_optimizers(self):
        optimizer = self.make_optimizer(params=self)
        scheduler = self.make_scheduler(optimizer=optimizer, epochs=self.trainer.max_epochs)
        self.built = (optimizer, scheduler)
        return lightning_optimizers(optimizer, scheduler)
