"""DDP on 2 gloo ranks: gradients, engine steps with accumulation, collectives, data helpers,
LR scaling and the seed API's world-size check. Usage: torchrun ... ddp_worker.py OUT"""
from __future__ import annotations

import copy
import math

import torch
import torch.distributed
from torch import nn

import _common as C
from survopt_hydra import ConfigError, DistributedOptimizer, StepEngine, build_optimizer
from survopt_hydra.distributed import (
    DistributedSettings, eval_indices, gather_by_index, is_main, shard_indices,
)


def main(out):
    settings = DistributedSettings("ddp")
    ctx = settings.setup(device="cpu")
    r, w = ctx.rank, ctx.world_size
    res = {"rank": r, "world_size": w, "backend": ctx.backend, "launcher": ctx.launcher, "is_main": is_main()}

    # 1. gradients: each rank its half, DDP averages == full batch, mean loss, one process
    base = C.make_model(0)
    ref = copy.deepcopy(base)
    model = settings.wrap_model(copy.deepcopy(base), ctx)
    res["wrapped"] = type(model).__name__
    (x, y), = C.make_batches(1)
    nn.functional.mse_loss(model(C.half(x, r, w)), C.half(y, r, w)).backward()
    nn.functional.mse_loss(ref(x), y).backward()
    res["grad_diff"] = max(C.max_diff(p.grad, q.grad) for p, q in zip(model.parameters(), ref.parameters()))

    # 2. StepEngine, accumulate 2 (no_sync on the first micro-batch) vs one process on full batches
    model = settings.wrap_model(copy.deepcopy(base), ctx)
    opt = settings.build_optimizer({"name": "adamw", "lr": 0.01, "weight_decay": 0.1}, model, ctx)
    engine = StepEngine(model, opt, accumulate_grad_batches=2)
    ref = copy.deepcopy(base)
    ref_engine = StepEngine(ref, build_optimizer(ref, "adamw", lr=0.01, weight_decay=0.1), accumulate_grad_batches=2)
    for bx, by in C.make_batches(6):
        engine.backward(nn.functional.mse_loss(model(C.half(bx, r, w)), C.half(by, r, w)))
        engine.step()
        ref_engine.backward(nn.functional.mse_loss(ref(bx), by))
        ref_engine.step()
    res["engine_steps"] = engine.global_step
    res["engine_param_diff"] = C.max_diff(C.flat_params(model), C.flat_params(ref))
    res["params_equal_across_ranks"] = C.max_diff(
        ctx.all_gather_tensor(C.flat_params(model)[None])[0], C.flat_params(model))

    # 3. collectives
    gathered = ctx.all_gather_tensor(torch.full((r + 1, 2), float(r)))
    res["gather_shape"] = list(gathered.shape)
    res["gather_values"] = gathered[:, 0].tolist()
    res["broadcast"] = ctx.broadcast_object({"from": r})
    res["mean"] = ctx.all_reduce_mean(float(r))
    res["mean_tensor"] = ctx.all_reduce_mean(torch.tensor([float(r), 2.0 * r])).tolist()
    res["agree"] = ctx.agree(r == 0)
    res["any_rank"] = [ctx.any_rank(r == 1), ctx.any_rank(False)]
    res["on_main"] = ctx.on_main(lambda: {"read_by": r})

    def refuse():
        raise ConfigError("trainer.resume", "written with a different config")

    try:
        ctx.on_main(refuse)
    except ConfigError as err:
        res["on_main_error"] = [err.key, str(err)]

    # 4. data: the sampler shards, gathered eval scores in order
    n = 11
    res["shard_e0"] = shard_indices(n, epoch=0, seed=3, ctx=ctx).tolist()
    res["shard_e1"] = shard_indices(n, epoch=1, seed=3, ctx=ctx).tolist()
    idx = eval_indices(n, ctx)
    res["eval_count"] = len(idx)
    scores = gather_by_index(idx.double() * 10.0, idx, n, ctx)
    res["gathered_scores"] = scores.tolist()

    # 5. LR scaling recorded
    sq = DistributedSettings("ddp", lr_scaling="sqrt")
    sq_opt = sq.build_optimizer({"name": "sgd", "lr": 0.1}, settings.wrap_model(C.make_model(0), ctx), ctx)
    res["sqrt_scale"] = sq.lr_scale
    res["sqrt_lr"] = sq_opt.param_groups[0]["lr"]
    lin = DistributedSettings("ddp", lr_scaling="linear")
    lin.build_optimizer({"name": "sgd", "lr": 0.1}, settings.wrap_model(C.make_model(0), ctx), ctx,
                        global_batch=64, base_batch=16)
    res["linear_scale"] = lin.lr_scale
    res["describe"] = lin.describe(ctx)

    # 6. the seed API
    try:
        DistributedOptimizer(model=C.make_model(0), optimizer_type="adamw", learning_rate=1e-4, world_size=4)
        res["mismatch"] = None
    except ConfigError as err:
        res["mismatch"] = {"key": err.key, "message": str(err)}
    seed_opt = DistributedOptimizer(model=C.make_model(0), optimizer_type="adamw", learning_rate=1e-4,
                                    world_size=2, lr_scaling="linear", weight_decay=1e-4)
    seed_opt.zero_grad()
    seed_opt.model(C.half(x, r, w)).pow(2).mean().backward()
    seed_opt.step()
    res["seed"] = {"model": type(seed_opt.model).__name__, "optimizer": type(seed_opt.optimizer).__name__,
                   "lr_scale": seed_opt.lr_scale, "lr": seed_opt.param_groups[0]["lr"],
                   "state_keys": sorted((seed_opt.state_dict() or {}).keys())}
    assert math.isfinite(res["grad_diff"])

    # 7. teardown, then a second setup in the same process (a fresh key prefix on the store)
    del model, ref, opt, engine, ref_engine, sq_opt, seed_opt
    ctx.teardown()
    res["after_teardown"] = torch.distributed.is_initialized()
    ctx2 = settings.setup(device="cpu")
    res["resetup"] = [ctx2.world_size, ctx2.launcher, ctx2.all_reduce_mean(float(r + 1))]
    return res


if __name__ == "__main__":
    C.run(main)
