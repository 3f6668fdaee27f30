"""ZeRO on 2 gloo ranks: sharded optimizer state, equality with a plain optimizer on the
full batch, and a consolidated checkpoint round trip. Usage: torchrun ... zero_worker.py OUT"""
from __future__ import annotations

import copy

import torch
from torch import nn

import _common as C
from survopt_hydra import StepEngine, build_optimizer, build_scheduler
from survopt_hydra.distributed import DistributedSettings

OPT = {"name": "adamw", "lr": 0.01, "weight_decay": 0.1}  # LayerNorm/biases -> a no_decay group


def step_all(model, engine, batches, r, w):
    for bx, by in batches:
        engine.backward(nn.functional.mse_loss(model(C.half(bx, r, w)), C.half(by, r, w)))
        engine.step()
    engine.end_epoch()


def main(out):
    settings = DistributedSettings("zero")
    ctx = settings.setup(device="cpu")
    r, w = ctx.rank, ctx.world_size
    res = {"rank": r}
    base = C.make_model(0, norm=True)
    batches = C.make_batches(8)

    def fresh(seed):
        model = settings.wrap_model(C.make_model(seed, norm=True), ctx)
        opt = settings.build_optimizer(OPT, model, ctx)
        sched = build_scheduler(opt, name="cosine", epochs=4)
        return model, opt, StepEngine(model, opt, sched)

    model, opt, engine = fresh(0)
    res["optimizer"] = type(opt).__name__
    res["local_optimizer"] = type(opt.optim).__name__
    res["local_fused"] = bool(opt.optim.defaults.get("fused"))
    res["groups"] = [g["name"] for g in opt.param_groups]
    res["local_groups"] = [g.get("name") for g in opt.optim.param_groups]
    index = {id(p): i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
    res["n_params"] = len(index)

    ref = copy.deepcopy(base)
    ref_opt = build_optimizer(ref, **OPT)
    ref_engine = StepEngine(ref, ref_opt, build_scheduler(ref_opt, name="cosine", epochs=4))
    for epoch in range(2):
        step_all(model, engine, batches[4 * epoch: 4 * epoch + 4], r, w)
        step_all(ref, ref_engine, batches[4 * epoch: 4 * epoch + 4], 0, 1)
    res["state_params"] = sorted(index[id(p)] for p in opt.optim.state)
    res["param_diff"] = C.max_diff(C.flat_params(model), C.flat_params(ref))
    res["lrs"] = [g["lr"] for g in opt.param_groups]
    res["ref_lrs"] = [g["lr"] for g in ref_opt.param_groups]

    # checkpoint: save (rank 0 writes), continue 4 steps -> A; fresh run loads, same steps -> B
    path = out / "zero.pt"
    settings.save_checkpoint(path, model, ctx, engine=engine, extra={"epoch": 2})
    more = C.make_batches(8, seed=7)
    step_all(model, engine, more[:4], r, w)
    a = C.flat_params(model)
    model2, opt2, engine2 = fresh(123)
    res["before_load_diff"] = C.max_diff(C.flat_params(model2), a)
    extra = settings.load_checkpoint(path, model2, ctx, engine=engine2)
    res["extra"] = extra
    res["counters"] = [engine2.global_step, engine2.epoch]
    step_all(model2, engine2, more[:4], r, w)
    res["resume_diff"] = C.max_diff(C.flat_params(model2), a)
    res["resumed_params"] = a.tolist()
    res["missing"] = settings.load_checkpoint(out / "nothing.pt", model2, ctx, engine=engine2)
    return res


if __name__ == "__main__":
    C.run(main)
