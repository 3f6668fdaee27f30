"""Tabular (CSV) and synthetic-image survival data, with no dependency beyond numpy/torch.

Everything that can be wrong in a user's CSV is reported as a one-line
:class:`DataError` naming the file, the column and the 1-based data row, so a
bad file fails before training starts instead of as a NaN loss later.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .schema import (  # noqa: F401 (DataError, MISSING_TOKENS re-exported: the data layer's names)
    MISSING_POLICIES, MISSING_TOKENS, UNSEEN_POLICIES, ColumnSpec, DataError, FeatureSchema, count_missing,
    fast_numbers, infer_schema, missing_summary, parse_number,
)

log = logging.getLogger(__name__)


@dataclass
class Table:
    """A survival cohort: features, durations and event indicators (1 = event, 0 = censored).

    ``x`` holds NaN for missing numbers under ``data.missing=impute`` until the app fills
    them with the training rows' medians (:meth:`FeatureSchema.fill_missing`)."""

    x: np.ndarray  # float32 (n, p)
    durations: np.ndarray  # float32 (n,)
    events: np.ndarray  # float32 (n,)
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # levels per one-hot column
    schema: FeatureSchema | None = None
    rows: np.ndarray | None = None  # 1-based data row numbers of the file (after data.missing=drop_rows)

    def __len__(self) -> int:
        return int(self.durations.shape[0])


def resolve_path(path: str | Path, key: str = "data.path") -> Path:
    """Turn a config path into a file path; ``pkg://<package>/<rel>`` points inside an installed package.

    The package is located with ``importlib.util.find_spec`` and never imported,
    so shipping a default data set inside e.g. lifelines costs no import time. The
    resolved file must lie inside the package (no ``..`` or symlink escapes it).
    ``key`` is the config key reported in errors.
    """
    text = str(path)
    if text.startswith("pkg://"):
        package, _, rel = text[len("pkg://") :].partition("/")
        if ".." in Path(rel).parts or rel.startswith(("/", "\\")):
            raise DataError(f"{key}: {text} leaves the package {package!r}; pkg:// paths must stay inside it")
        try:
            spec = importlib.util.find_spec(package) if package and "." not in package else None
        except (ImportError, ValueError):
            spec = None
        for root in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(root) / rel
            if rel and candidate.is_file():
                if not candidate.resolve().is_relative_to(Path(root).resolve()):
                    raise DataError(f"{key}: {text} leaves the package {package!r}; pkg:// paths must stay inside it")
                return candidate
        if spec:
            why = "no such file in the package"
        else:
            from ..errors import pip_command

            why = f"package {package!r} is not installed: {pip_command(package)}"
        raise DataError(f"{key}: file not found: {text} ({why})")
    resolved = Path(text).expanduser()
    if not resolved.is_file():
        if resolved.exists():  # a directory, a FIFO (reading would block), a device (/dev/zero never ends)
            raise DataError(f"{key}: {text} is not a regular file (a directory, FIFO or device); give a CSV file")
        raise DataError(f"{key}: file not found: {text}")
    return resolved


def csv_rows(path: Path, label: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of every row, header first; file-level problems as one DataError.

    UTF-8 only (a UTF-16, Latin-1 or binary file is refused, never guessed), and a field
    over csv's 128 KiB limit is refused: both would otherwise surface as tracebacks."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                yield reader.line_num, [c.strip() for c in row]
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex()
        raise DataError(f"{label}: not UTF-8 text (byte 0x{byte}: a UTF-16, Latin-1 or binary file?); "
                        "save it as a UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{label}: not a readable CSV near line {reader.line_num} ({exc}); a field over 128 KiB "
                        "or binary data?") from None
    except OSError as exc:
        raise DataError(f"{label}: cannot read the file ({exc.strerror or exc})") from None


def check_header(label: str, header: list[str] | None) -> list[str]:
    if header is None:
        raise DataError(f"{label}: file is empty (no header row)")
    if any("\x00" in name for name in header):
        raise DataError(f"{label}: NUL bytes in the header (a UTF-16 or binary file?); save it as a UTF-8 CSV")
    dupes = sorted({name for name in header if header.count(name) > 1})
    if dupes:
        raise DataError(f"{label}: duplicate column name(s): {', '.join(dupes)}")
    return header


def check_width(label: str, header: list[str], number: int, line: int, row: list[str]) -> None:
    if len(row) != len(header):
        raise DataError(f"{label}: row {number} (line {line}) has {len(row)} fields, header has {len(header)}")


def _read_rows(path: Path, label: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of each non-blank data row."""
    it = csv_rows(path, label)
    header = check_header(label, next(it, (0, None))[1])
    rows = [(line, row) for line, row in it if any(row)]
    if not rows:
        raise DataError(f"{label}: no data rows after the header")
    for number, (line, row) in enumerate(rows, start=1):
        check_width(label, header, number, line, row)
    return header, rows


def find_columns(label: str, names: Sequence[str], header: list[str]) -> dict[str, int]:
    """Header index of each name; one line naming every absent column (with a close match)."""
    absent = [name for name in names if name not in header]
    if not absent:
        return {name: header.index(name) for name in names}
    if len(absent) == 1:
        close = difflib.get_close_matches(absent[0], header, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"{label}: column {absent[0]!r} not found; available: {', '.join(header)}{hint}")
    raise DataError(f"{label}: {len(absent)} columns not found: {', '.join(map(repr, absent))}; "
                    f"available: {', '.join(header)}")


def _numeric_column(label: str, column: str, cells: list[str], rows: Sequence[int], why: str) -> np.ndarray:
    fast = fast_numbers(cells)
    if fast is not None:
        return fast
    values = []
    for row, cell in zip(rows, cells):
        value = parse_number(label, column, row, cell)
        if value is None:
            raise DataError(f"{label}: non-numeric value {cell!r} in column {column!r} at row {row} ({why})")
        values.append(value)
    return np.asarray(values, dtype=np.float64)


def load_csv(
    path: str | Path,
    duration_col: str,
    event_col: str,
    feature_cols: Sequence[str] | None = None,
    categories: dict[str, list[str]] | None = None,
    key: str = "data.path",
    *,
    schema: FeatureSchema | None = None,
    missing: str = "refuse",
    unseen: str = "refuse",
    max_levels: int = 50,
    indicator: bool = False,
) -> Table:
    """Load and validate a survival CSV.

    Without ``schema`` (a training file) the feature columns are typed by
    :func:`~.schema.infer_schema`: numbers, categories one-hot encoded over their sorted
    levels as ``col=level``, constant columns dropped. With the training table's
    ``schema`` (a test file, new patients) its columns are looked up by name (any order)
    and encoded exactly as in training. ``categories`` (levels per categorical column,
    every other feature numeric) is the older spelling of a schema.

    Missing cells (empty, NA, N/A, NaN, null) follow ``missing``: ``refuse`` names every
    affected column with its count, ``drop_rows`` drops those rows (one log line),
    ``impute`` leaves NaN for the caller's training-row medians and a "missing" level for
    categories (plus a 0/1 indicator per number column with ``indicator``). Rows in errors
    are 1-based data rows of the file (blank lines skipped). ``key`` is the config key
    reported when the file does not exist (e.g. "data.test_path").
    """
    label = str(path)
    if duration_col == event_col:
        raise DataError(f"{label}: data.duration_col and data.event_col are both {duration_col!r}; they must name "
                        "two different columns")
    if schema is not None:
        missing, unseen = schema.missing, schema.unseen
    for name, value, allowed in (("missing", missing, MISSING_POLICIES), ("unseen", unseen, UNSEEN_POLICIES)):
        if value not in allowed:
            raise ValueError(f"load_csv: {name} must be one of {', '.join(allowed)}, got {value!r}")
    header, rows = _read_rows(resolve_path(path, key), label)
    if schema is not None:
        features = [c.name for c in schema.columns]
    elif feature_cols is None:
        features = [c for c in header if c not in (duration_col, event_col)]
    else:
        features = list(feature_cols)
    if not features:
        raise DataError(f"{label}: no feature columns to use")
    for name in features:
        if features.count(name) > 1 or name in (duration_col, event_col):
            raise DataError(f"{label}: feature column {name!r} is repeated or is the duration/event column")
    for name in (categories or {}):
        if name not in features:
            raise DataError(f"{label}: categorical column {name!r} from the training data is not a feature")
    index = find_columns(label, [duration_col, event_col, *features], header)
    numbers = list(range(1, len(rows) + 1))
    column = {name: [row[i] for _, row in rows] for name, i in index.items()}
    holes = count_missing(column, list(index), numbers)
    if holes and (missing == "refuse" or (missing == "impute" and ({duration_col, event_col} & set(holes)))):
        policy = "" if missing == "refuse" else " (durations and events cannot be imputed)"
        raise DataError(f"{label}: missing values{policy} in {len(holes)} column(s): {missing_summary(holes)}; "
                        "allowed: data.missing=drop_rows (drop those rows) or data.missing=impute")
    if holes and missing == "drop_rows":
        bad = set().union(*holes.values())
        keep = [i for i in range(len(rows)) if i + 1 not in bad]
        if not keep:
            raise DataError(f"{label}: data.missing=drop_rows drops every row ({missing_summary(holes)})")
        log.warning("%s: data.missing=drop_rows dropped %d of %d rows (missing: %s)", label, len(bad), len(rows),
                    missing_summary(holes))
        column = {name: [cells[i] for i in keep] for name, cells in column.items()}
        numbers = [i + 1 for i in keep]
    elif holes:
        log.warning("%s: data.missing=impute fills %d missing cell(s) in %d column(s): %s", label,
                    sum(map(len, holes.values())), len(holes), missing_summary(holes))
    durations, events = _targets(label, duration_col, column[duration_col], event_col, column[event_col], numbers)
    if schema is None and categories is not None:
        schema = FeatureSchema(duration_col, event_col, [
            ColumnSpec(name, "category", list(categories[name])) if name in categories else ColumnSpec(name, "number")
            for name in features], missing, unseen)
    if schema is None:
        schema = infer_schema(label, column, numbers, features, duration_col, event_col, missing, unseen,
                              max_levels, indicator)
    x = schema.encode(label, column, numbers)
    return Table(x.astype(np.float32), durations.astype(np.float32), events.astype(np.float32),
                 schema.feature_names, schema.categories, schema, np.asarray(numbers))


def _targets(label: str, time_col: str, times: list[str], event_col: str, flags: list[str],
             rows: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Parse and check the duration and event columns."""
    durations = _numeric_column(label, time_col, times, rows, "durations must be numbers")
    events = _numeric_column(label, event_col, flags, rows, "events must be 0 or 1")
    if (durations < 0).any():
        i = int(np.argmax(durations < 0))
        raise DataError(f"{label}: negative duration {times[i]!r} in column {time_col!r} at row {rows[i]}")
    bad = ~np.isin(events, (0.0, 1.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{label}: event value {flags[i]!r} in column {event_col!r} at row {rows[i]}; allowed: 0, 1")
    if events.sum() == 0:
        raise DataError(f"{label}: no events (column {event_col!r} is all 0); the Cox likelihood needs events")
    return durations, events


def split_indices(
    events: np.ndarray, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/val/test split, stratified by event status.

    Stratifying keeps the event rate equal across splits, and every split with
    a non-zero fraction gets at least one event, because the Cox loss and the
    C-index are undefined without events. A fraction may be 0 (e.g. test when
    a separate test file is given); that split is then empty.
    """
    events = np.asarray(events).reshape(-1)
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"split_indices: fractions must be 3 non-negative numbers summing to 1, got {fractions.tolist()}"
        )
    used = fractions > 0
    n_events, n_used = int((events > 0).sum()), int(used.sum())
    if n_events < n_used:
        raise ValueError(f"split_indices: {n_events} event(s) cannot give each of {n_used} splits an event")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for stratum, need_one in ((events > 0, True), (events <= 0, False)):
        idx = rng.permutation(np.flatnonzero(stratum))
        exact = fractions * len(idx)
        counts = np.floor(exact).astype(int)
        for k in np.argsort(-(exact - counts), kind="stable")[: len(idx) - counts.sum()]:
            counts[k] += 1  # largest remainder rounding
        while need_one and (counts[used] == 0).any():
            counts[np.argmax(counts)] -= 1
            counts[np.flatnonzero(used & (counts == 0))[0]] += 1
        for k, chunk in enumerate(np.split(idx, np.cumsum(counts)[:-1])):
            parts[k].append(chunk)
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def fold_indices(events: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded K-fold partition of the rows, stratified by event status: ``folds`` sorted index arrays.

    Why: a model-selection figure averaged over K folds validates on every row once, where one
    random validation split of a small cohort ranks configs by noise. Events and censored rows are
    each shuffled and dealt round-robin (events first), so fold sizes differ by at most one and
    every fold holds ``events // folds`` or one more events; fewer events than folds is refused,
    because a fold without an event cannot be scored.
    """
    events = np.asarray(events).reshape(-1)
    if folds < 2:
        raise ValueError(f"fold_indices: folds must be >= 2, got {folds}")
    n_events = int((events > 0).sum())
    if n_events < folds:
        raise ValueError(f"fold_indices: {n_events} event(s) cannot give each of {folds} folds an event")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(events > 0)), rng.permutation(np.flatnonzero(events <= 0))])
    return [np.sort(order[k::folds]).astype(np.int64) for k in range(folds)]


class Standardizer:
    """Per-feature z-scoring fitted on training rows only (no leakage from val/test).

    Constant features get std 1 so they map to 0 instead of dividing by zero.
    """

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, x: np.ndarray | torch.Tensor) -> "Standardizer":
        arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"Standardizer.fit: expected a non-empty (n, p) array, got shape {arr.shape}")
        std = arr.std(axis=0)
        self.mean, self.std = arr.mean(axis=0).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)
        return self

    def transform(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        if self.mean is None or self.std is None:
            raise ValueError("Standardizer.transform: call fit() or load_state_dict() first")
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"Standardizer.transform: expected {self.mean.shape[0]} features, got {x.shape[-1]}")
        if isinstance(x, torch.Tensor):
            mean, std = torch.as_tensor(self.mean, device=x.device), torch.as_tensor(self.std, device=x.device)
            return ((x - mean) / std).to(x.dtype if x.is_floating_point() else torch.float32)
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.mean is None or self.std is None:
            raise ValueError("Standardizer.state_dict: not fitted")
        return {"mean": torch.tensor(self.mean), "std": torch.tensor(self.std)}

    def load_state_dict(self, state: dict) -> None:
        mean = np.asarray(torch.as_tensor(state["mean"]), dtype=np.float32).reshape(-1)
        std = np.asarray(torch.as_tensor(state["std"]), dtype=np.float32).reshape(-1)
        if mean.shape != std.shape or (std <= 0).any():
            raise ValueError("Standardizer.load_state_dict: mean/std must have equal length and std > 0")
        self.mean, self.std = mean, std


SYNTHETIC_SIGNALS = ("area_brightness", "area")


def make_synthetic_images(
    n: int, size: int = 32, seed: int = 0, return_risk: bool = False, signal: str = "area_brightness"
) -> tuple[np.ndarray, ...]:
    """Deterministic toy "scans" whose survival depends on what they show.

    Each image holds a bright soft-edged blob on a textured, noisy background.
    The true log-hazard grows with the blob's area and brightness, times are
    exponential with that hazard, and independent exponential censoring is
    calibrated to censor ~30%. So a CNN can only beat C = 0.5 by finding the
    blob, which makes this a meaningful smoke test for image models.

    ``signal="area"`` is the harder variant the fine-tuning demonstration needs: the
    log-hazard follows the blob's area only, while its brightness varies 5-fold and
    carries no risk, so an image's mean intensity (which solves the default variant almost
    as well as the true risk: C 0.78 vs 0.79) is only a weak proxy (0.73 vs 0.82); a model
    has to measure the blob's extent, which a backbone pretrained on many images does
    better than one trained from scratch on a few.

    Returns float32 numpy arrays ``(images (n, 1, size, size), durations (n,),
    events (n,))``, plus the true log-hazard (n,) when ``return_risk``.
    """
    if n < 1 or size < 8:
        raise ValueError(f"make_synthetic_images: need n >= 1 and size >= 8, got n={n}, size={size}")
    if signal not in SYNTHETIC_SIGNALS:
        raise ValueError(f"make_synthetic_images: signal must be one of {SYNTHETIC_SIGNALS}, got {signal!r}")
    rng = np.random.default_rng(seed)
    grid = np.arange(size, dtype=np.float64)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    radius = rng.uniform(0.08, 0.25, n) * size
    brightness = rng.uniform(*((0.4, 1.2) if signal == "area_brightness" else (0.3, 1.5)), n)
    centre = rng.uniform(0.3, 0.7, (n, 2)) * size
    dist = np.sqrt((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2)
    blob = brightness[:, None, None] / (1.0 + np.exp((dist - radius[:, None, None]) / 0.75))
    freq, phase = rng.uniform(0.05, 0.3, (n, 2)), rng.uniform(0, 2 * np.pi, (n, 2))
    texture = 0.1 * np.sin(freq[:, 0, None, None] * yy + phase[:, 0, None, None]) * np.cos(
        freq[:, 1, None, None] * xx + phase[:, 1, None, None]
    )
    images = 0.2 + texture + blob + rng.normal(0.0, 0.05, (n, size, size))

    area = radius**2
    if signal == "area_brightness":
        risk = 1.2 * (area - area.mean()) / area.std() + 0.6 * (brightness - brightness.mean()) / brightness.std()
    else:
        risk = 1.5 * (area - area.mean()) / area.std()
    hazard = 0.1 * np.exp(risk)
    event_time = rng.exponential(1.0 / hazard)
    lo, hi = 1e-6, 1e6  # censoring rate c with mean(c / (c + hazard)) = 0.3
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if np.mean(mid / (mid + hazard)) < 0.3 else (lo, mid)
    censor_time = rng.exponential(1.0 / math.sqrt(lo * hi), n)
    durations = np.minimum(event_time, censor_time)
    events = (event_time <= censor_time).astype(np.float32)
    out = (images[:, None].astype(np.float32), durations.astype(np.float32), events)
    return (*out, risk.astype(np.float32)) if return_risk else out
