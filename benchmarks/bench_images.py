"""Images per second through data=images' DataLoader, 0 vs 2 workers, on written fixture files.

    python benchmarks/bench_images.py [--sizes 32:2000 256:400] [--rounds 3] [--batch 64]

For each ``size:count``: writes ``count`` synthetic scans as 16-bit PNGs (and, for the smallest size,
as .npy files) with a manifest (app/synthetic_scans.py), loads the cohort as the app does
(every file's header checked: ``load_s``), then reads every image once per pass through
:class:`~survopt_hydra.app.image_data.ImageReader` in batches of ``--batch`` with the app's
eval transform (Normalize), augmented by a random flip as training batches are. Passes with 0
and 2 workers alternate (``--rounds`` each); the figure is the median images/second, the ratio
the median of the per-round ratios. ``worker_start_s``: what starting the workers adds to a
one-batch pass (paid once per pass: each epoch's training pass and each evaluation).
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path


def _pass(split, seed: int, batch: int) -> tuple[float, int]:
    import torch

    order = torch.arange(len(split))
    tic = time.perf_counter()
    seen = 0
    for inputs, _, _ in split.train_batches(list(order.split(batch)), seed):
        seen += inputs[0].shape[0]
    return time.perf_counter() - tic, seen


def measure(folder: Path, n: int, size: int, fmt: str, rounds: int, batch: int) -> dict:
    import torch

    from survopt_hydra.app.data import load_cohort
    from survopt_hydra.app.schemas import ImagesDataConfig
    from survopt_hydra.app.synthetic_scans import NORMALIZE, write_synthetic_scans
    from survopt_hydra.schemas.checks import validate

    tic = time.perf_counter()
    manifest = write_synthetic_scans(folder, n, size=size, seed=0, fmt=fmt)
    write_s = time.perf_counter() - tic
    flip = {"_target_": "survopt_hydra.app.image_transforms.RandomFlip", "p": 0.5}
    splits, load = {}, {}
    for workers in (0, 2):
        data = validate(ImagesDataConfig, {"manifest": str(manifest), "transform": [NORMALIZE], "augment": [flip],
                                           "num_workers": workers, "val_fraction": 0.1, "test_fraction": 0.1}, "data")
        tic = time.perf_counter()
        splits[workers] = load_cohort(data).train
        load[workers] = time.perf_counter() - tic
    rate: dict[int, list[float]] = {0: [], 2: []}
    ratios = []
    _pass(splits[2], 0, batch)  # warm-up: page cache, imports in the workers
    for r in range(rounds):
        for workers in (0, 2):
            seconds, seen = _pass(splits[workers], r + 1, batch)
            rate[workers].append(seen / seconds)
        ratios.append(rate[2][-1] / rate[0][-1])
    one = torch.arange(min(batch, len(splits[0])))
    start = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        list(splits[0].train_batches([one], 0))
        t1 = time.perf_counter()
        list(splits[2].train_batches([one], 0))
        start.append((time.perf_counter() - t1) - (t1 - t0))
    return {"size": size, "format": fmt, "images": len(splits[0]), "write_s": round(write_s, 3),
            "load_s": round(statistics.median(load.values()), 3),
            "images_per_s_0_workers": round(statistics.median(rate[0]), 1),
            "images_per_s_2_workers": round(statistics.median(rate[2]), 1),
            "ratio_2_over_0": round(statistics.median(ratios), 3),
            "worker_start_s": round(statistics.median(start), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["32:2000", "256:400"], help="size:count of images")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    import os

    import torch

    results = []
    for i, spec in enumerate(args.sizes):
        size, n = map(int, spec.split(":"))
        for fmt in ("png", "npy") if i == 0 else ("png",):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(measure(Path(tmp), n, size, fmt, args.rounds, args.batch))
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                      "date": time.strftime("%Y-%m-%d", time.gmtime()), "results": results}, indent=1))


if __name__ == "__main__":
    main()
