"""survopt-predict on image runs (app/image_predict.py), on a run directory the test writes by hand: the risks
equal the model applied to the images read independently (Pillow + numpy), and a predictor.json is data:
what it names is imported only with --trust, and what it asks the app to allocate is bounded."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from survopt_hydra.app.image_data import IMAGE_FORMAT
from survopt_hydra.app.image_predict import ImagePredictor, predict_manifest
from survopt_hydra.app.synthetic_scans import NORMALIZE, OFFSET, SPAN, write_synthetic_scans
from survopt_hydra.survival import SmallCNN
from survopt_hydra.survival.breslow import BreslowBaseline
from survopt_hydra.survival.data import DataError

MODEL = {"name": "cnn", "channels": [4], "hidden": 8, "dropout": 0.0, "pretrained": None, "pretrained_head": False}


def write_run(run_dir: Path, **changes) -> SmallCNN:
    """best.pt and predictor.json as a finished run on 16x16 scans would leave them."""
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = SmallCNN(in_channels=1, channels=[4], hidden=8, dropout=0.0)
    torch.save({"epoch": 3, "model": net.state_dict()}, run_dir / "best.pt")
    g = torch.Generator().manual_seed(0)
    base = BreslowBaseline.fit(torch.randn(50, generator=g), torch.rand(50, generator=g) * 10,
                               (torch.rand(50, generator=g) < 0.7).float())
    art = {"format": IMAGE_FORMAT, "path_col": "path", "covariate_cols": [], "mode": "L", "transform": [NORMALIZE],
           "max_pixels": 2**26, "eval_batch_size": 7, "input_shape": [1, 16, 16], "standardizer": None,
           "baseline": base.to_dict(), "best_epoch": 3, "horizons": [1.0], "model": MODEL, "data_source": "x"}
    art.update(changes)
    (run_dir / "predictor.json").write_text(json.dumps(art))
    return net.eval()


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    return write_synthetic_scans(tmp_path_factory.mktemp("new"), 30, size=16, seed=9)


def test_risks_are_the_model_on_independently_read_images(tmp_path: Path, scans: Path) -> None:
    net = write_run(tmp_path / "run")
    out, n = predict_manifest(tmp_path / "run", scans, tmp_path / "p.csv", times=[2.0, 5.0], num_workers=2)
    assert (out, n) == (tmp_path / "p.csv", 30)
    got = list(csv.DictReader(out.open()))
    assert list(got[0]) == ["row", "path", "risk", "S(2)", "S(5)"]
    names = [r["path"] for r in csv.DictReader(scans.open())]
    pixels = np.stack([np.asarray(Image.open(scans.parent / p), dtype=np.float64) / 65535 for p in names])
    x = torch.from_numpy((pixels * SPAN + OFFSET)[:, None].astype(np.float32))  # Normalize(0.25, 0.25) by hand
    with torch.no_grad():
        expected = net(x).double()
    np.testing.assert_allclose([float(r["risk"]) for r in got], expected.numpy(), rtol=1e-5, atol=1e-5)
    assert [r["path"] for r in got] == names and [int(r["row"]) for r in got] == list(range(1, 31))


@pytest.mark.parametrize("change, expect", [
    ({"input_shape": [1, 100_000, 100_000]}, "input_shape [1, 100000, 100000] is not an image shape of at most"),
    ({"transform": [{"_target_": "survopt_hydra.app.image_transforms.Resize", "size": 60_000}]},
     "Resize asks for images over 67,108,864 values"),
    ({"format": "survopt-predictor/1"}, "format 'survopt-predictor/1', expected 'survopt-image-predictor/1'"),
    ({"model": {**MODEL, "channels": "abc"}}, "unusable predictor file (model.channels: must be a list"),
    ({"best_epoch": 4}, "holds epoch 3 but"),
    ({"transform": [{"_target_": "os.system", "command": "touch pwned"}]},
     "data.transform[0]._target_=os.system: a file never chooses code to import"),
    ({"model": {"name": "custom", "_target_": "builtins.eval"}},
     "model._target_=builtins.eval: a file never chooses code to import; if the run's training config named it, "
     "repeat it: --trust builtins.eval"),
])
def test_a_predictor_file_is_data(tmp_path: Path, scans: Path, change: dict, expect: str) -> None:
    write_run(tmp_path / "run", **change)
    with pytest.raises(DataError) as exc:
        predict_manifest(tmp_path / "run", scans, tmp_path / "p.csv")
    assert expect in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert not (tmp_path / "p.csv").exists() and not Path("pwned").exists()


def test_no_interpolation_and_no_weights_file_is_read(tmp_path: Path, scans: Path, monkeypatch) -> None:
    """A string that looks like an OmegaConf interpolation reaches the transform as text (never
    resolved), and model.pretrained in the file is not opened: best.pt holds the weights."""
    monkeypatch.setenv("SECRET_FOR_TEST", "hunter2")
    write_run(tmp_path / "run", transform=[{**NORMALIZE, "mean": "${oc.env:SECRET_FOR_TEST}"}])
    with pytest.raises(DataError) as exc:
        predict_manifest(tmp_path / "run", scans, tmp_path / "p.csv")
    assert "hunter2" not in str(exc.value) and "cannot rebuild the run's model and transforms" in str(exc.value)
    write_run(tmp_path / "run2", model={**MODEL, "pretrained": "/etc/shadow", "pretrained_head": True})
    opened: list[str] = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: opened.append(str(f)) or real(f, *a, **k))
    assert ImagePredictor.load(tmp_path / "run2").shape == (1, 16, 16)
    assert opened == [str(tmp_path / "run2" / "best.pt")]


def test_outside_paths_and_an_existing_output(tmp_path: Path, scans: Path) -> None:
    write_run(tmp_path / "run")
    rows = list(csv.reader(scans.open()))
    rows[3][0] = os.path.abspath(scans.parent / rows[3][0])
    manifest = scans.with_name("abs.csv")
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(DataError, match=r"abs.csv row 3 \(.*\): an absolute path"):
        predict_manifest(tmp_path / "run", manifest, tmp_path / "p.csv")
    predict_manifest(tmp_path / "run", manifest, tmp_path / "p.csv", allow_outside=True)
    with pytest.raises(DataError, match="exists; pass --overwrite"):
        predict_manifest(tmp_path / "run", manifest, tmp_path / "p.csv")
