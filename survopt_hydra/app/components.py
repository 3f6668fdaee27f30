"""The app's building blocks that the trainer and the tools after it share.

``build_model`` (the ``model`` group's network), ``evaluate`` (C-index and Cox loss of a
split), ``load_best`` (a finished run's best weights with its data), the device and
thread choices. A separate module so that scoring a finished run (``survopt-predict``,
``scripts/baseline_cox.py``) and the pre-flight never import the training loop.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Collection, Mapping

import torch
from torch import nn

from ..distributed import DistContext, eval_indices, gather_by_index
from ..errors import ConfigError
from ..survival import LinearCox, MLP, SmallCNN, concordance_index, cox_ph_loss
from ..survival.data import resolve_path
from .schemas import IMAGE_DATA, check_app_config
from .data import EVAL_ROWS, Cohort, Split
from .family_fit import COX_HEAD, Head, fit_family, head_of
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
                trust: Collection[str] | None = None, source: str = "", head: Head = COX_HEAD) -> nn.Module:
    """The ``model`` group's network for inputs of ``input_shape`` (without the batch dim) and
    ``covariates`` covariates beside each image (data=images), with the family's ``head``
    (:mod:`.family_fit`: outputs per row and bias; the default is the Cox head, one bias-free risk).
    ``input_shape`` is the network's own: Cox-Time's time column already counted.

    ``trust`` is None for the user's own config. A ``model`` read from an artifact (``source``:
    a checkpoint, ``predictor.json``) passes the dotted paths the user repeated instead: a
    ``_target_`` outside them is refused (:func:`.user_models.check_trusted`), and
    ``model.pretrained`` is not read, since the artifact's weights replace it all."""
    from_artifact = trust is not None
    if from_artifact:
        check_trusted(model, "model", trust, source)
    if model["name"] == "custom":  # the user's nn.Module (app/user_models.py)
        return build_custom(model, input_shape, covariates, head.outputs)
    if model["name"] == "backbone":  # a torchvision / timm / MONAI feature extractor under the family's head
        return build_backbone(model, input_shape, covariates, from_artifact, head.outputs, head.bias)
    opts = {k: v for k, v in model.items() if k != "name"}
    if from_artifact and opts.get("pretrained"):
        opts.update(pretrained=None, pretrained_head=False)
    width = {"out_features": head.outputs, "bias": head.bias} if head != COX_HEAD else {}
    if model["name"] == "linear":
        return LinearCox(input_shape[0], **width)
    if model["name"] == "mlp":
        return MLP(input_shape[0], **opts, **width)
    if opts.get("pretrained"):  # pkg:// names a file shipped in a package, e.g. the app's pretrained backbone
        opts["pretrained"] = resolve_path(opts["pretrained"], key="model.pretrained")  # DataError: one line
    try:
        return SmallCNN(in_channels=input_shape[0], **opts, **width)
    except ValueError as exc:  # a bad pretrained file
        raise ConfigError("model.pretrained", str(exc)) from None


#: The data keys that name files. In a config read back from an artifact they are used only when they
#: point inside an installed package (``pkg://``) or the user gives them again on the command line.
DATA_PATH_KEYS = ("path", "test_path")


def artifact_settings(config: Any, where: Any, data_paths: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The checked ``data``/``model``/``trainer`` settings of a config stored in an artifact (``best.pt``).

    The stored config is plain data (:func:`.checkpoint.stored_config`: no interpolation is resolved)
    and gets the same checks as a fresh one (:func:`.schemas.check_app_config`). Opening an artifact never
    reads a path it names outside its folder: a ``data.path``/``data.test_path`` is used when it is a
    ``pkg://`` file of an installed package, or when the user passes it in ``data_paths`` (the tool's
    command line: ``data.path=...``); otherwise ConfigError naming the key and how to confirm it. A
    stored ``model.pretrained`` is never loaded (the artifact's weights replace it), and a ``_target_``
    or other ``_``-key in ``data``/``model`` is refused: an artifact never names code to run."""
    from .checkpoint import CheckpointError, stored_config

    config = stored_config(config, where)
    for group in ("data", "model", "family", "trainer"):
        node = config.get(group)
        if group == "family" and node is None:  # a run from before the family group: cox (check_app_config)
            continue
        if not isinstance(node, Mapping):
            raise CheckpointError(f"{where}: its config has no {group} group; not a survopt-train checkpoint")
        hidden = [k for k in node if k.startswith("_")] if isinstance(node, Mapping) else []
        if hidden:
            raise CheckpointError(f"{where}: its config names {group}.{hidden[0]}; an artifact never names code to "
                                  "run, so a tool rebuilds only the built-in data and models from it")
    settings = check_app_config(config)
    data, given = settings["data"], dict(data_paths or {})
    for key in DATA_PATH_KEYS:
        stored = data.get(key)
        if key in given:
            if not stored:
                raise ConfigError(f"data.{key}", f"{where} was trained without one; drop the override")
            data[key] = given.pop(key)
        elif stored and not str(stored).startswith("pkg://"):
            raise ConfigError(f"data.{key}", f"{where} names {stored!r}, outside its run dir; a tool never reads a "
                              f"path an artifact names: pass data.{key}=<file> on the command line to use that file")
    if given:
        raise ConfigError(f"data.{next(iter(given))}", f"not a data file key; allowed: {', '.join(DATA_PATH_KEYS)}")
    if "pretrained" in settings["model"]:
        settings["model"].update(pretrained=None, pretrained_head=False)
    return settings


def model_from_artifact(model: Mapping[str, Any], input_shape: tuple[int, ...], weights: Any, where: Any,
                        covariates: int = 0, trust: Collection[str] = (), head: Head = COX_HEAD) -> nn.Module:
    """The ``model`` settings' network holding ``weights`` (read from ``where``), in eval mode.

    Nothing is allocated that the weights do not justify: the settings may describe no more layers
    than the weights hold tensors, the network is first built on the meta device (metadata only) and
    every weight is checked against it - names, dtype, shape, finite values
    (:func:`.checkpoint.check_weights`) - before the real one is built. So ``hidden: [200000000]`` next
    to a 16-unit file is one line, not 9.6 GB. A ``pretrained`` file is never loaded here, and a
    ``_target_`` is imported only when the user repeated it in ``trust`` (:func:`build_model`)."""
    from .checkpoint import CheckpointError, check_weights

    opts = dict(model)
    if "pretrained" in opts:
        opts.update(pretrained=None, pretrained_head=False)
    layers = [v for key in ("hidden", "channels") if isinstance(opts.get(key), (list, tuple)) for v in opts[key]]
    held = len(weights) if isinstance(weights, Mapping) else 0
    if len(layers) > held:
        raise CheckpointError(f"{where}: the model settings describe {len(layers)} layers but the weights hold "
                              f"{held} tensors; the pair does not belong together")
    try:
        with torch.device("meta"):
            skeleton = build_model(opts, tuple(input_shape), covariates, trust=trust, source=str(where), head=head)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: unusable model settings ({' '.join(str(exc).split())[:200]})") from None
    check_weights(weights, skeleton.state_dict(), where)
    net = build_model(opts, tuple(input_shape), covariates, trust=trust, source=str(where), head=head)
    net.load_state_dict(weights)
    net.eval()
    return net


def load_best(run_dir: str | Path, data_paths: Mapping[str, str] | None = None
              ) -> tuple[dict[str, dict[str, Any]], Cohort, nn.Module, dict[str, Any]]:
    """A finished run's ``best.pt`` in a plain model (eval mode), with the run's checked settings,
    its cohort (same split, same standardization) and the checkpoint: to score a run afterwards.
    A run of another family than cox gets its network's head from the family refitted on the same
    training rows (:func:`.family_fit.fit_family`), found in ``state["family"]`` (None for cox).

    ``best.pt`` is untrusted data: its config is read as plain data and checked like a fresh one,
    a data file it names is read only as :func:`artifact_settings` allows (``data_paths``: the files
    the user gave), and its weights are checked against the model before use
    (:func:`model_from_artifact`). Raises :class:`~.checkpoint.CheckpointError` when the file is
    missing or unusable, ConfigError / DataError for its config and data."""
    from .checkpoint import CheckpointError, file_kind, load_checkpoint
    from .data import load_cohort

    path = Path(run_dir) / "best.pt"
    if file_kind(path) == "missing":
        raise CheckpointError(f"{path} not found; pass the run directory of a finished survopt-train run")
    state = load_checkpoint(path)
    settings = artifact_settings(state.get("config"), path, data_paths)
    check_trusted(settings["data"], "data", (), str(path))  # a checkpoint never chooses a transform to import
    cohort = load_cohort(settings["data"])
    family = fit_family(settings, cohort)  # the same fit as the run's: same training rows, same options
    state["family"] = family
    head = head_of(family)
    model = model_from_artifact(settings["model"], head.input_shape(cohort.input_shape), state.get("model"), path,
                                cohort.covariates, head=head)
    return settings, cohort, model, state


@torch.no_grad()
def split_outputs(model: nn.Module, split: Split | ImageSplit, ctx: DistContext | None = None) -> torch.Tensor:
    """The model's fp32 outputs for every row of ``split``, in order, on every rank.

    Each rank runs its share in chunks of :data:`EVAL_ROWS` (its shard when it holds one,
    :meth:`.data.Split.shard`; else :func:`~survopt_hydra.distributed.eval_indices`' rows; image
    files through the split's DataLoader, ``data.eval_batch_size`` at a time) and the results are
    gathered. Every rank runs the same number of chunks, as FSDP requires."""
    ctx = ctx or DistContext()
    if isinstance(split, ImageSplit):
        idx = eval_indices(len(split), ctx).to(split.durations.device)
        out = split.risks(model, idx)
    elif split.rows is None:
        idx = eval_indices(len(split), ctx).to(split.x.device)
        out = torch.cat([model(split.x[i]) for i in idx.split(EVAL_ROWS)])
    else:
        idx = split.rows.to(split.x.device)
        out = torch.cat([model(x) for x in split.x.split(EVAL_ROWS)])
    return gather_by_index(out.float(), idx, len(split), ctx)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, ties: str, ctx: DistContext | None = None) -> tuple[float, float]:
    """(C-index, Cox loss) of ``split`` in eval mode and fp32; NaNs when the risk is not finite."""
    model.eval()
    risk = split_outputs(model, split, ctx)  # each rank scores its share; every rank gets every risk, in order
    if not bool(torch.isfinite(risk).all()):
        return math.nan, math.nan
    loss = float(cox_ph_loss(risk, split.durations, split.events, ties))
    return concordance_index(risk, split.durations, split.events), loss
