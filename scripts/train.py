"""Train a Cox network: ``python scripts/train.py [key=value ...]`` (same as ``survopt-train``)."""
from survopt_hydra.app.train import main

main()
