"""scripts/tune.py: the search sees validation figures only; the test set is scored after the choice."""
from __future__ import annotations

import math

import json
import logging
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="survopt-tune needs optuna (pip install survopt-hydra[tune])")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import select_defaults  # noqa: E402

from survopt_hydra.app.tools import tune  # noqa: E402

BASE = ["data=gbsg2", "trainer.max_epochs=4"]


@pytest.mark.slow
def test_objective_values_are_the_validation_figures(tmp_path: Path) -> None:
    """Every trial's objective equals the validation C-index of the same config run through the app
    (and differs from its test C-index), no trial record holds a test figure, the choice is the best
    validation figure, and the final runs report the test C-index of the kept run dirs."""
    logging.disable(logging.WARNING)
    study, records = tune.search(BASE, trials=3, seconds=None, sampler_seed=1, log=lambda _: None, folds=1)
    assert len(records) == len(study.trials) == 3
    for trial, record in zip(study.trials, records):
        assert not any("test" in k for k in record) and not any("test" in k for k in trial.user_attrs)
        again = select_defaults.run_once([*BASE, *trial.user_attrs["overrides"]])  # the app's own figures
        assert trial.value == record["value"] == again["val_cindex"] != again["test_cindex"]
    assert study.best_value == max(r["value"] for r in records)
    chosen = study.best_trial.user_attrs["overrides"]
    assert {o.split("=")[0] for o in chosen} == set(tune.SPACE)
    final = tune.final_runs(BASE, chosen, [0, 1], tmp_path, folds=1)
    metrics = [json.loads((tmp_path / f"final_seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert final["test_cindex_runs"] == final["single_test_cindex_runs"] == [m["test_cindex"] for m in metrics]
    assert final["test_cindex_mean"] == pytest.approx(sum(final["test_cindex_runs"]) / 2)
    assert final["oof_val_cindex_runs"] == pytest.approx([m["val_cindex"] for m in metrics], abs=1e-6)
    assert final["folds"] == 1 and 0.5 < final["bagged_test_cindex"] < 1.0
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
    """run_validation_only that records its overrides; the value depends on the fold only."""
    def run(overrides: list[str]) -> dict:
        seen.append(overrides)
        fold = [0, *(int(o.split("=")[1]) for o in overrides if o.startswith("data.fold="))][-1]  # the last wins
        value = 0.6 + 0.01 * fold
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
    assert seen[0][len(base):] == ["optimizer.weight_decay=0.01", "trainer.batch_size=512", "trainer.ties=breslow",
                                   "data.folds=5", "data.fold=0"]
    assert seen[5][len(base):] != seen[0][len(base):]
    seen.clear()
    tune.search(base, trials=1, seconds=None, log=lambda _: None, baseline=False, folds=1)
    assert seen[0][len(base):] != ["optimizer.weight_decay=0.01", "trainer.batch_size=512", "trainer.ties=breslow"]
    off_grid = compose_train(["model.hidden=[64,32]"])
    assert tune.baseline_params(off_grid, tune.SPACE) is None
    assert tune.baseline_params(compose_train(["model.hidden=[64,64]"]), tune.SPACE)["depth"] == 2


def test_a_trial_averages_its_folds_and_a_fixed_fold_is_refused(monkeypatch, capsys, tmp_path: Path) -> None:
    """Each trial runs data.fold 0..K-1 of data.folds=K and its value is their mean (the folds'
    row partition and the fixed test rows are tests/test_folds.py's). --folds 1 is the app's one
    split; --folds 0 and a data.folds override are refused in one line, before any trial."""
    seen: list[list[str]] = []
    monkeypatch.setattr(tune, "run_validation_only", _stub(seen))
    study, records = tune.search(["data.split_seed=2"], trials=2, seconds=None, log=lambda _: None, folds=3)
    assert [o[-2:] for o in seen] == [["data.folds=3", f"data.fold={k}"] for k in (0, 1, 2)] * 2
    assert all(o[0] == "data.split_seed=2" for o in seen)
    assert [t.value for t in study.trials] == pytest.approx([0.61, 0.61])
    assert records[0]["val_cindex_folds"] == "0.6000 0.6100 0.6200"
    seen.clear()
    tune.search([], trials=1, seconds=None, log=lambda _: None, folds=1)
    assert len(seen) == 1 and not any(o.startswith("data.fold") for o in seen[0])
    for args, line in ((["--folds", "0"], "error: --folds: must be >= 1, got 0"),
                       (["data.folds=3"], "error: data.folds: is set by scripts/tune.py (--folds); drop the override")):
        assert tune.main(["data=gbsg2", *args, "--trials", "1", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [line]
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_bagged_final_runs_train_each_fold_in_two_workers(tmp_path: Path) -> None:
    """final_runs with 2 folds x 2 seeds in 2 worker processes: one kept run dir per member, each
    equal to the same config trained in this process; each seed's bag, the bag of all and their
    out-of-fold validation C-index recomputed from the run dirs and scored by lifelines."""
    logging.disable(logging.WARNING)
    base = ["data=gbsg2", "trainer.max_epochs=3"]
    final = tune.final_runs(base, ["model.hidden=[8]"], [0, 1], tmp_path, folds=2, jobs=2)
    names = [f"final_seed{s}_fold{k}" for k in (0, 1) for s in (0, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, "bags.json", "ensemble_seed0", "ensemble_seed1",
                                                                 "ensemble_all"])  # tests/test_ensemble.py
    metrics = {n: json.loads((tmp_path / n / "metrics.json").read_text()) for n in names}
    assert final["single_test_cindex_runs"] == [metrics[n]["test_cindex"] for n in names]
    here = select_defaults.run_once([*base, "model.hidden=[8]", "data.folds=2", "data.fold=1", "trainer.seed=1"])
    assert (here["val_cindex"], here["test_cindex"]) == (metrics["final_seed1_fold1"]["val_cindex"],
                                                         metrics["final_seed1_fold1"]["test_cindex"])
    assert final["bagged_models"] == 4 and final["folds"] == 2
    import numpy as np
    import torch
    from lifelines.utils import concordance_index as lifelines_cindex

    from survopt_hydra.app.trainer import load_best

    val, test_z, val_rows = {}, {}, {}
    bags = json.loads((tmp_path / "bags.json").read_text())["bags"]
    assert sorted(bags) == ["0", "1"]
    for name in names:
        _, cohort, model, _ = load_best(tmp_path / name)
        with torch.no_grad():
            v, t = model(cohort.val.x).double().numpy(), model(cohort.test.x).double().numpy()
        val[name], test_z[name] = (v - v.mean()) / v.std(), (t - v.mean()) / v.std()
        val_rows[name[-1]] = cohort.val
        member = bags[name[len("final_seed")]][int(name[-1])]  # what a user rebuilds the bag from
        assert member["run_dir"] == name and (member["val_mean"], member["val_sd"]) == pytest.approx((v.mean(), v.std()))
    test = cohort.test

    def c(members: list[str]) -> float:
        return lifelines_cindex(test.durations, -sum(test_z[n] for n in members) / len(members), test.events)

    def oof(seeds: list[int]) -> float:
        risk = np.concatenate([sum(val[f"final_seed{s}_fold{k}"] for s in seeds) / len(seeds) for k in (0, 1)])
        durations = np.concatenate([val_rows[str(k)].durations.numpy() for k in (0, 1)])
        events = np.concatenate([val_rows[str(k)].events.numpy() for k in (0, 1)])
        return lifelines_cindex(durations, -risk, events)

    per_seed = [c([f"final_seed{s}_fold{k}" for k in (0, 1)]) for s in (0, 1)]
    assert final["test_cindex_runs"] == pytest.approx(per_seed, abs=1e-12)
    assert final["test_cindex_mean"] == pytest.approx(sum(per_seed) / 2, abs=1e-12)
    assert final["bagged_test_cindex"] == pytest.approx(c(names), abs=1e-12)
    assert final["oof_val_cindex_runs"] == pytest.approx([oof([0]), oof([1])], abs=1e-12)
    assert final["bagged_oof_val_cindex"] == pytest.approx(oof([0, 1]), abs=1e-12)
    assert len(set(per_seed + [final["bagged_test_cindex"]])) > 1  # distinct bags, not one figure thrice
    assert len(val_rows["0"]) + len(val_rows["1"]) == len(cohort.train) + len(cohort.val)
    logging.disable(logging.NOTSET)


@pytest.mark.slow
def test_a_trial_in_two_workers_gets_the_sequential_values() -> None:
    """The same trials with each fold in its own worker process: identical objective values."""
    logging.disable(logging.WARNING)
    base = ["trainer.max_epochs=2"]
    values = [[t.value for t in tune.search(base, trials=2, seconds=None, log=lambda _: None, folds=2,
                                            jobs=jobs)[0].trials] for jobs in (1, 2)]
    assert values[0] == values[1] and values[0][0] != values[0][1]
    logging.disable(logging.NOTSET)


def test_pruned_trials_stop_early_and_are_never_chosen(monkeypatch) -> None:
    """With the MedianPruner a trial that trails after its first folds stops there: recorded as
    pruned with the mean of the folds it ran, never the choice; complete trials average all K
    folds. Without pruning every trial runs every fold. (A stub app: LR > 0.01 validates 0.05 higher.)"""
    seen: list[list[str]] = []

    def run(overrides: list[str]) -> dict:
        seen.append(overrides)
        value = dict(o.split("=", 1) for o in overrides)
        value = 0.6 + 0.01 * int(value["data.fold"]) + (0.05 if float(value["optimizer.lr"]) > 0.01 else 0.0)
        return {"monitor": "val_cindex", "value": value, "val_cindex": value, "best_epoch": 1, "epochs_run": 1,
                "seconds": 0.0}

    monkeypatch.setattr(tune, "run_validation_only", run)
    study, records = tune.search(["data=gbsg2"], trials=16, seconds=None, log=lambda _: None, folds=5)
    pruned = [r for r in records if r["pruned"]]
    assert pruned and not any(r["pruned"] for r in records[:5])  # the first 5 trials set the medians
    assert len(seen) == sum(len(r["val_cindex_folds"].split()) for r in records) < 16 * 5
    for r in records:
        folds = [float(v) for v in r["val_cindex_folds"].split()]
        assert len(folds) < 5 if r["pruned"] else len(folds) == 5
        assert r["value"] == pytest.approx(sum(folds) / len(folds))
    assert all("optimizer.lr=0.0" in r["overrides"] and float(r["overrides"].split("optimizer.lr=")[1].split()[0]) <= 0.01
               for r in pruned)
    assert study.best_value == pytest.approx(0.67) and not records[study.best_trial.number]["pruned"]
    seen.clear()
    _, records = tune.search(["data=gbsg2"], trials=8, seconds=None, log=lambda _: None, folds=5, prune=False)
    assert len(seen) == 8 * 5 and not any(r["pruned"] for r in records)


def test_a_diverged_fold_fails_its_trial_and_the_search_goes_on(monkeypatch) -> None:
    """A config whose run raises TrainingError (diverged) on its second fold: the trial stops there, is
    recorded as failed with the reason and a NaN value, is never the choice, and later trials still run.
    (A stub app: LR > 0.01 diverges on fold 1; the others validate 0.6 + LR.)"""
    seen: list[list[str]] = []

    def run(overrides: list[str]) -> dict:
        seen.append(overrides)
        value = dict(o.split("=", 1) for o in overrides)
        lr, fold = float(value["optimizer.lr"]), int(value["data.fold"])
        if lr > 0.01 and fold == 1:
            return {"monitor": "val_cindex", "value": math.nan, "val_cindex": math.nan, "best_epoch": 0,
                    "epochs_run": 0, "seconds": 0.0, "failed": "training diverged: epoch 2's training loss ..."}
        return {"monitor": "val_cindex", "value": 0.6 + lr, "val_cindex": 0.6 + lr, "best_epoch": 1, "epochs_run": 1,
                "seconds": 0.0, "failed": ""}

    monkeypatch.setattr(tune, "run_validation_only", run)
    study, records = tune.search(["data=gbsg2"], trials=12, seconds=None, log=lambda _: None, folds=5, prune=False)
    failed = [r for r in records if r["failed"]]
    assert failed and len(records) == 12  # the search went on after the first failure
    for r in failed:
        assert "optimizer.lr=" in r["overrides"] and float(r["overrides"].split("optimizer.lr=")[1].split()[0]) > 0.01
        assert len(r["val_cindex_folds"].split()) == 2 and "diverged" in r["failed"] and math.isnan(r["value"])
    assert len(seen) == sum(len(r["val_cindex_folds"].split()) for r in records)
    best = records[study.best_trial.number]
    assert not best["failed"] and study.best_value == max(r["value"] for r in records if not r["failed"])


def test_a_trial_brings_back_validation_figures_only() -> None:
    """The real app runs a trial's fold (it also scores its test rows); nothing test-side reaches the search."""
    result = tune.run_validation_only(["data=gbsg2", "trainer.max_epochs=2"])
    assert set(result) == {"monitor", "value", "val_cindex", "best_epoch", "epochs_run", "seconds", "failed"}
    assert result["monitor"] == "val_cindex" and result["value"] == result["val_cindex"] and not result["failed"]
    assert 0.5 < result["val_cindex"] < 1 and result["epochs_run"] == 2


def test_the_app_reports_a_diverged_trial_as_failed() -> None:
    """The real app at optimizer.lr=1e9 diverges (trainer.max_loss_ratio): the trial's fold is a failure with
    the trainer's reason, not an exception that ends the whole search."""
    result = tune.run_validation_only(["data=gbsg2", "optimizer.lr=1e9", "trainer.max_epochs=3"])
    assert math.isnan(result["value"]) and result["failed"].startswith("training diverged")


# ---------------------------------------------------------------- one study, several processes (--storage)
def test_a_stored_study_draws_what_memory_draws_and_refuses_other_settings(monkeypatch, tmp_path: Path) -> None:
    """One process with an SQLite storage draws the in-memory search's configs (the creator's sampler is
    seeded); a second search joins the same study and continues its numbering with other draws; a process
    with other settings, or a --final-only on a study that does not exist, is refused in one line."""
    from survopt_hydra.errors import ConfigError

    monkeypatch.setattr(tune, "run_validation_only", _stub([]))
    base = ["data=gbsg2", "optimizer.lr=0.01"]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    memory, _ = tune.search(base, trials=4, seconds=None, log=lambda _: None, folds=2)
    stored, _ = tune.search(base, trials=4, seconds=None, log=lambda _: None, folds=2, storage=url, study_name="s")
    assert [t.params for t in stored.trials] == [t.params for t in memory.trials]
    joined, records = tune.search(base, trials=2, seconds=None, log=lambda _: None, folds=2, storage=url,
                                  study_name="s")
    assert [r["trial"] for r in records] == list(range(6)) and sum(r["baseline"] for r in records) == 1
    assert len({json.dumps(t.params, sort_keys=True) for t in joined.trials}) == 6
    with pytest.raises(ConfigError, match="study 's' tunes .* every process of a study uses the same"):
        tune.search(base, trials=1, seconds=None, log=lambda _: None, folds=3, storage=url, study_name="s")
    for args, line in ((["--storage", url], "error: --storage: needs --study-name"),
                       (["--study-name", "s"], "error: --study-name: names a study in a database"),
                       (["--final-only"], "error: --final-only: works on a study stored in --storage"),
                       (["--storage", url, "--study-name", "none", "--final-only"],
                        "error: --study-name: no study 'none' in --storage; run the search first"),
                       (["--storage", "nonsense://", "--study-name", "s"], "error: --storage: nonsense://: not a usable")):
        assert tune.main([*base, "--trials", "1", "--out", str(tmp_path / "out"), *args]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_processes_tune_one_sqlite_study(tmp_path: Path) -> None:
    """Two survopt-tune processes started together on one SQLite study: every trial each ran is in the
    study, once, with distinct numbers and parameters, one baseline; --final-only then chooses the best
    validation figure among all of them (records hold no test figure) and writes all of them to trials.csv."""
    import subprocess

    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["data=gbsg2", "trainer.max_epochs=2", "--folds", "2", "--jobs", "1", "--no-prune", "--storage", url,
              "--study-name", "shared"]
    procs = [subprocess.Popen([sys.executable, "scripts/tune.py", *common, "--trials", "3", "--search-only"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-3000:] for o in outs]
    ran = [{int(line.split()[1].rstrip(":")) for line in err.splitlines() if line.startswith("trial ")}
           for _, err in outs]
    assert len(ran[0]) == len(ran[1]) == 3 and not ran[0] & ran[1]  # each ran its own 3
    study = optuna.load_study(study_name="shared", storage=url)
    assert sorted(t.number for t in study.trials) == list(range(6)) == sorted(ran[0] | ran[1])
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 6
    assert sum(bool(t.user_attrs.get("baseline")) for t in study.trials) == 1
    for t in study.trials:
        record = t.user_attrs["record"]
        assert not any("test" in k for k in [*record, *t.user_attrs])
        assert record["value"] == t.value == pytest.approx(sum(map(float, record["val_cindex_folds"].split())) / 2,
                                                           abs=1e-4)
    final = subprocess.run([sys.executable, "scripts/tune.py", *common, "--final-only", "--final-seeds", "0",
                            "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    best = max(study.trials, key=lambda t: t.value)
    assert (result["best_trial"], result["best_value"]) == (best.number, best.value) and result["trials"] == 6
    assert result["chosen_overrides"] == best.user_attrs["overrides"]
    import csv

    with (tmp_path / "out" / "trials.csv").open() as handle:
        assert [int(r["trial"]) for r in csv.DictReader(handle)] == list(range(6))
    assert (tmp_path / "out" / "ensemble_seed0" / "ensemble.json").is_file()
