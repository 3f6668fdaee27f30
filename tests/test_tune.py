"""scripts/tune.py: the search sees validation figures only; the test set is scored after the choice."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="scripts/tune.py needs optuna (pip install survopt-hydra[tune])")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import select_defaults  # noqa: E402
import tune  # noqa: E402

BASE = ["data=gbsg2", "trainer.max_epochs=4"]


@pytest.mark.slow
def test_objective_values_are_the_validation_figures(tmp_path: Path) -> None:
    """Every trial's objective equals the validation C-index of the same config run through the app
    (and differs from its test C-index), no trial record holds a test figure, the choice is the best
    validation figure, and the final runs report the test C-index of the kept run dirs."""
    logging.disable(logging.WARNING)
    study, records = tune.search(BASE, trials=3, seconds=None, sampler_seed=1, log=lambda _: None)
    assert len(records) == len(study.trials) == 3
    for trial, record in zip(study.trials, records):
        assert not any("test" in k for k in record) and not any("test" in k for k in trial.user_attrs)
        again = select_defaults.run_once([*BASE, *trial.user_attrs["overrides"]])  # the app's own figures
        assert trial.value == record["value"] == again["val_cindex"] != again["test_cindex"]
    assert study.best_value == max(r["value"] for r in records)
    chosen = study.best_trial.user_attrs["overrides"]
    assert {o.split("=")[0] for o in chosen} == set(tune.SPACE)
    final = tune.final_runs(BASE, chosen, [0, 1], tmp_path)
    metrics = [json.loads((tmp_path / f"final_seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert final["test_cindex_runs"] == [m["test_cindex"] for m in metrics]
    assert final["test_cindex_mean"] == pytest.approx(sum(final["test_cindex_runs"]) / 2)
    assert 0.5 < final["ensemble_test_cindex"] < 1.0 and 0.5 < final["ensemble_val_cindex"] < 1.0
    logging.disable(logging.NOTSET)


def test_fixed_keys_are_not_searched(monkeypatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(tune, "run_validation_only", lambda overrides: seen.append(overrides) or
                        {"monitor": "val_cindex", "value": 0.6, "val_cindex": 0.6, "best_epoch": 1, "epochs_run": 1,
                         "seconds": 0.0})
    tune.search(["data=gbsg2", "optimizer.lr=0.01", "model.hidden=[8]"], trials=2, seconds=None,
                log=lambda _: None)
    for overrides in seen:
        keys = [o.split("=")[0] for o in overrides]
        assert keys.count("optimizer.lr") == 1 and keys.count("model.hidden") == 1
        assert "optimizer.lr=0.01" in overrides and "model.hidden=[8]" in overrides
        assert {"optimizer.weight_decay", "model.dropout", "trainer.ties"} <= set(keys)


def test_a_bad_override_or_budget_is_one_line(capsys, tmp_path: Path) -> None:
    assert tune.main(["optimizer.lrr=1", "--trials", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimizer.lrr: unknown key" in err[0]
    assert tune.main(["--trials", "0", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: --trials/--seconds: the budget must be positive")
    assert not list(tmp_path.iterdir())
