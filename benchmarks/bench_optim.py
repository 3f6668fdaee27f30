"""Optimizer step throughput as a fraction of the machine's memory bandwidth.

An optimizer step on large tensors does a handful of flops per element and is bound by
memory traffic, so the honest yardstick is the bandwidth the same process gets from the
simplest streaming kernel.  This module measures, on ~25M fp32 parameters held in a
handful of large tensors (5 x ``nn.Linear(1000, 5000)``):

* the in-place triad ``a.add_(b, alpha=s)`` on two arrays of the same total size
  (25M elements each): it reads ``a`` and ``b`` and writes ``a``, **12 B/element**;
* AdamW steps as :func:`survopt_hydra.optim.build_optimizer` builds them
  (``implementation: auto`` = fused on CPU), and torch's for-loop and foreach
  implementations: a step must read param, grad, exp_avg, exp_avg_sq and write param,
  exp_avg, exp_avg_sq, **28 B/param** (the step counter is one scalar per tensor);
* SGD with momentum (the schema default, 0.9): read param, grad, momentum buffer;
  write param, buffer, **20 B/param** (weight decay and Nesterov add flops, not bytes).

Every written array is also read first, so no write-allocate traffic is hidden in any
of these counts (the destination cache line is already loaded).  The byte counts are
the *minimum* a step must move; the for-loop and foreach implementations move more
(they materialise temporaries), which is exactly what the fraction exposes.

``<variant>_fraction_of_triad = (bytes_per_param * n_params / t_step) /
(12 * n_triad / t_triad)``, computed per round from a triad timed in the same round
(so a change of machine load during the run cancels out) and reported as the median
over rounds after warm-up rounds.  Everything is measured with torch's default thread
count and with one thread; the headline figures come from the thread count whose
triad is faster (the machine's bandwidth limit as this process sees it: on a small or
shared machine one thread can stream as fast as all of them, and OpenMP regions that
wait for a descheduled thread slow the multi-threaded kernels down); ``threads`` says
which, ``by_threads`` holds both.  Absolute bandwidths (GB/s, medians) are reported too.

Usage: ``python benchmarks/bench_optim.py [--quick]``; ``run(quick)`` returns the dict.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch
from torch import nn

from survopt_hydra.optim.optimizer import build_optimizer

TRIAD_BYTES = 12  # read a, read b, write a
BYTES_PER_PARAM = {"adamw": 28, "sgd": 20}
VARIANTS = {  # figure prefix -> (optimizer name, survopt implementation option)
    "adamw_default": ("adamw", "auto"),
    "adamw_forloop": ("adamw", "for_loop"),
    "adamw_foreach": ("adamw", "foreach"),
    "sgd_default": ("sgd", "auto"),
    "sgd_forloop": ("sgd", "for_loop"),
    "sgd_foreach": ("sgd", "foreach"),
}


def _model(quick: bool) -> nn.Module:
    """5 large Linear layers: ~25.0M parameters (~1.0M with ``quick``), weights and biases."""
    torch.manual_seed(0)
    fan_in, fan_out = (200, 1000) if quick else (1000, 5000)
    with torch.no_grad():
        model = nn.Sequential(*(nn.Linear(fan_in, fan_out) for _ in range(5)))
        for p in model.parameters():
            p.grad = torch.randn_like(p).mul_(1e-3)
    return model


def _implementation(opt: torch.optim.Optimizer) -> str:
    d = opt.defaults
    if d.get("fused"):
        return "fused"
    return "foreach" if d.get("foreach") else "for_loop"


def _pair(triad: Callable[[], object], step: Callable[[], object], k: int, triads: int) -> tuple[float, float]:
    """Alternate ``k`` times: ``triads`` triad calls, then one step; mean seconds per call.

    ``triads`` is chosen so both sides move about the same bytes (so they last about as
    long), and the fine-grained alternation spreads load from other processes (a shared
    machine) over both sides in proportion to their duration, which keeps their ratio
    unbiased; a best-of-k estimator would favour the shorter operation.
    """
    t_triad = t_step = 0.0
    for _ in range(k):
        t0 = time.perf_counter()
        for _ in range(triads):
            triad()
        t1 = time.perf_counter()
        step()
        t2 = time.perf_counter()
        t_triad += t1 - t0
        t_step += t2 - t1
    return t_triad / (k * triads), t_step / k


def _measure(steps: dict[str, Callable[[], object]], n_params: int, n_triad: int, rounds: int, warmup: int,
             triad: Callable[[], object], burst: int) -> dict[str, dict[str, float]]:
    """Per round and variant: ``burst`` alternating (triad, step) pairs; median over rounds."""
    names = list(steps)
    fractions: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, list[float]] = {n: [] for n in names}
    triad_gbs: list[float] = []
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            per_param = BYTES_PER_PARAM[n.split("_")[0]]
            t_triad, t_step = _pair(triad, steps[n], burst, max(1, round(per_param * n_params / (TRIAD_BYTES * n_triad))))
            if r < warmup:
                continue
            bw_triad = TRIAD_BYTES * n_triad / t_triad
            triad_gbs.append(bw_triad / 1e9)
            fractions[n].append(BYTES_PER_PARAM[n.split("_")[0]] * n_params / t_step / bw_triad)
            seconds[n].append(t_step)
    out = {"triad": {"gbps": statistics.median(triad_gbs)}}
    for n in names:
        t = statistics.median(seconds[n])
        f = statistics.median(fractions[n])
        q = statistics.quantiles(fractions[n], n=4) if len(fractions[n]) > 1 else [f, f, f]
        out[n] = {
            "fraction": f,
            "step_ms": t * 1e3,
            "gbps": BYTES_PER_PARAM[n.split("_")[0]] * n_params / t / 1e9,
            "fraction_iqr_rel": (q[2] - q[0]) / f,  # interquartile range / median
        }
    return out


def run(quick: bool = False) -> dict:
    model = _model(quick)
    params = [p for p in model.parameters()]
    n_params = sum(p.numel() for p in params)
    n_triad = n_params
    a = torch.randn(n_triad)
    b = torch.randn(n_triad)
    sign = [1e-7]

    def triad() -> None:
        sign[0] = -sign[0]  # keep ``a`` from drifting
        a.add_(b, alpha=sign[0])

    optimizers = {
        name: build_optimizer(model, opt_name, lr=1e-4, implementation=impl)
        for name, (opt_name, impl) in VARIANTS.items()
    }
    steps = {name: opt.step for name, opt in optimizers.items()}
    rounds, warmup, burst = (3, 1, 1) if quick else (11, 1, 3)
    default_threads = torch.get_num_threads()
    by_threads: dict[int, dict[str, dict[str, float]]] = {}
    try:
        for n in sorted({1, default_threads}, reverse=True):
            torch.set_num_threads(n)
            by_threads[n] = _measure(steps, n_params, n_triad, rounds, warmup, triad, burst)
    finally:
        torch.set_num_threads(default_threads)
    # The bandwidth limit is the best triad bandwidth this process gets, over thread counts;
    # every variant is judged at that thread count (against the triad timed beside it).
    best = max(by_threads, key=lambda n: by_threads[n]["triad"]["gbps"])
    res = by_threads[best]

    out: dict = {
        "benchmark": "optim",
        "n_params": n_params,
        "n_tensors": len(params),
        "n_triad_elements": n_triad,
        "bytes_per_param": dict(BYTES_PER_PARAM),
        "triad_bytes_per_element": TRIAD_BYTES,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "burst": burst,
        "default_threads": default_threads,
        "threads": best,
        "triad_gbps": round(res["triad"]["gbps"], 3),
        "implementations": {name: _implementation(opt) for name, opt in optimizers.items()},
    }
    for name in VARIANTS:
        out[f"{name}_fraction_of_triad"] = round(res[name]["fraction"], 4)
        out[f"{name}_step_ms"] = round(res[name]["step_ms"], 3)
        out[f"{name}_gbps"] = round(res[name]["gbps"], 3)
        out[f"{name}_fraction_iqr_rel"] = round(res[name]["fraction_iqr_rel"], 3)
    out["by_threads"] = {
        str(n): {"triad_gbps": round(r["triad"]["gbps"], 3),
                 **{f"{name}_fraction_of_triad": round(r[name]["fraction"], 4) for name in VARIANTS},
                 **{f"{name}_gbps": round(r[name]["gbps"], 3) for name in VARIANTS}}
        for n, r in by_threads.items()
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    res = run(parser.parse_args().quick)
    for key in ("adamw_default", "adamw_forloop", "adamw_foreach", "sgd_default"):
        print(f"{key}_fraction_of_triad={res[key + '_fraction_of_triad']}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
