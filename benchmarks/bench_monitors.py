"""Overhead of OptimizerMonitor + GradientMonitor on a small training step.

Why: monitors sit in the hot loop; at ``log_interval=100`` they must cost (well)
under 1% of a step.  The step is a 3-layer MLP of width 256 on a batch of 256
with SGD+momentum.  Two identical model/optimizer pairs are trained, one plain
and one with both monitors (``log_gradients`` before and ``log_update`` after
``optimizer.step()``, ``log_lr`` every step, records kept by a ``ListSink``).

Timing: the two variants alternate *step by step* (order swapped every step)
and every step is timed.  The overhead per step is

    ((interval - 1) * median(d_other) + median(d_log)) / interval

where ``d`` is the paired difference monitored - plain of the two steps run
back to back, split into log steps (norms, weight snapshot, host transfer) and
the other steps (an integer modulo each), and it is divided by the median
plain step.  Paired differences and medians keep bursts of load from other
processes from dominating.  As cross-checks, the time spent inside the monitor
calls is also timed directly and combined the same way
(``direct_overhead_fraction``), and the whole
measurement is repeated single-threaded on the main thread's CPU time
(``*_cpu1thread``), which time spent descheduled by other processes cannot
inflate.

Usage: ``python benchmarks/bench_monitors.py [--quick]``; prints
``monitor_overhead_fraction=<x>`` and one JSON line.  ``run(quick)`` returns the
figures as a dict.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import torch
from torch import nn

from survopt_hydra.engine.monitors import GradientMonitor, ListSink, OptimizerMonitor

LOG_INTERVAL = 100
WIDTH = 256
BATCH = 256


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH)
    )
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    return model, opt


def _measure(n_steps: int, clock) -> dict:
    """Alternate plain/monitored steps, timing each with ``clock``; see module doc."""
    warmup = 50
    x = torch.randn(BATCH, WIDTH)
    y = torch.randn(BATCH, WIDTH)
    loss_fn = nn.MSELoss()

    plain_model, plain_opt = _setup()
    mon_model, mon_opt = _setup()
    sink = ListSink()
    opt_mon = OptimizerMonitor(mon_opt, log_interval=LOG_INTERVAL, sink=sink)
    grad_mon = GradientMonitor(mon_model, log_interval=LOG_INTERVAL, sink=sink)

    def plain_step() -> float:
        plain_opt.zero_grad(set_to_none=True)
        loss_fn(plain_model(x), y).backward()
        plain_opt.step()
        return 0.0

    def monitored_step(step: int) -> float:
        mon_opt.zero_grad(set_to_none=True)
        loss_fn(mon_model(x), y).backward()
        t0 = clock()
        grad_mon.log_gradients(step)
        t1 = clock()
        mon_opt.step()
        t2 = clock()
        grad_mon.log_update(step)
        opt_mon.log_lr(step)
        t3 = clock()
        return (t1 - t0) + (t3 - t2)  # time inside the monitors

    for i in range(warmup):
        plain_step()
        monitored_step(i)
    sink.records.clear()
    plain_t: list[float] = []
    mon_t: list[float] = []
    inside: list[float] = []
    for step in range(n_steps):
        for which in (0, 1) if step % 2 == 0 else (1, 0):
            t0 = clock()
            spent = plain_step() if which == 0 else monitored_step(step)
            dt = clock() - t0
            if which == 0:
                plain_t.append(dt)
            else:
                mon_t.append(dt)
                inside.append(spent)

    def split(values: list[float]) -> tuple[list[float], list[float]]:
        log = [v for i, v in enumerate(values) if i % LOG_INTERVAL == 0]
        other = [v for i, v in enumerate(values) if i % LOG_INTERVAL]
        return log, other

    def per_step(log: list[float], other: list[float]) -> float:
        # one log step and (interval - 1) other steps per interval
        return ((LOG_INTERVAL - 1) * statistics.median(other) + statistics.median(log)) / LOG_INTERVAL

    def median_se(values: list[float]) -> float:
        # standard error of a median from the MAD (robust to the heavy tails of load spikes)
        med = statistics.median(values)
        mad = statistics.median(abs(v - med) for v in values)
        return 1.2533 * 1.4826 * mad / len(values) ** 0.5

    diffs_log, diffs_other = split([m - p for m, p in zip(mon_t, plain_t)])
    inside_log, inside_other = split(inside)
    plain_step_s = statistics.median(plain_t)
    se = math.hypot(
        (LOG_INTERVAL - 1) / LOG_INTERVAL * median_se(diffs_other), median_se(diffs_log) / LOG_INTERVAL
    )
    assert sum(1 for r in sink.records if "grad_norm/global" in r) == n_steps // LOG_INTERVAL
    return {
        "plain_step_ms": round(plain_step_s * 1e3, 4),
        "log_step_extra_ms": round(statistics.median(diffs_log) * 1e3, 4),
        "other_step_extra_us": round(statistics.median(diffs_other) * 1e6, 3),
        "monitor_overhead_fraction": round(per_step(diffs_log, diffs_other) / plain_step_s, 5),
        "monitor_overhead_fraction_se": round(se / plain_step_s, 5),
        "inside_log_step_ms": round(statistics.median(inside_log) * 1e3, 4),
        "inside_other_step_us": round(statistics.median(inside_other) * 1e6, 3),
        "direct_overhead_fraction": round(per_step(inside_log, inside_other) / plain_step_s, 5),
    }


def run(quick: bool = False) -> dict:
    n_steps = 200 if quick else 3000  # per variant; a multiple of LOG_INTERVAL
    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]
    wall = _measure(n_steps, time.perf_counter)
    # Contention-proof cross-check: one intra-op thread and the main thread's CPU
    # time, so time spent descheduled by other processes on a shared machine is
    # not counted (it dominates wall-clock differences there).
    # (skipped by the quick smoke run, which only checks that everything runs)
    cpu1: dict = {}
    if not quick:
        torch.set_num_threads(1)
        try:
            cpu1 = _measure(n_steps, time.thread_time)
        finally:
            torch.set_num_threads(threads)
    return {
        "benchmark": "monitors",
        "log_interval": LOG_INTERVAL,
        "model": f"MLP 3x{WIDTH}, batch {BATCH}, SGD momentum",
        "steps_per_variant": n_steps,
        "threads": threads,
        **wall,
        **{f"{k}_cpu1thread": v for k, v in cpu1.items()},
        "loadavg_1min_before": round(load_before, 2),
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    result = run(quick=parser.parse_args().quick)
    print(
        f"monitor_overhead_fraction={result['monitor_overhead_fraction']} "
        f"(+- {result['monitor_overhead_fraction_se']} s.e.)"
    )
    if "monitor_overhead_fraction_cpu1thread" in result:
        print(f"monitor_overhead_fraction_cpu1thread={result['monitor_overhead_fraction_cpu1thread']}")
    print(
        f"direct_overhead_fraction={result['direct_overhead_fraction']} "
        f"plain_step_ms={result['plain_step_ms']} log_step_extra_ms={result['log_step_extra_ms']} "
        f"other_step_extra_us={result['other_step_extra_us']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
