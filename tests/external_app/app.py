"""A user's own training loop under ``@hydra.main``, with survopt-hydra's groups opted in.

What a user writes: check the library's nodes up front (``validate_groups``: one line on a bad
value), instantiate each node, train. Everything the tests read goes to the job's output
directory: ``result.json`` and ``cfg.pkl`` (the composed config, pickled with the standard
library). ``python app.py -m optimizer=adamw,sgd`` writes one of each per job.
"""
import json
import math
import pickle
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from survopt_hydra import ConfigError, validate_groups


class Net(nn.Module):
    """A position embedding, a hidden gate matrix and a head; like timm's models it names the
    parameters that must not decay."""

    def __init__(self, features: int = 4, width: int = 8) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, features))
        self.body = nn.Linear(features, width)
        self.norm = nn.LayerNorm(width)
        self.gate = nn.Parameter(torch.eye(width))
        self.head = nn.Linear(width, 1)

    def no_weight_decay(self) -> set:
        return {"pos_embed", "gate"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.tanh(self.body(x + self.pos_embed))) @ self.gate)


def plain(value):
    """JSON-able copy of optimizer defaults and the like."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def grads(model: nn.Module) -> dict:
    return {n: p.grad.detach().flatten().tolist() for n, p in model.named_parameters() if p.grad is not None}


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        validate_groups(cfg, epochs=cfg.epochs, steps_per_epoch=cfg.batches)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / "cfg.pkl").write_bytes(pickle.dumps(cfg))

    torch.manual_seed(cfg.seed)
    net = Net()
    x = torch.randn(8 * cfg.batches, 4)
    y = x.sum(dim=1, keepdim=True)

    distributed = instantiate(cfg.distributed)
    ctx = distributed.setup(device="cpu")
    model = distributed.wrap_model(net, ctx)
    if ctx.distributed:  # the optimizer over the wrapped model (FSDP's DTensors, ZeRO's shards)
        optimizer = distributed.build_optimizer(cfg.optimizer, model, ctx)
    else:
        optimizer = instantiate(cfg.optimizer, params=net)
        if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):  # optimizer._partial_=true
            optimizer = optimizer()
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer, epochs=cfg.epochs, steps_per_epoch=cfg.batches)
    clipper = instantiate(cfg.clipping)
    ema = instantiate(cfg.ema).attach(net)
    dtype, use_scaler = instantiate(cfg.amp).resolve("cpu")
    scaler = torch.amp.GradScaler("cpu", enabled=use_scaler)
    if hasattr(optimizer, "train"):  # schedule-free optimizers step in train mode
        optimizer.train()

    def loss_of(xb, yb):
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            pred = model(xb)
        return (pred.float() - yb).pow(2).mean(), pred.dtype

    per_step = cfg.scheduler.interval == "step"
    lrs, val_losses, trace, clip_record, out_dtype = [], [], [], None, None
    for _ in range(cfg.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        for b in range(cfg.batches):
            xb, yb = x[8 * b: 8 * b + 8], y[8 * b: 8 * b + 8]
            if cfg.train:
                optimizer.zero_grad()
                loss, out_dtype = loss_of(xb, yb)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                before = None if ctx.distributed else grads(net)  # (FSDP's sharded DTensors: not recorded)
                clipper.clip_gradients(net)
                finite = before is not None and all(math.isfinite(v) for g in before.values() for v in g)
                if clip_record is None and finite:  # the first step fp16's GradScaler does not skip
                    weights = {n: p.detach().flatten().tolist() for n, p in net.named_parameters()}
                    shapes = {n: list(p.shape) for n, p in net.named_parameters()}
                    clip_record = {"before": before, "after": grads(net), "weights": weights, "shapes": shapes}
                if isinstance(optimizer, torch.optim.LBFGS):
                    optimizer.step(lambda: loss_of(xb, yb)[0])
                else:
                    scaler.step(optimizer)
                    scaler.update()
                ema.update(net)
                if not ctx.distributed:
                    trace.append({"head.bias": net.head.bias.item(),
                                  "ema": ema.module.head.bias.item() if ema.module is not None else None})
            if per_step:
                scheduler.step()
        with torch.no_grad():
            val_losses.append(loss_of(x, y)[0].item())
        if cfg.scheduler.name == "plateau":
            scheduler.step(val_losses[-1])
        elif not per_step:
            scheduler.step()

    names = {id(p): n for n, p in net.named_parameters()}
    result = {
        "choices": {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")},
        "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__name__}",
        "defaults": {k: plain(v) for k, v in optimizer.defaults.items()},
        "groups": [{"name": g.get("name"), "lr": g.get("initial_lr", g["lr"]), "weight_decay": g.get("weight_decay"),
                    "params": [names.get(id(p), "?") for p in g["params"]], "betas": plain(g.get("betas"))}
                   for g in optimizer.param_groups],
        "scheduler": type(scheduler).__name__,
        "lrs": lrs, "val_losses": val_losses, "trace": trace, "clip": clip_record,
        "clipper": repr(clipper), "ema": {"mode": ema.mode, "decay": ema.decay, "warmup": ema.warmup},
        "amp": [str(dtype), use_scaler, str(out_dtype)],
        "distributed": {"strategy": distributed.strategy, "process_group": ctx.distributed,
                        "model": type(model).__name__},
        "final_loss": val_losses[-1],
        "survopt_hydra": sys.modules["survopt_hydra"].__file__,
        "node": OmegaConf.to_container(cfg.optimizer),
    }
    ctx.teardown()
    (out / "result.json").write_text(json.dumps(result))
    print("RESULT " + json.dumps({k: result[k] for k in ("choices", "optimizer", "scheduler", "final_loss")}))


if __name__ == "__main__":
    main()
