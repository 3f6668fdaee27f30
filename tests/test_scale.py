"""Real cohorts at scale (issue 27): lean standardization, sharded evaluation, bounded outputs, timings.

Each fast test checks a piece against an independent reference (numpy's own float64 statistics,
torch's ``DistributedSampler``, the model applied to every row, numpy's ``searchsorted``); the slow
one runs the README's 10^5-scale command path (make_cohort + the app) on a small cohort.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from survopt_hydra.app.data import Split, _finite, _tensors
from survopt_hydra.survival.data import DataError
from survopt_hydra.survival.standardize import Standardizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from make_cohort import cohort_columns, write_cohort  # noqa: E402


def _matrix(n: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, p)) * rng.uniform(0.1, 1e3, p) + rng.uniform(-1e4, 1e4, p)).astype(np.float32)


@pytest.mark.parametrize("n", [1, 7, 4096, 4097, 30_001])
@pytest.mark.parametrize("order", ["C", "F"])
def test_standardizer_fit_is_bitwise_numpys_float64_statistics(n, order):
    """Blocked float64 sums equal numpy's one-pass mean and std of the float64 copy bit for bit, for any
    layout and for a subset of rows given by index (no copy of them made)."""
    x = np.asarray(_matrix(n, 5), order=order)
    rows = np.sort(np.random.default_rng(1).choice(n, max(1, n * 7 // 10), replace=False))
    for part, got in ((x, Standardizer().fit(x)), (x[rows], Standardizer().fit(x, rows=rows))):
        ref = np.ascontiguousarray(part, dtype=np.float64)
        std = ref.std(axis=0)
        assert np.array_equal(got.mean, ref.mean(axis=0).astype(np.float32))
        assert np.array_equal(got.std, np.where(std > 0, std, 1.0).astype(np.float32))


def test_standardizer_transform_in_place_gives_the_same_floats():
    x = _matrix(1000, 6)
    scaler = Standardizer().fit(x)
    expected = ((x - scaler.mean) / scaler.std).astype(np.float32)
    assert np.array_equal(scaler.transform(x), expected)
    inplace = np.asfortranarray(x.copy())
    assert scaler.transform(inplace, out=inplace) is inplace and np.array_equal(inplace, expected)
    with pytest.raises(ValueError, match="float32"):
        scaler.transform(x, out=np.empty(x.shape, dtype=np.float64))


def test_split_rows_are_gathered_row_major():
    x = np.asfortranarray(_matrix(20_000, 4))
    idx = np.sort(np.random.default_rng(2).choice(20_000, 9_000, replace=False))
    split = _tensors(x, np.arange(20_000.0), np.ones(20_000), idx)
    assert split.x.is_contiguous() and torch.equal(split.x, torch.from_numpy(np.ascontiguousarray(x[idx])))
    assert torch.equal(split.durations, torch.from_numpy(idx.astype(np.float32)))


def test_first_non_finite_cell_is_reported_as_argwhere_finds_it():
    x = np.zeros((5, 3), dtype=np.float32, order="F")
    x[3, 0], x[1, 2], x[1, 1] = np.inf, np.nan, np.inf
    row, col = np.argwhere(~np.isfinite(x))[0]
    with pytest.raises(DataError, match=f"column 'b' at row {row + 1} ") as err:
        _finite("f.csv", x, ["a", "b", "c"])
    assert col == 1 and str(err.value).count("\n") == 0


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_eval_indices_are_distributed_samplers(world):
    from torch.utils.data import DistributedSampler

    from survopt_hydra.distributed import eval_indices

    class Ctx:
        def __init__(self, rank: int) -> None:
            self.rank, self.world_size = rank, world

    for n in (0, 1, 2, 5, 11, 100, 1001):
        for rank in range(world):
            ref = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
            assert eval_indices(n, Ctx(rank)).tolist() == ref, (n, rank)


def test_a_shard_scores_every_row_in_order():
    """A split whose x holds rows in another order (a shard covering every row, one process) gives the
    outputs of the model on the rows in their own order, as the unsharded split does."""
    from survopt_hydra.app.components import EVAL_ROWS, split_outputs

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).eval()
    n = EVAL_ROWS + 123
    split = Split(torch.randn(n, 3), torch.rand(n), (torch.rand(n) < 0.5).float())
    rows = torch.randperm(n)
    shard = split.shard(rows)
    assert torch.equal(shard.x, split.x[rows]) and len(shard) == n
    with torch.no_grad():
        expected = model(split.x).float()
    assert torch.allclose(split_outputs(model, shard), expected, rtol=0, atol=1e-6)
    assert torch.equal(split_outputs(model, split), expected)
    local = shard.local()
    assert torch.equal(local.durations, split.durations[rows]) and local.rows is None


def test_timings_count_each_second_once():
    from survopt_hydra.app.timings import Timings

    t = Timings()
    with t.phase("final_metrics"):
        with t.phase("writes"):
            sum(range(200_000))
        sum(range(100_000))
    t.add("setup", 0.25)
    report = t.report()
    assert report["setup"] == 0.25 and report["writes"] > 0 and report["final_metrics"] > 0
    assert list(report)[-1] == "other"


def test_segment_starts_match_numpy_searchsorted():
    from survopt_hydra.survival.compaction import segment_starts as _segment_starts

    h = np.cumsum(np.random.default_rng(3).exponential(1e-3, 50_000))
    for ratio in (1.0001, 1.01, 1.3):
        starts, i = [], 0
        while i < len(h) and len(starts) <= 2000:
            starts.append(i)
            i = max(int(np.searchsorted(h, h[i] * ratio, side="right")), i + 1)
        assert _segment_starts(h.tolist(), ratio, 2000) == starts


@pytest.mark.parametrize("n", [500, 25_000])
def test_test_predictions_stay_bounded(tmp_path, n):
    """Every test row up to PREDICTION_ROWS; above, exactly the rows the bootstrap resamples, in order."""
    from survopt_hydra.app.predictor import PREDICTION_ROWS, write_test_predictions
    from survopt_hydra.survival.bootstrap import subset_rows
    from survopt_hydra.survival.breslow import BreslowBaseline

    g = torch.Generator().manual_seed(0)
    t, e, risk = torch.rand(n, generator=g) * 100, (torch.rand(n, generator=g) < 0.5).float(), torch.randn(n, generator=g)
    base = BreslowBaseline.fit(risk, t, e)
    write_test_predictions(tmp_path, risk, Split(torch.zeros(n, 1), t, e), base, [10.0, 50.0])
    with (tmp_path / "test_predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    keep = subset_rows(n, PREDICTION_ROWS) if n > PREDICTION_ROWS else np.arange(n)
    assert len(rows) == min(n, PREDICTION_ROWS) and list(rows[0]) == ["duration", "event", "risk", "surv@10", "surv@50"]
    assert [float(r["risk"]) for r in rows] == risk.double()[torch.from_numpy(keep)].tolist()
    assert [float(r["duration"]) for r in rows] == t.double()[torch.from_numpy(keep)].tolist()


def test_make_cohort_is_seeded_and_half_censored(tmp_path):
    a, b = cohort_columns(20_000, seed=4), cohort_columns(20_000, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a) and list(a)[:3] == ["time", "event", "x0"] and len(a) == 22
    assert 0.45 < a["event"].mean() < 0.55 and (a["time"] > 0).all()
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(write_cohort(tmp_path / "c.parquet", 100))
    assert table.num_rows == 100 and table.column_names == list(a)
    with pytest.raises(ValueError, match="suffix"):
        write_cohort(tmp_path / "c.txt", 100)


@pytest.mark.slow
def test_a_generated_parquet_cohort_trains_end_to_end(tmp_path):
    """The README's command path: make_cohort.py writes the file, the app trains on it; the run dir gets
    timings.json (every phase) and a test_predictions.csv of at most 10,000 rows above 10,000 test rows."""
    path = tmp_path / "big.parquet"
    subprocess.run([sys.executable, "scripts/make_cohort.py", str(path), "--n", "70000"], cwd=ROOT, check=True,
                   capture_output=True)
    proc = subprocess.run([sys.executable, "scripts/train.py", "data=csv", f"data.path={path}",
                           "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_test"] > 10_000 and metrics["test_predictions_rows"] == 10_000
    assert metrics["test_cindex"] > 0.65  # the generator's signal (x0..x3) is found in one epoch
    with (run / "test_predictions.csv").open() as handle:
        assert sum(1 for _ in handle) == 10_001
    timings = json.loads((run / "timings.json").read_text())
    assert {"startup", "load", "setup", "train", "validate", "final_metrics", "writes", "checkpoints",
            "other"} <= set(timings) and all(v >= 0 for v in timings.values())
    assert timings["train"] <= metrics["train_seconds"]  # train_seconds also counts the validation
