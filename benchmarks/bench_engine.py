"""StepEngine overhead: one training step through the engine vs a hand-written loop.

The model, batch and every component come from the app's default config
(``conf/train.yaml`` with ``data=gbsg2``, pinned so figures stay comparable across
sessions: GBSG2's 12 features, ``model=mlp`` with ``hidden: [16]``,
batch norm and dropout, one full batch of the 480 training rows, AdamW as
``build_optimizer`` builds it (fused), cosine LR, global-norm clipping at 1.0, the Cox
partial-likelihood loss).  Where ``train.yaml`` does not exist yet, the optimizer,
scheduler and clipping groups are composed directly and a DeepSurv-style
``MLP(12, hidden=(32, 32))`` on a batch of 64 stands in (``details.setup`` says which).

A step is: forward, Cox loss, backward, clip, optimizer step, scheduler step, zero
grads.  The default app runs one batch per epoch with an epoch-interval scheduler, so
the engine variant calls ``engine.backward(loss); engine.step(); engine.end_epoch()``
(that is where the engine steps an epoch-interval scheduler) and the raw loop calls
``loss.backward(); clip_grad_norm_(...); optimizer.step(); scheduler.step();
optimizer.zero_grad(set_to_none=True)`` on its own copy of the model, with an
optimizer and scheduler of the same types, instantiated from the same config.

The variants alternate step by step (engine, raw, raw + finiteness sync, ...); per
round each variant's step time is the median of its ``steps`` timed steps, and
``engine_over_raw_ratio`` is the median over rounds of engine time / raw time.  The engine checks ``bool(torch.isfinite(norm))``
every step (a host sync on an accelerator); the third variant adds exactly that check
to the raw loop, so ``raw_sync_over_raw_ratio`` shows what it costs on this device.
``ema_over_engine_ratio``: the same engine with ``ema=ema`` (an AveragedModel update after
every applied step) over the engine without it, interleaved in the same rounds.

Usage: ``python benchmarks/bench_engine.py [--quick]``; ``run(quick)`` returns the dict.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- app setup
def compose_app_config(overrides: list[str] | None = None) -> tuple[Any, str]:
    """The app's composed default config on GBSG2 and ``"train.yaml"``, composed as the app composes it."""
    from survopt_hydra.app.compose import compose_train

    return compose_train(["data=gbsg2", *(overrides or [])]), "train.yaml"


def _app_data(cfg: Any) -> dict[str, Any]:
    """Settings, training split and input shape of the default app (needs train.yaml)."""
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.app.data import load_cohort

    settings = check_app_config(cfg)
    cohort = load_cohort(settings["data"])
    return {"settings": settings, "train": cohort.train, "input_shape": cohort.input_shape}


def default_model(cfg: Any, source: str, data: dict[str, Any] | None = None) -> torch.nn.Module:
    """The default app's model (``build_model`` of the app), or the fallback MLP."""
    torch.manual_seed(0)
    if source == "train.yaml":
        from survopt_hydra.app.trainer import build_model

        data = data or _app_data(cfg)
        return build_model(data["settings"]["model"], data["input_shape"])
    from survopt_hydra.survival import MLP

    return MLP(FALLBACK_FEATURES, hidden=(32, 32))


FALLBACK_FEATURES, FALLBACK_BATCH = 12, 64


def app_setup(quick: bool = False) -> dict[str, Any]:
    """Config, model and one training batch of the default app (or the fallback)."""
    from survopt_hydra.survival import cox_ph_loss

    cfg, source = compose_app_config()
    setup: dict[str, Any] = {"cfg": cfg, "config_source": source, "loss": cox_ph_loss}
    if source == "train.yaml":
        data = _app_data(cfg)
        settings, train = data["settings"], data["train"]
        model = default_model(cfg, source, data)
        batch = min(settings["trainer"]["batch_size"], len(train))
        n_batches = math.ceil(len(train) / settings["trainer"]["batch_size"])
        x, durations, events = train.x[:batch], train.durations[:batch], train.events[:batch]
        setup.update(
            epochs=settings["trainer"]["max_epochs"], n_batches=n_batches, ties=settings["trainer"]["ties"],
            description=f"app default: {settings['data']['name']} ({data['input_shape'][0]} features), "
            f"model={settings['model']['name']} hidden={settings['model'].get('hidden')}, batch {batch}",
        )
    else:
        model = default_model(cfg, source)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(FALLBACK_BATCH, FALLBACK_FEATURES, generator=gen)
        durations = torch.rand(FALLBACK_BATCH, generator=gen) * 100
        events = (torch.rand(FALLBACK_BATCH, generator=gen) < 0.6).float()
        setup.update(epochs=100, n_batches=1, ties="breslow",
                     description=f"fallback: MLP({FALLBACK_FEATURES}, hidden=(32, 32)), batch {FALLBACK_BATCH}")
    model.train()
    setup.update(model=model, x=x, durations=durations, events=events, batch=int(x.shape[0]),
                 n_params=sum(p.numel() for p in model.parameters()))
    return setup


def make_engine_step(setup: dict[str, Any]) -> tuple[Callable[[], None], Any]:
    """A fresh model copy driven by ``StepEngine.from_config``; returns (step, engine)."""
    from survopt_hydra.engine.step_engine import StepEngine

    model = copy.deepcopy(setup["model"])
    engine = StepEngine.from_config(setup["cfg"], model, setup["n_batches"], setup["epochs"])
    x, d, e, loss_fn, ties = setup["x"], setup["durations"], setup["events"], setup["loss"], setup["ties"]
    per_epoch = getattr(engine.scheduler, "interval", "epoch") == "epoch"

    def step() -> None:
        with engine.autocast():
            risk = model(x)
        engine.backward(loss_fn(risk, d, e, ties))
        engine.step()
        if per_epoch:  # the default app: one batch per epoch, scheduler per epoch
            engine.end_epoch()

    return step, engine


def make_raw_step(setup: dict[str, Any], sync: bool = False) -> tuple[Callable[[], None], Any]:
    """The same work written by hand; ``sync`` adds the engine's finiteness check."""
    from hydra.utils import instantiate

    cfg = setup["cfg"]
    model = copy.deepcopy(setup["model"])
    optimizer = instantiate(cfg.optimizer, params=model)
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer, epochs=setup["epochs"],
                            steps_per_epoch=setup["n_batches"])
    max_norm = float(cfg.clipping.get("max_norm", 1.0))
    params = [p for p in model.parameters() if p.requires_grad]
    x, d, e, loss_fn, ties = setup["x"], setup["durations"], setup["events"], setup["loss"], setup["ties"]
    clip = torch.nn.utils.clip_grad_norm_

    if sync:
        def step() -> None:
            loss_fn(model(x), d, e, ties).backward()
            norm = clip(params, max_norm)
            if bool(torch.isfinite(norm)):
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        def step() -> None:
            loss_fn(model(x), d, e, ties).backward()
            clip(params, max_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

    return step, optimizer


def interleaved(variants: dict[str, Callable[[], None]], rounds: int, steps: int, warmup: int) -> dict[str, list[float]]:
    """Per round, ``steps`` calls of each variant, alternating call by call.

    Returns per variant and round the median seconds of one call: a call that another
    process preempts (a shared machine) is an outlier the median ignores, where a sum
    would charge it to whichever variant happened to be running.
    """
    names = list(variants)
    fns = [variants[n] for n in names]
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: dict[str, list[float]] = {n: [] for n in names}
    clock = time.perf_counter
    for r in range(rounds):
        order = list(range(len(fns)))
        if r % 2:
            order.reverse()
        samples: list[list[float]] = [[] for _ in fns]
        for _ in range(steps):
            for i in order:
                t0 = clock()
                fns[i]()
                samples[i].append(clock() - t0)
        for i, n in enumerate(names):
            out[n].append(statistics.median(samples[i]))
    return out


def _sync_cost_us(reps: int) -> float:
    """Median cost of ``bool(torch.isfinite(t))`` on a 0-d CPU tensor, in microseconds."""
    t = torch.tensor(1.0)
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(reps):
            bool(torch.isfinite(t))
        samples.append((time.perf_counter() - t0) / reps * 1e6)
    return statistics.median(samples)


class threads:
    """Context manager: torch intra-op threads set to ``n`` (restored on exit)."""

    def __init__(self, n: int) -> None:
        self.n, self.saved = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.saved)


def calibrated_steps(fn: Callable[[], None], budget_s: float, lo: int, hi: int) -> int:
    """How many calls of ``fn`` fit in ``budget_s`` (clamped to [lo, hi])."""
    t0 = time.perf_counter()
    for _ in range(5):
        fn()
    per = (time.perf_counter() - t0) / 5
    return max(lo, min(hi, int(budget_s / max(per, 1e-9))))


def _compare(setup: dict[str, Any], rounds: int, steps: int, warmup: int,
             extra: dict[str, Callable[[], None]] | None = None) -> dict[str, Any]:
    """Engine vs raw loops; ``extra`` variants run interleaved too, reported as ``<name>_over_engine``."""
    engine_step, engine = make_engine_step(setup)
    raw_step, raw_opt = make_raw_step(setup)
    raw_sync_step, _ = make_raw_step(setup, sync=True)
    assert type(raw_opt) is type(engine.optimizer) and raw_opt.defaults.get("fused") == engine.optimizer.defaults.get(
        "fused"), "the raw loop must use the same optimizer type and implementation"
    variants = {"engine": engine_step, "raw": raw_step, "raw_sync": raw_sync_step, **(extra or {})}
    times = interleaved(variants, rounds, steps, warmup)
    ratio = [a / b for a, b in zip(times["engine"], times["raw"])]
    q = statistics.quantiles(ratio, n=4) if len(ratio) > 1 else [ratio[0]] * 3
    return {
        "engine": engine,
        "engine_step_us": statistics.median(times["engine"]) * 1e6,
        "raw_step_us": statistics.median(times["raw"]) * 1e6,
        "raw_sync_step_us": statistics.median(times["raw_sync"]) * 1e6,
        "ratio": statistics.median(ratio),
        "iqr": (q[0], q[2]),
        "sync_ratio": statistics.median(a / b for a, b in zip(times["raw_sync"], times["raw"])),
        # the same work: a hand-written loop that also skips a non-finite step (one host sync)
        "guarded_ratio": statistics.median(a / b for a, b in zip(times["engine"], times["raw_sync"])),
        **{f"{name}_over_engine": statistics.median(a / b for a, b in zip(times[name], times["engine"]))
           for name in (extra or {})},
    }


STEP_THREADS = 1  # see run()


def run(quick: bool = False) -> dict:
    """Headline at one intra-op thread, and again at torch's default thread count.

    The model has a few hundred parameters: a step is ~100 tiny kernels whose cost is
    Python and dispatch, which is what engine vs raw compares.  With several OpenMP
    threads on a machine shared with other jobs, every kernel's parallel region can
    wait for a descheduled thread, which multiplies step times (1 ms -> 20+ ms seen on
    a loaded 2-core box) and buries a 1% effect in noise; one thread measures the
    overhead itself.  The default-thread figure is reported for completeness.
    """
    setup = app_setup(quick)
    rounds, steps, warmup = (3, 20, 10) if quick else (15, 200, 100)
    ema_cfg, _ = compose_app_config(["ema=ema"]) if setup["config_source"] == "train.yaml" else (None, None)
    extra = {"ema": make_engine_step(dict(setup, cfg=ema_cfg))[0]} if ema_cfg is not None else None
    with threads(STEP_THREADS):
        main = _compare(setup, rounds, steps, warmup, extra)
    engine = main["engine"]
    raw_us = main["raw_step_us"]
    sync_us = _sync_cost_us(200 if quick else 2000)
    out = {
        "benchmark": "engine",
        "setup": setup["description"],
        "config_source": setup["config_source"],
        "n_params": setup["n_params"],
        "batch": setup["batch"],
        "optimizer": f"{type(engine.optimizer).__name__}(fused={engine.optimizer.defaults.get('fused')})",
        "scheduler": type(engine.scheduler).__name__,
        "scheduler_interval": getattr(engine.scheduler, "interval", None),
        "clipper": repr(engine.clipper),
        "rounds": rounds,
        "steps_per_round": steps,
        "warmup_steps": warmup,
        "threads": STEP_THREADS,
        "engine_step_us": round(main["engine_step_us"], 2),
        "raw_step_us": round(raw_us, 2),
        "raw_sync_step_us": round(main["raw_sync_step_us"], 2),
        "engine_over_raw_ratio": round(main["ratio"], 4),
        "engine_over_raw_ratio_iqr": [round(v, 4) for v in main["iqr"]],
        "engine_over_guarded_raw_ratio": round(main["guarded_ratio"], 4),
        "engine_overhead_us": round(main["engine_step_us"] - raw_us, 2),
        "raw_sync_over_raw_ratio": round(main["sync_ratio"], 4),
        "isfinite_sync_us": round(sync_us, 3),
        "isfinite_sync_fraction_of_step": round(sync_us / raw_us, 5),
        # ema=ema (weight average updated every applied step) vs the same engine without it
        "ema_over_engine_ratio": round(main["ema_over_engine"], 4) if extra else None,
    }
    default_threads = torch.get_num_threads()
    if default_threads != STEP_THREADS and not quick:
        probe, _ = make_raw_step(setup)
        n = calibrated_steps(probe, 0.25, 10, 200)
        alt = _compare(setup, 5, n, 20)
        out.update({
            "default_threads": default_threads,
            "default_threads_steps_per_round": n,
            "engine_over_raw_ratio_default_threads": round(alt["ratio"], 4),
            "raw_step_us_default_threads": round(alt["raw_step_us"], 2),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    res = run(parser.parse_args().quick)
    print(f"engine_over_raw_ratio={res['engine_over_raw_ratio']}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
