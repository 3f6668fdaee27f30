"""Harrell's concordance index for risk scores, exact in O(n log n) time and O(n) memory.

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

How (:class:`ConcordanceCounts`): rows are sorted by time (events before censored at
equal times), so each event's comparable set is a suffix ``[s_i, n)`` of that order, and
what is needed per event is "how many rows of the suffix have a lower / a tied risk",
i.e. how many rows of a range hold a rank below a threshold. A wavelet matrix of the ranks
(one stable split of the rows per bit of the rank, log2(n) levels of O(n) prefix counts)
answers that for every event at once, level by level, with two gathers per event and level.
Sorting uses integer keys (torch's radix sort). No pair is ever materialised, no Python loop
runs over rows, memory is O(n), and the counts are integers held exactly in int64.

The same counts serve Uno's C (:func:`.timedep.uno_cindex`: a weight per event row, and
scikit-survival's ``tied_tol``) and the bootstrap (:mod:`.bootstrap`: a count per row and
resample, so B resamples cost B prefix sums per level, not B passes over pairs). Tensors
on a CUDA device are evaluated there; everything else runs on the CPU.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray
#: Elements of one block of weighted work (resamples x rows, or rows x times): 1 MiB of float64, which
#: stays in a core's L2 cache (a 1,775 x 1,000 bootstrap: 0.14 s in blocks of 2^17, 0.37 s in one block).
BLOCK_ELEMS = 1 << 17
#: Rows x levels up to which a weighted pass keeps its level structure for the next pass (~24 MB at 10^5 rows).
_CACHE_ELEMS = 1 << 22


def _as_1d(name: str, value: ArrayLike | list[float], device: torch.device, caller: str = "concordance_index"
           ) -> Tensor:
    if isinstance(value, np.ndarray) and not value.flags.c_contiguous:  # a field of scikit-survival's structured y
        value = np.ascontiguousarray(value)
    t = torch.as_tensor(value).detach().to(device, torch.float64)
    if t.dim() == 2 and 1 in t.shape:
        t = t.reshape(-1)
    if t.dim() != 1:
        raise ValueError(f"{caller}: {name} must be 1-dimensional, got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        raise ValueError(f"{caller}: {name} contains NaN")
    return t


def device_of(risk: ArrayLike | list[float]) -> torch.device:
    """Where the metrics of these scores are computed: their CUDA device, else the CPU."""
    return risk.device if isinstance(risk, Tensor) and risk.device.type == "cuda" else torch.device("cpu")


def order_key(x: Tensor) -> Tensor:
    """int64 keys ordered as the float64 values ``x`` (no NaN; -0.0 equals 0.0): integer keys take
    torch's radix sort, several times faster on a CPU than its float sort."""
    bits = (x + 0.0).view(torch.int64)  # + 0.0 turns -0.0 into 0.0
    return bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFF)  # negative floats: flip all but the sign bit


def _run_bounds(sorted_keys: Tensor) -> tuple[Tensor, Tensor]:
    """For each element of a sorted sequence: (first index, last index + 1) of its run of equal elements."""
    _, counts = torch.unique_consecutive(sorted_keys, return_counts=True)
    stop = torch.cumsum(counts, 0)
    return torch.repeat_interleave(stop - counts, counts), torch.repeat_interleave(stop, counts)


def _thresholds(sorted_risk: Tensor, risk: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """(#rows strictly lower than ``risk``, #rows lower or tied) with ties meaning ``|r_j - r_i| <= tol``.

    The first guess (searching ``r - tol`` / ``r + tol``) is corrected against the exact
    floating-point test scikit-survival applies (``abs(est - est_i) <= tied_tol``), so a risk
    difference that rounds to exactly ``tol`` is classified as there; a few vectorized steps."""
    v, n = sorted_risk, sorted_risk.numel()

    def lower(x: Tensor) -> Tensor:  # concordant side: x < r and not tied
        return (x < risk) & ((x - risk).abs() > tol)

    def not_higher(x: Tensor) -> Tensor:  # concordant or tied
        return (x <= risk) | ((x - risk).abs() <= tol)

    out = []
    for q, keep in ((torch.searchsorted(v, risk - tol), lower),
                    (torch.searchsorted(v, risk + tol, right=True), not_higher)):
        for _ in range(64):  # each step moves past one run of equal values; one or two are ever needed
            nxt, prv = v[q.clamp(max=n - 1)], v[(q - 1).clamp(min=0)]
            grow, shrink = (q < n) & keep(nxt), (q > 0) & ~keep(prv)
            if not bool((grow | shrink).any()):
                break
            q = torch.where(grow, torch.searchsorted(v, nxt, right=True),
                            torch.where(shrink, torch.searchsorted(v, prv), q))
        out.append(q)
    return out[0], out[1]


class ConcordanceCounts:
    """The comparable pairs of one set of rows, indexed so that (weighted) concordance sums cost O(n log n).

    ``tied_tols``: one pair of thresholds per tolerance (0: exact ties, as lifelines; 1e-8: as
    scikit-survival's ``tied_tol``); :meth:`counts` and :meth:`sums` answer per tolerance."""

    def __init__(self, risk: ArrayLike | list[float], durations: ArrayLike, events: ArrayLike,
                 tied_tols: Sequence[float] = (0.0,), caller: str = "concordance_index") -> None:
        device = device_of(risk)
        risk_t, time_t = _as_1d("risk", risk, device, caller), _as_1d("durations", durations, device, caller)
        event_t = _as_1d("events", events, device, caller) > 0
        n = risk_t.shape[0]
        if time_t.shape[0] != n or event_t.shape[0] != n:
            raise ValueError(f"{caller}: risk, durations and events must have the same length, "
                             f"got {n}, {time_t.shape[0]}, {event_t.shape[0]}")
        self.n, self.device, self.tols = n, device, len(tied_tols)
        # Time order, events before censored rows at equal times: each event's comparable set is a suffix.
        events_first = torch.cat([torch.nonzero(event_t).squeeze(1), torch.nonzero(~event_t).squeeze(1)])
        time_key, perm = torch.sort(order_key(time_t.index_select(0, events_first)), stable=True)
        self.order = events_first.index_select(0, perm)  # (index_select: several times faster than x[idx])
        risk_s = risk_t.index_select(0, self.order)
        self.event_pos = torch.nonzero(perm < int(event_t.sum())).squeeze(1)  # events were listed first
        if self.event_pos.numel():  # each event's comparable set starts right after the last event tied with it
            event_key = time_key.index_select(0, self.event_pos)
            self.start = self.event_pos.index_select(0, _run_bounds(event_key)[1] - 1) + 1
        else:
            self.start = self.event_pos
        risk_key = order_key(risk_s)
        sorted_key, by_risk = torch.sort(risk_key)
        self.rank = torch.empty_like(by_risk)
        self.rank.scatter_(0, by_risk, torch.arange(n, device=device))
        own = self.rank.index_select(0, self.event_pos)
        thresholds: list[Tensor] = []
        for tol in map(float, tied_tols):
            if tol == 0:  # the event's own run of equal risks in rank order
                first, stop = _run_bounds(sorted_key)
                thresholds += [first.index_select(0, own), stop.index_select(0, own)]
            else:
                v = risk_s.index_select(0, by_risk)  # every row's thresholds, in rank order: sorted queries
                thresholds += [q.index_select(0, own) for q in _thresholds(v, v, tol)]
        # Threshold rank_i or rank_i + 1 counts what rank_i counts (the only row between is i itself, which is
        # not in its own comparable set): one query per event, plus one per threshold that differs.
        self._extra = [torch.nonzero((q != own) & (q != own + 1)).squeeze(1) for q in thresholds]
        self._weighted: list[tuple[Tensor, Tensor, Tensor, Tensor]] | None = None
        self._queries = torch.cat([own] + [q[x] for q, x in zip(thresholds, self._extra)])
        self._query_start = torch.cat([self.start] + [self.start[x] for x in self._extra])

    @property
    def pairs(self) -> int:
        """Number of comparable pairs (unweighted)."""
        return int((self.n - self.start).sum())

    def _levels(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """The wavelet matrix of the ranks (in time order), walked by every query at once.

        A query (s_i, q) asks how many rows of ``[s_i, n)`` have rank < q. Level l (top bit first)
        splits the current order stably into rows whose rank has bit l clear (first) / set; a
        query whose q has bit l set counts the clear rows of its range and follows the set ones,
        else it follows the clear ones. Yields per level: each row's position at the next level,
        the clear rows before each query's range start and end, and whether the query counts
        here (0/1). O(n + queries) work and memory per level; int32 where it fits (half the
        memory traffic of int64)."""
        n, dev = self.n, self.device
        small = torch.int32 if n < 2**31 - 1 else torch.int64
        q = self._queries.to(small)
        lo = self._query_start.to(small)
        hi = torch.full_like(lo, n)
        value = self.rank.to(small)
        ramp = torch.arange(n, device=dev, dtype=small)
        zeros = torch.zeros(n + 1, dtype=small, device=dev)
        for level in reversed(range(max(n.bit_length(), 1))):
            clear = ((value >> level) & 1) ^ 1
            torch.cumsum(clear, 0, dtype=small, out=zeros[1:])
            total = int(zeros[-1])
            pos = (zeros[:-1] + (1 - clear) * (total + ramp - 2 * zeros[:-1])).long()  # clear rows first
            takes = (q >> level) & 1
            z_lo, z_hi = zeros.index_select(0, lo), zeros.index_select(0, hi)
            yield pos, z_lo, z_hi, takes
            lo = z_lo + takes * (total + lo - 2 * z_lo)
            hi = z_hi + takes * (total + hi - 2 * z_hi)
            value = torch.empty_like(value).scatter_(0, pos, value)

    def _weighted_levels(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Per level: (next positions, the queries that count there, the clear rows before their range
        start and end) - what a weighted pass needs; kept after the first pass when small (a bootstrap
        makes one pass per chunk of resamples)."""
        if self._weighted is not None:
            return iter(self._weighted)
        levels = ((pos, sel, z_lo.index_select(0, sel).long(), z_hi.index_select(0, sel).long())
                  for pos, z_lo, z_hi, takes in self._levels() for sel in [torch.nonzero(takes).squeeze(1)])
        if self.n * max(self.n.bit_length(), 1) > _CACHE_ELEMS:
            return levels
        self._weighted = list(levels)
        return iter(self._weighted)

    def _per_threshold(self, per_query: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Query results (last dim) -> per tolerance, (strict, lower-or-tied) per event."""
        k = self.event_pos.numel()
        base, rest = per_query[..., :k], per_query[..., k:]
        out, at = [], 0
        for x in self._extra:
            t = base.clone()
            t[..., x] = rest[..., at:at + x.numel()]
            out.append(t)
            at += x.numel()
        return [(out[2 * j], out[2 * j + 1]) for j in range(self.tols)]

    def counts(self) -> list[tuple[Tensor, Tensor]]:
        """Per tolerance, per event (in time order): (#comparable rows with lower risk, #with lower or tied), int64."""
        cnt = torch.zeros(self._queries.numel(), dtype=torch.int64, device=self.device)
        for _, z_lo, z_hi, takes in self._levels():
            cnt += takes * (z_hi - z_lo)
        return self._per_threshold(cnt)

    def sums(self, row_weights: Tensor | None = None,
             event_weights: Sequence[Tensor | None] | None = None) -> list[tuple[Tensor, Tensor]]:
        """Per tolerance: (sum over comparable pairs (i, j) of ew_i * w_j * K_ij, the same with K = 1),
        with K_ij = 1 / 0.5 / 0 for a lower / tied / higher risk of j, as (B,) float64 tensors.

        ``row_weights``: (B, n) weights w_j of the later row (None: 1); ``event_weights``: per
        tolerance, (n,) or (B, n) weights ew_i of the event row (None: 1, or ``row_weights`` when
        given). Rows are in the caller's order. A resample drawing row k c_k times has w = ew = c:
        the sums are those over the resampled rows (a row is never comparable with its own copy).
        Memory: a few (B, n) and (B, events) float64 blocks; callers chunk B (:data:`BLOCK_ELEMS`)."""
        dev, n = self.device, self.n
        event_weights = list(event_weights) if event_weights is not None else [None] * self.tols
        if len(event_weights) != self.tols:
            raise ValueError(f"ConcordanceCounts.sums: {self.tols} event weights expected, got {len(event_weights)}")

        def in_time_order(w: Tensor) -> Tensor:
            t = torch.as_tensor(w, dtype=torch.float64, device=dev)
            if t.dim() > 2 or t.shape[-1] != n:
                raise ValueError(f"ConcordanceCounts.sums: weights must be (n,) or (B, n) with n = {n}, "
                                 f"got {tuple(t.shape)}")
            return (t if t.dim() == 2 else t.reshape(1, n)).index_select(1, self.order)

        if row_weights is None:
            later = (n - self.start).double()
            out = []
            for (lo, le), w in zip(self.counts(), event_weights):
                ew = torch.ones(1, later.numel(), dtype=torch.float64, device=dev) if w is None else \
                    in_time_order(w)[:, self.event_pos]
                out.append((ew @ (0.5 * (lo + le).double()), ew @ later))
            return out
        rw = in_time_order(row_weights)
        b = rw.shape[0]
        # Rows x resamples: every gather and move below takes whole contiguous rows of B values.
        value = rw.T.contiguous()
        by_pos = torch.zeros(n + 1, b, dtype=torch.float64, device=dev)
        torch.cumsum(value, 0, out=by_pos[1:])
        later = (by_pos[-1:] - by_pos[self.start]).T  # weight of each event's comparable suffix
        got = torch.zeros(self._queries.numel(), b, dtype=torch.float64, device=dev)
        cum = torch.zeros(n + 1, b, dtype=torch.float64, device=dev)
        for pos, sel, z_lo, z_hi in self._weighted_levels():
            # The next level lists this level's clear rows first, in order: the clear weight before
            # position p here is the plain prefix sum of the next order up to zeros[p].
            value = torch.empty_like(value).index_copy_(0, pos, value)
            torch.cumsum(value, 0, out=cum[1:])
            got.index_add_(0, sel, cum.index_select(0, z_hi) - cum.index_select(0, z_lo))
        out = []
        for (lo, le), w in zip(self._per_threshold(got.T), event_weights):
            ew = (rw if w is None else in_time_order(w).expand(b, -1))[:, self.event_pos]
            out.append(((ew * 0.5 * (lo + le)).sum(1), (ew * later).sum(1)))
        return out


def concordance_index(risk: ArrayLike, durations: ArrayLike, events: ArrayLike,
                      chunk_rows: int | None = None) -> float:
    """Fraction of comparable pairs ordered correctly (higher risk = earlier event); ties in risk count 0.5.

    ``chunk_rows`` is accepted for compatibility and ignored: the count needs no chunks any more."""
    del chunk_rows
    pairs = ConcordanceCounts(risk, durations, events)
    if pairs.pairs == 0:
        raise ValueError("concordance_index: no comparable pairs (needs an event before another exit)")
    [(lo, le)] = pairs.counts()
    return int((lo + le).sum()) / (2 * pairs.pairs)


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
