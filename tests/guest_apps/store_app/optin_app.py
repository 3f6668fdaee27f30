"""The ConfigStore app of ``app.py`` opting in from Python: ``store_options()`` after its own store.

Its own ``optimizer/adamw`` must stay its own (lr 0.123), the library's other options appear.
"""
import functools
import json
import sys

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import OmegaConf

from survopt_hydra.schemas.store import store_options

ConfigStore.instance().store(group="optimizer", name="adamw",
                             node={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.123})
store_options()


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
