"""The app's building blocks that the trainer and the tools after it share.

``build_model`` (the ``model`` group's network), ``evaluate`` (C-index and Cox loss of a
split), ``load_best`` (a finished run's best weights with its data), the device and
thread choices. A separate module so that scoring a finished run (``survopt-predict``,
``scripts/baseline_cox.py``) and the pre-flight never import the training loop.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from ..distributed import DistContext, eval_indices, gather_by_index
from ..errors import ConfigError
from ..survival import LinearCox, MLP, SmallCNN, concordance_index, cox_ph_loss
from ..survival.data import resolve_path
from .schemas import check_app_config
from .data import Cohort, Split


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device", "'cuda' but torch sees no CUDA device; allowed here: auto, cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def set_threads(trainer: dict[str, Any], data: dict[str, Any], device: torch.device) -> None:
    """Tabular Cox models are tiny matmuls: extra intra-op threads only add sync overhead
    (10-50x slower steps on a busy 2-core machine) and change float summation order.
    Fixing the count also keeps a resumed run bit-identical to an uninterrupted one."""
    threads = trainer["num_threads"] or (1 if data["name"] != "synthetic_images" else None)
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)


def build_model(model: dict[str, Any], input_shape: tuple[int, ...]) -> nn.Module:
    """The ``model`` group's network for inputs of ``input_shape`` (without the batch dim)."""
    opts = {k: v for k, v in model.items() if k != "name"}
    if model["name"] == "linear":
        return LinearCox(input_shape[0])
    if model["name"] == "mlp":
        return MLP(input_shape[0], **opts)
    if opts.get("pretrained"):  # pkg:// names a file shipped in a package, e.g. the app's pretrained backbone
        opts["pretrained"] = resolve_path(opts["pretrained"], key="model.pretrained")  # DataError: one line
    try:
        return SmallCNN(in_channels=input_shape[0], **opts)
    except ValueError as exc:  # a bad pretrained file
        raise ConfigError("model.pretrained", str(exc)) from None


def load_best(run_dir: str | Path) -> tuple[dict[str, dict[str, Any]], Cohort, nn.Module, dict[str, Any]]:
    """A finished run's ``best.pt`` in a plain model (eval mode), with the run's checked settings,
    its cohort (same split, same standardization) and the checkpoint: to score a run afterwards.

    Raises :class:`~.checkpoint.CheckpointError` when the file is missing or unusable."""
    from .checkpoint import CheckpointError, load_checkpoint
    from .data import load_cohort

    path = Path(run_dir) / "best.pt"
    if not path.is_file():
        raise CheckpointError(f"{path} not found; pass the run directory of a finished survopt-train run")
    state = load_checkpoint(path)
    settings = check_app_config(OmegaConf.create(state["config"]))
    cohort = load_cohort(settings["data"])
    model = build_model(settings["model"], cohort.input_shape)
    model.load_state_dict(state["model"])
    model.eval()
    return settings, cohort, model, state


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, ties: str, ctx: DistContext | None = None) -> tuple[float, float]:
    """(C-index, Cox loss) of ``split`` in eval mode and fp32; NaNs when the risk is not finite."""
    model.eval()
    ctx = ctx or DistContext()  # each rank scores its share; every rank gets every risk, in order
    idx = eval_indices(len(split), ctx).to(split.x.device)
    risk = gather_by_index(torch.cat([model(split.x[i]) for i in idx.split(4096)]).float(), idx, len(split), ctx)
    if not bool(torch.isfinite(risk).all()):
        return math.nan, math.nan
    loss = float(cox_ph_loss(risk, split.durations, split.events, ties))
    return concordance_index(risk, split.durations, split.events), loss
