"""benchmarks/bench_families.py --merge: the families preset is a choice on validation figures only, and an
outer-fold mean averages its folds' own choices, also when the folds' families come from several files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_families  # noqa: E402


def _family(val: float, test: float) -> dict:
    return {"best_val": val, "test_cindex": test, "test_antolini": test, "test_ibs": 0.2 - test / 10}


META = {"machine": "m", "started_utc": "t0", "written_utc": "t1", "command": "c", "trials": 1, "folds": 2,
        "final_seeds": [0]}


def _fold(label: str, families: dict) -> dict:
    return {"dataset": label, "n_train_val": 100, "n_test": 25, "families": families,
            "peers": {"rsf": {"test_harrell": 0.7, "test_antolini": 0.7, "test_ibs": 0.1}}}


def test_merge_chooses_on_validation_and_averages_the_folds_own_choices(tmp_path: Path) -> None:
    # fold 0 validates best with b, fold 1 with a: the mean row's preset is b/a, not the family with the best mean
    fold0 = _fold("c_outer0", {"a": _family(0.70, 0.90), "b": _family(0.80, 0.50)})
    fold1 = _fold("c_outer1", {"a": _family(0.75, 0.60), "b": _family(0.74, 0.95)})
    for row in (fold0, fold1):
        bench_families.choose_family(row)
    summary = bench_families.outer_summary("c", [fold0, fold1])
    assert summary["families_preset"]["family"] == "b/a"
    assert summary["families_preset"]["test_cindex"] == (0.50 + 0.60) / 2
    part = {**META, "rows": [fold0, fold1, summary]}
    # a second file adds family d to both folds; d validates best on fold 1 only (not in the first file's mean)
    more = {"rows": [_fold("c_outer0", {"d": _family(0.60, 0.99)}), _fold("c_outer1", {"d": _family(0.90, 0.40)}),
                     _fold("single", {"a": _family(0.5, 0.6), "d": _family(0.55, 0.3)})], **META}
    paths = []
    for i, content in enumerate((part, more)):
        paths.append(tmp_path / f"p{i}.json")
        paths[-1].write_text(json.dumps(content))
    bench_families.merge(paths, tmp_path / "out")
    rows = {r["dataset"]: r for r in json.loads((tmp_path / "out" / "families.json").read_text())["rows"]}
    mean = rows["c: mean of 2 outer folds"]
    assert rows["c_outer1"]["families_preset"]["family"] == "d"
    assert mean["families_preset"]["family"] == "b/d"
    assert mean["families_preset"]["test_cindex"] == (0.50 + 0.40) / 2
    assert mean["families"]["d"]["best_val"] == (0.60 + 0.90) / 2
    assert rows["single"]["families_preset"]["family"] == "d"  # the best validation, whatever its test figure
    assert "b/d" in (tmp_path / "out" / "families.md").read_text()
