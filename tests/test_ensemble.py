"""A tuned bag predicts as one model (``survopt-predict <ensemble>``), and predictions keep the input's IDs.

The bags are survopt-tune's own (``final_runs`` on GBSG2 cut into a training and a test file); each
member is also scored on its own through ``survopt-predict <its run dir>``, the reference the
ensemble's risk and S(t|x) are compared with.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from survopt_hydra.survival.data import DataError
from survopt_hydra.survival.metrics import concordance_index

pytest.importorskip("optuna", reason="survopt-tune needs optuna (pip install survopt-hydra[tune])")
pytestmark = pytest.mark.slow  # the module fixture trains survopt-tune's final runs
ROOT = Path(__file__).resolve().parents[1]
TIMES = [365.0, 1000.0, 2000.0]
#: ID cells a spreadsheet would mangle: leading zeros, a number-like text, a comma, a quote, non-ASCII, empty.
IDS = ["007", "1e3", "A-12", 'Oslo, "NO"', "Zürich", "", "0.50"]


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """survopt-tune's final runs (2 folds x seeds 0, 1) on a train/test pair, and a test file with IDs."""
    import pandas as pd
    from lifelines.datasets import load_gbsg2

    from survopt_hydra.app.tools import tune

    root = tmp_path_factory.mktemp("bags")
    df = load_gbsg2()
    df.iloc[:500].to_csv(root / "train.csv", index=False)
    test = df.iloc[500:].reset_index(drop=True)
    test.to_csv(root / "test.csv", index=False)
    ids = test.assign(patient_id=[IDS[i % len(IDS)] + f"-{i:04d}" if i % len(IDS) != 5 else "" for i in range(len(test))],
                      site=[IDS[(i + 3) % len(IDS)] for i in range(len(test))])
    ids[["patient_id", *df.columns, "site"]].to_csv(root / "rows.csv", index=False)
    base = ["data=csv", f"data.path={root / 'train.csv'}", f"data.test_path={root / 'test.csv'}",
            "data.duration_col=time", "data.event_col=cens", "trainer.max_epochs=3"]
    logging.disable(logging.WARNING)
    final = tune.final_runs(base, ["model.hidden=[8]"], [0, 1], root / "out", folds=2, jobs=1)
    logging.disable(logging.NOTSET)
    return root, final, test


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def predict(model: Path, rows: Path, out: Path, **kw) -> list[dict[str, str]]:
    from survopt_hydra.app.predict import predict_file

    predict_file(model, rows, out, times=TIMES, **kw)
    return read(out)


def column(out: list[dict[str, str]], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in out])


def test_an_ensemble_predicts_the_mean_of_its_members(bags, tmp_path):
    """survopt-predict on ensemble_seed0: risk = the mean of the members' own survopt-predict risks, each
    standardized by the shift and scale the ensemble names (their validation mean and sd, as bags.json says);
    S(t|x) = the mean of the members' S(t|x). Its test C-index is the one survopt-tune reported for the bag."""
    root, final, test = bags
    out = root / "out"
    proc = subprocess.run([sys.executable, "scripts/predict.py", str(out / "ensemble_seed0"), str(root / "rows.csv"),
                           "--times", ",".join(f"{t:g}" for t in TIMES), "--id-cols", "patient_id,site",
                           "--out", str(tmp_path / "ens.csv")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ens = read(tmp_path / "ens.csv")
    assert list(ens[0]) == ["row", "patient_id", "site", "risk", "S(365)", "S(1000)", "S(2000)"]
    spec = json.loads((out / "ensemble_seed0" / "ensemble.json").read_text())
    bag = json.loads((out / "bags.json").read_text())["bags"]["0"]
    assert [m["name"] for m in spec["members"]] == [m["run_dir"] for m in bag] == ["final_seed0_fold0",
                                                                                   "final_seed0_fold1"]
    risks, curves = [], []
    for member, stats in zip(spec["members"], bag):
        assert (member["shift"], member["scale"]) == (stats["val_mean"], stats["val_sd"])
        own = predict(out / member["name"], root / "test.csv", tmp_path / f"{member['name']}.csv")  # its run dir
        risks.append((column(own, "risk") - member["shift"]) / member["scale"])
        curves.append(np.stack([column(own, f"S({t:g})") for t in TIMES], 1))
    np.testing.assert_allclose(column(ens, "risk"), np.mean(risks, axis=0), rtol=0, atol=1e-12)
    surv = np.stack([column(ens, f"S({t:g})") for t in TIMES], 1)
    np.testing.assert_allclose(surv, np.mean(curves, axis=0), rtol=0, atol=1e-12)
    assert (np.diff(surv, axis=1) <= 0).all() and ((surv > 0) & (surv < 1)).all()
    assert not np.allclose(risks[0], risks[1])  # two different members, not one counted twice
    c = concordance_index(column(ens, "risk"), test["time"].to_numpy(), test["cens"].to_numpy())
    assert c == pytest.approx(final["test_cindex_runs"][0], abs=1e-12)
    every = predict(out / "ensemble_all", root / "test.csv", tmp_path / "all.csv")
    assert concordance_index(column(every, "risk"), test["time"].to_numpy(), test["cens"].to_numpy()) == \
        pytest.approx(final["bagged_test_cindex"], abs=1e-12)
    assert final["ensembles"] == {name: str(out / name) for name in ("ensemble_seed0", "ensemble_seed1",
                                                                      "ensemble_all")}


def test_id_columns_are_copied_as_text(bags, tmp_path):
    """--id-cols copies each cell as the input holds it (leading zeros, commas, quotes, non-ASCII, empty;
    surrounding spaces trimmed as for every cell), in input order; without it no input column is copied."""
    root, _, _ = bags
    with (root / "rows.csv").open(newline="", encoding="utf-8") as handle:
        cells = list(csv.DictReader(handle))
    out = predict(root / "out" / "final_seed1_fold0", root / "rows.csv", tmp_path / "ids.csv",
                  id_cols=["site", "patient_id"])
    assert list(out[0])[:3] == ["row", "site", "patient_id"]
    assert [(r["site"], r["patient_id"]) for r in out] == [(c["site"], c["patient_id"]) for c in cells]
    assert {r["site"] for r in out} == set(IDS) and "007-0000" in {r["patient_id"] for r in out}
    assert '"Oslo, ""NO"""' in (tmp_path / "ids.csv").read_text(encoding="utf-8")  # quoted as CSV quotes it
    plain = predict(root / "out" / "final_seed1_fold0", root / "rows.csv", tmp_path / "plain.csv")
    assert list(plain[0]) == ["row", "risk", *(f"S({t:g})" for t in TIMES)]
    assert column(plain, "risk").tolist() == column(out, "risk").tolist()


def test_bad_id_cols_are_one_line_and_write_nothing(bags, tmp_path):
    from survopt_hydra.app.predict import parse_id_cols, predict_file

    root, _, _ = bags
    run = root / "out" / "final_seed0_fold0"
    cases = [(["mrn"], "--id-cols: 'mrn' not in"), (["risk"], "--id-cols: 'risk' is an output column's name"),
             (["S(365)"], "--id-cols: 'S(365)' is an output column's name"),
             (["site", "site"], "--id-cols: a column is named twice")]
    for names, piece in cases:
        with pytest.raises(DataError) as err:
            predict_file(run, root / "rows.csv", tmp_path / "x.csv", times=TIMES, id_cols=names)
        assert str(err.value).startswith(piece) and "\n" not in str(err.value)
        assert not list(tmp_path.iterdir())
    with pytest.raises(DataError, match="an empty name"):
        parse_id_cols("patient_id,,site")
    assert parse_id_cols(" patient_id , site") == ["patient_id", "site"]


def _forge(bags, tmp_path, name: str) -> Path:
    root, _, _ = bags
    copy = tmp_path / name
    shutil.copytree(root / "out" / "ensemble_seed0", copy, symlinks=True)
    return copy


def test_a_forged_ensemble_is_refused_in_one_line(bags, tmp_path):
    """An ensemble folder is untrusted: a member named as a path, a link where a member folder or the file
    should be, impossible shifts and scales, members reading other columns - each one line, naming the file;
    nothing outside the folder is read (the decoy member outside would load fine)."""
    from survopt_hydra.app.ensemble import ENSEMBLE, load_predictor

    root, _, _ = bags
    decoy = tmp_path / "decoy"
    shutil.copytree(root / "out" / "final_seed0_fold0", decoy)

    def spec_edit(folder: Path, change) -> None:
        spec = json.loads((folder / ENSEMBLE).read_text())
        change(spec)
        (folder / ENSEMBLE).write_text(json.dumps(spec))

    cases = {
        "path_name": (lambda f: spec_edit(f, lambda s: s["members"][0].update(name="../../decoy")),
                      "members[0].name: '../../decoy' is not a plain, unique folder name"),
        "twice": (lambda f: spec_edit(f, lambda s: s["members"].append(dict(s["members"][0]))),
                  "members[2].name: 'final_seed0_fold0' is not a plain, unique folder name"),
        "scale": (lambda f: spec_edit(f, lambda s: s["members"][1].update(scale=0.0)),
                  "members[1]: shift must be finite and scale finite and > 0"),
        "nan": (lambda f: spec_edit(f, lambda s: s["members"][1].update(shift=float("nan"))),
                "members[1]: shift must be finite"),
        "format": (lambda f: spec_edit(f, lambda s: s.update(format="survopt-ensemble/9")),
                   "format 'survopt-ensemble/9', expected 'survopt-ensemble/1'"),
        "empty": (lambda f: spec_edit(f, lambda s: s.update(members=[])), "members: a list of 1 to 1000 members"),
        "member_link": (lambda f: (shutil.rmtree(f / "members" / "final_seed0_fold1"),
                                   (f / "members" / "final_seed0_fold1").symlink_to(decoy)),
                        "final_seed0_fold1: a symbolic link, not a member folder"),
        "members_link": (lambda f: (shutil.rmtree(f / "members"), (f / "members").mkdir(),
                                    os.rename(f / "members", tmp_path / "moved"), (f / "members").symlink_to(tmp_path / "moved")),
                         "members: a symbolic link, not a member folder"),
        "file_link": (lambda f: ((f / ENSEMBLE).rename(tmp_path / "elsewhere.json"),
                                 (f / ENSEMBLE).symlink_to(tmp_path / "elsewhere.json")),
                      "ensemble.json: a symbolic link, not an ensemble file"),
        "missing": (lambda f: shutil.rmtree(f / "members" / "final_seed0_fold1"),
                    "final_seed0_fold1: missing, not a member folder"),
        "bad_member": (lambda f: (f / "members" / "final_seed0_fold1" / "best.pt").write_bytes(b"not a checkpoint"),
                       "best.pt: unreadable"),
    }
    for name, (forge, piece) in cases.items():
        folder = _forge(bags, tmp_path, name)
        forge(folder)
        with pytest.raises(DataError) as err:
            load_predictor(folder)
        assert piece in str(err.value) and "\n" not in str(err.value), (name, str(err.value))
    bigger = _forge(bags, tmp_path, "bigger")
    (bigger / ENSEMBLE).write_text(" " * (2 << 20))
    with pytest.raises(DataError, match="more than an ensemble file holds"):
        load_predictor(bigger)


def test_save_ensemble_refuses_a_taken_name_and_an_unusable_run(bags, tmp_path):
    from survopt_hydra.app.ensemble import save_ensemble

    root, _, _ = bags
    run = root / "out" / "final_seed0_fold0"
    (tmp_path / "taken").mkdir()
    with pytest.raises(DataError, match="exists; an ensemble is written into a new folder"):
        save_ensemble(tmp_path / "taken", [(run, 0.0, 1.0)])
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "best.pt").unlink()
    with pytest.raises(DataError, match="best.pt"):
        save_ensemble(tmp_path / "new", [(run, 0.0, 1.0), (broken, 0.0, 1.0)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "taken"]  # no half-written ensemble
    one = save_ensemble(tmp_path / "one", [(run, 0.25, 2.0)])
    assert sorted(p.relative_to(one).as_posix() for p in one.rglob("*")) == [
        "ensemble.json", "members", "members/final_seed0_fold0", "members/final_seed0_fold0/best.pt",
        "members/final_seed0_fold0/predictor.json"]
    assert (one / "members/final_seed0_fold0/best.pt").read_bytes() == (run / "best.pt").read_bytes()
