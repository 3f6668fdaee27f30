"""Write the synthetic scans of ``data=synthetic_images`` as image files and a manifest.

    python scripts/synthetic_scans.py OUT_DIR [--n 400] [--size 32] [--seed 0] [--signal area] [--format png]
                                      [--start 0]

Why: to run the app on image files as a user's scans would be (``data=images``), e.g. the
README's fine-tuning demonstration from PNG files. Writes ``OUT_DIR/scan_0000.png`` ... and
``OUT_DIR/manifest.csv`` (``path,time,event``): the rows of ``make_synthetic_images(n, size,
seed, signal)`` in order, so ``data.split_seed`` splits them as it splits the in-memory
cohort. PNGs are 16-bit; the ``data.transform`` override printed at the end maps them back to
the in-memory values (survopt_hydra/app/synthetic_scans.py). ``--start K`` writes only scans
K..n-1 of the draw: new patients to score with ``survopt-predict``.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from survopt_hydra.app.synthetic_scans import FORMATS, NORMALIZE, write_synthetic_scans
    from survopt_hydra.survival.synthetic_images import SYNTHETIC_SIGNALS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for the images and manifest.csv (created)")
    ap.add_argument("--n", type=int, default=400, help="scans drawn (default 400, the README's demo)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--signal", choices=SYNTHETIC_SIGNALS, default="area")
    ap.add_argument("--format", choices=FORMATS, default="png")
    ap.add_argument("--start", type=int, default=0, help="write scans start..n-1 only (new patients)")
    args = ap.parse_args()
    if args.n < 1 or args.size < 8 or not 0 <= args.start < args.n:
        ap.error("need --n >= 1, --size >= 8 and 0 <= --start < --n")
    manifest = write_synthetic_scans(args.out, args.n, args.size, args.seed, args.signal, args.format, args.start)
    print(f"wrote {args.n - args.start} scans and {manifest}")
    if args.format == "png":
        print("data.transform='[{_target_: %s, mean: %s, std: %s}]'" % (NORMALIZE["_target_"], NORMALIZE["mean"],
                                                                       NORMALIZE["std"]))


if __name__ == "__main__":
    main()
