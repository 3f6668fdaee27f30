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
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "survopt_hydra" / "app" / "pretrained" / "cnn_synthetic32.pt"


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
    with tempfile.TemporaryDirectory() as tmp:
        backbone, metrics = pretrain(args.n, args.seed, args.epochs, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone, args.out)
    print(f"source val C-index {metrics['val_cindex']:.4f} (best epoch {metrics['best_epoch']}); "
          f"weights ({sum(v.numel() for v in backbone.values())} values) written to {args.out}")


if __name__ == "__main__":
    main()
