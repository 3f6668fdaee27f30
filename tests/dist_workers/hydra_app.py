"""A minimal Hydra app on survopt_hydra.distributed: setup -> wrap -> optimizer -> steps.

Rank 0 writes ``result.json`` (world size, launcher, LR, final parameters) to the job's
output folder; under ``-m`` each sweep point is one job with its own ranks.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn


@hydra.main(version_base="1.3", config_path="conf", config_name="hydra_app")
def main(cfg: DictConfig) -> None:
    settings = instantiate(cfg.distributed)
    ctx = settings.setup(device="cpu")
    try:
        torch.manual_seed(0)
        model = settings.wrap_model(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)), ctx)
        opt = settings.build_optimizer(cfg.optimizer, model, ctx)
        g = torch.Generator().manual_seed(1)
        for _ in range(cfg.steps):
            x, y = torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)
            xs, ys = x.chunk(ctx.world_size)[ctx.rank], y.chunk(ctx.world_size)[ctx.rank]
            opt.zero_grad()
            nn.functional.mse_loss(model(xs), ys).backward()
            opt.step()
        params = torch.cat([p.detach().flatten() for p in model.parameters()])
        same = ctx.all_gather_tensor(params[None])
        result = {**settings.describe(ctx), "lr": opt.param_groups[0]["lr"], "params": params.tolist(),
                  "ranks_agree": bool((same - params).abs().max() == 0)}
        if ctx.is_main:
            Path(HydraConfig.get().runtime.output_dir, "result.json").write_text(json.dumps(result))
    finally:
        ctx.teardown()


if __name__ == "__main__":
    main()
