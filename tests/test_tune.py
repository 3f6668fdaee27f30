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


def _stub(seen: list[list[str]]):
    """run_validation_only that records its overrides; the value depends on the split seed only."""
    def run(overrides: list[str]) -> dict:
        seen.append(overrides)
        split = [0, *(int(o.split("=")[1]) for o in overrides if o.startswith("data.split_seed="))][-1]  # the last wins
        value = 0.6 + 0.01 * split
        return {"monitor": "val_cindex", "value": value, "val_cindex": value, "best_epoch": 1, "epochs_run": 1,
                "seconds": 0.0}
    return run


def test_trial_zero_is_the_base_config(monkeypatch) -> None:
    """Trial 0 runs the base config's own values (so the choice never validates below the untuned
    config); with --no-baseline, or a base off the grid, it is a TPE draw."""
    from survopt_hydra.app.compose import compose_train

    seen: list[list[str]] = []
    monkeypatch.setattr(tune, "run_validation_only", _stub(seen))
    base = ["data=gbsg2", "optimizer.lr=0.003", "model.hidden=[64,64]", "model.dropout=0.25"]
    study, records = tune.search(base, trials=2, seconds=None, log=lambda _: None)
    cfg = compose_train(seen[0])
    assert (cfg.optimizer.weight_decay, cfg.trainer.batch_size, cfg.trainer.ties) == (0.01, 512, "breslow")
    assert records[0]["baseline"] and not records[1]["baseline"]
    assert seen[0][len(base):] == ["optimizer.weight_decay=0.01", "trainer.batch_size=512", "trainer.ties=breslow"]
    assert seen[1][len(base):] != seen[0][len(base):]
    seen.clear()
    tune.search(base, trials=1, seconds=None, log=lambda _: None, baseline=False)
    assert seen[0][len(base):] != ["optimizer.weight_decay=0.01", "trainer.batch_size=512", "trainer.ties=breslow"]
    off_grid = compose_train(["model.hidden=[64,32]"])
    assert tune.baseline_params(off_grid, tune.SPACE) is None
    assert tune.baseline_params(compose_train(["model.hidden=[64,64]"]), tune.SPACE)["depth"] == 2


def test_a_trial_averages_its_validation_splits_and_never_moves_the_test_rows(monkeypatch, capsys,
                                                                               tmp_path: Path) -> None:
    """With a fixed test file each trial runs data.split_seed s0..s0+k-1 and its value is their mean;
    those seeds redraw validation rows but not one test row. Without a test file it is refused."""
    import torch

    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.data import load_cohort

    seen: list[list[str]] = []
    monkeypatch.setattr(tune, "run_validation_only", _stub(seen))
    study, records = tune.search(["data.split_seed=2"], trials=2, seconds=None, log=lambda _: None, val_splits=3)
    assert [o[-1] for o in seen] == [f"data.split_seed={s}" for s in (2, 3, 4)] * 2
    assert [t.value for t in study.trials] == pytest.approx([0.63, 0.63])
    assert records[0]["val_cindex_splits"] == "0.6200 0.6300 0.6400"
    a, b = (load_cohort(compose_train([f"data.split_seed={s}"]).data) for s in (0, 1))
    assert torch.equal(a.test.durations, b.test.durations) and torch.equal(a.test.events, b.test.events)
    assert not torch.equal(a.val.durations, b.val.durations)
    assert tune.main(["data=gbsg2", "--val-splits", "2", "--trials", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --val-splits: more than one validation split needs a fixed "
                                               "test file")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_bagged_final_runs_train_each_split_in_two_workers(tmp_path: Path) -> None:
    """final_runs with 2 splits x 2 seeds in 2 worker processes: the seed runs are the base split's
    (their metrics.json), equal to the same config trained in this process; the bagged ensemble
    has 4 members, one run dir each."""
    logging.disable(logging.WARNING)
    base = ["trainer.max_epochs=3"]
    final = tune.final_runs(base, ["model.hidden=[8]"], [0, 1], tmp_path, splits=[0, 1], jobs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final_seed0", "final_seed0_split1", "final_seed1",
                                                         "final_seed1_split1"]
    metrics = [json.loads((tmp_path / f"final_seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert final["test_cindex_runs"] == [m["test_cindex"] for m in metrics]
    here = select_defaults.run_once([*base, "model.hidden=[8]", "trainer.seed=1"])
    assert (here["val_cindex"], here["test_cindex"]) == (metrics[1]["val_cindex"], metrics[1]["test_cindex"])
    other = json.loads((tmp_path / "final_seed0_split1" / "metrics.json").read_text())
    assert other["val_cindex"] != metrics[0]["val_cindex"]
    assert final["bagged_models"] == 4
    # the bags, recomputed from the kept run dirs and scored by lifelines
    import torch
    from lifelines.utils import concordance_index as lifelines_cindex

    from survopt_hydra.app.trainer import load_best

    scores = {}
    for name in ("final_seed0", "final_seed0_split1", "final_seed1", "final_seed1_split1"):
        _, cohort, model, _ = load_best(tmp_path / name)
        with torch.no_grad():
            v, t = model(cohort.val.x).double().numpy(), model(cohort.test.x).double().numpy()
        scores[name] = (t - v.mean()) / v.std()
    test = cohort.test

    def c(names: list[str]) -> float:
        risk = sum(scores[n] for n in names) / len(names)
        return lifelines_cindex(test.durations, -risk, test.events)

    assert final["bagged_test_cindex"] == pytest.approx(c(list(scores)), abs=1e-12)
    per_seed = [c([f"final_seed{s}", f"final_seed{s}_split1"]) for s in (0, 1)]
    assert final["bagged_seed_test_cindex_runs"] == pytest.approx(per_seed, abs=1e-12)
    assert final["bagged_seed_test_cindex_mean"] == pytest.approx(sum(per_seed) / 2, abs=1e-12)
    assert len(set(per_seed + [final["bagged_test_cindex"]])) > 1  # distinct bags, not one figure thrice
    logging.disable(logging.NOTSET)


@pytest.mark.slow
def test_a_trial_in_two_workers_gets_the_sequential_values() -> None:
    """The same trials with each split in its own worker process: identical objective values."""
    logging.disable(logging.WARNING)
    base = ["trainer.max_epochs=2"]
    values = [[t.value for t in tune.search(base, trials=2, seconds=None, log=lambda _: None, val_splits=2,
                                            jobs=jobs)[0].trials] for jobs in (1, 2)]
    assert values[0] == values[1] and values[0][0] != values[0][1]
    logging.disable(logging.NOTSET)
