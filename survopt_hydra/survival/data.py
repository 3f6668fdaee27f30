"""Tabular (CSV) and synthetic-image survival data, with no dependency beyond numpy/torch.

Everything that can be wrong in a user's CSV is reported as a one-line
:class:`DataError` naming the file, the column and the 1-based data row, so a
bad file fails before training starts instead of as a NaN loss later.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

# Cells that mean "missing" even though they are not empty; without this, a numeric
# column with "NA" in it would silently turn into a categorical one.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null"})


class DataError(ValueError):
    """A problem with an input data file; the message is one line naming the file."""


@dataclass
class Table:
    """A survival cohort: features, durations and event indicators (1 = event, 0 = censored)."""

    x: np.ndarray  # float32 (n, p)
    durations: np.ndarray  # float32 (n,)
    events: np.ndarray  # float32 (n,)
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # levels per one-hot column

    def __len__(self) -> int:
        return int(self.durations.shape[0])


def resolve_path(path: str | Path, key: str = "data.path") -> Path:
    """Turn a config path into a file path; ``pkg://<package>/<rel>`` points inside an installed package.

    The package is located with ``importlib.util.find_spec`` and never imported,
    so shipping a default data set inside e.g. lifelines costs no import time.
    ``key`` is the config key reported in errors.
    """
    text = str(path)
    if text.startswith("pkg://"):
        package, _, rel = text[len("pkg://") :].partition("/")
        try:
            spec = importlib.util.find_spec(package) if package and "." not in package else None
        except (ImportError, ValueError):
            spec = None
        for root in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(root) / rel
            if rel and candidate.is_file():
                return candidate
        why = "no such file in the package" if spec else f"package {package!r} is not installed"
        raise DataError(f"{key}: file not found: {text} ({why})")
    resolved = Path(text).expanduser()
    if not resolved.is_file():
        raise DataError(f"{key}: file not found: {text}")
    return resolved


def _read_rows(path: Path, label: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of each non-blank data row."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{label}: file is empty (no header row)")
        header = [name.strip() for name in header]
        rows = [(reader.line_num, [c.strip() for c in row]) for row in reader if any(c.strip() for c in row)]
    dupes = sorted({name for name in header if header.count(name) > 1})
    if dupes:
        raise DataError(f"{label}: duplicate column name(s): {', '.join(dupes)}")
    if not rows:
        raise DataError(f"{label}: no data rows after the header")
    for number, (line, row) in enumerate(rows, start=1):
        if len(row) != len(header):
            raise DataError(f"{label}: row {number} (line {line}) has {len(row)} fields, header has {len(header)}")
    return header, rows


def _check_column(label: str, name: str, header: list[str]) -> int:
    if name in header:
        return header.index(name)
    close = difflib.get_close_matches(name, header, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"{label}: column {name!r} not found; available: {', '.join(header)}{hint}")


def _number(label: str, column: str, row: int, cell: str) -> float | None:
    """float(cell), None when it is not a number; missing and non-finite cells are errors."""
    if cell.lower() in MISSING_TOKENS:
        raise DataError(f"{label}: missing value in column {column!r} at row {row}")
    try:
        value = float(cell)
    except ValueError:
        return None
    if not math.isfinite(value):
        raise DataError(f"{label}: non-finite value {cell!r} in column {column!r} at row {row}")
    return value


def _numeric_column(label: str, column: str, cells: list[str], why: str) -> np.ndarray:
    values = []
    for row, cell in enumerate(cells, start=1):
        value = _number(label, column, row, cell)
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
) -> Table:
    """Load and validate a survival CSV.

    A feature column is categorical iff some cell is not a number; it is
    one-hot encoded over its sorted levels as features named ``col=level``.
    Pass the training table's ``categories`` when loading a separate test
    file: its categorical columns then use exactly the training levels (a
    level unseen in training encodes as all zeros) and every other feature
    column must be numeric, so train and test features line up.

    Rows in errors are 1-based data rows (blank lines skipped); empty cells
    and NA/N/A/NaN/null are missing values and refused. ``key`` is the config
    key reported when the file does not exist (e.g. "data.test_path").
    """
    label = str(path)
    header, rows = _read_rows(resolve_path(path, key), label)
    features = [c for c in header if c not in (duration_col, event_col)] if feature_cols is None else list(feature_cols)
    if not features:
        raise DataError(f"{label}: no feature columns to use")
    for name in features:
        if features.count(name) > 1 or name in (duration_col, event_col):
            raise DataError(f"{label}: feature column {name!r} is repeated or is the duration/event column")
    for name in (categories or {}):
        if name not in features:
            raise DataError(f"{label}: categorical column {name!r} from the training data is not a feature")
    columns = [duration_col, event_col, *features]
    column = {name: [row[_check_column(label, name, header)] for _, row in rows] for name in columns}
    durations, events = _targets(label, duration_col, column[duration_col], event_col, column[event_col])
    blocks, names, levels_out = [], [], {}
    for name in features:
        cells = column[name]
        numbers = [_number(label, name, row, cell) for row, cell in enumerate(cells, start=1)]
        if categories is not None and name not in categories:
            blocks.append(_numeric_column(label, name, cells, "numeric in the training data")[:, None])
            names.append(name)
        elif categories is None and all(v is not None for v in numbers):
            blocks.append(np.asarray(numbers, dtype=np.float64)[:, None])
            names.append(name)
        else:
            levels = list(categories[name]) if categories is not None else sorted(set(cells))
            blocks.append(np.asarray([[cell == level for level in levels] for cell in cells], dtype=np.float64))
            names.extend(f"{name}={level}" for level in levels)
            levels_out[name] = levels
    x = np.concatenate(blocks, axis=1).astype(np.float32)
    return Table(x, durations.astype(np.float32), events.astype(np.float32), names, levels_out)


def _targets(label: str, time_col: str, times: list[str], event_col: str, flags: list[str]) -> tuple[np.ndarray, ...]:
    """Parse and check the duration and event columns."""
    durations = _numeric_column(label, time_col, times, "durations must be numbers")
    events = _numeric_column(label, event_col, flags, "events must be 0 or 1")
    if (durations < 0).any():
        row = int(np.argmax(durations < 0)) + 1
        raise DataError(f"{label}: negative duration {times[row - 1]!r} in column {time_col!r} at row {row}")
    bad = ~np.isin(events, (0.0, 1.0))
    if bad.any():
        row = int(np.argmax(bad)) + 1
        raise DataError(
            f"{label}: event value {flags[row - 1]!r} in column {event_col!r} at row {row}; allowed: 0, 1"
        )
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


def make_synthetic_images(
    n: int, size: int = 32, seed: int = 0, return_risk: bool = False
) -> tuple[np.ndarray, ...]:
    """Deterministic toy "scans" whose survival depends on what they show.

    Each image holds a bright soft-edged blob on a textured, noisy background.
    The true log-hazard grows with the blob's area and brightness, times are
    exponential with that hazard, and independent exponential censoring is
    calibrated to censor ~30%. So a CNN can only beat C = 0.5 by finding the
    blob, which makes this a meaningful smoke test for image models.

    Returns float32 numpy arrays ``(images (n, 1, size, size), durations (n,),
    events (n,))``, plus the true log-hazard (n,) when ``return_risk``.
    """
    if n < 1 or size < 8:
        raise ValueError(f"make_synthetic_images: need n >= 1 and size >= 8, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    grid = np.arange(size, dtype=np.float64)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    radius = rng.uniform(0.08, 0.25, n) * size
    brightness = rng.uniform(0.4, 1.2, n)
    centre = rng.uniform(0.3, 0.7, (n, 2)) * size
    dist = np.sqrt((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2)
    blob = brightness[:, None, None] / (1.0 + np.exp((dist - radius[:, None, None]) / 0.75))
    freq, phase = rng.uniform(0.05, 0.3, (n, 2)), rng.uniform(0, 2 * np.pi, (n, 2))
    texture = 0.1 * np.sin(freq[:, 0, None, None] * yy + phase[:, 0, None, None]) * np.cos(
        freq[:, 1, None, None] * xx + phase[:, 1, None, None]
    )
    images = 0.2 + texture + blob + rng.normal(0.0, 0.05, (n, size, size))

    area = radius**2
    risk = 1.2 * (area - area.mean()) / area.std() + 0.6 * (brightness - brightness.mean()) / brightness.std()
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
