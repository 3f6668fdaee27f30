"""A tiny user Hydra app that uses survopt_hydra's config groups from the installed wheel.

Prints one ``RESULT {json}`` line and writes the same JSON to ``result.json`` in the
job's output directory (one per job in a multirun).
"""
import functools
import json
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    import hydra_plugins.survopt_hydra_searchpath as plugin
    import survopt_hydra

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    built = instantiate(cfg.optimizer, params=model)
    partial = isinstance(built, functools.partial)
    optimizer = built() if partial else built  # `+optimizer._partial_=true`: params already bound
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer, epochs=cfg.epochs)
    clipper = instantiate(cfg.clipping)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        loss = model(torch.randn(16, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        clipper.clip_gradients(model)
        optimizer.step()
        scheduler.step()
    group = optimizer.param_groups[0]
    result = {
        "optimizer": type(optimizer).__name__,
        "partial": partial,
        "lr": group["initial_lr"],
        "weight_decay": group["weight_decay"],
        "betas": list(group.get("betas", [])),
        "scheduler": type(scheduler).__name__,
        "lrs": lrs,
        "clipping": clipper.mode,
        "max_norm": clipper.max_norm,
        "survopt_hydra": survopt_hydra.__file__,
        "plugin": plugin.__file__,
    }
    print("RESULT " + json.dumps(result))
    Path(HydraConfig.get().runtime.output_dir, "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
