"""Pretrain the app's CNN backbone on a large *source* cohort of synthetic scans.

    python scripts/pretrain_cnn.py [--n 2048] [--seed 1000] [--epochs 30] [--out FILE]

Why: ``+preset=finetune`` exists to adapt a pretrained model to a small labelled cohort,
and the app's own demonstration needs a backbone to adapt. This script trains the
default ``model=cnn`` with the Cox loss through the app itself on ``data=synthetic_images``
drawn with another seed (``--seed``; the target cohort of the README is seed 0, so no
target image is seen), then keeps the weights (``backbone.*``: conv + BatchNorm; ``head.*``: the risk head, loaded
only with ``model.pretrained_head=true``) of the epoch with the best *validation* C-index of
the source cohort. The result is a plain state
dict (``torch.load(weights_only=True)``), shipped as
``survopt_hydra/app/pretrained/cnn_synthetic32.pt`` and named with
``model.pretrained=pkg://survopt_hydra/app/pretrained/cnn_synthetic32.pt``.

The default ``--out`` is ``cnn_synthetic32.pt`` in the current directory: a tool never writes into
an installed package by itself. To rebuild the shipped file, name it:
``--out survopt_hydra/app/pretrained/cnn_synthetic32.pt`` from a source checkout.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

DEFAULT_OUT = Path("cnn_synthetic32.pt")  # the current directory; the shipped file only when named


def pretrain(n: int, seed: int, epochs: int, run_dir: Path, signal: str = "area") -> tuple[dict[str, torch.Tensor], dict]:
    """Train the app on the source cohort; returns (the best epoch's state dict, the run's metrics)."""
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.checkpoint import load_checkpoint
    from survopt_hydra.app.trainer import train

    cfg = compose_train(["data=synthetic_images", f"data.n={n}", f"data.seed={seed}", f"data.signal={signal}", "model=cnn",
                         f"trainer.max_epochs={epochs}", "trainer.progress_bar=false"])
    metrics = train(cfg, run_dir)
    best = load_checkpoint(run_dir / "best.pt")["model"]
    return {k: v.clone() for k, v in best.items()}, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="source images (default 2048)")
    ap.add_argument("--seed", type=int, default=1000, help="source cohort seed; the README's target is 0")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.seed == 0:
        ap.error("--seed 0 is the target cohort of the README's fine-tuning example; pick another")
    if not 16 <= args.n <= 1_000_000 or not 1 <= args.epochs <= 10_000 or not 0 < args.seed < 2**32:
        ap.error("--n must be in 16..1000000, --epochs in 1..10000, --seed in 1..2**32-1")
    from survopt_hydra.app.outputs import tool_file_path
    from survopt_hydra.durable import SHARED, save_atomic
    from survopt_hydra.errors import ConfigError

    try:
        tool_file_path(args.out, "--out")
    except ConfigError as exc:
        ap.exit(2, f"error: {exc}\n")
    with tempfile.TemporaryDirectory() as tmp:
        backbone, metrics = pretrain(args.n, args.seed, args.epochs, Path(tmp))
    try:
        save_atomic(backbone, args.out, mode=SHARED)  # shipped weights, readable by all
    except OSError as exc:
        ap.exit(2, f"error: --out: {args.out}: cannot write ({exc.strerror or exc})\n")
    print(f"source val C-index {metrics['val_cindex']:.4f} (best epoch {metrics['best_epoch']}); "
          f"weights ({sum(v.numel() for v in backbone.values())} values) written to {args.out}")


if __name__ == "__main__":
    main()
