"""Shared helpers for the worker scripts that tests/test_distributed.py launches with torchrun.

Each worker takes one argument, an output folder, and writes ``rank<R>.json`` there
(plus any checkpoint files); the test reads those files. Workers run on CPU with gloo.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn


def out_dir() -> Path:
    path = Path(sys.argv[1])
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_model(seed: int = 0, norm: bool = False) -> nn.Module:
    """A small MLP; ``norm`` adds a LayerNorm so a no-decay param group exists."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(6, 16), nn.Tanh()]
    if norm:
        layers.append(nn.LayerNorm(16))
    layers += [nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1)]
    return nn.Sequential(*layers)


def make_batches(steps: int, size: int = 16, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same full batches on every rank."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 6, generator=g), torch.randn(size, 1, generator=g)) for _ in range(steps)]


def half(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return t.chunk(world)[rank]


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters, full (DTensors gathered), in registration order."""
    out = []
    for p in model.parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        out.append(full.detach().flatten())
    return torch.cat(out)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def run(main: Callable[[Path], dict[str, Any]]) -> None:
    """Run ``main(out)`` and write its result (or the traceback) to ``rank<R>.json``.

    A failing rank exits at once (torchrun then stops its peers) instead of waiting in a
    collective its peers will never join.
    """
    import gc
    import os

    import torch.distributed as dist

    out = out_dir()
    rank = int(os.environ.get("RANK", "0"))
    try:
        result = main(out)
        result["ok"] = True
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        (out / f"rank{rank}.json").write_text(json.dumps(result, indent=1))
        print(result["traceback"], file=sys.stderr, flush=True)
        os._exit(1)
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # DDP/FSDP objects in reference cycles release the group first
        dist.barrier()
        dist.destroy_process_group()
    (out / f"rank{rank}.json").write_text(json.dumps(result, indent=1))
