"""A synthetic regression data set as a LightningDataModule (the template's MNISTDataModule, without downloads)."""
from __future__ import annotations

from typing import Sequence

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset, random_split


class RegressionDataModule(LightningDataModule):
    """``y = sin(x . w) + noise`` on 8 features, split into train / val / test."""

    def __init__(self, data_dir: str = "data/", batch_size: int = 32,
                 train_val_test_split: Sequence[int] = (192, 32, 32), num_workers: int = 0,
                 pin_memory: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.data_train = self.data_val = self.data_test = None

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        g = torch.Generator().manual_seed(0)
        n = sum(self.hparams.train_val_test_split)
        x = torch.randn(n, 8, generator=g)
        y = torch.sin(x @ torch.linspace(-1, 1, 8)).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=g)
        self.data_train, self.data_val, self.data_test = random_split(
            TensorDataset(x, y), list(self.hparams.train_val_test_split), generator=torch.Generator().manual_seed(42))

    def _loader(self, data, shuffle: bool) -> DataLoader:
        return DataLoader(data, batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers, pin_memory=self.hparams.pin_memory)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data_train, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data_val, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, False)
