"""The LightningModule: the optimizer and scheduler arrive as partials from model.optimizer / model.scheduler."""
from __future__ import annotations

import math
from typing import Any

import torch
from lightning import LightningModule

from survopt_hydra import lightning_optimizers


class RegressionLitModule(LightningModule):
    """MSE regression. ``plateau``: an optional second scheduler on the same optimizer
    (experiment=cosine_plateau), stepped by Lightning on ``val/loss``."""

    def __init__(self, net: torch.nn.Module, optimizer: Any, scheduler: Any, compile: bool,
                 plateau: Any = None) -> None:
        super().__init__()
        # the init arguments in self.hparams (and in checkpoints), as the template does
        self.save_hyperparameters(logger=False)
        self.net = net
        self.criterion = torch.nn.MSELoss()
        self.lrs: list[float] = []         # the LR each training epoch ran with
        self.val_losses: list[float] = []  # val/loss after each training epoch (what the plateau saw)
        self._val: list[tuple[float, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_train_epoch_start(self) -> None:
        self.lrs.append(self.optimizers().param_groups[0]["lr"])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.criterion(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self._val.append((self.criterion(self(x), y).item() * len(y), len(y)))

    def on_validation_epoch_end(self) -> None:
        loss = torch.tensor(sum(s for s, _ in self._val) / sum(n for _, n in self._val))
        self._val.clear()
        self.log("val/loss", loss, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.val_losses.append(loss.item())

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.log("test/loss", self.criterion(self(x), y), on_step=False, on_epoch=True)

    def setup(self, stage: str) -> None:
        if self.hparams.compile and stage == "fit":
            self.net = torch.compile(self.net)

    def configure_optimizers(self) -> Any:
        # the net, not .parameters(): the param-group policy reads names (no decay for biases and norms)
        optimizer = self.hparams.optimizer(params=self.net)
        epochs = self.trainer.max_epochs
        steps = math.ceil(self.trainer.estimated_stepping_batches / epochs)
        makers = [m for m in (self.hparams.scheduler, self.hparams.plateau) if m is not None]
        # each scheduler with its own stepping (interval, a plateau's monitor), read off its config
        configs = [lightning_optimizers(optimizer, make(optimizer=optimizer, epochs=epochs, steps_per_epoch=steps),
                                        make)["lr_scheduler"] for make in makers]
        self.built = (optimizer, [c["scheduler"] for c in configs])
        return [optimizer], configs
