"""The synthetic scans of ``data=synthetic_images`` written as image files and a manifest.

So the fine-tuning demo and the tests can run through ``data=images`` exactly as a user's
scans would: ``write_synthetic_scans(folder, n=400, signal="area")`` writes
``folder/scan_0000.png`` ... and ``folder/manifest.csv`` (``path,time,event``), the same rows,
in the same order, as ``make_synthetic_images`` returns, so ``data.split_seed`` splits them
the same way.

PNG pixels are 16-bit: a value ``v`` of the in-memory scan is stored as
``round((v - OFFSET) / SPAN * 65535)`` (clipped), which the reader turns back into
``(v - OFFSET) / SPAN``; ``data.transform`` with :data:`NORMALIZE` (mean ``-OFFSET / SPAN``,
std ``1 / SPAN``) restores ``v`` to within ``SPAN / 65535`` = 6e-5, far below the scans'
noise (0.05). ``.npy`` files hold the float32 values exactly.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

#: Stored range of the scans' values: [OFFSET, OFFSET + SPAN] covers every value make_synthetic_images draws.
OFFSET, SPAN = -1.0, 4.0
#: The ``data.transform`` node that maps the 16-bit PNGs back to the in-memory values.
NORMALIZE = {"_target_": "survopt_hydra.app.image_transforms.Normalize", "mean": [-OFFSET / SPAN],
             "std": [1.0 / SPAN]}
FORMATS = ("png", "npy")


def write_synthetic_scans(folder: str | Path, n: int, size: int = 32, seed: int = 0, signal: str = "area_brightness",
                          fmt: str = "png", start: int = 0) -> Path:
    """Write the cohort as ``fmt`` files and ``manifest.csv`` in ``folder``; returns the manifest's path.

    ``start``: skip the first ``start`` scans of the same draw (e.g. new patients for prediction:
    ``n=450, start=400`` writes the 50 after a 400-scan training set's draw of 450)."""
    from PIL import Image

    from ..survival.synthetic_images import make_synthetic_images

    if fmt not in FORMATS:
        raise ValueError(f"write_synthetic_scans: fmt must be one of {FORMATS}, got {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, durations, events = make_synthetic_images(n, size, seed, signal=signal)
    rows = []
    for i in range(start, n):
        name = f"scan_{i:04d}.{fmt}"
        if fmt == "npy":
            np.save(folder / name, images[i], allow_pickle=False)
        else:
            pixels = np.clip(np.rint((images[i, 0].astype(np.float64) - OFFSET) / SPAN * 65535), 0, 65535)
            Image.fromarray(pixels.astype(np.uint16)).save(folder / name)
        rows.append((name, repr(float(durations[i])), int(events[i])))
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "time", "event"])
        writer.writerows(rows)
    return manifest
