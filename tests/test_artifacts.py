"""Artifacts are untrusted data (issue 25, item 1): what a best.pt, predictor.json or pretrained file may make
the package read, resolve or allocate. Fast, in-process; the app-level cases are in test_reliability_artifacts.py."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from survopt_hydra.app.checkpoint import CheckpointError, save_checkpoint
from survopt_hydra.errors import ConfigError
from survopt_hydra.survival import MLP, SmallCNN
from survopt_hydra.survival.breslow import BreslowBaseline

GBSG2 = {"name": "gbsg2", "path": "pkg://lifelines/datasets/gbsg2.csv", "duration_col": "time", "event_col": "cens"}


def _config(data: dict | None = None, model: dict | None = None) -> dict:
    return {"data": data or dict(GBSG2), "model": model or {"name": "mlp", "hidden": [16]},
            "trainer": {"max_epochs": 3}}


def _never(monkeypatch, target, name: str) -> None:
    monkeypatch.setattr(target, name, lambda *a, **k: pytest.fail(f"{name} must not be called"))


# ---------------------------------------------------------------- a config stored in best.pt
def test_a_stored_data_path_outside_the_package_is_never_read(tmp_path, monkeypatch) -> None:
    """best.pt naming /etc/passwd (here: a secret file) is refused naming the key and how to confirm it; the
    file is not opened, so its first line cannot reach an error message."""
    from survopt_hydra.app import data as app_data
    from survopt_hydra.app.components import load_best

    secret = tmp_path / "secret.csv"
    secret.write_text("API_KEY=abc123\n")
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint({"model": {}, "epoch": 1, "config": _config(dict(GBSG2, path=str(secret)))}, run / "best.pt")
    _never(monkeypatch, app_data, "load_cohort")
    with pytest.raises(ConfigError) as err:
        load_best(run)
    assert str(err.value).startswith(f"data.path: {run / 'best.pt'} names '{secret}', outside its run dir")
    assert "data.path=<file> on the command line" in str(err.value) and "abc123" not in str(err.value)


@pytest.mark.parametrize("where", ["data.path", "data.duration_col", "model.activation", "trainer.device"])
def test_a_stored_interpolation_is_refused_never_resolved(tmp_path, monkeypatch, where) -> None:
    from survopt_hydra.app.components import load_best

    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    config = _config()
    group, key = where.split(".")
    config[group][key] = "${oc.env:SECRET_TOKEN}"
    save_checkpoint({"model": {}, "epoch": 1, "config": config}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError) as err:
        load_best(tmp_path)
    assert f"config.{where} holds the interpolation '${{oc.env:SECRET_TOKEN}}'" in str(err.value)
    assert "hunter2" not in str(err.value) and "never resolved" in str(err.value)


def test_the_user_confirms_a_data_file_on_the_command_line(tmp_path) -> None:
    """The same stored path, given by the user (data_paths), is used; a key the run did not have is refused."""
    from survopt_hydra.app.components import artifact_settings
    from survopt_hydra.survival.data import resolve_path

    real = str(resolve_path("pkg://lifelines/datasets/gbsg2.csv"))
    config = _config(dict(GBSG2, name="csv", path=real))
    with pytest.raises(ConfigError, match="^data.path: .* outside its run dir"):
        artifact_settings(config, "best.pt")
    assert artifact_settings(config, "best.pt", {"path": real})["data"]["path"] == real
    with pytest.raises(ConfigError, match="^data.test_path: best.pt was trained without one"):
        artifact_settings(config, "best.pt", {"path": real, "test_path": real})


@pytest.mark.parametrize("group, key", [("model", "_target_"), ("data", "_target_"), ("model", "_args_")])
def test_a_stored_target_is_refused(group, key) -> None:
    from survopt_hydra.app.components import artifact_settings

    config = _config()
    config[group][key] = "os.system"
    with pytest.raises(CheckpointError, match=f"names {group}.{key}; an artifact never names code to run"):
        artifact_settings(config, "best.pt")


def test_a_stored_pretrained_file_is_never_loaded(tmp_path, monkeypatch) -> None:
    """A cnn run's config names model.pretrained; rebuilding it from best.pt takes best.pt's weights only."""
    from survopt_hydra.app.components import artifact_settings, model_from_artifact

    weights = SmallCNN(channels=(4, 8), hidden=8).state_dict()
    config = _config({"name": "synthetic_images"}, {"name": "cnn", "channels": [4, 8], "hidden": 8,
                                                    "pretrained": str(tmp_path / "other.pt"), "pretrained_head": True})
    _never(monkeypatch, SmallCNN, "load_backbone")
    settings = artifact_settings(config, "best.pt")
    assert settings["model"]["pretrained"] is None
    net = model_from_artifact(config["model"], (1, 32, 32), weights, "best.pt")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())


@pytest.mark.parametrize("model, weights, fragment", [
    ({"name": "mlp", "hidden": [200_000_000]}, None, "net.0.weight is torch.float32 (16, 12), the model needs "
     "torch.float32 (200000000, 12)"),
    ({"name": "mlp", "hidden": [1] * 1000}, None, "describe 1000 layers but the weights hold 8 tensors"),
    ({"name": "mlp", "hidden": [16]}, "int64", "net.0.weight is torch.int64 (16, 12), the model needs torch.float32"),
    ({"name": "mlp", "hidden": [16]}, "nan", "net.0.weight holds non-finite values"),
    ({"name": "mlp", "hidden": [16]}, "extra", "unexpected: ['extra']"),
    ({"name": "linear"}, None, "missing: ['linear.weight']"),
])
def test_weights_are_checked_against_the_model_before_it_is_built(model, weights, fragment, monkeypatch) -> None:
    """The model is built on the meta device first: hidden=[200000000] is refused without 9.6 GB."""
    from survopt_hydra.app import components
    from survopt_hydra.app.components import model_from_artifact

    good = MLP(12, hidden=(16,)).state_dict()
    if weights == "int64":
        good["net.0.weight"] = good["net.0.weight"].long()
    elif weights == "nan":
        good["net.0.weight"][0, 0] = math.nan
    elif weights == "extra":
        good["extra"] = torch.ones(1)
    built = []
    real_build = components.build_model
    monkeypatch.setattr(components, "build_model", lambda m, s, *a, **k: built.append(torch.empty(0).device.type) or
                        real_build(m, s, *a, **k))
    with pytest.raises(CheckpointError) as err:
        model_from_artifact(model, (12,), good, "best.pt")
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert "cpu" not in built  # only the meta skeleton was built


# ---------------------------------------------------------------- pretrained files
def test_a_pretrained_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch) -> None:
    """A file that deflates 64 MiB into ~70 KB, named as a 30 KB model's backbone: refused on the zip's
    declared sizes, which exceed what the model justifies; torch.load is never reached."""
    from test_integrity import _deflated

    state = SmallCNN().state_dict()
    state["padding"] = torch.zeros(2**24)
    _deflated(state, tmp_path / "bomb.pt")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be reached"))
    with pytest.raises(ValueError) as err:
        SmallCNN(pretrained=str(tmp_path / "bomb.pt"))
    assert str(err.value).startswith("SmallCNN.pretrained: cannot load ") and "decompression bomb" in str(err.value)


@pytest.mark.parametrize("change, fragment", [
    (lambda s: s.__setitem__("backbone.0.weight", s["backbone.0.weight"].double()), "is torch.float64, the model needs "
     "torch.float32"),
    (lambda s: s["backbone.0.weight"].view(-1).__setitem__(0, math.inf), "holds non-finite values"),
])
def test_pretrained_weights_of_another_dtype_or_not_finite_are_refused(tmp_path, change, fragment) -> None:
    state = SmallCNN().state_dict()
    change(state)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ValueError) as err:
        SmallCNN(pretrained=str(tmp_path / "w.pt"))
    assert fragment in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- predictor.json
def _fit(n: int, seed: int = 0) -> tuple[BreslowBaseline, np.ndarray]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    times = rng.exponential(np.exp(-risk))
    events = (rng.random(n) < 0.6).astype(float)
    return BreslowBaseline.fit(torch.tensor(risk), torch.tensor(times), torch.tensor(events)), times


@pytest.mark.parametrize("n", [500, 20_000, 200_000])
def test_the_compacted_baseline_stays_within_its_stated_error(n) -> None:
    """predictor.json's baseline is bounded at any n: exact up to BASELINE_KNOTS event times, else that many
    knots, and S(t|x) from it equals the exact Breslow S(t|x) within the stated max_abs_error at every
    training time and between them, for risks far beyond the training range."""
    from survopt_hydra.app.predictor import BASELINE_KNOTS
    from survopt_hydra.survival.compaction import compact_baseline

    exact, times = _fit(n)
    small = compact_baseline(exact.to_dict(), BASELINE_KNOTS)
    assert len(small["times"]) <= BASELINE_KNOTS and len(json.dumps(small)) < 100_000
    compact = BreslowBaseline.from_dict(small)
    at = torch.tensor(np.concatenate([np.sort(times), np.linspace(0, times.max() * 1.2, 3000)]))
    risks = torch.linspace(-10, 10, 201, dtype=torch.float64)
    gap = float((exact.survival(risks, at) - compact.survival(risks, at)).abs().max())
    events = small["event_times"]
    if events <= BASELINE_KNOTS:
        assert small["exact"] and small["max_abs_error"] == 0.0 and gap == 0.0
    else:
        assert not small["exact"] and 0 < small["max_abs_error"] < 2e-3
        assert gap <= small["max_abs_error"] + 1e-12 and gap > 0.5 * small["max_abs_error"]  # the bound is tight


def test_the_survival_error_bound_is_the_worst_case() -> None:
    """max over c of |exp(-c H) - exp(-c a H)| for a in {r, 1/r}, checked on a dense grid."""
    from survopt_hydra.survival.compaction import survival_error as _survival_error

    for ratio in (1.001, 1.05, 1.5):
        u = np.linspace(1e-9, 1 - 1e-9, 200_001)
        grid = max(np.abs(u - u ** ratio).max(), np.abs(u - u ** (1 / ratio)).max())
        assert _survival_error(ratio) == pytest.approx(grid, rel=1e-6)


def _predictor_dir(tmp_path: Path, model: dict, weights: dict | None = None) -> Path:
    """A predictor.json + best.pt pair for a 3-feature table, written by hand."""
    from survopt_hydra.app.predictor import FORMAT

    exact, _ = _fit(300)
    art = {"format": FORMAT, "schema": {"duration_col": "t", "event_col": "e", "missing": "refuse", "unseen": "refuse",
                                        "dropped": [], "columns": [{"name": c, "kind": "number", "levels": [],
                                                                    "indicator": False, "fill": None} for c in "abc"]},
           "feature_names": ["a", "b", "c"], "standardizer": {"mean": [0.0] * 3, "std": [1.0] * 3},
           "baseline": exact.to_dict(), "best_epoch": 2, "horizons": [1.0], "model": model, "data_source": "/x.csv"}
    (tmp_path / "predictor.json").write_text(json.dumps(art))
    save_checkpoint({"model": weights if weights is not None else MLP(3, hidden=(4,)).state_dict(), "epoch": 2,
                     "config": {}}, tmp_path / "best.pt")
    return tmp_path


@pytest.mark.parametrize("model, fragment", [
    ({"name": "mlp", "hidden": [4], "pretrained": "/etc/passwd"}, "model.pretrained: unknown key"),
    ({"name": "mlp", "hidden": [4], "widht": 3}, "model.widht: unknown key"),
    ({"name": "mlp", "hidden": [200_000_000]}, "the model needs torch.float32 (200000000, 3)"),
    ({"name": "mlp", "hidden": [4], "_target_": "os.system"}, "model._target_: an artifact never names code"),
    ({"name": "cnn", "pretrained": "/etc/passwd"}, "a predictor file holds a tabular model"),
    ({"name": "mlp", "hidden": "abc"}, "model.hidden"),
])
def test_predictor_model_keys_are_checked_by_the_schema(tmp_path, monkeypatch, model, fragment) -> None:
    from survopt_hydra.app.predictor import Predictor
    from survopt_hydra.survival.data import DataError

    run = _predictor_dir(tmp_path, model)
    _never(monkeypatch, SmallCNN, "load_backbone")
    with pytest.raises(DataError) as err:
        Predictor.load(run)
    assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_hand_written_predictor_pair_loads_and_a_forged_baseline_is_refused(tmp_path) -> None:
    from survopt_hydra.app.predictor import Predictor
    from survopt_hydra.survival.data import DataError

    run = _predictor_dir(tmp_path, {"name": "mlp", "hidden": [4]})
    assert Predictor.load(run).risk(torch.zeros(2, 3)).shape == (2,)
    art = json.loads((run / "predictor.json").read_text())
    for change in ({"shift": math.inf}, {"cumhaz": [-1.0] * len(art["baseline"]["times"])},
                   {"max_abs_error": 5}):
        (run / "predictor.json").write_text(json.dumps(dict(art, baseline={**art["baseline"], **change})))
        with pytest.raises(DataError, match="unusable predictor file \\(baseline"):
            Predictor.load(run)
    (run / "predictor.json").unlink()
    (run / "predictor.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(DataError, match="a symbolic link, not a predictor file"):
        Predictor.load(run)

