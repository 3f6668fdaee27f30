"""``lightning_optimizers``: a real Lightning run steps the LR exactly as the StepEngine does."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from survopt_hydra import ConfigError, StepEngine, build_optimizer, build_scheduler, lightning_optimizers

#: validation losses per epoch: improves, then stalls, so plateau (patience 1) cuts the LR after the warmup
VAL_LOSS = [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
SCHED = dict(name="plateau", monitor="val_loss", warmup_epochs=2, patience=1, factor=0.5)


def _model():
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def _engine_lrs(epochs: int) -> list[float]:
    model = _model()
    opt = build_optimizer(model, "sgd", lr=0.1)
    engine = StepEngine(model, opt, build_scheduler(opt, epochs=epochs, **SCHED))
    lrs = []
    for epoch in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        engine.end_epoch({"val_loss": VAL_LOSS[epoch]})
    return lrs


@pytest.mark.slow
def test_warmup_plus_plateau_under_lightning_follows_the_engine(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    epochs = len(VAL_LOSS)

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.lrs = _model(), []

        def training_step(self, batch, _):
            if not self.lrs or len(self.lrs) == self.current_epoch:
                self.lrs.append(self.optimizers().param_groups[0]["lr"])
            return self.net(batch[0]).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("val_loss", VAL_LOSS[self.current_epoch])

        def configure_optimizers(self):
            opt = build_optimizer(self.net, "sgd", lr=0.1)
            return lightning_optimizers(opt, build_scheduler(opt, epochs=epochs, **SCHED))

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 3)), batch_size=8)
    module = Module()
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(module, data, data)
    assert module.lrs == pytest.approx(_engine_lrs(epochs), rel=1e-12)
    assert module.lrs[:3] == pytest.approx([0.001, 0.0505, 0.1]) and module.lrs[-1] < 0.1  # warmed up, then cut


def test_configure_optimizers_dict():
    model = _model()
    opt = build_optimizer(model, "sgd", lr=0.1)
    out = lightning_optimizers(opt, build_scheduler(opt, epochs=10, **SCHED))
    assert out["lr_scheduler"]["monitor"] == "val_loss" and out["lr_scheduler"]["reduce_on_plateau"] is True
    assert out["lr_scheduler"]["interval"] == "epoch" and out["lr_scheduler"]["frequency"] == 1
    step = lightning_optimizers(opt, build_scheduler(opt, epochs=10, steps_per_epoch=4, name="onecycle"))
    assert step["lr_scheduler"]["interval"] == "step" and "monitor" not in step["lr_scheduler"]
    assert lightning_optimizers(opt) == {"optimizer": opt}
    bare = build_scheduler(opt, epochs=10, name="plateau", mode="min")
    with pytest.raises(ConfigError, match="^scheduler.monitor: a plateau scheduler under Lightning"):
        lightning_optimizers(opt, bare)
