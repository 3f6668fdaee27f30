"""Metrics for curve predictions: Antolini's time-dependent C, and cause-specific C and Brier for competing risks.

Every function takes predictions on a time grid, ``pred[i, k]`` = S(times[k] | x_i) or
CIF(times[k] | x_i); a row's value at its own time T is read as a right-continuous step
(the last grid time <= T; before the first, S = 1 and CIF = 0). Passing the test
durations themselves as ``times`` makes the lookup exact.

* :func:`antolini_cindex` - Antolini, Boracchi & Biganzoli, "A time-dependent discrimination
  index for survival data", Stat. Med. 24 (2005) 3927-3944: over pairs (i, j) with i an
  event and j known to outlive T_i (T_j > T_i, or T_j = T_i and j censored: the comparable
  pairs of :func:`~survopt_hydra.survival.metrics.concordance_index`), the share with
  S(T_i | x_i) < S(T_i | x_j). Ties in S count 1/2 (Antolini counts them 0; pycox's
  ``concordance_td(method="antolini")`` too), so that for curves that never cross (e.g. a
  proportional-hazards model) it equals Harrell's C of the risk score exactly.
* :func:`cause_specific_cindex` - the time-dependent form of the Harrell-type competing-risks
  concordance of Wolbers, Koller, Witteman & Steyerberg, "Prognostic models with competing
  risks", Epidemiology 20 (2009) 555-561 (no IPCW; Wolbers, Blanche, Koller, Witteman &
  Gerds, Biostatistics 15 (2014) 526-539, Sec. 2): for cause k, i had cause k at T_i and j
  is known to be free of cause k at T_i - still followed (T_j > T_i, or censored at T_i) or
  had a *competing* event at any time (it can never have cause k, so it stays comparable
  rather than being treated as censored); concordant when CIF_k(T_i | x_i) > CIF_k(T_i | x_j).
  With one cause and CIF = 1 - S it is :func:`antolini_cindex`.
* :func:`cause_specific_brier` - the IPCW Brier score of the CIF (Graf et al. 1999 extended
  to competing risks; Schoop, Beyersmann, Schumacher & Binder, Biom. J. 53 (2011) 88-112,
  eq. 4): BS_k(t) = mean_i W_i(t) (1{T_i <= t, D_i = k} - F_k(t | x_i))^2 with
  W_i = 1{T_i <= t, D_i != 0} / G(T_i) + 1{T_i > t} / G(t); a competing event before t is a
  known 0, a censoring before t has weight 0. G is the Kaplan-Meier curve of the censoring
  times of the training rows, read as in :func:`~survopt_hydra.survival.timedep.brier_scores`
  (scikit-survival's convention), which it equals for one cause.

:func:`own_time_concordance` computes the first two from a curve function asked only at the
event rows' own times, a block of rows at a time (memory n x block, not n x distinct times), and
:func:`own_time_pairs` gives its pairs as matrices for a bootstrap over patients.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..timedep import kaplan_meier, step_at
from .base import ArrayLike

_BLOCK_ELEMS = 4_000_000


def _f64(value: ArrayLike | list[float]) -> Tensor:
    if isinstance(value, np.ndarray):
        value = np.ascontiguousarray(value)  # a reversed view has negative strides, which torch refuses
    return torch.as_tensor(value).detach().cpu().to(torch.float64)


def _at_own_time(pred: Tensor, times: Tensor, durations: Tensor, before: float) -> tuple[Tensor, Tensor]:
    """(grid column of each duration (-1 = before the grid), pred with a leading ``before`` column)."""
    if times.dim() != 1 or bool((times[1:] <= times[:-1]).any()):
        raise ValueError("metrics: times must be increasing")
    col = torch.searchsorted(times, durations.contiguous(), right=True) - 1
    padded = torch.cat([torch.full_like(pred[:, :1], before), pred], 1)
    return col + 1, padded


def _concordance(score: Tensor, times: Tensor, durations: Tensor, events: Tensor, cause: int, before: float,
                 who: str) -> float:
    """Share of usable pairs with score_i(T_i) > score_j(T_i), ties 1/2 (higher score = worse;
    ``before``: the score before the first grid time)."""
    n = durations.numel()
    if score.dim() != 2 or score.shape != (n, times.numel()) or events.numel() != n:
        raise ValueError(f"{who}: predictions must have shape (n rows, len(times)) = ({n}, {times.numel()}), "
                         f"got {tuple(score.shape)}")
    if bool(torch.isnan(score).any()):
        raise ValueError(f"{who}: predictions contain NaN")
    col, padded = _at_own_time(score, times, durations, before)
    rows = torch.nonzero(events == cause).squeeze(1)
    good = usable = torch.zeros((), dtype=torch.float64)
    step = max(1, _BLOCK_ELEMS // max(n, 1))
    for a in range(0, rows.numel(), step):
        i = rows[a : a + step]
        ti = durations[i, None]
        ok = (durations[None, :] > ti) | ((durations[None, :] == ti) & (events[None, :] == 0))
        ok = ok | ((events[None, :] != 0) & (events[None, :] != cause))
        ok[torch.arange(i.numel()), i] = False
        own = padded[i, col[i]][:, None]
        other = padded[:, col[i]].T  # (len(i), n): row j's score at T_i
        good = good + ((other < own) & ok).sum() + 0.5 * ((other == own) & ok).sum()
        usable = usable + ok.sum()
    if float(usable) == 0:
        raise ValueError(f"{who}: no usable pair (needs an event of the cause before another row's exit)")
    return float(good / usable)


def antolini_cindex(surv: ArrayLike, times: ArrayLike, durations: ArrayLike, events: ArrayLike) -> float:
    """Antolini's time-dependent C of survival curves ``surv`` (n, len(times)); events 0/1."""
    e = _f64(events).reshape(-1)
    # -S, not 1 - S: negation is exact, so distinct small survival values never become ties
    return _concordance(-_f64(surv), _f64(times).reshape(-1), _f64(durations).reshape(-1),
                        (e > 0).to(torch.float64), 1, -1.0, "antolini_cindex")


def cause_specific_cindex(cif: ArrayLike, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                          cause: int) -> float:
    """Time-dependent competing-risks C for ``cause`` from its CIF (n, len(times)); events are codes 0..K."""
    return _concordance(_f64(cif), _f64(times).reshape(-1), _f64(durations).reshape(-1),
                        _f64(events).reshape(-1), cause, 0.0, "cause_specific_cindex")


def cause_specific_brier(cif: ArrayLike, times: ArrayLike, durations: ArrayLike, events: ArrayLike, cause: int,
                         train_durations: ArrayLike, train_events: ArrayLike) -> Tensor:
    """IPCW Brier score of the ``cause`` CIF (n, len(times)) at each of ``times``."""
    f, tk = _f64(cif), _f64(times).reshape(-1)
    y, d = _f64(durations).reshape(-1), _f64(events).reshape(-1)
    if f.shape != (y.numel(), tk.numel()):
        raise ValueError(f"cause_specific_brier: cif must have shape ({y.numel()}, {tk.numel()}), got {tuple(f.shape)}")
    gt, gv = kaplan_meier(_f64(train_durations).reshape(-1), _f64(train_events).reshape(-1) > 0, reverse=True)
    g_y, g_t = step_at(gt, gv, y), step_at(gt, gv, tk)
    inv_y = torch.where(g_y > 0, 1.0 / g_y.clamp(min=1e-300), torch.zeros_like(g_y))
    inv_t = torch.where(g_t > 0, 1.0 / g_t.clamp(min=1e-300), torch.zeros_like(g_t))
    exited = (y[:, None] <= tk[None, :]) & (d[:, None] != 0)
    observed = (exited & (d[:, None] == cause)).to(torch.float64)
    weight = exited * inv_y[:, None] + (y[:, None] > tk[None, :]) * inv_t[None, :]
    return (weight * (observed - f) ** 2).mean(0)


def integrated_cause_specific_brier(cif: ArrayLike, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                                    cause: int, train_durations: ArrayLike, train_events: ArrayLike) -> float:
    """Trapezoid integral of :func:`cause_specific_brier` over ``times`` (>= 2, increasing) divided by its span."""
    tk = _f64(times).reshape(-1)
    if tk.numel() < 2 or bool((tk[1:] <= tk[:-1]).any()):
        raise ValueError("integrated_cause_specific_brier: times must be at least two increasing values")
    bs = cause_specific_brier(cif, tk, durations, events, cause, train_durations, train_events)
    return float(torch.trapezoid(bs, tk) / (tk[-1] - tk[0]))


def _own_time_blocks(curve: Callable[[Tensor], Tensor], durations: ArrayLike, events: ArrayLike, cause: int | None,
                     higher_is_worse: bool, block_elems: int = _BLOCK_ELEMS
                     ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Per block of event rows i (by time): (i, concordance weight (m, n) in {0, 1/2, 1}, usable (m, n)).

    ``curve(times)`` gives every row's curve at ``times`` (n, len(times)); it is asked only at the
    event rows' own times, a block at a time, so memory stays n x (rows per block) whatever n."""
    t, e = _f64(durations).reshape(-1), _f64(events).reshape(-1)
    n = t.numel()
    case = (e > 0) if cause is None else (e == cause)
    competing = torch.zeros_like(case) if cause is None else (e != 0) & ~case
    rows = torch.nonzero(case).squeeze(1)
    rows = rows[torch.argsort(t[rows], stable=True)]
    step = max(1, block_elems // max(n, 1))
    for a in range(0, rows.numel(), step):
        i = rows[a : a + step]
        ti = t[i]
        at, col = torch.unique(ti, sorted=True, return_inverse=True)
        score = _f64(curve(at))
        if score.shape != (n, at.numel()):
            raise ValueError(f"concordance: the curve gave shape {tuple(score.shape)} for {n} rows at {at.numel()} times")
        if bool(torch.isnan(score).any()):
            raise ValueError("concordance: the curves contain NaN")
        score = score if higher_is_worse else -score
        own = score[i, col][:, None]
        other = score[:, col].T
        ok = (t[None, :] > ti[:, None]) | ((t[None, :] == ti[:, None]) & (e[None, :] == 0)) | competing[None, :]
        ok[torch.arange(i.numel()), i] = False
        weight = ((other < own) & ok).to(torch.float64) + 0.5 * ((other == own) & ok).to(torch.float64)
        yield i, weight, ok


def own_time_concordance(curve: Callable[[Tensor], Tensor], durations: ArrayLike, events: ArrayLike,
                         cause: int | None = None, higher_is_worse: bool = False) -> float:
    """Antolini's C (``cause`` None, ``curve`` = S) or the cause-specific C (``curve`` = CIF of ``cause``,
    ``higher_is_worse``), each event read at its own time: :func:`antolini_cindex` and
    :func:`cause_specific_cindex` on the exact durations, without their (n, times) matrix."""
    good = usable = 0.0
    for _, weight, ok in _own_time_blocks(curve, durations, events, cause, higher_is_worse):
        good += float(weight.sum())
        usable += float(ok.sum())
    if usable == 0:
        raise ValueError("concordance: no usable pair (needs an event before another row's exit)")
    return good / usable


def own_time_pairs(curve: Callable[[Tensor], Tensor], durations: ArrayLike, events: ArrayLike,
                   cause: int | None = None, higher_is_worse: bool = False) -> tuple[Tensor, Tensor]:
    """The pairs behind :func:`own_time_concordance` as dense (n, n) matrices (concordance weight, usable),
    row i the event: on a bootstrap resample drawing row k c_k times the C is c K c / c U c."""
    n = _f64(durations).numel()
    weights = torch.zeros((n, n), dtype=torch.float64)
    usable = torch.zeros((n, n), dtype=torch.float64)
    for i, weight, ok in _own_time_blocks(curve, durations, events, cause, higher_is_worse):
        weights[i], usable[i] = weight, ok.to(torch.float64)
    return weights, usable


#: Rows whose pair matrices a bootstrap holds exactly (2 x n^2 float64: 64 MB at 2,000); above, a seeded subset
#: of this many rows is bootstrapped and its spread scaled, as :func:`..bootstrap.bootstrap_intervals` does.
PAIR_BOOTSTRAP_ROWS = 2000
Scored = tuple[Callable[[Tensor], Tensor], "int | None", bool]  # (curve, cause, higher_is_worse)


def bootstrap_concordance(scored: list[Scored], durations: ArrayLike, events: ArrayLike, *, resamples: int = 1000,
                          seed: int = 0, level: float = 0.95, max_rows: int = PAIR_BOOTSTRAP_ROWS
                          ) -> list[float] | None:
    """Percentile interval of the mean over ``scored`` of :func:`own_time_concordance` (one entry: Antolini's C;
    one per cause: the mean cause-specific C) over patient resamples.

    The draws are :func:`..bootstrap.resample_counts`' (the same as the app's other test intervals); a
    resample's C is c K c / c U c per entry (:func:`own_time_pairs`). Above ``max_rows`` rows a seeded subset
    is resampled and its percentile deviations scaled by sqrt(max_rows / n) around the full rows' value."""
    from ..bootstrap import percentile_interval, resample_counts

    t, e = _f64(durations).reshape(-1), _f64(events).reshape(-1)
    n = t.numel()
    rows = None
    if n > max_rows:
        rows = torch.from_numpy(np.sort(np.random.default_rng([seed, n]).choice(n, max_rows, replace=False)))
    def part(curve: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        return curve if rows is None else (lambda at: _f64(curve(at))[rows])

    tt, ee = (t, e) if rows is None else (t[rows], e[rows])
    mats = []
    for curve, cause, worse in scored:
        try:
            mats.append(own_time_pairs(part(curve), tt, ee, cause, worse))
        except ValueError:
            return None
    values = []
    for counts in resample_counts(tt.numel(), resamples, seed):
        per = []
        for weights, usable in mats:
            num, den = ((counts @ weights) * counts).sum(1), ((counts @ usable) * counts).sum(1)
            per.append(torch.where(den > 0, num / den.clamp(min=1e-300), torch.nan))
        values.append(torch.stack(per).mean(0))
    interval = percentile_interval(torch.cat(values), level)
    if interval is None or rows is None:
        return interval
    def point(entries: list[Scored], d: Tensor, ev: Tensor) -> float:
        return float(np.mean([own_time_concordance(c, d, ev, k, w) for c, k, w in entries]))

    full = point(scored, t, e)
    sub = point([(part(c), k, w) for c, k, w in scored], tt, ee)
    scale = math.sqrt(max_rows / n)
    return [full + scale * (bound - sub) for bound in interval]
