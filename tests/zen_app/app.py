"""A hydra-zen app: every config is Python (``store``, ``builds``, ``make_config``), the task is ``zen``-wrapped.

Its own options are built on survopt-hydra's dataclasses (``AdamWConfig``, ``WarmupCosineConfig``,
``NormClippingConfig``) and stored under names of its own; the primary config opts in to the
library's groups with the one ``hydra.searchpath`` line, so ``optimizer=sgd``, ``optimizer=muon``
and ``+preset=...`` work too. Optimizer and scheduler nodes are partials whatever option is picked
(``_partial_: true`` in the primary config, merged last): the task binds the model and the run length.

``pre_call`` checks the library's nodes before zen instantiates anything (one line on a bad value)
and pickles them as composed objects (``nodes.pkl``: ``OmegaConf.to_object`` gives the library's
dataclass instances, e.g. ``AdamWConfig``; the primary
config itself is hydra-zen's dynamic ``types.Config``, which is hydra-zen's to make picklable:
``zen_dataclass={"module": ...}``); the task writes ``result.json``.
"""
import json
import pickle
import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra_zen import builds, make_config, store, zen
from omegaconf import OmegaConf
from torch import nn

from survopt_hydra import ConfigError, validate_groups
from survopt_hydra.schemas.clipping import NormClippingConfig
from survopt_hydra.schemas.optimizers import AdamWConfig
from survopt_hydra.schemas.scheduler import WarmupCosineConfig


class TokenMixer(nn.Module):
    """Token embedding, position embedding, one hidden mixing matrix, a head (timm-style
    ``no_weight_decay``)."""

    def __init__(self, vocab: int = 10, width: int = 8) -> None:
        super().__init__()
        self.tok_embed = nn.Embedding(vocab, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, width))
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, 1)

    def no_weight_decay(self) -> set:
        return {"pos_embed", "mix.weight"}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.tok_embed(tokens).mean(1) + self.pos_embed)))


store(builds(TokenMixer, populate_full_signature=True), group="net", name="mixer")
store(AdamWConfig(lr=3e-3, weight_decay=0.05), group="optimizer", name="zen_adamw")
store(WarmupCosineConfig(warmup_epochs=0, warmup_fraction=0.25), group="scheduler", name="zen_warmup")
store(NormClippingConfig(max_norm=0.5), group="clipping", name="zen_norm")

Config = make_config(
    "net", "clipping",  # filled by their groups
    hydra_defaults=[{"net": "mixer"}, {"optimizer": "zen_adamw"}, {"scheduler": "zen_warmup"},
                    {"clipping": "zen_norm"}, "_self_"],
    optimizer={"_partial_": True}, scheduler={"_partial_": True},
    epochs=4, batches=3, seed=0,
    hydra={"searchpath": ["pkg://survopt_hydra.conf"]},  # the one line: opt in to survopt-hydra's groups
)
store(Config, name="config")


def up_front(cfg) -> None:
    """zen's pre_call: every library node checked before anything is instantiated."""
    try:
        validate_groups(cfg, epochs=cfg.epochs, steps_per_epoch=cfg.batches)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    nodes = {group: OmegaConf.to_object(cfg[group]) for group in ("optimizer", "scheduler", "clipping")}
    (Path(HydraConfig.get().runtime.output_dir) / "nodes.pkl").write_bytes(pickle.dumps(nodes))


def train(net: nn.Module, optimizer, scheduler, clipping, epochs: int, batches: int, seed: int) -> None:
    torch.manual_seed(seed)
    opt = optimizer(params=net)
    sched = scheduler(optimizer=opt, epochs=epochs, steps_per_epoch=batches)
    tokens = torch.randint(0, 10, (8 * batches, 5))
    target = tokens.float().mean(1, keepdim=True) / 10
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        for b in range(batches):
            opt.zero_grad()
            loss = (net(tokens[8 * b: 8 * b + 8]) - target[8 * b: 8 * b + 8]).pow(2).mean()
            loss.backward()
            clipping.clip_gradients(net)
            opt.step()
        sched.step()
    names = {id(p): n for n, p in net.named_parameters()}
    result = {
        "optimizer": f"{type(opt).__module__}.{type(opt).__name__}",
        "partials": [type(optimizer).__mro__[-2].__name__, type(scheduler).__mro__[-2].__name__],
        "defaults": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opt.defaults.items()
                     if isinstance(v, (int, float, str, bool, tuple, type(None)))},
        "groups": [{"name": g.get("name"), "lr": g.get("initial_lr"), "weight_decay": g.get("weight_decay"),
                    "params": [names[id(p)] for p in g["params"]]} for g in opt.param_groups],
        "scheduler": type(sched).__name__, "lrs": lrs, "clipper": repr(clipping),
        "choices": {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")},
    }
    (Path(HydraConfig.get().runtime.output_dir) / "result.json").write_text(json.dumps(result))
    print("RESULT " + json.dumps({k: result[k] for k in ("optimizer", "scheduler", "choices")}))


if __name__ == "__main__":
    store.add_to_hydra_store()
    zen(train, pre_call=up_front).hydra_main(config_name="config", config_path=None, version_base="1.3")
