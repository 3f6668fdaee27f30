"""Harrell's concordance index for risk scores.

Matches ``lifelines.utils.concordance_index(durations, -risk, events)``
exactly, including its tie conventions:

* a pair (i, j) is comparable when i had an event and either t_i < t_j, or
  t_i == t_j and j was censored (a censored subject was still at risk at the
  time of i's event); two events at the same time are not comparable;
* a comparable pair is concordant when risk_i > risk_j and counts 0.5 when
  the risks are equal.

With no comparable pairs (e.g. no events) lifelines raises ZeroDivisionError;
we raise ValueError instead, because "undefined" should be handled by the
caller (e.g. skip early stopping) and not silently reported as 0.5.

Cost: rows are sorted by time (events before censored at equal times), so
each event's comparable set is a suffix of that order. Events are handled in
chunks of ``chunk_rows``: the suffix shared by a whole chunk is sorted once and
counted with ``searchsorted``; only the few columns where the chunk's suffixes
differ are compared pairwise, in blocks of at most ~4M elements. So memory
stays bounded and n ~ 50k takes well under a second on a CPU. Tensors on a
CUDA device are evaluated there.

Chunk size: the pairwise part grows with the chunk (chunk x the span of its
suffixes), the sorted part with the number of chunks. On a CPU 128 rows is the
sweet spot (a 1,064-patient validation set: 5 ms instead of 30 ms with 1024, the
app scores one per epoch); on CUDA each chunk also costs host syncs, so 1024.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray
_BLOCK_ELEMS = 4_000_000


def _as_1d(name: str, value: ArrayLike | list[float], device: torch.device) -> Tensor:
    t = torch.as_tensor(value).detach().to(device, torch.float64)
    if t.dim() == 2 and 1 in t.shape:
        t = t.reshape(-1)
    if t.dim() != 1:
        raise ValueError(f"concordance_index: {name} must be 1-dimensional, got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        raise ValueError(f"concordance_index: {name} contains NaN")
    return t


def concordance_index(risk: ArrayLike, durations: ArrayLike, events: ArrayLike,
                      chunk_rows: int | None = None) -> float:
    """Fraction of comparable pairs ordered correctly (higher risk = earlier event); ties in risk count 0.5.

    ``chunk_rows``: events per chunk (default 128 on a CPU, 1024 on CUDA; any value gives the same result)."""
    on_cuda = isinstance(risk, Tensor) and risk.device.type == "cuda"
    chunk_rows = chunk_rows or (1024 if on_cuda else 128)
    device = risk.device if on_cuda else torch.device("cpu")
    risk_t, time_t = _as_1d("risk", risk, device), _as_1d("durations", durations, device)
    event_t = _as_1d("events", events, device) > 0
    n = risk_t.shape[0]
    if time_t.shape[0] != n or event_t.shape[0] != n:
        raise ValueError(
            f"concordance_index: risk, durations and events must have the same length, "
            f"got {n}, {time_t.shape[0]}, {event_t.shape[0]}"
        )
    by_event = torch.argsort((~event_t).to(torch.int8), stable=True)
    order = by_event[torch.argsort(time_t[by_event], stable=True)]
    time_s, risk_s = time_t[order], risk_t[order]
    event_pos = torch.nonzero(event_t[order]).squeeze(1)
    event_time = time_s[event_pos]
    # Each event's comparable set starts right after the last event tied with it.
    start = event_pos[torch.searchsorted(event_time, event_time, right=True) - 1] + 1
    pairs = int((n - start).sum())
    if pairs == 0:
        raise ValueError("concordance_index: no comparable pairs (needs an event before another exit)")
    sign_sum = 0  # (# risk_i > risk_j) - (# risk_i < risk_j) over comparable pairs
    for a in range(0, event_pos.shape[0], max(1, chunk_rows)):
        r, s = risk_s[event_pos[a : a + chunk_rows]], start[a : a + chunk_rows]
        lo, hi = int(s[0]), int(s[-1])
        tail = torch.sort(risk_s[hi:]).values
        less = torch.searchsorted(tail, r, right=False)
        greater = tail.shape[0] - torch.searchsorted(tail, r, right=True)
        sign_sum += int((less - greater).sum())
        cols, col_pos = risk_s[lo:hi], torch.arange(lo, hi, device=device)
        step = max(1, _BLOCK_ELEMS // max(hi - lo, 1))
        for b in range(0, r.shape[0] if hi > lo else 0, step):
            mask = col_pos[None, :] >= s[b : b + step, None]
            sign_sum += int((torch.sign(r[b : b + step, None] - cols[None, :]) * mask).sum())
    return (pairs + sign_sum) / (2 * pairs)


def comparable_pairs(durations: ArrayLike, events: ArrayLike) -> int:
    """Number of pairs Harrell's C compares (same convention as :func:`concordance_index`).

    Zero means the C-index of these rows is undefined whatever the model: the data layer
    refuses such a split at load time instead of finding out after training."""
    t = np.asarray(torch.as_tensor(durations).detach().cpu(), dtype=np.float64).reshape(-1)
    e = np.asarray(torch.as_tensor(events).detach().cpu()).reshape(-1) > 0
    ts, tc = np.sort(t), np.sort(t[~e])
    ti = t[e]
    later = len(t) - np.searchsorted(ts, ti, side="right")
    censored_tied = np.searchsorted(tc, ti, side="right") - np.searchsorted(tc, ti, side="left")
    return int(later.sum() + censored_tied.sum())
