"""``survopt-predict RUN_DIR new_scans.csv``: score a manifest of new images with a run trained on image files.

The run's ``predictor.json`` (format :data:`.image_data.IMAGE_FORMAT`) records how its images
were read (the path column, ``data.mode``, ``data.transform``, the covariates and their
training-row standardization, the input shape) and the Breslow baseline; ``best.pt`` holds
the weights. The new manifest is read and checked as training read its own (paths relative
to its folder, ``--allow-outside`` to lift that; every file's header first; a file corrupt
past its header stops the run with one line naming the row); durations and events are not
needed. One output row per manifest row: ``row``, the path cell, ``risk`` and ``S(t)`` per
``--times`` value (a run of another family: its own curve, ``risk`` = 1 - S(t_50 | x); with
competing causes ``CIF_k(t)``), written to a temporary file renamed into place at the end.

Safety: the artifact's ``model`` and ``data.transform`` are data. A ``_target_`` in them is
imported only when the user repeats it with ``--trust <dotted.path>`` (fnmatch patterns such
as ``'torchvision.transforms.v2.*'`` allowed), except the app's own transforms; the model is
rebuilt without ``model.pretrained`` and a backbone without its ``weights`` / ``pretrained``
keywords (nothing is fetched or read besides ``best.pt``), and every node is built from plain
JSON, never through OmegaConf (no interpolation is resolved). What the file may make the app
allocate before reading an image is bounded: the input shape and a built-in transform's size
at :data:`MAX_VALUES` values per image, a batch at :data:`BATCH_VALUES`.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..survival.breslow import BreslowBaseline
from ..survival.data import resolve_path
from ..survival.standardize import Standardizer
from ..survival.schema import DataError
from .image_data import IMAGE_FORMAT, ImageDataset, ImageReader, MANIFEST_SUFFIXES, probe_all, read_manifest
from .image_files import MODES
from .family_fit import head_of
from .family_artifact import checked_family, curve_columns, family_predictions
from .predictor import ARTEFACT

MAX_ARTEFACT_BYTES = 64 * 2**20  # a predictor.json beyond this is not one the app wrote (its baseline is ~100 kB)
#: The most values per image a predictor.json may ask for (data.max_pixels' default), whatever it records: the
#: model's dry forward pass and a built-in transform's ``size`` allocate that much before any image is read.
MAX_VALUES = 2**26
BATCH_VALUES = 2**27  # values per scoring batch (512 MB of float32): data.eval_batch_size shrinks to fit


def image_run(run_dir: str | Path) -> bool:
    """True when ``run_dir``'s ``predictor.json`` is an image run's (a cheap look at its format)."""
    path = Path(run_dir) / ARTEFACT
    try:
        if not path.is_file() or path.stat().st_size > MAX_ARTEFACT_BYTES:
            return False
        return json.loads(path.read_text(encoding="utf-8")).get("format") == IMAGE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _shape(value: Any, max_pixels: int) -> tuple[int, ...]:
    shape = tuple(int(v) for v in value)
    if not 2 <= len(shape) <= 5 or any(s < 1 for s in shape) or math.prod(shape) > min(max_pixels, MAX_VALUES):
        raise ValueError(f"input_shape {list(value)} is not an image shape of at most {min(max_pixels, MAX_VALUES):,} "
                         "values")
    return shape


def _check_sizes(nodes: list[Any], shape: tuple[int, ...]) -> None:
    """A built-in transform's ``size`` / ``padding`` must not ask for more than :data:`MAX_VALUES` per image."""
    from .image_transforms import BUILTIN

    spatial = len(shape) - 1
    for node in nodes:
        if not isinstance(node, dict) or node.get("_target_") not in BUILTIN:
            continue  # the user's own (--trust) transforms: theirs to bound
        size = node.get("size", 1)
        sizes = [int(size)] * spatial if isinstance(size, (int, float)) else [int(v) for v in size]
        pad = int(node.get("padding", 0) or 0)
        if shape[0] * math.prod(v + 2 * pad for v in sizes) > MAX_VALUES:
            raise ValueError(f"transform {node['_target_']} asks for images over {MAX_VALUES:,} values")


class ImagePredictor:
    """A finished image run: its model in eval mode, how it read images, its baseline hazard."""

    def __init__(self, art: dict[str, Any], model: torch.nn.Module, baseline: BreslowBaseline,
                 transforms: list[Any], scaler: Standardizer | None, path: Path) -> None:
        self.art, self.model, self.baseline, self.transforms, self.scaler, self.path = (
            art, model, baseline, transforms, scaler, path)
        self.shape = _shape(art["input_shape"], art["max_pixels"])
        self.family: Any = None  # a family run's fitted library family (docs/families.md), else Breslow's Cox
        self.risk_time: float | None = None

    @classmethod
    def load(cls, run_dir: str | Path, trust: Sequence[str] = ()) -> "ImagePredictor":
        from .checkpoint import CheckpointError, load_checkpoint
        from .components import build_model
        from .schemas import check_group
        from .user_models import build_node, check_trusted

        run_dir = Path(run_dir)
        path = run_dir / ARTEFACT
        try:
            if path.stat().st_size > MAX_ARTEFACT_BYTES:
                raise ValueError(f"over {MAX_ARTEFACT_BYTES // 2**20} MiB")
            art = json.loads(path.read_text(encoding="utf-8"))
            if art.get("format") != IMAGE_FORMAT:
                raise ValueError(f"format {art.get('format')!r}, expected {IMAGE_FORMAT!r}")
            if art["mode"] not in MODES or not isinstance(art["path_col"], str):
                raise ValueError("mode or path_col")
            if not isinstance(art["transform"], list) or not all(isinstance(c, str) for c in art["covariate_cols"]):
                raise ValueError("transform or covariate_cols")
            art["max_pixels"], art["eval_batch_size"] = int(art["max_pixels"]), int(art["eval_batch_size"])
            if art["max_pixels"] < 1 or not 1 <= art["eval_batch_size"] <= 65536:
                raise ValueError("max_pixels or eval_batch_size")
            shape = _shape(art["input_shape"], art["max_pixels"])
            _check_sizes(art["transform"], shape)
            family = t50 = None
            if "family" in art:  # a run of another family than cox: its curves instead of a Breslow baseline
                family, t50 = checked_family(art)
                baseline = None
            else:
                baseline = BreslowBaseline.from_dict(art["baseline"])
            scaler = None
            if art["covariate_cols"]:
                scaler = Standardizer()
                scaler.load_state_dict(art["standardizer"])
                if scaler.mean.shape[0] != len(art["covariate_cols"]):  # type: ignore[union-attr]
                    raise ValueError("standardizer and covariate_cols disagree")
            model_cfg = check_group("model", dict(art["model"]))
        except ConfigError as exc:
            raise DataError(f"{path}: unusable predictor file ({exc})") from None
        except FileNotFoundError:
            raise DataError(f"{path}: not found; pass the run directory of a finished survopt-train run") from None
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise DataError(f"{path}: unusable predictor file ({str(exc).splitlines()[0] if str(exc) else exc!r})") \
                from None
        check_trusted(art["transform"], "data.transform", trust, str(path))  # DataError naming --trust
        try:
            state = load_checkpoint(run_dir / "best.pt")
        except CheckpointError as exc:
            raise DataError(str(exc)) from None
        if state.get("epoch") != art.get("best_epoch"):
            raise DataError(f"{run_dir / 'best.pt'}: holds epoch {state.get('epoch')} but {path} was fitted with "
                            f"epoch {art.get('best_epoch')}; the pair does not belong together")
        try:
            model = build_model(model_cfg, shape, len(art["covariate_cols"]), trust=tuple(trust), source=str(path),
                                head=head_of(family))
            model.load_state_dict(state["model"])
            transforms = [build_node(node, f"data.transform[{k}]") for k, node in enumerate(art["transform"])]
        except (ConfigError, RuntimeError) as exc:  # RuntimeError: load_state_dict's key/shape mismatch
            raise DataError(f"{path}: cannot rebuild the run's model and transforms: {str(exc).splitlines()[0]}") from None
        model.eval()
        predictor = cls(art, model, baseline, transforms, scaler, path)
        predictor.family, predictor.risk_time = family, t50
        return predictor

    @torch.no_grad()
    def score(self, manifest_path: str | Path, writer: Any, times: Sequence[float], num_workers: int,
              allow_outside: bool) -> int:
        """Write one row per manifest row to ``writer``; the number of rows."""
        art = self.art
        manifest = read_manifest(str(manifest_path), "input", art["path_col"], art["covariate_cols"], None, None,
                                 allow_outside)
        probe_all(manifest, art["mode"], art["max_pixels"], same_shape=not self.transforms)
        dataset = ImageDataset(manifest, art["mode"], art["max_pixels"], self.transforms, [], self.shape)
        if self.scaler is not None:
            dataset.covariates = torch.from_numpy(np.ascontiguousarray(self.scaler.transform(manifest.covariates)))
        reader = ImageReader(dataset, num_workers, 1)  # batches are the keys below
        step = min(art["eval_batch_size"], max(1, BATCH_VALUES // math.prod(self.shape)))
        keys = [[(i, None) for i in range(s, min(s + step, len(manifest)))] for s in range(0, len(manifest), step)]
        done = 0
        for batch, inputs in zip(keys, reader.batches(keys, torch.device("cpu"))):
            if self.family is not None:
                out = self.model(*inputs).float().reshape(len(batch), -1)
                risk, curves = family_predictions(self.family, out, self.risk_time, list(times))
                surv = curves.tolist() if curves is not None else [[] for _ in batch]
            else:
                risk = self.model(*inputs).float().reshape(-1)
                surv = self.baseline.survival(risk, list(times)).tolist() if times else [[] for _ in batch]
            for (i, _), r, s in zip(batch, risk.tolist(), surv):
                writer.writerow([i + 1, manifest.cells[i], repr(float(r)), *map(repr, s)])
            done += len(batch)
        return done


def default_output(source: Path) -> Path:
    name = source.name
    for suffix in MANIFEST_SUFFIXES:
        name = name.removesuffix(suffix)
    return source.with_name(name + ".predictions.csv")


def predict_manifest(run_dir: str | Path, manifest: str | Path, out: str | Path | None = None,
                     times: Sequence[float] = (), trust: Sequence[str] = (), num_workers: int = 0,
                     allow_outside: bool = False, overwrite: bool = False) -> tuple[Path, int]:
    """Write the predictions CSV for a manifest of new images; (its path, rows scored). DataError on bad input."""
    pred = ImagePredictor.load(run_dir, trust)
    source = resolve_path(manifest, "input")
    target = Path(out) if out else default_output(source)
    if target.exists() and not overwrite:
        raise DataError(f"{target}: exists; pass --overwrite to replace it, or --out another path")
    if target.resolve() == source.resolve():
        raise DataError(f"{target}: is the input file; choose another --out")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            causes = pred.family.n_risks if pred.family is not None else 1
            writer.writerow(["row", pred.art["path_col"], "risk", *curve_columns(causes, times)])
            n = pred.score(manifest, writer, times, num_workers, allow_outside)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target, n
