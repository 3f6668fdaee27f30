"""Percentile bootstrap intervals for test-set metrics, vectorized over resamples.

A resample of the n test patients (drawn with replacement) is a vector of counts c (patient k
drawn c_k times). Every metric here is a function of those counts without building the
resampled rows:

* Harrell's C and Uno's C are ratios of sums over comparable pairs; on a resample a pair
  (i, j) appears c_i c_j times and a patient is never comparable with its own copy (same
  time, same status), so both sums are the weighted counts of
  :meth:`.metrics.ConcordanceCounts.sums` with weight c_j on the later row and c_i (times
  Uno's 1/G(t_i)^2) on the event row - O(n log n) per resample, B resamples as (B, n) blocks;
* the integrated Brier score is a mean over patients of their own integrated terms
  (:func:`.timedep.brier_contributions`), so a resample's IBS is c . terms / n.

What stays fixed: the censoring distribution G (fitted on the training rows), Uno's tau and
the Brier grid (those of the full test set); only the test patients are resampled. A
resample on which a metric is undefined (no comparable pair) is left out of its interval.

The draws are numpy's ``default_rng(seed).integers(0, n, (resamples, n))``, taken in chunks
of resamples (the same stream), so a seed gives the same intervals on any machine and in any
chunking; ``scripts/baseline_cox.py``'s paired bootstrap uses the same draws.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from .metrics import BLOCK_ELEMS, ArrayLike, ConcordanceCounts

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
#: scikit-survival's tolerance for tied risks in Uno's C (as :func:`.timedep.uno_cindex`).
UNO_TIED_TOL = 1e-8


#: Fewest resamples per chunk (fewer leave the per-level passes mostly overhead; more spill the caches at 10^5 rows).
MIN_CHUNK = 4
#: Most counts per chunk (32 MiB of float64 per (rows x resamples) block).
MAX_CHUNK_ELEMS = 1 << 22


def default_chunk(n: int) -> int:
    """Resamples per chunk for n rows: a block of about :data:`.metrics.BLOCK_ELEMS` counts (cache-sized),
    at least :data:`MIN_CHUNK` resamples, at most :data:`MAX_CHUNK_ELEMS` counts."""
    return max(1, min(max(MIN_CHUNK, BLOCK_ELEMS // n), MAX_CHUNK_ELEMS // n))


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED, chunk: int | None = None
                    ) -> Iterator[Tensor]:
    """(b, n) float64 counts of each row in each resample, ``chunk`` resamples at a time (default:
    :func:`default_chunk`)."""
    if n < 1 or resamples < 1:
        raise ValueError(f"bootstrap: needs at least one row and one resample, got {n} rows, {resamples} resamples")
    rng = np.random.default_rng(seed)
    chunk = chunk or default_chunk(n)
    for a in range(0, resamples, chunk):
        b = min(chunk, resamples - a)
        draws = rng.integers(0, n, (b, n))
        counts = np.bincount((draws + n * np.arange(b)[:, None]).ravel(), minlength=b * n)
        yield torch.from_numpy(counts.reshape(b, n).astype(np.float64))


def percentile_interval(values: ArrayLike, level: float = LEVEL) -> list[float] | None:
    """[lower, upper] percentiles of the finite values (linear interpolation, as ``numpy.percentile``);
    None when no resample gave a finite value."""
    v = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(v, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def bootstrap_metrics(risk: ArrayLike, durations: ArrayLike, events: ArrayLike, *,
                      uno_weights: ArrayLike | None = None, ibs_terms: ArrayLike | None = None,
                      resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Tensor]:
    """Per resample: ``cindex`` (Harrell's), and ``uno_cindex`` / ``ibs`` when given Uno's event-row
    weights (:func:`.timedep.uno_weights`) / each row's IBS terms (:func:`.timedep.brier_contributions`).
    NaN where a resample leaves a C-index undefined."""
    pairs = ConcordanceCounts(risk, durations, events, tied_tols=(0.0, UNO_TIED_TOL) if uno_weights is not None
                              else (0.0,), caller="bootstrap")
    n, dev = pairs.n, pairs.device
    uno = None if uno_weights is None else torch.as_tensor(uno_weights, dtype=torch.float64, device=dev).reshape(-1)
    terms = None if ibs_terms is None else torch.as_tensor(ibs_terms, dtype=torch.float64, device=dev).reshape(-1)
    out: dict[str, list[Tensor]] = {"cindex": [], **({"uno_cindex": []} if uno is not None else {}),
                                    **({"ibs": []} if terms is not None else {})}
    for counts in resample_counts(n, resamples, seed):
        c = counts.to(dev)
        sums = pairs.sums(c, [None] + ([c * uno] if uno is not None else []))
        for key, (num, den) in zip(("cindex", "uno_cindex"), sums):
            out[key].append(torch.where(den > 0, num / den.clamp(min=1e-300), torch.nan))
        if terms is not None:
            out["ibs"].append(c @ terms / n)
    return {k: torch.cat(v) for k, v in out.items()}


def _point_values(risk: Tensor, durations: Tensor, events: Tensor, uno: Tensor | None, terms: Tensor | None
                  ) -> dict[str, float]:
    """The metrics of :func:`bootstrap_metrics` on the rows themselves (no resampling)."""
    pairs = ConcordanceCounts(risk, durations, events, tied_tols=(0.0, UNO_TIED_TOL) if uno is not None else (0.0,),
                              caller="bootstrap")
    sums = pairs.sums(None, [None] + ([uno] if uno is not None else []))
    out = {key: float(num / den) if float(den) > 0 else float("nan") for key, (num, den) in
           zip(("cindex", "uno_cindex"), sums)}
    if terms is not None:
        out["ibs"] = float(terms.mean())
    return out


def subset_rows(n: int, max_rows: int, seed: int = SEED) -> np.ndarray:
    """The ``max_rows`` of ``n`` rows (sorted, drawn without replacement, seeded by (seed, n)) that
    :func:`bootstrap_intervals` resamples above ``max_rows``; all rows at or below it."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, n]).choice(n, max_rows, replace=False))


def bootstrap_intervals(risk: ArrayLike, durations: ArrayLike, events: ArrayLike, *,
                        uno_weights: ArrayLike | None = None, ibs_terms: ArrayLike | None = None,
                        resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL,
                        max_rows: int | None = None) -> dict[str, list[float] | None]:
    """Percentile intervals of :func:`bootstrap_metrics`: ``{"cindex": [lo, hi], ...}``.

    ``max_rows``: above this many rows, the cost (O(resamples n log n)) is bounded by bootstrapping a
    random subset of ``max_rows`` rows (drawn without replacement, seeded) and scaling its percentile
    deviations by sqrt(max_rows / n) around the full rows' values: the m-out-of-n bootstrap of a
    statistic whose spread shrinks as 1/sqrt(n), as the C-indices and the IBS do. Exact below."""
    vectors = [torch.as_tensor(v).detach().reshape(-1) if v is not None else None
               for v in (risk, durations, events, uno_weights, ibs_terms)]
    n = vectors[0].numel()
    if max_rows is None or n <= max_rows:
        values = bootstrap_metrics(*vectors[:3], uno_weights=vectors[3], ibs_terms=vectors[4], resamples=resamples,
                                   seed=seed)
        return {k: percentile_interval(v, level) for k, v in values.items()}
    rows = torch.from_numpy(subset_rows(n, max_rows, seed))
    part = [v[rows.to(v.device)] if v is not None else None for v in vectors]
    values = bootstrap_metrics(*part[:3], uno_weights=part[3], ibs_terms=part[4], resamples=resamples, seed=seed)
    full, sub = _point_values(*vectors), _point_values(*part)
    scale = math.sqrt(max_rows / n)
    out: dict[str, list[float] | None] = {}
    for key, v in values.items():
        interval = percentile_interval(v, level)
        out[key] = None if interval is None or not math.isfinite(full[key]) else \
            [full[key] + scale * (bound - sub[key]) for bound in interval]
    return out
