"""Schemas of the app-only config groups ``data``, ``model``, ``family`` and ``trainer``.

Same pattern as the library groups (:mod:`survopt_hydra.schemas`): each option is a
dataclass, written as ``train_conf/<group>/<option>.yaml`` (``data/gbsg2.yaml``) by
``python -m survopt_hydra.app.schemas``, which the app's ``train.yaml`` defaults list picks by name. Range checks live on the fields (``fld``) so :func:`check_app_config`
can refuse a bad value with one line naming the key, before anything is written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..schemas.checks import between, each, fld, ge, gt, one_of, open_unit, optional, schema_fields, unit_closed_open, validate
from ..schemas.scheduler import PlateauConfig as LibraryPlateauConfig
from ..errors import ConfigError, unknown_name
from .family_schemas import FAMILIES
from .state import check_fault_spec

MISSING = "???"  # OmegaConf's marker for a value the user must give
MAX_CAUSES = 20  # competing causes in an event column: DeepHit's outputs are causes x grid times
MAX_THREADS = 1024  # more intra-op threads than any machine has cores (OpenMP would reserve their stacks)


def _required(v: Any) -> str | None:
    return "is required (pass it on the command line)" if v == MISSING else None


DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def dotted(v: Any) -> str | None:
    """A ``_target_``: the dotted path of a class or function in an importable module."""
    if v == MISSING:
        return "is required: the dotted path of a class, e.g. my_models.ScanNet"
    return None if isinstance(v, str) and DOTTED.match(v) else "must be a dotted path such as my_models.ScanNet"


def target_node(v: Any) -> str | None:
    """A node the app instantiates: a mapping with a ``_target_`` and the target's keyword arguments."""
    if not isinstance(v, dict) or "_target_" not in v:
        return "must be a node with a _target_ (e.g. {_target_: my_models.Encoder, width: 64})"
    why = dotted(v["_target_"])
    return f"_target_ {why}" if why else None


# ------------------------------------------------------------------ data
@dataclass
class DataConfig:
    """Fields every data option shares: how rows are split into train/val/test."""

    name: str = "support"
    val_fraction: float = fld(0.15, open_unit, "fraction of rows for early stopping / model selection")
    test_fraction: float = fld(0.15, open_unit, "fraction held out, scored once (ignored with test_path)")
    split_seed: int = fld(0, ge(0), "seed of the event-stratified split (independent of trainer.seed)")
    folds: Optional[int] = fld(None, optional(ge(2)), "K-fold validation: K event-stratified folds of the "
                               "non-test rows (seeded by split_seed), fold data.fold validates; "
                               "replaces val_fraction, the test rows stay those of split_seed")
    fold: int = fld(0, ge(0), "the validating fold with data.folds (0 .. folds-1)")


@dataclass
class CSVDataConfig(DataConfig):
    name: str = "csv"
    path: str = fld(MISSING, _required, "CSV file or pkg://<package>/<file>")
    duration_col: str = "time"
    event_col: str = "event"
    feature_cols: Optional[List[str]] = fld(None, doc="default: every other column")
    test_path: Optional[str] = fld(None, doc="fixed external test cohort; then only val is split off")
    missing: str = fld("refuse", one_of("refuse", "drop_rows", "impute"),
                       "missing cells: refuse (name each column), drop_rows, impute (training-row medians)")
    missing_indicator: bool = fld(False, doc="impute: add a 0/1 '<col>=missing' feature per number column")
    unseen: str = fld("refuse", one_of("refuse", "zero"), "a test category level unseen in training")
    max_levels: int = fld(50, ge(2), "a text column with more levels is refused (an identifier?)")
    causes: int = fld(1, between(1, MAX_CAUSES), "event codes: 0 censored, 1..causes the cause of the event; "
                      "above 1 (competing risks) needs family=deephit")


@dataclass
class GBSG2DataConfig(CSVDataConfig):
    """German Breast Cancer Study Group 2 (686 patients), shipped inside lifelines."""

    name: str = "gbsg2"
    path: str = fld("pkg://lifelines/datasets/gbsg2.csv", _required)
    duration_col: str = "time"
    event_col: str = "cens"


@dataclass
class SupportDataConfig(CSVDataConfig):
    """SUPPORT (8,873 seriously ill hospitalised adults) on DeepSurv's fixed train/test split.

    Vendored in ``survopt_hydra/datasets`` (source and licence in its README): the default
    because its 1,775-patient test set can tell two models apart, and its published
    DeepSurv and CoxPH figures let anyone check the app's number.
    """

    name: str = "support"
    path: str = fld("pkg://survopt_hydra/datasets/support_train.csv", _required)
    duration_col: str = "duration"
    event_col: str = "event"
    test_path: Optional[str] = fld("pkg://survopt_hydra/datasets/support_test.csv",
                                   doc="DeepSurv's 1,775 test patients; null: split test rows off path instead")


@dataclass
class CompetingDataConfig(DataConfig):
    """Synthetic competing risks with a known truth: Weibull cause-specific hazards (survival/competing.py)."""

    name: str = "competing"
    n: int = fld(2000, between(16, 10**7), "rows (standard-normal features)")
    causes: int = fld(2, between(1, MAX_CAUSES), "competing causes (event codes 1..causes); 1: a single-risk "
                      "Weibull cohort any family trains on")
    features: int = fld(5, between(1, 10**4), "x0, x1 drive cause 1, x2 and x1 cause 2, the rest are noise")
    censoring: float = fld(0.3, unit_closed_open, "expected share of censored rows")
    shape: float = fld(1.5, gt(0), "Weibull shape shared by the causes")
    seed: int = fld(0, ge(0))


@dataclass
class SyntheticImagesDataConfig(DataConfig):
    """Toy scans whose hazard depends on a blob's size/brightness (a CNN smoke test)."""

    name: str = "synthetic_images"
    n: int = fld(512, ge(16))
    size: int = fld(32, ge(8))
    seed: int = fld(0, ge(0))
    signal: str = fld("area_brightness", one_of("area_brightness", "area"),
                      "what carries the risk; 'area': brightness is a 5-fold nuisance (the fine-tuning demo)")


@dataclass
class ImagesDataConfig(DataConfig):
    """Image files listed in a manifest (CSV or Parquet): path, duration, event, optional covariates (docs/images.md)."""

    name: str = "images"
    manifest: str = fld(MISSING, _required, "CSV or Parquet file, one row per image; image paths are relative to its folder")
    path_col: str = fld("path", doc="manifest column of image paths (PNG, JPEG, .npy, .nii/.nii.gz)")
    duration_col: str = "time"
    event_col: str = "event"
    covariate_cols: List[str] = fld([], doc="numeric manifest columns given to the model beside the image "
                                    "(standardized on the training rows)")
    mode: str = fld("L", one_of("L", "RGB"), "PNG/JPEG pixels as L (1 channel) or RGB (3); .npy/NIfTI keep theirs")
    transform: List[Any] = fld([], each(target_node), "_target_ nodes applied to every image (training, evaluation, "
                               "survopt-predict), in order")
    augment: List[Any] = fld([], each(target_node), "_target_ nodes applied to training images only, after transform")
    num_workers: int = fld(0, between(0, 64), "DataLoader worker processes reading images (0: in the training process)")
    eval_batch_size: int = fld(256, ge(1), "images per forward pass when scoring (validation, test, prediction)")
    allow_outside: bool = fld(False, doc="allow image paths outside the manifest's folder (absolute, '..', links)")
    max_pixels: int = fld(2**26, ge(1), "values per image (channels x height x width x depth) above which a file "
                          "is refused as a decompression bomb")
    verify: str = fld("header", one_of("header", "full"), "before training: header (every file's existence, size and "
                      "header) or full (also decode every image once)")


# ------------------------------------------------------------------ model
@dataclass
class ModelConfig:
    name: str = "mlp"


@dataclass
class LinearModelConfig(ModelConfig):
    name: str = "linear"


@dataclass
class MLPModelConfig(ModelConfig):
    name: str = "mlp"
    hidden: List[int] = fld([16], each(ge(1)), "units per hidden layer")
    dropout: float = fld(0.1, unit_closed_open)
    norm: str = fld("batch", one_of("batch", "layer", "none"))
    activation: str = fld("gelu", one_of("relu", "selu", "gelu", "tanh"))


@dataclass
class CNNModelConfig(ModelConfig):
    name: str = "cnn"
    channels: List[int] = fld([16, 32], each(ge(1)), "conv blocks of the backbone")
    hidden: int = fld(32, ge(1))
    dropout: float = fld(0.1, unit_closed_open)
    pretrained: Optional[str] = fld(None, doc="backbone weights (.pt, or pkg://<package>/<file>); pair with +preset=finetune")
    pretrained_head: bool = fld(False, doc="also load the file's head (pretrained for the same endpoint)")


@dataclass
class CustomModelConfig(ModelConfig):
    """model=custom model._target_=<dotted.path>: your own nn.Module; any other key is its keyword argument (+model.width=64)."""

    name: str = "custom"
    _target_: str = fld(MISSING, dotted, "dotted path of an nn.Module class (or a function returning one) that maps "
                        "a batch to one risk per row")


@dataclass
class BackboneModelConfig(ModelConfig):
    """model=backbone model.backbone._target_=<dotted.path>: a torchvision / timm / MONAI feature extractor under a Cox head."""

    name: str = "backbone"
    backbone: Dict[str, Any] = fld({"_target_": MISSING}, target_node, "the feature extractor: _target_ and its "
                                   "keyword arguments (+model.backbone.spatial_dims=2)")
    classifier: Optional[str] = fld("auto", doc="the backbone's own classifier, replaced by Identity: auto (timm's "
                                    "reset_classifier, else the first of fc, classifier, heads, head), an attribute "
                                    "name, or null (keep its output)")
    hidden: Optional[int] = fld(None, optional(ge(1)), "units of one hidden head layer; null: a linear head")
    dropout: float = fld(0.0, unit_closed_open, "dropout before the head's last layer")
    pretrained: Optional[str] = fld(None, doc="backbone weights: a local state dict (.pt/.pth, or pkg://); "
                                    "nothing downloads")


# ------------------------------------------------------------------ trainer
@dataclass
class TrainerConfig:
    max_epochs: int = fld(100, ge(1))
    batch_size: int = fld(512, ge(1), "rows per micro-batch; Cox risk sets live inside a batch")
    accumulate_grad_batches: int = fld(1, ge(1))
    seed: int = fld(0, ge(0), "model init, shuffling and dropout; per-epoch streams derive from it")
    device: str = fld("auto", one_of("auto", "cpu", "cuda"))
    num_threads: Optional[int] = fld(None, optional(between(1, MAX_THREADS)),
                                     "CPU threads; null: 1 for tables, torch's default for images")
    early_stopping_patience: Optional[int] = fld(20, optional(ge(0)), "epochs without improvement; null: off")
    monitor: str = fld("val_cindex", one_of("val_cindex", "val_loss"), "early stopping / best weights")
    compile: bool = fld(False, doc="torch.compile the model")
    log_interval: int = fld(10, ge(1), "optimizer steps between monitor rows")
    max_nonfinite_steps: int = fld(10, ge(1), "stop after this many non-finite losses in a row")
    max_loss_ratio: Optional[float] = fld(100.0, optional(gt(1)), "stop as diverged when an epoch's training loss "
                                          "exceeds this multiple of the first epoch's (|loss|, at least 1); null: off")
    ties: str = fld("breslow", one_of("breslow", "efron"))
    progress_bar: bool = fld(True, doc="tqdm over epochs (only on a terminal)")
    plots: bool = fld(False, doc="PNG plots at the end (or later: scripts/plot_run.py <run dir>)")
    tensorboard: bool = fld(False, doc="TensorBoard scalars in <run dir>/tb (needs the tensorboard package)")
    checkpoint_every_s: Optional[float] = fld(60.0, optional(ge(0)), "seconds of wall time between last.pt writes "
                                              "(also at the end and on SIGTERM/Ctrl-C); 0: every epoch; null: off")
    checkpoint_every: Optional[int] = fld(None, optional(ge(1)), "also write last.pt every N epochs; null: by time only")
    resume: bool = fld(True, doc="continue from last.pt in the run dir when present")
    stop_after_epochs: Optional[int] = fld(None, optional(ge(1)), "stop (as if killed) after N epochs")
    debug: bool = fld(False, doc="show full tracebacks")
    fault_injection: Optional[str] = fld(None, optional(check_fault_spec),
                                         "TEST ONLY: inject faults, e.g. nan_loss@4-6 (see app/state.py FAULTS)")


@dataclass
class PlateauConfig(LibraryPlateauConfig):
    """scheduler=plateau in this app: halve the LR when the validation C-index stalls."""

    monitor: Optional[str] = fld("val_cindex", doc="train_loss, val_cindex or val_loss (see EPOCH_METRICS)")
    mode: Optional[str] = fld("max", optional(one_of("min", "max")), "max for val_cindex, min for the losses")


DATA: dict[str, type] = {
    "support": SupportDataConfig,
    "gbsg2": GBSG2DataConfig,
    "csv": CSVDataConfig,
    "competing": CompetingDataConfig,
    "synthetic_images": SyntheticImagesDataConfig,
    "images": ImagesDataConfig,
}
MODELS: dict[str, type] = {"linear": LinearModelConfig, "mlp": MLPModelConfig, "cnn": CNNModelConfig,
                           "custom": CustomModelConfig, "backbone": BackboneModelConfig}
#: Data options that hold images, and the models that take images (custom and backbone take any data).
IMAGE_DATA = ("synthetic_images", "images")
TABLE_MODELS, IMAGE_MODELS = ("linear", "mlp"), ("cnn",)
TRAINERS: dict[str, type] = {"default": TrainerConfig}
APP_GROUPS: dict[str, dict[str, type]] = {"data": DATA, "model": MODELS, "family": FAMILIES, "trainer": TRAINERS}
#: A stored config written before the family group existed trained the Cox family.
DEFAULT_FAMILY = {"name": "cox"}

#: The app's own plateau: the library's watches no metric; this app's watches the validation C-index.
APP_PLATEAU = {"scheduler": {"plateau": PlateauConfig}}


def conf_files() -> dict[str, str]:
    """``<group>/<option>.yaml`` -> text of the app's own options, written from the schemas above
    (``python -m survopt_hydra.app.schemas``; ``tests/test_conf_files.py`` fails on drift)."""
    from ..schemas.render import render_groups

    return render_groups({**APP_GROUPS, **APP_PLATEAU}, "survopt_hydra.app.schemas")


def _plain(node: Any, group: str) -> dict[str, Any]:
    """A plain dict of a group's values; a still-missing (``???``) value is a ConfigError."""
    from omegaconf import DictConfig, OmegaConf

    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    for key, value in values.items():  # type: ignore[union-attr]
        if value == MISSING:
            raise ConfigError(f"{group}.{key}", f"is required; pass it on the command line ({group}.{key}=...)")
    return values  # type: ignore[return-value]


def check_group(group: str, values: dict[str, Any]) -> dict[str, Any]:
    """One app group's plain values against its option's schema (``trainer``: the one schema);
    also how ``survopt-predict`` checks the ``model`` a ``predictor.json`` records."""
    options = APP_GROUPS[group]
    if group == "trainer":
        schema = TrainerConfig
    else:
        name = values.get("name")
        if name not in options:
            raise unknown_name(f"{group}.name", str(name), options)
        schema = options[name]
    if schema is CustomModelConfig:  # its other keys are the target's keyword arguments, checked when built
        return _custom_model(values)
    hidden = [k for k in values if str(k).startswith("_")]
    if hidden:  # e.g. +data._target_=os.system: the app instantiates none of these nodes, so it would be ignored
        raise ConfigError(f"{group}.{hidden[0]}", f"the app builds its {group} from the option's fields; "
                                                 f"allowed: {', '.join(schema_fields(schema))}")
    return validate(schema, values, group)


def check_app_config(cfg: Any) -> dict[str, dict[str, Any]]:
    """Validate ``data``, ``model`` and ``trainer`` of a composed config.

    Returns plain dicts (``{"data": {...}, "model": {...}, "trainer": {...}}``) with
    coerced values; raises :class:`ConfigError` naming the first bad key.
    """
    out: dict[str, dict[str, Any]] = {}
    for group in APP_GROUPS:
        if group == "family" and group not in cfg:  # a config (or a stored one) from before the family group
            out[group] = check_group(group, dict(DEFAULT_FAMILY))
            continue
        if group not in cfg or cfg[group] is None:
            raise ConfigError(group, f"missing config group; add '{group}: <option>' to the defaults list")
        values = _plain(cfg[group], group)
        out[group] = check_group(group, values)
    data = out["data"]
    uses_test_fraction = not data.get("test_path")
    if not uses_test_fraction and data["test_fraction"] != DataConfig.__dataclass_fields__["test_fraction"].default:
        # the default data has a fixed test file, so a test_fraction override would be silently ignored
        raise ConfigError(
            "data.test_fraction",
            f"has no effect: data.test_path ({data['test_path']}) is the test set; drop the override, "
            "or set data.test_path=null to split the test rows off data.path",
        )
    if uses_test_fraction and data["val_fraction"] + data["test_fraction"] >= 0.9:
        raise ConfigError(
            "data.test_fraction",
            f"val_fraction + test_fraction must leave at least 10% for training, got "
            f"{data['val_fraction']:g} + {data['test_fraction']:g}",
        )
    if data["folds"] is None and data["fold"] != 0:
        raise ConfigError("data.fold", f"has no effect without data.folds (K-fold validation); got {data['fold']}")
    if data["folds"] is not None and data["fold"] >= data["folds"]:
        raise ConfigError("data.fold", f"must be in 0..{data['folds'] - 1} (data.folds={data['folds']}), "
                          f"got {data['fold']}")
    model = out["model"]["name"]
    if model in IMAGE_MODELS and data["name"] not in IMAGE_DATA:
        raise ConfigError("model.name", f"{model} needs image data (data=images or data=synthetic_images), "
                                        f"got data={data['name']}")
    if model in TABLE_MODELS and data["name"] in IMAGE_DATA:
        raise ConfigError("model.name", f"data={data['name']} holds images; use model=cnn, model=backbone or "
                                        f"model=custom, got {model}")
    if model in IMAGE_MODELS and data.get("covariate_cols"):
        raise ConfigError("data.covariate_cols", f"model={model} reads the image only; covariates need model=backbone "
                                                 "(its head takes them) or your own model=custom")
    check_family(out["family"], data)
    return out


def check_family(family: dict[str, Any], data: dict[str, Any]) -> None:
    """The family's cross-group rules: competing causes only for DeepHit, Cox-Time on tables only."""
    name, causes = family["name"], data.get("causes", 1)
    if causes > 1 and name != "deephit":
        raise ConfigError("data.causes", f"{causes} competing causes need family=deephit (the one family with a "
                          f"cumulative incidence per cause); family={name} models one event type: use data.causes=1 "
                          "with an event column of 0/1")
    if causes > 1 and family.get("interpolation") == "const_hazard":
        raise ConfigError("family.interpolation", "const_hazard interpolates one survival curve; with competing causes "
                          "use const_pdf or step")
    if name == "cox_time" and data["name"] in IMAGE_DATA:
        raise ConfigError("family.name", f"cox_time takes the time as an input column of a table; data={data['name']} "
                          "holds images: use another family")


def _custom_model(values: dict[str, Any]) -> dict[str, Any]:
    """``model=custom``: a dotted ``_target_``; every other key but ``name`` is passed to it as a keyword.

    The keywords are checked against the target's signature when it is built (the pre-flight),
    so a misspelt one is refused there with the names the target takes."""
    why = dotted(values.get("_target_", MISSING))
    if why:
        raise ConfigError("model._target_", f"{why}, got {values.get('_target_')!r}")
    reserved = [k for k in values if str(k).startswith("_") and k != "_target_"]
    if reserved:  # _args_, _partial_, _recursive_, _convert_: the app calls the target itself, with keywords
        raise ConfigError(f"model.{reserved[0]}", "the app calls model._target_ with keyword arguments only; allowed: "
                                                  "_target_ and the target's own keywords")
    return {"name": "custom", **{k: v for k, v in values.items() if k != "name"}}


if __name__ == "__main__":
    from pathlib import Path

    from survopt_hydra.app.schemas import conf_files as files  # the module's own name in the headers, not __main__
    from survopt_hydra.schemas.render import write_files

    write_files(files(), Path(__file__).with_name("train_conf"))
