"""The app's building blocks that the trainer and the tools after it share.

``build_model`` (the ``model`` group's network), ``evaluate`` (C-index and Cox loss of a
split), ``load_best`` (a finished run's best weights with its data), the device and
thread choices. A separate module so that scoring a finished run (``survopt-predict``,
``scripts/baseline_cox.py``) and the pre-flight never import the training loop.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Collection

import torch
from omegaconf import OmegaConf
from torch import nn

from ..distributed import DistContext, eval_indices, gather_by_index
from ..errors import ConfigError
from ..survival import LinearCox, MLP, SmallCNN, concordance_index, cox_ph_loss
from ..survival.data import resolve_path
from .schemas import IMAGE_DATA, check_app_config
from .data import Cohort, Split
from .image_data import ImageSplit
from .user_models import build_backbone, build_custom, check_trusted


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device", "'cuda' but torch sees no CUDA device; allowed here: auto, cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def set_threads(trainer: dict[str, Any], data: dict[str, Any], device: torch.device) -> None:
    """Tabular Cox models are tiny matmuls: extra intra-op threads only add sync overhead
    (10-50x slower steps on a busy 2-core machine) and change float summation order.
    Fixing the count also keeps a resumed run bit-identical to an uninterrupted one."""
    threads = trainer["num_threads"] or (1 if data["name"] not in IMAGE_DATA else None)
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)


def build_model(model: dict[str, Any], input_shape: tuple[int, ...], covariates: int = 0,
                trust: Collection[str] | None = None, source: str = "") -> nn.Module:
    """The ``model`` group's network for inputs of ``input_shape`` (without the batch dim) and
    ``covariates`` covariates beside each image (data=images).

    ``trust`` is None for the user's own config. A ``model`` read from an artifact (``source``:
    a checkpoint, ``predictor.json``) passes the dotted paths the user repeated instead: a
    ``_target_`` outside them is refused (:func:`.user_models.check_trusted`), and
    ``model.pretrained`` is not read, since the artifact's weights replace it all."""
    from_artifact = trust is not None
    if from_artifact:
        check_trusted(model, "model", trust, source)
    if model["name"] == "custom":  # the user's nn.Module (app/user_models.py)
        return build_custom(model, input_shape, covariates)
    if model["name"] == "backbone":  # a torchvision / timm / MONAI feature extractor under a Cox head
        return build_backbone(model, input_shape, covariates, from_artifact)
    opts = {k: v for k, v in model.items() if k != "name"}
    if from_artifact and opts.get("pretrained"):
        opts.update(pretrained=None, pretrained_head=False)
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
    check_trusted(settings["data"], "data", (), str(path))  # a checkpoint never chooses a transform to import
    cohort = load_cohort(settings["data"])
    model = build_model(settings["model"], cohort.input_shape, cohort.covariates, trust=(), source=str(path))
    model.load_state_dict(state["model"])
    model.eval()
    return settings, cohort, model, state


def split_forward(model: nn.Module, split: Split | ImageSplit, idx: torch.Tensor, rows: int = 4096) -> torch.Tensor:
    """The model's outputs for the rows at positions ``idx`` of ``split``: tensors in chunks of ``rows``,
    image files through the split's DataLoader (``data.eval_batch_size`` at a time)."""
    if isinstance(split, ImageSplit):
        return split.risks(model, idx)
    return torch.cat([model(split.x[i]) for i in idx.split(rows)])


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, ties: str, ctx: DistContext | None = None) -> tuple[float, float]:
    """(C-index, Cox loss) of ``split`` in eval mode and fp32; NaNs when the risk is not finite."""
    model.eval()
    ctx = ctx or DistContext()  # each rank scores its share; every rank gets every risk, in order
    idx = eval_indices(len(split), ctx).to(split.durations.device)
    risk = gather_by_index(split_forward(model, split, idx).float(), idx, len(split), ctx)
    if not bool(torch.isfinite(risk).all()):
        return math.nan, math.nan
    loss = float(cox_ph_loss(risk, split.durations, split.events, ties))
    return concordance_index(risk, split.durations, split.events), loss
