"""benchmarks/bench_survival.py: the rows each peer fits on, and the verdict column of its table."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_survival  # noqa: E402


def test_peers_without_model_selection_fit_on_train_and_validation_rows() -> None:
    import torch

    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.app.data import load_cohort

    cohort = load_cohort(check_app_config(compose_train(["data=gbsg2"]))["data"])
    joined = bench_survival.all_rows(cohort)
    assert len(joined.train) == len(cohort.train) + len(cohort.val)
    assert torch.equal(joined.train.x, torch.cat([cohort.train.x, cohort.val.x]))
    assert torch.equal(joined.train.events, torch.cat([cohort.train.events, cohort.val.events]))
    assert joined.test is cohort.test and joined.val is cohort.val and len(cohort.train) < len(joined.train)


def _row(tuned: float, published: float | None, **peers: float) -> dict:
    row = {"dataset": "x", "n_train": 80, "n_val": 20, "n_test": 50, "deepsurv_published": published,
           "tuned": {"test_cindex_mean": tuned, "single_test_cindex_mean": 0.6, "bagged_test_cindex": 0.61}}
    row.update({m: {"test_cindex_mean": v} for m, v in peers.items()})
    return row


@pytest.mark.parametrize("row,verdict", [
    (_row(0.66, 0.654, default=0.645, default_bag=0.652, rsf=0.645), "yes"),
    (_row(0.65, 0.654, default=0.645, rsf=0.645), "no (best other 0.654)"),
    (_row(0.70, None, default=0.72, gbsa=0.75), "no (best other 0.750)"),
    (_row(0.70, None, default=0.70), "no (best other 0.700)"),  # a tie is not a win
])
def test_the_verdict_is_the_preset_against_every_other_figure(row: dict, verdict: str) -> None:
    line = bench_survival.table([row]).splitlines()[-1]
    assert line.endswith(f"| {verdict} |") and "| 100 / 50 |" in line
    assert ("skipped" in line) == ("torchsurv" not in row)


def test_outer_folds_put_every_patient_in_one_test_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"event": (rng.random(53) < 0.4).astype(int), "duration": rng.random(53) * 100,
                          "age": np.arange(53)})
    monkeypatch.setitem(bench_survival.deepsurv_benchmark.SOURCES, "toy", lambda: (frame[:40], frame[40:]))
    pairs = bench_survival.outer_exports("toy", tmp_path, 5)
    tests = [pd.read_csv(test) for _, test in pairs]
    assert sorted(np.concatenate([t["age"].to_numpy() for t in tests]).tolist()) == list(range(53))
    for (train, _), test in zip(pairs, tests):
        train = pd.read_csv(train)
        assert len(train) + len(test) == 53 and not set(train["age"]) & set(test["age"])
        assert list(train.columns) == ["event", "duration", "age"]
    events = [int(t["event"].sum()) for t in tests]
    assert max(events) - min(events) <= 1 and sum(events) == int(frame["event"].sum())


def test_outer_summary_is_the_mean_over_folds_with_its_own_verdict() -> None:
    rows = [_row(0.70, None, default=0.72, gbsa=0.75), _row(0.80, None, default=0.70, gbsa=0.71)]
    summary = bench_survival.outer_summary("whas500", rows)
    assert summary["tuned"]["test_cindex_mean"] == pytest.approx(0.75)
    assert summary["gbsa"]["test_cindex_folds"] == [0.75, 0.71]
    assert summary["tuned"]["bagged_test_cindex"] == pytest.approx(0.61)
    assert "torchsurv" not in summary  # missing in a fold: no mean
    line = bench_survival.table([summary]).splitlines()[-1]
    assert line.startswith("| whas500: mean of 2 outer folds | 100 / 50 |") and line.endswith("| yes |")


def test_validation_table_names_who_leads_on_validation_and_on_test() -> None:
    row = _row(0.70, None, default_bag=0.71, coxph=0.72, rsf=0.73, gbsa=0.75)
    row["validation"] = {"default": 0.79, "tuned": 0.80, "coxph": 0.78, "rsf": 0.785, "gbsa": 0.77}
    line = bench_survival.validation_table([row, _row(0.7, None)]).splitlines()
    assert len(line) == 3  # a row without a validation view is left out
    assert line[-1] == "| x | 0.790 | 0.800 | 0.780 | 0.785 | 0.770 | default | gbsa |"
    row["validation"].pop("gbsa")
    row["default_bag"]["test_cindex_mean"] = 0.80  # the defaults' test figure is their bag's
    assert bench_survival.validation_table([row]).splitlines()[-1].endswith("| skipped | default | default |")


def test_outer_below_two_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_survival.main(["--out", "/nonexistent/never-made", "--outer", "1"])
    assert exc.value.code == 2
    assert "--outer must be >= 2" in capsys.readouterr().err
