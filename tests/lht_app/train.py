"""``python train.py [overrides]``: fit, then print one ``RESULT {json}`` line."""
import json
import sys
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="train.yaml")
def main(cfg: DictConfig) -> None:
    torch.manual_seed(cfg.seed)
    data = instantiate(cfg.data)
    model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer)
    trainer.fit(model, data, data)
    optimizer, scheduler = model.built
    print("RESULT " + json.dumps({
        "optimizer": type(optimizer).__name__,
        "scheduler": type(scheduler).__name__,
        "inner": type(getattr(scheduler, "inner", scheduler)).__name__,
        "groups": {g["name"]: g["lr"] for g in optimizer.param_groups},
        "initial_lrs": {g["name"]: g.get("initial_lr", g["lr"]) for g in optimizer.param_groups},
        "defaults": {k: v for k, v in optimizer.defaults.items() if isinstance(v, (int, float, str, list, tuple))},
        "lrs": model.lrs, "wds": model.wds, "clipping": model.clipper.mode,
    }))


if __name__ == "__main__":
    main()
