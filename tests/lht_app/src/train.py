"""``python src/train.py [overrides]``: fit, test, and write ``result.json`` (and ``cfg.pkl``, the composed
config pickled with the standard library) into the run's folder."""
from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

# what the template's rootutils.setup_root does: the project root on sys.path and in PROJECT_ROOT
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from src.utils import (check_library_nodes, extras, get_metric_value, instantiate_callbacks,  # noqa: E402
                       instantiate_loggers, task_wrapper)


@task_wrapper
def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    if cfg.get("seed"):
        L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    logger = instantiate_loggers(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    if cfg.get("train"):
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_metrics = dict(trainer.callback_metrics)
    best = ""
    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        # the checkpoint holds the init arguments (the net, the optimizer partials): a full load of our own file
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
    metrics = {**train_metrics, **trainer.callback_metrics}

    optimizer, schedulers = model.built
    names = {id(p): n for n, p in model.net.named_parameters()}
    result = {
        "choices": {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")},
        "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__name__}",
        "schedulers": [type(s).__name__ for s in schedulers],
        "groups": [{"name": g.get("name"), "lr": g.get("initial_lr", g["lr"]), "weight_decay": g.get("weight_decay"),
                    "params": [names.get(id(p), "?") for p in g["params"]]} for g in optimizer.param_groups],
        "lrs": model.lrs, "val_losses": model.val_losses,
        "gradient_clip_val": trainer.gradient_clip_val, "max_epochs": trainer.max_epochs,
        "best_checkpoint": best, "metrics": {k: float(v) for k, v in metrics.items()},
    }
    (Path(cfg.paths.output_dir) / "result.json").write_text(json.dumps(result))
    return metrics, {"cfg": cfg, "model": model, "trainer": trainer}


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    extras(cfg)
    check_library_nodes(cfg)
    (Path(cfg.paths.output_dir) / "cfg.pkl").write_bytes(pickle.dumps(cfg))
    metric_dict, _ = train(cfg)
    return get_metric_value(metric_dict, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
