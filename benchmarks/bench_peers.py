"""Peers: the same training step written with other libraries' optimizer machinery.

Every peer trains a copy of the default app model (see :mod:`bench_engine`) on the
same batch with the same Cox loss, AdamW hyper-parameters, cosine LR, global-norm
clipping at the same ``max_norm`` and no weight decay on 1-D parameters where the peer
supports that; each peer uses its own defaults otherwise (which on CPU means torch's
for-loop AdamW: only ``build_optimizer`` picks the fused kernel).  "ours" is the
``StepEngine`` step of :mod:`bench_engine`.  Figures are ``peer step time / our step
time`` (> 1: the peer is slower), medians over rounds, with one intra-op thread as in
:mod:`bench_engine` (the comparison is per-step overhead on a tiny model).

* **MMEngine** ``OptimWrapper`` (``build_optim_wrapper`` with ``clip_grad`` and
  ``paramwise_cfg`` no-decay for norms and biases, ``mmengine`` ``CosineAnnealingLR``):
  ``optim_wrapper.update_params(loss); scheduler.step()``.  Alternated call by call
  with ours, like :mod:`bench_engine`.
* **PyTorch Lightning** manual optimization (``automatic_optimization = False``:
  ``manual_backward``, ``clip_gradients``, ``opt.step()``, ``sch.step()``,
  ``opt.zero_grad()`` in ``training_step``) driven by ``Trainer.fit`` over the same
  batch repeated.  Per-step time is taken between batch-end callbacks after a warm-up
  inside each fit (so it includes Lightning's loop and hooks, not its set-up), median
  of the intervals between consecutive batch ends; fits and blocks of our steps
  (median step time) alternate round by round.
* **timm** ``create_optimizer_v2``: timm imports torchvision at import time, and no
  torchvision build for this torch (CPU wheel) can be installed here, so it is
  skipped where ``import timm`` fails (the reason is recorded).

Peers are benchmark-only dependencies (never package dependencies); a missing peer
is recorded as ``skipped: <reason>``.

Usage: ``python benchmarks/bench_peers.py``; ``run(quick)`` returns the dict.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine  # noqa: E402


def _why_not(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import means "not available"
        first = (str(exc).strip().splitlines() or [""])[0]
        return f"skipped: import {module} failed ({type(exc).__name__}: {first[:120]})"
    return None


def _hparams(setup: dict[str, Any]) -> dict[str, Any]:
    o = setup["cfg"].optimizer
    return {"lr": float(o.lr), "weight_decay": float(o.weight_decay), "betas": tuple(o.get("betas", (0.9, 0.999))),
            "eps": float(o.get("eps", 1e-8)), "max_norm": float(setup["cfg"].clipping.get("max_norm", 1.0))}


# ------------------------------------------------------------------ MMEngine
def mmengine_step(setup: dict[str, Any]) -> Callable[[], None]:
    from mmengine.optim import build_optim_wrapper
    from mmengine.optim.scheduler import CosineAnnealingLR

    import logging

    from mmengine.logging import MMLogger

    MMLogger.get_instance("mmengine", log_level="WARNING").setLevel(logging.WARNING)  # param-group chatter
    h = _hparams(setup)
    model = copy.deepcopy(setup["model"])
    wrapper = build_optim_wrapper(model, dict(
        type="OptimWrapper",
        optimizer=dict(type="AdamW", lr=h["lr"], weight_decay=h["weight_decay"], betas=h["betas"], eps=h["eps"]),
        clip_grad=dict(max_norm=h["max_norm"]),
        paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    ))
    sched = CosineAnnealingLR(wrapper, T_max=setup["epochs"], by_epoch=True)
    x, d, e, loss_fn, ties = setup["x"], setup["durations"], setup["events"], setup["loss"], setup["ties"]

    def step() -> None:
        wrapper.update_params(loss_fn(model(x), d, e, ties))
        sched.step()

    return step


def bench_mmengine(setup: dict[str, Any], quick: bool) -> dict[str, Any]:
    reason = _why_not("mmengine")
    if reason:
        return {"peer_mmengine_step_ratio": reason}
    import mmengine

    ours, _ = bench_engine.make_engine_step(setup)
    theirs = mmengine_step(setup)
    rounds, steps, warmup = (3, 20, 10) if quick else (11, 200, 100)
    times = bench_engine.interleaved({"ours": ours, "mmengine": theirs}, rounds, steps, warmup)
    ratio = [a / b for a, b in zip(times["mmengine"], times["ours"])]
    return {
        "peer_mmengine_step_ratio": round(statistics.median(ratio), 4),
        "mmengine_version": mmengine.__version__,
        "mmengine_step_us": round(statistics.median(times["mmengine"]) * 1e6, 2),
        "ours_vs_mmengine_step_us": round(statistics.median(times["ours"]) * 1e6, 2),
    }


# ------------------------------------------------------------------ Lightning
def _lightning_fit(setup: dict[str, Any], steps: int, warmup: int) -> float:
    """Seconds per step of a manual-optimization ``Trainer.fit`` (after ``warmup`` steps)."""
    import logging

    import pytorch_lightning as pl

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    h = _hparams(setup)
    net = copy.deepcopy(setup["model"])
    loss_fn, ties, epochs = setup["loss"], setup["ties"], setup["epochs"]

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> None:
            opt = self.optimizers()
            sch = self.lr_schedulers()
            x, d, e = batch
            loss = loss_fn(self.net(x), d, e, ties)
            self.manual_backward(loss)
            self.clip_gradients(opt, gradient_clip_val=h["max_norm"], gradient_clip_algorithm="norm")
            opt.step()
            sch.step()
            opt.zero_grad(set_to_none=True)

        def configure_optimizers(self) -> Any:
            opt = torch.optim.AdamW(self.parameters(), lr=h["lr"], weight_decay=h["weight_decay"], betas=h["betas"],
                                    eps=h["eps"])
            return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)]

    stamps: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())

    batch = (setup["x"], setup["durations"], setup["events"])
    total = warmup + steps

    class Repeat:  # one iterable (a list would be read as a list of dataloaders)
        def __iter__(self) -> Any:
            return iter([batch] * total)

        def __len__(self) -> int:
            return total

    trainer = pl.Trainer(max_steps=total, max_epochs=1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[Clock()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Module(), train_dataloaders=Repeat())
    # median interval between consecutive batch ends: one step plus Lightning's loop
    # around it; a step another process preempted is an outlier the median ignores
    return statistics.median(b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:]))


def bench_lightning(setup: dict[str, Any], quick: bool) -> dict[str, Any]:
    reason = _why_not("pytorch_lightning")
    if reason:
        return {"peer_lightning_step_ratio": reason}
    import pytorch_lightning as pl

    ours, _ = bench_engine.make_engine_step(setup)
    rounds, steps, warmup = (2, 20, 10) if quick else (7, 300, 50)
    for _ in range(warmup):
        ours()
    ratios, theirs_s, ours_s = [], [], []
    for _ in range(rounds):
        t_pl = _lightning_fit(setup, steps, warmup)
        stamps = [time.perf_counter()]
        for _ in range(steps):
            ours()
            stamps.append(time.perf_counter())
        t_ours = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
        ratios.append(t_pl / t_ours)
        theirs_s.append(t_pl)
        ours_s.append(t_ours)
    return {
        "peer_lightning_step_ratio": round(statistics.median(ratios), 4),
        "lightning_version": pl.__version__,
        "lightning_step_us": round(statistics.median(theirs_s) * 1e6, 2),
        "ours_vs_lightning_step_us": round(statistics.median(ours_s) * 1e6, 2),
    }


# ------------------------------------------------------------------ timm
def bench_timm(setup: dict[str, Any], quick: bool) -> dict[str, Any]:
    reason = _why_not("timm.optim")
    if reason:
        return {"peer_timm_step_ratio": reason + " - timm imports torchvision; see benchmarks/README.md"}
    from timm.optim import create_optimizer_v2

    h = _hparams(setup)
    model = copy.deepcopy(setup["model"])
    opt = create_optimizer_v2(model, "adamw", lr=h["lr"], weight_decay=h["weight_decay"], betas=h["betas"],
                              eps=h["eps"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=setup["epochs"])
    params = [p for p in model.parameters() if p.requires_grad]
    x, d, e, loss_fn, ties = setup["x"], setup["durations"], setup["events"], setup["loss"], setup["ties"]

    def theirs() -> None:
        loss_fn(model(x), d, e, ties).backward()
        torch.nn.utils.clip_grad_norm_(params, h["max_norm"])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    ours, _ = bench_engine.make_engine_step(setup)
    rounds, steps, warmup = (3, 20, 10) if quick else (11, 200, 100)
    times = bench_engine.interleaved({"ours": ours, "timm": theirs}, rounds, steps, warmup)
    ratio = [a / b for a, b in zip(times["timm"], times["ours"])]
    return {"peer_timm_step_ratio": round(statistics.median(ratio), 4), "timm_optimizer": type(opt).__name__}


def run(quick: bool = False) -> dict:
    setup = bench_engine.app_setup(quick)
    out: dict[str, Any] = {"benchmark": "peers", "setup": setup["description"],
                           "torch_before": torch.__version__}
    out["threads"] = bench_engine.STEP_THREADS  # as bench_engine: per-step overhead, not OpenMP load noise
    for fn in (bench_mmengine, bench_lightning, bench_timm):
        try:
            with bench_engine.threads(bench_engine.STEP_THREADS):
                out.update(fn(setup, quick))
        except Exception as exc:  # noqa: BLE001 - a broken peer must not stop the suite
            key = {"bench_mmengine": "peer_mmengine_step_ratio", "bench_lightning": "peer_lightning_step_ratio",
                   "bench_timm": "peer_timm_step_ratio"}[fn.__name__]
            out[key] = f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    out["torch_after"] = torch.__version__
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
