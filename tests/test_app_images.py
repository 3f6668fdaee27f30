"""The app on image files, run as a user would: scripts/train.py data=images ... and survopt-predict.

Fixtures are written by the tests: synthetic scans (the hazard grows with the blob each image shows)
as 16-bit PNGs, some rows as .npy arrays, with a manifest; the user's own nn.Module lives in
tests/user_code/scan_models.py, put on PYTHONPATH as a user's project folder would be.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from survopt_hydra.app.synthetic_scans import NORMALIZE, write_synthetic_scans

ROOT = Path(__file__).resolve().parents[1]
USER_CODE = Path(__file__).resolve().parent / "user_code"
PRETRAINED = "pkg://survopt_hydra/app/pretrained/cnn_synthetic32.pt"
NORM = "data.transform=[{_target_:%s,mean:%s,std:%s}]" % (NORMALIZE["_target_"], NORMALIZE["mean"], NORMALIZE["std"])
FLIP = "data.augment=[{_target_:survopt_hydra.app.image_transforms.RandomFlip,p:0.5}]"

pytestmark = pytest.mark.slow


def run(args: list[str], check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = os.pathsep.join([str(USER_CODE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def train(run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["scripts/train.py", f"hydra.run.dir={run_dir}", "data=images", *overrides], check)


def predict(run_dir: Path, manifest: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["scripts/predict.py", str(run_dir), str(manifest), *args], check)


def metrics(run_dir: Path) -> dict:
    out = json.loads((run_dir / "metrics.json").read_text())
    out.pop("train_seconds")
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def harrell(durations, risk, events) -> float:
    from lifelines.utils import concordance_index

    return concordance_index(np.asarray(durations, float), -np.asarray(risk, float), np.asarray(events, float))


def last_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """160 16x16 scans: odd data rows 16-bit PNGs, even ones the same values as .npy files."""
    folder = tmp_path_factory.mktemp("scans")
    manifest = write_synthetic_scans(folder, 160, size=16, seed=5)
    table = list(csv.reader(manifest.open()))
    for row in table[2::2]:  # data rows 2, 4, ...: .npy
        png = folder / row[0]
        np.save(png.with_suffix(".npy"), np.asarray(Image.open(png), dtype=np.float32)[None] / 65535)
        png.unlink()
        row[0] = png.with_suffix(".npy").name
    with manifest.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(table)
    return manifest


def test_finetuning_demo_from_png_files_matches_the_in_memory_run(tmp_path: Path) -> None:
    """README's fine-tuning demo, shortened: the scans written as PNG files + a manifest give the in-memory
    run's figures (the 16-bit pixels differ from the floats by < 6e-5); the run then predicts new scans."""
    demo = ["data.signal=area", "data.n=400"]
    common = ["data.val_fraction=0.2", "data.test_fraction=0.6", "model=cnn", "+preset=finetune",
              f"model.pretrained={PRETRAINED}", "model.pretrained_head=true", "trainer.max_epochs=6"]
    manifest = write_synthetic_scans(tmp_path / "scans", 400, signal="area")
    train(tmp_path / "files", f"data.manifest={manifest}", NORM, *common)
    run(["scripts/train.py", f"hydra.run.dir={tmp_path / 'memory'}", "data=synthetic_images", *demo, *common])
    a, b = metrics(tmp_path / "files"), metrics(tmp_path / "memory")
    assert a["best_epoch"] == b["best_epoch"] and (a["n_train"], a["n_val"], a["n_test"]) == (81, 79, 240)
    for key in ("test_cindex", "val_cindex", "test_ibs", "test_uno_cindex"):
        assert a[key] == pytest.approx(b[key], abs=1e-4), key
    assert a["test_source"] == str(manifest)

    new = write_synthetic_scans(tmp_path / "new", 500, signal="area", start=400)  # 100 patients never seen
    done = predict(tmp_path / "files", new, "--times", "5,20")
    assert done.stdout.strip() == f"wrote 100 predictions to {new.with_name('manifest.predictions.csv')}"
    out, truth = rows(new.with_name("manifest.predictions.csv")), rows(new)
    assert [r["path"] for r in out] == [t["path"] for t in truth] and list(out[0]) == ["row", "path", "risk", "S(5)",
                                                                                        "S(20)"]
    assert harrell([t["time"] for t in truth], [r["risk"] for r in out], [t["event"] for t in truth]) > 0.75
    s5, s20 = np.array([float(r["S(5)"]) for r in out]), np.array([float(r["S(20)"]) for r in out])
    assert ((0 <= s20) & (s20 <= s5) & (s5 <= 1)).all()


def test_users_own_module_trains_with_workers_and_predicts_with_trust(scans: Path, tmp_path: Path) -> None:
    """model=custom model._target_=<the user's class> on PNG + .npy files, 2 DataLoader workers and
    train-only augmentation; predict refuses to import the class until the user repeats it."""
    run_dir = tmp_path / "run"
    train(run_dir, f"data.manifest={scans}", NORM, FLIP, "data.num_workers=2", "model=custom",
          "model._target_=scan_models.ScanNet", "+model.width=8", "trainer.max_epochs=8", "trainer.batch_size=32")
    m = metrics(run_dir)
    assert m["test_cindex"] > 0.65 and m["n_train"] + m["n_val"] + m["n_test"] == 160
    art = json.loads((run_dir / "predictor.json").read_text())
    assert art["model"] == {"name": "custom", "_target_": "scan_models.ScanNet", "width": 8} and "augment" not in art

    refused = predict(run_dir, scans, check=False)
    assert refused.returncode == 2 and last_line(refused) == (
        f"error: {run_dir / 'predictor.json'}: model._target_=scan_models.ScanNet: a file never chooses code to "
        "import; if the run's training config named it, repeat it: --trust scan_models.ScanNet")
    assert not scans.with_name("manifest.predictions.csv").exists()

    out = tmp_path / "all.csv"
    predict(run_dir, scans, "--trust", "scan_models.ScanNet", "--num-workers", "2", "--out", str(out))
    risk = {r["path"]: float(r["risk"]) for r in rows(out)}
    manifest = {r["time"]: r["path"] for r in rows(scans)}
    tested = rows(run_dir / "test_predictions.csv")  # the run's own test-set risks, same model
    assert len(tested) == m["n_test"]
    for row in tested:
        assert float(row["risk"]) == pytest.approx(risk[manifest[row["duration"]]], abs=1e-5)


def test_resume_with_workers_and_augmentation_ends_as_an_uninterrupted_run(scans: Path, tmp_path: Path) -> None:
    args = [f"data.manifest={scans}", NORM, FLIP, "data.num_workers=2", "model=cnn", "model.channels=[4]",
            "trainer.max_epochs=4", "trainer.batch_size=32", "trainer.checkpoint_every=1"]
    train(tmp_path / "a", *args)
    stopped = train(tmp_path / "b", *args, "trainer.stop_after_epochs=2", check=False)
    assert stopped.returncode == 0 and not (tmp_path / "b" / "metrics.json").exists()
    train(tmp_path / "b", *args)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


def test_monai_resnet18_backbone_finetunes_from_local_weights(scans: Path, tmp_path: Path) -> None:
    nets = pytest.importorskip("monai.networks.nets", reason="MONAI is in the images extra")
    import torch

    kwargs = {"spatial_dims": 2, "n_input_channels": 1, "widen_factor": 0.25}
    torch.manual_seed(0)
    torch.save(nets.resnet18(**kwargs).state_dict(), tmp_path / "resnet18.pt")
    proc = train(tmp_path / "run", f"data.manifest={scans}", NORM, "model=backbone",
                 "model.backbone._target_=monai.networks.nets.resnet18",
                 *(f"+model.backbone.{k}={v}" for k, v in kwargs.items()), f"model.pretrained={tmp_path / 'resnet18.pt'}",
                 "+preset=finetune", "trainer.max_epochs=2", "trainer.batch_size=64")
    assert "warning" not in proc.stderr
    epochs = rows(tmp_path / "run" / "epochs.csv")
    assert {"lr/backbone.*", "lr/default"} <= set(epochs[0])
    assert float(epochs[0]["lr/backbone.*"]) == pytest.approx(0.1 * float(epochs[0]["lr/default"]))
    assert metrics(tmp_path / "run")["epochs_run"] == 2


def test_bad_image_files_are_one_line(scans: Path, tmp_path: Path) -> None:
    """Outside the folder: refused before anything is written. Truncated past its header: found when
    first read, mid-run, with the same kind of line (exit 2, no traceback)."""
    table = rows(scans)
    bad = scans.with_name("outside.csv")
    with bad.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "time", "event"])
        writer.writerows([[("../x.png" if i == 3 else r["path"]), r["time"], r["event"]] for i, r in enumerate(table)])
    proc = train(tmp_path / "refused", f"data.manifest={bad}", "model=cnn", check=False)
    assert proc.returncode == 2 and last_line(proc).startswith(f"error: {bad} row 4 (../x.png): resolves to ")
    assert not (tmp_path / "refused").exists()

    png = next(r["path"] for r in table if r["path"].endswith(".png"))
    whole = (scans.parent / png).read_bytes()
    (scans.parent / "cut.png").write_bytes(whole[:-30])
    cut = scans.with_name("cut.csv")
    with cut.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "time", "event"])
        writer.writerows([[("cut.png" if r["path"] == png else r["path"]), r["time"], r["event"]] for r in table])
    proc = train(tmp_path / "cut", f"data.manifest={cut}", "model=cnn", "data.num_workers=2", check=False)
    row = 1 + [r["path"] for r in table].index(png)
    assert proc.returncode == 2 and last_line(proc).startswith(
        f"error: {cut} row {row} (cut.png): corrupt or truncated image"), proc.stderr[-2000:]
    proc = train(tmp_path / "verified", f"data.manifest={cut}", "model=cnn", "data.verify=full", check=False)
    assert proc.returncode == 2 and f"row {row} (cut.png): corrupt" in last_line(proc)
    assert not (tmp_path / "verified").exists()


def test_users_own_module_on_a_table(tmp_path: Path) -> None:
    """model=custom on tabular data gets in_features; survopt-predict scores a CSV with it once trusted."""
    from survopt_hydra.survival.data import resolve_path

    run_dir = tmp_path / "run"
    run(["scripts/train.py", f"hydra.run.dir={run_dir}", "data=gbsg2", "model=custom",
         "model._target_=scan_models.TableNet", "+model.hidden=4", "trainer.max_epochs=5"])
    assert metrics(run_dir)["test_cindex"] > 0.6
    table = resolve_path("pkg://lifelines/datasets/gbsg2.csv")
    refused = predict(run_dir, table, "--out", str(tmp_path / "p.csv"), check=False)
    assert refused.returncode == 2 and last_line(refused).endswith("--trust scan_models.TableNet")
    predict(run_dir, table, "--out", str(tmp_path / "p.csv"), "--trust", "scan_models.*")
    assert len(rows(tmp_path / "p.csv")) == 686
