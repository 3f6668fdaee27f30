"""Vectorised AGC (survopt_hydra.engine.clipping.adaptive_clip_grad_) vs a per-parameter loop.

Why: adaptive clipping runs every step, and the textbook implementation (timm's
``adaptive_clip_grad``) launches ~9 kernels and allocates 3 gradient-sized
temporaries per parameter.  This script checks that the vectorised version gives
the same gradients and measures how much faster it is on a ResNet-like
parameter set (62 tensors, ~3.1M parameters: convs, BN gains/biases, classifier).

The reference is timm's function when timm is importable, else the loop below,
written to do exactly what timm's does.  Timing: each call is timed on freshly
restored gradients (restore not timed), the two variants alternate, and the
median over repeats after warm-up is reported.  The first (cold) call of the
vectorised version, which builds and caches its bucketing plan, is reported
separately.

Usage: ``python benchmarks/bench_agc.py [--quick]``; prints ``agc_speedup=<x>``
and one JSON line.  ``run(quick)`` returns the same figures as a dict.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable

import torch

from survopt_hydra.engine.clipping import adaptive_clip_grad_

CLIP_FACTOR = 0.01
EPS = 1e-3


def resnet_like_shapes(width: int = 32, blocks: tuple[int, ...] = (2, 2, 2, 2), classes: int = 1000):
    """Parameter shapes of a ResNet-18 layout at half width (BN gains and biases included)."""
    shapes = [(width, 3, 7, 7), (width,), (width,)]
    cin = width
    for stage, n in enumerate(blocks):
        cout = width * 2**stage
        for _ in range(n):
            shapes += [(cout, cin, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if cin != cout:
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
            cin = cout
    shapes += [(classes, cin), (classes,)]
    return shapes


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in resnet_like_shapes():
        p = torch.nn.Parameter(torch.randn(shape, generator=gen) * 0.05)
        # per-tensor gradient scales over 3 decades: some units clipped, some not
        scale = 10 ** (torch.rand((), generator=gen).item() * 3 - 3.5)
        p.grad = torch.randn(shape, generator=gen) * scale
        params.append(p)
    return params


def _unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    if x.ndim <= 1:
        return x.norm(2.0)
    return x.norm(2.0, dim=tuple(range(1, x.ndim)), keepdim=True)


@torch.no_grad()
def loop_agc(parameters, clip_factor: float = CLIP_FACTOR, eps: float = EPS) -> None:
    """Per-parameter AGC, step for step what timm's ``adaptive_clip_grad`` does."""
    for p in parameters:
        if p.grad is None:
            continue
        p_data, g_data = p.detach(), p.grad.detach()
        max_norm = _unitwise_norm(p_data).clamp_(min=eps).mul_(clip_factor)
        grad_norm = _unitwise_norm(g_data)
        clipped = g_data * (max_norm / grad_norm.clamp(min=1e-6))
        p.grad.detach().copy_(torch.where(grad_norm < max_norm, g_data, clipped))


def _reference() -> tuple[str, Callable]:
    try:
        from timm.utils.agc import adaptive_clip_grad  # type: ignore[import-not-found]
    except Exception:
        return "loop", loop_agc
    return "timm", lambda ps: adaptive_clip_grad(ps, clip_factor=CLIP_FACTOR, eps=EPS)


def run(quick: bool = False) -> dict:
    repeats, warmup = (20, 3) if quick else (100, 10)
    ref_name, reference = _reference()
    params = make_params()
    pristine = [p.grad.clone() for p in params]

    def restore() -> None:
        for p, g in zip(params, pristine):
            p.grad.copy_(g)

    def vectorised() -> None:
        adaptive_clip_grad_(params, CLIP_FACTOR, EPS)

    # correctness: same gradients from the same start
    restore()
    t0 = time.perf_counter()
    vectorised()  # cold: builds the cached plan
    cold_ms = (time.perf_counter() - t0) * 1e3
    ours = [p.grad.clone() for p in params]
    restore()
    reference(params)
    theirs = [p.grad.clone() for p in params]
    max_diff = max((a - b).abs().max().item() for a, b in zip(ours, theirs))
    ok = all(torch.allclose(a, b, rtol=1e-5, atol=1e-8) for a, b in zip(ours, theirs))
    assert ok, f"vectorised AGC disagrees with the reference (max abs diff {max_diff:g})"
    clipped_units = sum(int((a != p).any()) for a, p in zip(ours, pristine))

    def measure() -> tuple[float, float]:
        variants = {"loop": lambda: reference(params), "vectorised": vectorised}
        times: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        for i in range(warmup + repeats):
            for name in order if i % 2 == 0 else order[::-1]:  # alternate to cancel drift
                restore()
                t0 = time.perf_counter()
                variants[name]()
                dt = time.perf_counter() - t0
                if i >= warmup:
                    times[name].append(dt)
        return statistics.median(times["loop"]) * 1e3, statistics.median(times["vectorised"]) * 1e3

    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]
    loop_ms, vec_ms = measure()
    # Single-threaded figure as well: with other processes on the cores, every
    # multi-threaded kernel can stall for a scheduler slice waiting for its
    # second thread, which swamps the comparison at the default thread count.
    torch.set_num_threads(1)
    try:
        loop1_ms, vec1_ms = measure()
    finally:
        torch.set_num_threads(threads)
    return {
        "benchmark": "agc",
        "reference": ref_name,
        "n_tensors": len(params),
        "n_params": sum(p.numel() for p in params),
        "tensors_clipped": clipped_units,
        "repeats": repeats,
        "threads": threads,
        "loop_ms": round(loop_ms, 4),
        "vectorised_ms": round(vec_ms, 4),
        "agc_speedup": round(loop_ms / vec_ms, 3),
        "loop_ms_1thread": round(loop1_ms, 4),
        "vectorised_ms_1thread": round(vec1_ms, 4),
        "agc_speedup_1thread": round(loop1_ms / vec1_ms, 3),
        "vectorised_cold_first_call_ms": round(cold_ms, 4),
        "max_abs_diff": max_diff,
        "loadavg_1min_before": round(load_before, 2),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    result = run(quick=parser.parse_args().quick)
    print(f"agc_speedup={result['agc_speedup']}")
    print(f"agc_speedup_1thread={result['agc_speedup_1thread']}")
    print(
        f"loop_ms={result['loop_ms']} vectorised_ms={result['vectorised_ms']} "
        f"({result['reference']} reference, {result['threads']} threads)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
