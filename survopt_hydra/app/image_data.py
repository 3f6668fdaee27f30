"""``data=images``: image files listed in a manifest, read per batch through a torch DataLoader.

The manifest (CSV or Parquet, read with pyarrow) has one row per image: its path, relative to
the manifest's folder, the duration, the event and optional numeric covariates. Loading it
(the pre-flight, before anything is written) checks, for every row: the cells; that the path
stays inside the manifest's folder once links are resolved (``data.allow_outside=true`` lifts
this); that the file exists, is a regular non-empty file of a known format; and its header
(:func:`.image_files.probe`: shape, dtype, the decompression-bomb bound). Decoding waits for
the first batch that needs the image, so a body that is corrupt past its header (a truncated
PNG) ends the run then, with the same one line naming the manifest row and the file;
``data.verify=full`` decodes every image once up front instead.

The images are never all in memory: :class:`ImageSplit` holds a split's manifest rows,
durations and events, and :class:`ImageReader` streams batches of the rows the trainer asks
for through one DataLoader (``data.num_workers`` worker processes; pinned memory when
training on CUDA). Augmentation (``data.augment``, training batches only)
is seeded per (trainer.seed, epoch, manifest row), so an epoch's batches are the same with any
number of workers and after a resume. The tabular path (app/data.py) keeps its tensors in
memory and needs none of this.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import did_you_mean, first_line
from ..survival.data import resolve_path
from ..survival.standardize import Standardizer
from ..survival.schema import DataError
from . import image_files

log = logging.getLogger(__name__)

#: ``predictor.json``'s format for a run on image files (survopt-predict reads it in app/image_predict.py).
IMAGE_FORMAT = "survopt-image-predictor/1"
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
EXTRA = image_files.EXTRA


# ------------------------------------------------------------------ the manifest
@dataclass
class Manifest:
    """The manifest's checked rows: resolved files, 1-based row numbers, targets, raw covariates."""

    label: str
    root: Path
    cells: list[str]
    files: list[Path]
    durations: np.ndarray | None  # float32 (n,), None when not asked for (prediction)
    events: np.ndarray | None
    covariates: np.ndarray  # float32 (n, k), k = 0 without covariates
    covariate_names: list[str]

    def __len__(self) -> int:
        return len(self.files)

    def where(self, i: int) -> str:
        """How a message names row ``i``: the manifest, its 1-based data row and the path cell."""
        return f"{self.label} row {i + 1} ({self.cells[i]})"


def _arrow_table(path: Path, label: str, path_col: str) -> Any:
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{label}: reading a manifest needs pyarrow: {EXTRA}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":  # the path column stays text even when every path looks like a number
            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={path_col: pa.string()}))
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{label}: not a readable {suffix[1:]} manifest ({first_line(exc)})") from None
    raise DataError(f"{label}: a manifest must be CSV or Parquet ({', '.join(MANIFEST_SUFFIXES)}), got "
                    f"{suffix or 'no suffix'!r}")


def _column(table: Any, label: str, name: str, key: str) -> list[Any]:
    if name not in table.column_names:
        raise DataError(f"{label}: column {name!r} ({key}) not found{did_you_mean(name, table.column_names)}; "
                        f"available: {', '.join(table.column_names)}")
    values = table.column(name).to_pylist()
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        raise DataError(f"{label}: column {name!r} ({key}) has {len(missing)} missing cell(s), first at row "
                        f"{missing[0] + 1}; fill them or drop those rows")
    return values


def _numbers(label: str, name: str, values: list[Any], why: str) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{label}: non-numeric value {v!r} in column {name!r} at row {i + 1} ({why})") from None
        if not math.isfinite(out[i]) or abs(out[i]) > float(np.finfo(np.float32).max):
            raise DataError(f"{label}: value {v!r} in column {name!r} at row {i + 1} is not a finite float32 number")
    return out


def image_path(manifest: str, root: Path, cell: Any, row: int, allow_outside: bool) -> Path:
    """The file a path cell names: relative to the manifest's folder ``root``, links resolved; a path
    that leaves ``root`` (absolute, ``..``, a link pointing out) needs ``data.allow_outside=true``."""
    where = f"{manifest} row {row}"
    if not isinstance(cell, str) or not cell.strip():
        raise DataError(f"{where}: the path cell is empty or not text ({cell!r})")
    if "\x00" in cell:
        raise DataError(f"{where}: NUL byte in the path cell")
    given = Path(cell)
    if given.is_absolute() and not allow_outside:
        raise DataError(f"{where} ({cell}): an absolute path; image paths are relative to the manifest's folder "
                        f"{root}; data.allow_outside=true allows paths outside it")
    resolved = (root / given).resolve()  # follows every link (an absolute cell replaces root)
    if not allow_outside and not resolved.is_relative_to(root):
        raise DataError(f"{where} ({cell}): resolves to {resolved}, outside the manifest's folder {root} (a '..' or a "
                        "symbolic link); data.allow_outside=true allows it")
    return resolved


def read_manifest(path_value: str, key: str, path_col: str, covariate_cols: Sequence[str],
                  duration_col: str | None, event_col: str | None, allow_outside: bool) -> Manifest:
    """Read and check a manifest: every cell, every path's containment; targets when their columns are named."""
    path = resolve_path(path_value, key)
    label = str(path_value)
    root = path.resolve().parent
    table = _arrow_table(path, label, path_col)
    if table.num_rows == 0:
        raise DataError(f"{label}: no rows after the header")
    names = [c for c in (path_col, duration_col, event_col, *covariate_cols) if c is not None]
    dup = next((c for c in names if names.count(c) > 1), None)
    if dup is not None:
        raise DataError(f"{label}: column {dup!r} is named twice among data.path_col, data.duration_col, "
                        "data.event_col and data.covariate_cols; they must name different columns")
    cells = _column(table, label, path_col, "data.path_col")
    files = [image_path(label, root, c, i + 1, allow_outside) for i, c in enumerate(cells)]
    durations = events = None
    if duration_col is not None and event_col is not None:
        durations = _numbers(label, duration_col, _column(table, label, duration_col, "data.duration_col"),
                             "durations must be numbers")
        events = _numbers(label, event_col, _column(table, label, event_col, "data.event_col"), "events must be 0 or 1")
        if (durations < 0).any():
            i = int(np.argmax(durations < 0))
            raise DataError(f"{label}: negative duration {durations[i]:g} in column {duration_col!r} at row {i + 1}")
        bad = ~np.isin(events, (0.0, 1.0))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{label}: event value {events[i]:g} in column {event_col!r} at row {i + 1}; allowed: 0, 1")
        if events.sum() == 0:
            raise DataError(f"{label}: no events (column {event_col!r} is all 0); the Cox likelihood needs events")
        durations, events = durations.astype(np.float32), events.astype(np.float32)
    covariates = np.zeros((len(cells), len(covariate_cols)), dtype=np.float32)
    for j, name in enumerate(covariate_cols):
        covariates[:, j] = _numbers(label, name, _column(table, label, name, "data.covariate_cols"),
                                    "covariates must be numbers")
    return Manifest(label, root, [str(c) for c in cells], files, durations, events, covariates, list(covariate_cols))


def probe_all(manifest: Manifest, mode: str, max_pixels: int, same_shape: bool) -> tuple[int, ...]:
    """Every file's header (existence, size, format, shape bound); the first image's shape.

    ``same_shape`` (no ``data.transform`` to unify them): every image must have that shape."""
    first: tuple[int, ...] | None = None
    for i, file in enumerate(manifest.files):
        shape = image_files.probe(manifest.where(i), file, mode, max_pixels)
        if first is None:
            first = shape
        elif same_shape and shape != first:
            raise DataError(f"{manifest.where(i)}: shape {_fmt(shape)}, but row 1's is {_fmt(first)}; every image needs "
                            "one shape: resize the files or add a data.transform (e.g. survopt_hydra.app."
                            "image_transforms.Resize)")
    assert first is not None
    return first


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


# ------------------------------------------------------------------ one image, in a worker or not
class Failed:
    """A batch that could not be read: its one-line message crosses the worker boundary as data,
    so the training process raises one DataError line instead of the DataLoader's re-raise."""

    def __init__(self, message: str) -> None:
        self.message = message


def _apply(transforms: Sequence[Any], x: Tensor, where: str, key: str) -> Tensor:
    for k, transform in enumerate(transforms):
        try:
            x = transform(x)
        except Exception as exc:
            raise DataError(f"{where}: {key}[{k}] ({type(transform).__name__}) failed: {type(exc).__name__}: "
                            f"{first_line(exc)}") from None
        if not isinstance(x, Tensor):
            raise DataError(f"{where}: {key}[{k}] ({type(transform).__name__}) returned a {type(x).__name__}, not a "
                            "tensor")
    return x


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread while an image is decoded and transformed, then the caller's count again.

    One image is too small to share: on the busy 2-core development box, normalizing a 256x256
    image took 20 ms with torch's 2 threads and 0.5 ms with one (benchmarks/bench_images.py).
    DataLoader workers run with one thread anyway, so this also makes an image's floats the same
    with 0 or N workers. Setting the count costs well under a microsecond."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def item_seed(epoch_seed: int, row: int) -> int:
    """The augmentation seed of one manifest row in one epoch: independent of workers and batches."""
    return int(np.random.SeedSequence([int(epoch_seed), int(row)]).generate_state(1, np.uint64)[0] >> 1)


class ImageDataset(torch.utils.data.Dataset):
    """Manifest row -> (image, covariates), decoded and transformed; keys are ``(row, seed or None)``
    (a seed: a training read, augmented under that seed)."""

    def __init__(self, manifest: Manifest, mode: str, max_pixels: int, transform: Sequence[Any],
                 augment: Sequence[Any], shape: tuple[int, ...] | None = None) -> None:
        self.manifest, self.mode, self.max_pixels = manifest, mode, max_pixels
        self.transform, self.augment, self.shape = list(transform), list(augment), shape
        self.covariates = torch.from_numpy(manifest.covariates)

    def __len__(self) -> int:
        return len(self.manifest)

    def image(self, row: int, seed: int | None = None) -> Tensor:
        """Row ``row``'s image after ``data.transform`` (and ``data.augment`` under ``seed``); DataError."""
        with one_thread():
            return self._image(row, seed)

    def _image(self, row: int, seed: int | None) -> Tensor:
        where = self.manifest.where(row)
        x = torch.from_numpy(image_files.read(where, self.manifest.files[row], self.mode, self.max_pixels))
        x = _apply(self.transform, x, where, "data.transform")
        if seed is not None and self.augment:
            with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left as it was
                torch.manual_seed(seed)
                x = _apply(self.augment, x, where, "data.augment")
        x = x.float().contiguous()
        if self.shape is not None and tuple(x.shape) != self.shape:
            raise DataError(f"{where}: shape {_fmt(x.shape)} after data.transform"
                            + (" and data.augment" if seed is not None and self.augment else "")
                            + f", but the model takes {_fmt(self.shape)} (row 1's); make every image one shape "
                            "(e.g. a Resize or CenterCrop in data.transform)")
        return x

    def __getitem__(self, key: tuple[int, int | None]) -> tuple[Tensor, Tensor] | Failed:
        row, seed = key
        try:
            return self.image(row, seed), self.covariates[row]
        except DataError as exc:
            return Failed(str(exc))


def collate(items: list[Any]) -> tuple[Tensor, ...] | Failed:
    """Stack a batch into ``(images,)`` or ``(images, covariates)``: the model's positional inputs."""
    for item in items:
        if isinstance(item, Failed):
            return item
    with one_thread():  # a copy: threads only add waits (300 ms for 64 256x256 images on the busy box, 2 threads)
        images = torch.stack([x for x, _ in items])
        covariates = torch.stack([c for _, c in items])
    return (images, covariates) if covariates.shape[1] else (images,)


class _Batches:
    """The batch sampler: the lists of keys the caller set for the next pass (read in the main process)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int | None]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int | None]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ImageReader:
    """One DataLoader for every split and pass; its workers start with each pass and stop at its end.

    Not ``persistent_workers``: workers kept past a pass are torn down by the garbage collector,
    which in torch 2.x can leave a queue thread writing to a closed pipe (a warning at exit, or
    in a sweep's next job); a pass whose iterator is dropped in ``finally`` shuts its workers down
    at once, also when a bad image ends it. Starting them costs ~0.1 s per pass (benchmarks/bench_images.py)."""

    def __init__(self, dataset: ImageDataset, num_workers: int, eval_rows: int) -> None:
        self.dataset, self.num_workers, self.eval_rows = dataset, num_workers, eval_rows
        self.sampler = _Batches()
        self.loader: Any = None
        self.pinned = False

    def _loader(self, device: torch.device) -> Any:
        pin = device.type == "cuda"
        if self.loader is None or pin != self.pinned:
            # its own generator: creating an iterator draws a base seed, which must not move the global RNG
            self.loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers, collate_fn=collate,
                pin_memory=pin, generator=torch.Generator())
            self.pinned = pin
        return self.loader

    def batches(self, keys: list[list[tuple[int, int | None]]], device: torch.device) -> Iterator[tuple[Tensor, ...]]:
        """The inputs of each batch of ``keys``, in order, on ``device``; DataError for an unreadable image."""
        loader = self._loader(device)
        self.sampler.batches = keys
        batches = iter(loader)
        try:
            for item in batches:
                if isinstance(item, Failed):
                    raise DataError(item.message)
                yield tuple(t.to(device, non_blocking=True) for t in item)
        finally:
            del batches  # the workers stop here, not whenever the collector gets to them


class ImageSplit:
    """A split of an image cohort: its manifest rows, durations and events; images read per batch.

    Stands where :class:`.data.Split` does for tensors: ``len``, ``durations``, ``events``,
    ``to(device)``, ``input_shape``; batches come from :meth:`train_batches` and :meth:`risks`."""

    def __init__(self, reader: ImageReader, rows: np.ndarray, durations: Tensor, events: Tensor,
                 device: torch.device | str = "cpu") -> None:
        self.reader, self.rows = reader, np.asarray(rows, dtype=np.int64)
        self.durations, self.events, self.device = durations, events, torch.device(device)

    def __len__(self) -> int:
        return int(self.durations.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        assert self.reader.dataset.shape is not None
        return self.reader.dataset.shape

    def to(self, device: torch.device | str) -> "ImageSplit":
        return ImageSplit(self.reader, self.rows, self.durations.to(device), self.events.to(device), device)

    def keys(self, idx: Tensor, seed: int | None) -> list[tuple[int, int | None]]:
        """The dataset keys of the rows at positions ``idx``: (manifest row, augmentation seed or None)."""
        rows = self.rows[idx.cpu().numpy()]
        return [(int(r), None if seed is None else item_seed(seed, int(r))) for r in rows]

    def train_batches(self, chunks: Sequence[Tensor], epoch_seed: int) -> Iterator[tuple[tuple[Tensor, ...], Tensor,
                                                                                          Tensor]]:
        """(inputs, durations, events) of each chunk of split positions, augmented under ``epoch_seed``."""
        keys = [self.keys(c, epoch_seed) for c in chunks]
        for idx, inputs in zip(chunks, self.reader.batches(keys, self.device)):
            yield inputs, self.durations[idx], self.events[idx]

    def risks(self, model: torch.nn.Module, idx: Tensor) -> Tensor:
        """The model's risk for the rows at positions ``idx``, unaugmented, ``data.eval_batch_size`` at a time."""
        keys = [self.keys(c, None) for c in idx.split(self.reader.eval_rows)]
        out = [model(*inputs) for inputs in self.reader.batches(keys, self.device)]
        return torch.cat(out) if out else torch.zeros(0, device=self.device)


# ------------------------------------------------------------------ the cohort's image side
def build_transforms(nodes: Sequence[Any], key: str) -> list[Any]:
    """``data.transform`` / ``data.augment``: each ``_target_`` node built (the user's config)."""
    from .user_models import build_node

    return [build_node(node, f"{key}[{k}]") for k, node in enumerate(nodes)]


class ImageSet:
    """What ``data=images`` loads: the checked manifest and the reader its splits share.

    ``app/data.py`` splits its events like any cohort's and asks :meth:`splits` for the three
    splits; the predictor stores :meth:`artefact` (how to read new images) in ``predictor.json``."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.settings = dict(data)
        self.manifest = read_manifest(data["manifest"], "data.manifest", data["path_col"], data["covariate_cols"],
                                      data["duration_col"], data["event_col"], data["allow_outside"])
        self.label = self.manifest.label
        transform = build_transforms(data["transform"], "data.transform")
        augment = build_transforms(data["augment"], "data.augment")
        probe_all(self.manifest, data["mode"], data["max_pixels"], same_shape=not transform)
        self.dataset = ImageDataset(self.manifest, data["mode"], data["max_pixels"], transform, augment)
        self.dataset.shape = tuple(self.dataset.image(0).shape)  # row 1 decoded once: the model's input shape
        self.reader = ImageReader(self.dataset, data["num_workers"], data["eval_batch_size"])
        self.standardizer: Standardizer | None = None

    @property
    def events(self) -> np.ndarray:
        assert self.manifest.events is not None
        return self.manifest.events

    @property
    def feature_names(self) -> list[str]:
        return ["image", *self.manifest.covariate_names]

    def splits(self, parts: Sequence[np.ndarray]) -> list[ImageSplit]:
        """The splits of ``parts`` (manifest row indices); covariates standardized with the first's (training) rows."""
        m = self.manifest
        if m.covariates.shape[1]:
            self.standardizer = Standardizer().fit(m.covariates[parts[0]])
            self.dataset.covariates = torch.from_numpy(np.ascontiguousarray(self.standardizer.transform(m.covariates)))
        assert m.durations is not None and m.events is not None
        return [ImageSplit(self.reader, p, torch.from_numpy(m.durations[p]), torch.from_numpy(m.events[p]))
                for p in parts]

    def verify(self) -> None:
        """``data.verify=full``: decode (and transform) every image once, through the workers."""
        keys = [[(i, None) for i in range(s, min(s + self.reader.eval_rows, len(self.manifest)))]
                for s in range(0, len(self.manifest), self.reader.eval_rows)]
        for _ in self.reader.batches(keys, torch.device("cpu")):
            pass

    def artefact(self) -> dict[str, Any]:
        """How ``survopt-predict`` reads new images exactly as the model was scored (``predictor.json``)."""
        d = self.settings
        sd = self.standardizer.state_dict() if self.standardizer is not None else None
        return {"format": IMAGE_FORMAT, "path_col": d["path_col"], "covariate_cols": list(d["covariate_cols"]),
                "mode": d["mode"], "transform": list(d["transform"]), "max_pixels": d["max_pixels"],
                "eval_batch_size": d["eval_batch_size"], "input_shape": list(self.dataset.shape or ()),
                "standardizer": {k: v.tolist() for k, v in sd.items()} if sd is not None else None}
