"""FSDP2 (fully_shard) on 2 gloo CPU ranks: steps equal DDP, the engine's clipping works on
sharded grads, full and sharded (DCP) checkpoints round-trip. Usage: torchrun ... fsdp_worker.py OUT"""
from __future__ import annotations

import torch
from torch import nn

import _common as C
from survopt_hydra import StepEngine, build_scheduler
from survopt_hydra.engine.clipping import GradientClipper
from survopt_hydra.distributed import DistributedSettings, model_state_dict

OPT = {"name": "adamw", "lr": 0.01, "weight_decay": 0.1}


def step_all(model, engine, batches, r, w):
    for bx, by in batches:
        engine.backward(nn.functional.mse_loss(model(C.half(bx, r, w)), C.half(by, r, w)))
        engine.step()


def main(out):
    fsdp = DistributedSettings("fsdp")
    ddp = DistributedSettings("ddp")
    ctx = fsdp.setup(device="cpu")
    r, w = ctx.rank, ctx.world_size
    res = {"rank": r}
    batches = C.make_batches(6)

    def build(settings, seed=0, clip=True, k=1, checkpoint=None):
        model = settings.wrap_model(C.make_model(seed, norm=True), ctx)
        opt = settings.build_optimizer(OPT, model, ctx)
        clipper = GradientClipper(mode="norm", max_norm=0.05) if clip else None
        engine = StepEngine(model, opt, build_scheduler(opt, name="cosine", epochs=4), clipper=clipper,
                            accumulate_grad_batches=k)
        return model, opt, engine

    model, opt, engine = build(fsdp, k=2)
    res["param_type"] = type(next(model.parameters())).__name__
    res["model_type"] = type(model).__name__
    res["groups"] = [g["name"] for g in opt.param_groups]
    d_model, _, d_engine = build(ddp, k=2)
    step_all(model, engine, batches, r, w)
    step_all(d_model, d_engine, batches, r, w)
    res["steps"] = [engine.global_step, d_engine.global_step]
    res["grad_norms"] = [float(getattr(engine.last_grad_norm, "full_tensor", lambda: engine.last_grad_norm)()),
                         float(d_engine.last_grad_norm)]
    res["fsdp_vs_ddp"] = C.max_diff(C.flat_params(model), C.flat_params(d_model))
    full = model_state_dict(model, ctx, all_ranks=True)  # every rank: plain names, full tensors
    res["all_ranks_state"] = {"keys": list(full)[:2], "diff": C.max_diff(
        torch.cat([v.flatten() for v in full.values()]), C.flat_params(model))}

    # checkpoints: save in both modes (sharded twice: the older shard folder is removed),
    # continue the original -> A; a fresh run per mode loads and continues -> must equal A
    modes = {m: DistributedSettings("fsdp", checkpoint=m) for m in ("full", "sharded")}
    for mode, settings in modes.items():
        for _ in range(2 if mode == "sharded" else 1):
            settings.save_checkpoint(out / f"fsdp_{mode}.pt", model, ctx, engine=engine, extra={"mode": mode})
    saved = C.flat_params(model).clone()
    more = C.make_batches(4, seed=9)
    step_all(model, engine, more, r, w)
    a = C.flat_params(model)
    res["files"] = sorted(p.name for p in out.iterdir() if p.name.startswith("fsdp_"))
    for mode, settings in modes.items():
        m2, o2, e2 = build(settings, seed=5, k=2)
        extra = settings.load_checkpoint(out / f"fsdp_{mode}.pt", m2, ctx, engine=e2)
        res[f"{mode}_extra"] = extra
        res[f"{mode}_load_diff"] = C.max_diff(C.flat_params(m2), saved)
        step_all(m2, e2, more, r, w)
        res[f"{mode}_resume_diff"] = C.max_diff(C.flat_params(m2), a)
        res[f"{mode}_counters"] = [e2.global_step, engine.global_step]
    res["final_params"] = C.flat_params(model).tolist()
    return res


if __name__ == "__main__":
    C.run(main)
