"""Per-feature z-scoring fitted on the training rows only, as the trainer and the predictor apply it."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


class Standardizer:
    """Per-feature z-scoring fitted on training rows only (no leakage from val/test).

    Constant features get std 1 so they map to 0 instead of dividing by zero.
    """

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    #: Rows per block of :meth:`fit`: float64 temporaries of a few MB at any n.
    FIT_BLOCK = 4096

    def fit(self, x: np.ndarray | torch.Tensor, rows: np.ndarray | None = None) -> "Standardizer":
        """Mean and std of ``x``'s rows (``rows``: of those rows only, without copying them out first).

        In float64, a block of :data:`FIT_BLOCK` rows at a time: memory stays a few MB where one
        float64 copy of 10^6 x 20 features took 160 MB and ``std`` another (issue 27). The sums run row
        by row in row order, each block's added onto the running total as its first row, which is
        exactly the order in which ``np.ascontiguousarray(x, float64).mean(0)`` / ``.std(0)`` add: the
        statistics are bit-identical to those, whatever the input's layout (a column-major column would
        be summed pairwise), so no figure depends on how x was built."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        if x.ndim != 2 or (x.shape[0] if rows is None else len(rows)) == 0:
            shape = x.shape if rows is None else (len(rows), *x.shape[1:])
            raise ValueError(f"Standardizer.fit: expected a non-empty (n, p) array, got shape {shape}")
        n = x.shape[0] if rows is None else len(rows)

        def blocks() -> Any:
            for a in range(0, n, self.FIT_BLOCK):
                part = x[a : a + self.FIT_BLOCK] if rows is None else x[rows[a : a + self.FIT_BLOCK]]
                yield np.ascontiguousarray(part, dtype=np.float64)

        def row_sum(parts: Any) -> np.ndarray:
            total = None
            for part in parts:  # the running total goes first: (((total + r0) + r1) + ...), as one pass would
                total = np.add.reduce(part if total is None else np.concatenate([total[None], part]), axis=0)
            return total

        mean = row_sum(blocks()) / n
        var = row_sum(np.multiply(d, d, out=d) for d in (part - mean for part in blocks())) / n
        std = np.sqrt(var)
        self.mean, self.std = mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)
        return self

    def transform(self, x: np.ndarray | torch.Tensor, out: np.ndarray | None = None) -> np.ndarray | torch.Tensor:
        """(x - mean) / std in float32; ``out`` (numpy, float32, x's shape; may be x itself): written in place,
        with no temporary of x's size (the same floats either way)."""
        if self.mean is None or self.std is None:
            raise ValueError("Standardizer.transform: call fit() or load_state_dict() first")
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"Standardizer.transform: expected {self.mean.shape[0]} features, got {x.shape[-1]}")
        if isinstance(x, torch.Tensor):
            mean, std = torch.as_tensor(self.mean, device=x.device), torch.as_tensor(self.std, device=x.device)
            return ((x - mean) / std).to(x.dtype if x.is_floating_point() else torch.float32)
        if out is not None and (out.dtype != np.float32 or out.shape != x.shape):
            raise ValueError("Standardizer.transform: out must be a float32 array of x's shape")
        z = np.subtract(np.asarray(x, dtype=np.float32), self.mean, out=out)
        return np.divide(z, self.std, out=z)

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
