"""``lightning_optimizers``: a real Lightning run steps the LR exactly as the StepEngine does."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from survopt_hydra import ConfigError, StepEngine, Stepping, build_optimizer, build_scheduler, lightning_optimizers

#: validation losses per epoch: improves, then stalls, so plateau (patience 1) cuts the LR after the warmup
VAL_LOSS = [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
SCHED = dict(name="plateau", monitor="val_loss", warmup_epochs=2, patience=1, factor=0.5)


def _model():
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def _engine_lrs(epochs: int) -> list[float]:
    model = _model()
    opt = build_optimizer(model, "sgd", lr=0.1)
    engine = StepEngine(model, opt, build_scheduler(opt, epochs=epochs, **SCHED), stepping=Stepping.of(SCHED))
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
            return lightning_optimizers(opt, build_scheduler(opt, epochs=epochs, **SCHED), SCHED)

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
    out = lightning_optimizers(opt, build_scheduler(opt, epochs=10, **SCHED), SCHED)  # the config node's stepping
    assert out["lr_scheduler"]["monitor"] == "val_loss" and out["lr_scheduler"]["reduce_on_plateau"] is True
    assert out["lr_scheduler"]["interval"] == "epoch" and out["lr_scheduler"]["frequency"] == 1
    onecycle = {"name": "onecycle", "interval": "step"}
    step = lightning_optimizers(opt, build_scheduler(opt, epochs=10, steps_per_epoch=4, **onecycle), onecycle)
    assert step["lr_scheduler"]["interval"] == "step" and "monitor" not in step["lr_scheduler"]
    every = lightning_optimizers(opt, build_scheduler(opt, epochs=10, name="cosine"), Stepping(frequency=2))
    assert every["lr_scheduler"]["frequency"] == 2 and every["lr_scheduler"]["interval"] == "epoch"
    assert lightning_optimizers(opt) == {"optimizer": opt}
    bare = build_scheduler(opt, epochs=10, name="plateau", mode="min")
    with pytest.raises(ConfigError, match="^scheduler.monitor: a plateau scheduler under Lightning"):
        lightning_optimizers(opt, bare)
    assert lightning_optimizers(opt, bare, monitor="val_loss")["lr_scheduler"]["monitor"] == "val_loss"


#: a cosine over the run and a plateau on the validation loss, on ONE optimizer: each keeps its effect
COS_PLATEAU_LOSS = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8]


def _torch_cosine_plateau(epochs: int) -> list[float]:
    """The reference: torch's own CosineAnnealingLR and ReduceLROnPlateau, stepped one after the other."""
    opt = torch.optim.SGD(_model().parameters(), lr=0.1)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=1, factor=0.5)
    lrs = []
    for epoch in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        cos.step()
        plateau.step(COS_PLATEAU_LOSS[epoch])
    return lrs


@pytest.mark.slow
def test_cosine_and_plateau_on_one_optimizer_under_lightning_compose_like_torchs(tmp_path):
    """Issue 26 item 6: two library schedulers on one optimizer (Lightning steps both each epoch): the plateau's
    cut survives the cosine's next step, exactly as with torch's own classes."""
    pl = pytest.importorskip("lightning.pytorch")
    epochs = len(COS_PLATEAU_LOSS)
    cosine, plateau = {"name": "cosine"}, {"name": "plateau", "monitor": "val_loss", "patience": 1, "factor": 0.5}

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.lrs = _model(), []

        def training_step(self, batch, _):
            if len(self.lrs) == self.current_epoch:
                self.lrs.append(self.optimizers().param_groups[0]["lr"])
            return self.net(batch[0]).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("val_loss", COS_PLATEAU_LOSS[self.current_epoch])

        def configure_optimizers(self):
            opt = build_optimizer(self.net, "sgd", lr=0.1, momentum=0.0)
            first = lightning_optimizers(opt, build_scheduler(opt, epochs=epochs, **cosine), cosine)
            second = lightning_optimizers(opt, build_scheduler(opt, epochs=epochs, **plateau), plateau)
            return [opt], [first["lr_scheduler"], second["lr_scheduler"]]

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 3)), batch_size=8)
    module = Module()
    pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path).fit(module, data, data)
    want = _torch_cosine_plateau(epochs)
    assert module.lrs == pytest.approx(want, rel=1e-12)
    closed_form = [0.05 * (1 + math.cos(math.pi * t / epochs)) for t in range(epochs)]
    assert module.lrs[-1] < closed_form[-1]  # the plateau's halving was kept, not overwritten
