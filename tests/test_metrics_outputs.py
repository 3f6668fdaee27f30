"""The bootstrap intervals in the app's outputs: the final line and metrics.csv's flat row."""
from __future__ import annotations

from survopt_hydra.app.outputs import flat_metrics, summary_line

METRICS = {"test_cindex": 0.61832, "val_cindex": 0.62512, "best_epoch": 20, "test_cindex_ci": [0.60079, 0.63412],
           "test_uno_cindex_ci": None, "horizons": [10.0, 20.0], "test_td_auc": [0.7, 0.8]}


def test_the_final_line_carries_the_interval_and_reads_older_metrics_without_one():
    assert summary_line(METRICS) == "test C-index: 0.6183 (95% CI 0.601-0.634) (best epoch 20, val C-index 0.6251)"
    older = {k: v for k, v in METRICS.items() if k != "test_cindex_ci"}  # a run finished before intervals existed
    assert summary_line(older) == "test C-index: 0.6183 (best epoch 20, val C-index 0.6251)"


def test_intervals_flatten_to_lo_and_hi_even_when_they_match_the_horizons_in_length():
    row = flat_metrics(METRICS)
    assert (row["test_cindex_ci_lo"], row["test_cindex_ci_hi"]) == (0.60079, 0.63412)
    assert row["test_uno_cindex_ci_lo"] is None and row["test_uno_cindex_ci_hi"] is None
    assert row["test_td_auc@10"] == 0.7 and "test_cindex_ci@10" not in row
