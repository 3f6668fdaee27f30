"""Someone's existing Hydra app that stores an ``optimizer/adamw`` of its own in Hydra's ConfigStore.

Prints ``RESULT {json}``: the composed optimizer node, the optimizer it builds, and whether
anything imported survopt_hydra.
"""
import functools
import json
import sys

import hydra
import torch
from hydra.utils import instantiate
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

ConfigStore.instance().store(group="optimizer", name="adamw",
                             node={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.123})


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg) -> None:
    model = torch.nn.Linear(3, 1)
    built = instantiate(cfg.optimizer, params=model.parameters())
    optimizer = built() if isinstance(built, functools.partial) else built
    print("RESULT " + json.dumps({
        "node": OmegaConf.to_container(cfg.optimizer),
        "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__name__}",
        "lr": optimizer.param_groups[0]["lr"],
        "survopt_hydra_imported": "survopt_hydra" in sys.modules,
    }))


if __name__ == "__main__":
    main()
