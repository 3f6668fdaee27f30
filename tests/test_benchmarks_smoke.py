"""Smoke test of the benchmark suite: ``benchmarks/run.py --quick`` runs and writes valid output.

Not a timing test: nothing here asserts on speed, only that every figure is present
(a number, or a ``skipped: ...`` reason) and the JSON/Markdown files are well formed.
The modules owned by other code (``bench_agc``, ``bench_monitors``) are skipped with
``--skip`` to keep this fast; the runner's handling of a missing module is tested
directly instead.
"""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"

NUMERIC_IN_QUICK = (
    "import_overhead_s",
    "compose_instantiate_ms",
    "compose_instantiate_cold_ms",
    "adamw_default_fraction_of_triad",
    "adamw_forloop_fraction_of_triad",
    "adamw_foreach_fraction_of_triad",
    "sgd_default_fraction_of_triad",
    "engine_over_raw_ratio",
    "engine_over_guarded_raw_ratio",
)
SKIPPED_IN_QUICK = (
    "peer_mmengine_step_ratio",
    "peer_lightning_step_ratio",
    "peer_timm_step_ratio",
    "app_train_seconds",
    "time_to_cindex_s",
    "default_run_wall_s",
    "sweep6_sequential_wall_s",
    "sweep6_parallel_wall_s",
    "parallel_sweep_speedup",
    "sweep_job_overhead_s",
)
OTHER_OWNERS = ("agc_speedup", "monitor_overhead_fraction")


def _load_runner():
    spec = importlib.util.spec_from_file_location("bench_run_under_test", RUN)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_suite_writes_json_and_markdown(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out-dir", str(tmp_path), "--tag", "smoke",
         "--skip", "bench_agc", "bench_monitors"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert (tmp_path / "smoke.md").read_text().startswith("Machine `")

    assert data["quick"] is True
    for key in ("cpu", "cores", "torch", "python", "tag"):
        assert data["machine"][key], key
    assert data["date"]

    figures = data["figures"]
    for key in NUMERIC_IN_QUICK:
        value = figures[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    for key in SKIPPED_IN_QUICK + OTHER_OWNERS:
        assert str(figures[key]).startswith("skipped:"), (key, figures[key])

    # every target names a reported figure, and "met" has a verdict for each numeric target
    for key, (op, bound) in data["targets"].items():
        assert key in figures and op in (">=", "<=") and isinstance(bound, (int, float))
        if isinstance(figures[key], (int, float)):
            assert isinstance(data["met"][key], bool)
    assert set(data["met"]) == set(figures)
    assert data["details"]["bench_optim"]["implementations"]["adamw_default"] == "fused"


def test_missing_module_is_recorded_as_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _load_runner()
    monkeypatch.setitem(runner.MODULES, "bench_not_there", ("some_figure",))
    monkeypatch.setattr(runner, "OWNED_ELSEWHERE", runner.OWNED_ELSEWHERE | {"bench_not_there"})
    details, figures = runner.run_module("bench_not_there", quick=True)
    assert figures == {"some_figure": "skipped: not available"}
    assert runner.check(figures["some_figure"], (">=", 1.0)) is None


def test_targets_and_reproducibility_helpers() -> None:
    runner = _load_runner()
    assert runner.check(0.9, (">=", 0.8)) is True
    assert runner.check(1.05, ("<=", 1.02)) is False
    repro = runner.reproducibility({"figures": {"a": 1.0, "b": 2.0, "c": "skipped: x"}},
                                   {"a": 1.05, "b": 2.5, "c": 3.0})
    assert repro["figures"]["a"]["within_tolerance"] is True
    assert repro["figures"]["b"]["within_tolerance"] is False
    assert "c" not in repro["figures"] and repro["all_within_tolerance"] is False


@pytest.mark.slow
def test_sweep_benchmark_quick_reports_every_figure() -> None:
    """bench_sweep --quick: one default run and the 6-job sweep both ways; figures are numbers and
    consistent with each other (not a timing test)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_sweep

    res = bench_sweep.run(quick=True)
    for key in ("default_run_wall_s", "torch_floor_s", "sweep6_sequential_wall_s", "sweep6_parallel_wall_s",
                "parallel_sweep_speedup"):
        assert isinstance(res[key], float) and res[key] > 0, key
    assert res["default_run_wall_s"] > res["default_run_train_s"] > 0
    assert 0 < res["torch_import_s"] < res["default_run_wall_s"]
    run = res["runs"]["default"][0]
    assert run["beyond_import"] == pytest.approx(run["wall"] - run["import"] - run["train"])
    assert res["sweep6_sequential_wall_s"] > res["sweep6_train_s_sum"] > 0
    assert res["parallel_sweep_speedup"] == pytest.approx(
        res["sweep6_sequential_wall_s"] / res["sweep6_parallel_wall_s"], rel=1e-2)
    assert math.isfinite(res["sweep_job_overhead_s"]) and math.isfinite(res["sweep_job_overhead_parallel_s"])
