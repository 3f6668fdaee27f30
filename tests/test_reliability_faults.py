"""Faults lose nothing (issue: reliability, items 2-5).

Subprocess scenarios of the real app - SIGKILL mid-epoch, mid-checkpoint-write and between
the checkpoint rotation's two renames, SIGTERM / SIGINT, a truncated ``last.pt`` - each
rerun with the same command and compared with one uninterrupted reference run
(identical test_cindex, val_cindex, best_epoch, epochs_run and every other figure but
wall time). They run two at a time in a module fixture (the CI box has 2 cores).

The failure windows are made hittable with the test-only ``trainer.fault_injection``
(app/state.py): ``sleep_step@B`` pauses inside training batch B, ``sleep_save@E`` while
epoch E's ``last.pt`` temp file is complete but not yet renamed, ``sleep_rotate@E``
between ``last.pt -> last.prev.pt`` and ``tmp -> last.pt``. The app logs a line when it
enters the window; the test waits for that line, then kills. ``fault_injection`` is an
operational key, so the reference run (without it) computes exactly the same.

In-process (``train(cfg, run_dir)``): NaN injection (steps skipped, counted, logged; the
stop after ``trainer.max_nonfinite_steps``), incompatible resumes, a pickled object in a
checkpoint, checksums, raising max_epochs, and same-seed determinism.
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from scenario_pool import run_scenarios

ROOT = Path(__file__).resolve().parents[1]
# GBSG2: one full batch per epoch keeps the batch/epoch arithmetic of the fault windows simple
RUN = ["data=gbsg2", "trainer.max_epochs=10", "trainer.checkpoint_every=1", "trainer.early_stopping_patience=null", "trainer.log_interval=2", "optimizer.lr=3e-3"]
SLEEP = 1.0  # seconds a fault window stays open; the test kills inside it
COMPARED = ("test_cindex", "val_cindex", "best_epoch", "epochs_run")

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------ helpers
def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def _cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "scripts/train.py", f"hydra.run.dir={run_dir}", *RUN, *extra]


def app(run_dir: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(run_dir, *extra), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_env())


def interrupt_at(run_dir: Path, fault: str, sig: int, when: Callable[[Path], None] | None = None,
                 timeout: float = 90) -> tuple[int, str, str]:
    """Run with ``trainer.fault_injection=fault``, send ``sig`` once the fault window opens.

    ``when(run_dir)`` runs (assertions on the files) between the window opening and the signal.
    Returns (exit status, stdout, stderr).
    """
    proc = subprocess.Popen(_cmd(run_dir, f"trainer.fault_injection={fault}"), cwd=ROOT, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    seen: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if "fault injection:" in line:
                if when is not None:
                    when(run_dir)
                proc.send_signal(sig)
                break
        else:
            raise AssertionError("the fault window never opened:\n" + "".join(seen[-20:]))
        out, err = proc.communicate(timeout=timeout)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen) + out, err


def metrics_of(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds")  # wall time: the only figure allowed to differ
    return metrics


def epoch_of(path: Path) -> int:
    from survopt_hydra.app.checkpoint import load_checkpoint

    return load_checkpoint(path)["progress"]["epoch"]


def best_of(run_dir: Path) -> tuple[int, dict]:
    """(epoch, weights) of ``best.pt``, checksum verified."""
    from survopt_hydra.app.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "best.pt")
    return state["epoch"], state["model"]


def assert_best_matches(run_dir: Path, reference: Path | None = None) -> None:
    """best.pt holds the epoch metrics.json names, with last.pt's best weights (and the reference run's)."""
    from survopt_hydra.app.checkpoint import load_checkpoint

    epoch, weights = best_of(run_dir)
    assert epoch == json.loads((run_dir / "metrics.json").read_text())["best_epoch"]
    recorded = load_checkpoint(run_dir / "last.pt")["progress"]["best_weights"]
    assert weights.keys() == recorded.keys() and all(torch.equal(weights[k], recorded[k]) for k in weights)
    if reference is not None:
        ref_epoch, ref_weights = best_of(reference)
        assert epoch == ref_epoch and all(torch.equal(weights[k], ref_weights[k]) for k in weights)


def compose(*overrides: str) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    import survopt_hydra.app.train  # noqa: F401  (registers the schemas)

    with initialize_config_module("survopt_hydra.app.train_conf", version_base=None):
        return hydra_compose("train", list(overrides))


def train_inprocess(run_dir: Path, *overrides: str) -> dict:
    from survopt_hydra.app.trainer import train

    return train(compose(*RUN, *overrides), run_dir)


# ------------------------------------------------------------------ the subprocess scenarios
def _kill_mid_epoch(d: Path) -> dict:
    rc, out, _ = interrupt_at(d, f"sleep_step@5:{SLEEP}", signal.SIGKILL)  # 1 batch per epoch: inside epoch 5
    facts = {"rc": rc, "finished": (d / "metrics.json").exists(), "epoch": epoch_of(d / "last.pt")}
    return {**facts, "rerun": app(d, f"trainer.fault_injection=sleep_step@5:{SLEEP}")}


def _assert_mid_write(d: Path) -> None:
    assert list(d.glob(".last.pt.*.tmp")), "no temp file: not inside the checkpoint write"
    assert (d / "last.pt").is_file()


def _kill_mid_save(d: Path) -> dict:
    rc, out, _ = interrupt_at(d, f"sleep_save@6:{SLEEP}", signal.SIGKILL, when=_assert_mid_write)
    facts = {"rc": rc, "finished": (d / "metrics.json").exists(), "epoch": epoch_of(d / "last.pt"),
             "stale_tmp": bool(list(d.glob(".last.pt.*.tmp")))}
    rerun = app(d, f"trainer.fault_injection=sleep_save@6:{SLEEP}")
    return {**facts, "rerun": rerun, "stale_tmp_after": bool(list(d.glob(".last.pt.*.tmp")))}


def _assert_mid_rotation(d: Path) -> None:
    assert not (d / "last.pt").exists() and (d / "last.prev.pt").is_file() and list(d.glob(".last.pt.*.tmp"))


def _kill_mid_rotation(d: Path) -> dict:
    rc, out, _ = interrupt_at(d, f"sleep_rotate@6:{SLEEP}", signal.SIGKILL, when=_assert_mid_rotation)
    facts = {"rc": rc, "finished": (d / "metrics.json").exists(), "last_exists": (d / "last.pt").exists(),
             "epoch": epoch_of(d / "last.prev.pt")}
    return {**facts, "rerun": app(d, f"trainer.fault_injection=sleep_rotate@6:{SLEEP}")}


def _stop_by(sig: int, rerun: bool = True) -> Callable[[Path], dict]:
    def scenario(d: Path) -> dict:
        rc, out, err = interrupt_at(d, f"sleep_save@4:{SLEEP}", sig)  # the signal lands while saving epoch 4
        facts = {"rc": rc, "stderr": err, "finished": (d / "metrics.json").exists(), "epoch": epoch_of(d / "last.pt")}
        return {**facts, "rerun": app(d, f"trainer.fault_injection=sleep_save@4:{SLEEP}") if rerun else None}

    return scenario


def _kill_before_best(d: Path) -> dict:
    """SIGKILL after an improving epoch's last.pt is complete, before its best.pt replaces the old one."""
    from survopt_hydra.app.checkpoint import load_checkpoint

    rc, out, _ = interrupt_at(d, f"sleep_best@4:{SLEEP}", signal.SIGKILL)
    facts = {"rc": rc, "finished": (d / "metrics.json").exists(),
             "last_best": load_checkpoint(d / "last.pt")["progress"]["best_epoch"], "best_pt": best_of(d)[0]}
    return {**facts, "rerun": app(d)}


def _truncated_best(d: Path) -> dict:
    """A truncated best.pt, once mid-run and once after the run finished: neither survives a rerun."""
    first = app(d, "trainer.stop_after_epochs=5")
    data = (d / "best.pt").read_bytes()
    (d / "best.pt").write_bytes(data[: len(data) // 2])
    rerun = app(d)
    facts = {"first_rc": first.returncode, "rerun": rerun, "best_after_rerun": best_of(d)[0]}
    data = (d / "best.pt").read_bytes()
    (d / "best.pt").write_bytes(data[:100])
    return {**facts, "report": app(d)}


def _truncated_last(d: Path) -> dict:
    first = app(d, "trainer.stop_after_epochs=5")
    last, prev = d / "last.pt", d / "last.prev.pt"
    facts = {"first_rc": first.returncode, "epochs": (epoch_of(last), epoch_of(prev))}
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    return {**facts, "rerun": app(d)}


SCENARIOS: dict[str, Callable[[Path], dict]] = {
    "reference": lambda d: {"run": app(d)},
    "kill_mid_epoch": _kill_mid_epoch,
    "kill_mid_save": _kill_mid_save,
    "kill_mid_rotation": _kill_mid_rotation,
    "sigterm": _stop_by(signal.SIGTERM),
    "sigint": _stop_by(signal.SIGINT, rerun=False),  # same code path as SIGTERM; its rerun is tested there
    "truncated_last": _truncated_last,
    "kill_before_best": _kill_before_best,
    "truncated_best": _truncated_best,
}


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("faults")

    out = run_scenarios(SCENARIOS, base, "fault")
    return out


def _result(scenarios: dict, name: str) -> dict:
    r = scenarios[name]
    if "error" in r:
        raise r["error"]
    return r


def _assert_same_as_reference(scenarios: dict, name: str, rerun: subprocess.CompletedProcess) -> None:
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    ref = _result(scenarios, "reference")
    assert ref["run"].returncode == 0, ref["run"].stderr[-3000:]
    a, b = metrics_of(ref["dir"]), metrics_of(scenarios[name]["dir"])
    assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}
    assert a == b  # every figure, optimizer_steps and nonfinite_steps included
    assert "resuming from" in rerun.stdout
    assert_best_matches(scenarios[name]["dir"], ref["dir"])  # best.pt: the epoch metrics.json names, same weights


def test_sigkill_mid_epoch_then_rerun_gives_identical_metrics(scenarios: dict) -> None:
    r = _result(scenarios, "kill_mid_epoch")
    assert r["rc"] == -signal.SIGKILL and not r["finished"]
    assert r["epoch"] == 4  # killed inside epoch 5: last.pt holds epoch 4
    _assert_same_as_reference(scenarios, "kill_mid_epoch", r["rerun"])


def test_sigkill_during_checkpoint_write_keeps_previous_and_resumes(scenarios: dict) -> None:
    r = _result(scenarios, "kill_mid_save")
    assert r["rc"] == -signal.SIGKILL and not r["finished"]
    assert r["epoch"] == 5 and r["stale_tmp"]  # the half-done write of epoch 6 never replaced last.pt
    _assert_same_as_reference(scenarios, "kill_mid_save", r["rerun"])
    assert not r["stale_tmp_after"]  # the rerun cleaned up the dead temp file


def test_sigkill_between_rotation_renames_resumes_from_prev(scenarios: dict) -> None:
    r = _result(scenarios, "kill_mid_rotation")
    assert r["rc"] == -signal.SIGKILL and not r["finished"]
    assert not r["last_exists"] and r["epoch"] == 5  # only last.prev.pt (epoch 5) was complete
    _assert_same_as_reference(scenarios, "kill_mid_rotation", r["rerun"])


@pytest.mark.parametrize("name, code", [("sigterm", 143), ("sigint", 130)])
def test_signal_saves_at_safe_point_and_exits_cleanly(scenarios: dict, name: str, code: int) -> None:
    r = _result(scenarios, name)
    assert r["rc"] == code, r["stderr"][-2000:]
    lines = [line for line in r["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped: SIG") and "rerun the same command" in lines[0]
    assert not r["finished"] and r["epoch"] == 4  # the epoch being saved completed, then the run stopped
    if r["rerun"] is not None:
        _assert_same_as_reference(scenarios, name, r["rerun"])


def test_truncated_last_pt_falls_back_to_previous_with_warning(scenarios: dict) -> None:
    r = _result(scenarios, "truncated_last")
    assert r["first_rc"] == 0 and r["epochs"] == (5, 4)
    assert "last.pt: unreadable" in r["rerun"].stdout and "resuming from last.prev.pt instead" in r["rerun"].stdout
    # the log names the file the run really resumed from (issue 13, defect 9)
    assert f"resuming from {r['dir'] / 'last.prev.pt'} after epoch 4" in r["rerun"].stdout
    _assert_same_as_reference(scenarios, "truncated_last", r["rerun"])


def test_sigkill_between_last_and_best_rebuilds_best_from_last(scenarios: dict) -> None:
    """Issue 13, defect 2: killed after an improving epoch's last.pt, before its best.pt: best.pt is stale
    (holds an earlier epoch); the rerun rebuilds it from the best weights last.pt holds."""
    r = _result(scenarios, "kill_before_best")
    assert r["rc"] == -signal.SIGKILL and not r["finished"]
    assert r["last_best"] >= 4 and r["best_pt"] < r["last_best"]  # the window really left best.pt stale
    assert f"holds epoch {r['best_pt']}, but the best epoch is {r['last_best']}" in r["rerun"].stdout
    _assert_same_as_reference(scenarios, "kill_before_best", r["rerun"])


def test_truncated_best_pt_never_survives_a_successful_rerun(scenarios: dict) -> None:
    r = _result(scenarios, "truncated_best")
    assert r["first_rc"] == 0 and "best.pt: unreadable" in r["rerun"].stdout
    _assert_same_as_reference(scenarios, "truncated_best", r["rerun"])
    report = r["report"]  # a finished run re-reported: best.pt is checked and rebuilt too
    assert report.returncode == 0 and "run already finished" in report.stdout, report.stderr[-2000:]
    assert "best.pt: unreadable" in report.stdout
    assert_best_matches(r["dir"], _result(scenarios, "reference")["dir"])


def test_incompatible_resume_is_refused_and_checkpoint_untouched(scenarios: dict) -> None:
    ref = _result(scenarios, "reference")["dir"]
    before = {p.name: p.read_bytes() for p in ref.iterdir() if p.is_file()}
    hydra_cfg = (ref / ".hydra" / "config.yaml").read_bytes()
    proc = app(ref, "optimizer=sgd")  # a different optimizer: another param-group / state layout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: trainer.resume:") and "different config (optimizer." in lines[0]
    assert {p.name: p.read_bytes() for p in ref.iterdir() if p.is_file()} == before
    assert (ref / ".hydra" / "config.yaml").read_bytes() == hydra_cfg


# ------------------------------------------------------------------ in process
def test_determinism_two_same_seed_runs_are_bit_identical(tmp_path: Path, scenarios: dict) -> None:
    a = train_inprocess(tmp_path / "a")
    b = train_inprocess(tmp_path / "b")
    a.pop("train_seconds"), b.pop("train_seconds")
    assert a == b
    for name in ("epochs.csv", "lr_steps.csv"):
        if name == "epochs.csv":
            strip = lambda t: [",".join(r.split(",")[:-1]) for r in t.splitlines()]  # noqa: E731 (drop seconds)
            assert strip((tmp_path / "a" / name).read_text()) == strip((tmp_path / "b" / name).read_text())
        else:
            assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    wa = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert metrics_of(_result(scenarios, "reference")["dir"]) == a  # and equal to the subprocess run


def test_nan_steps_are_skipped_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="survopt_hydra.app.trainer"):
        metrics = train_inprocess(tmp_path, "trainer.fault_injection=nan_loss@3-4", "trainer.max_nonfinite_steps=3")
    skipped = [r.getMessage() for r in caplog.records if "optimizer step skipped" in r.getMessage()]
    assert len(skipped) == 2 and "(1 in a row" in skipped[0] and "(2 in a row" in skipped[1]
    assert metrics["nonfinite_steps"] == 2 and metrics["optimizer_steps"] == 8 and metrics["epochs_run"] == 10
    assert math.isfinite(metrics["test_cindex"])


def test_nan_limit_stops_the_run_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    from survopt_hydra.app.checkpoint import load_checkpoint
    from survopt_hydra.app.trainer import TrainingError

    with pytest.raises(TrainingError, match=r"3 optimizer steps in a row .* last.pt keeps the last good state "
                                            r"\(epoch 4\)"):
        train_inprocess(tmp_path, "trainer.fault_injection=nan_loss@3-99", "trainer.max_nonfinite_steps=3")
    state = load_checkpoint(tmp_path / "last.pt")  # checksum verified
    assert state["progress"]["epoch"] == 4 and state["engine"]["counters"]["consecutive_nonfinite"] == 2
    assert state["engine"]["counters"]["nonfinite_steps"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()


def test_raising_max_epochs_continues_a_finished_run_exactly(tmp_path: Path) -> None:
    """With a schedule that does not depend on the run length, 4 epochs + 4 more == 8 epochs."""
    sched = ("scheduler=step", "scheduler.step_size=3")
    full = train_inprocess(tmp_path / "full", *sched, "trainer.max_epochs=8")
    train_inprocess(tmp_path / "grown", *sched, "trainer.max_epochs=4")
    grown = train_inprocess(tmp_path / "grown", *sched, "trainer.max_epochs=8")
    full.pop("train_seconds"), grown.pop("train_seconds")
    assert grown == full


def test_refused_resumes_leave_checkpoints_byte_identical(tmp_path: Path) -> None:
    import csv

    from survopt_hydra.errors import ConfigError

    train_inprocess(tmp_path, "trainer.max_epochs=4")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    # a longer run whose cosine schedule spans the whole run cannot continue this one
    with pytest.raises(ConfigError, match=r"trainer.max_epochs: 4 -> 6; the LR schedule spans the whole run"):
        train_inprocess(tmp_path, "trainer.max_epochs=6")
    with pytest.raises(ConfigError, match=r"trainer.max_epochs: 4 -> 3 \(may only grow on resume\)"):
        train_inprocess(tmp_path, "trainer.max_epochs=3")
    with pytest.raises(ConfigError, match=r"different config \(model.hidden: \[16\] -> \[8\]\)"):
        train_inprocess(tmp_path, "trainer.max_epochs=4", "model.hidden=[8]")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before

    # the same config over a data file whose columns changed: the model no longer fits
    rows = [[1.0 + i, i % 2, 40 + i, i % 5] for i in range(60)]
    path = tmp_path / "cohort.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["time", "event", "age", "grade"], *rows])
    run = tmp_path / "csv_run"
    train_inprocess(run, "data=csv", f"data.path={path}", "trainer.stop_after_epochs=2")
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["time", "event", "age", "grade", "size"], *[r + [i] for i, r in enumerate(rows)]])
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"trainer.resume: .*last.pt does not fit this run's model/optimizer"):
        train_inprocess(run, "data=csv", f"data.path={path}")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


class _Evil:
    """Pickles as a call to os.makedirs: executing the checkpoint would create a folder."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.makedirs, (str(self.target),))


def test_checkpoint_with_pickled_object_is_refused_never_executed(tmp_path: Path) -> None:
    from survopt_hydra.app.checkpoint import CheckpointError, load_checkpoint
    from survopt_hydra.errors import ConfigError

    marker = tmp_path / "pwned"
    evil = tmp_path / "last.pt"
    torch.save({"config": {}, "progress": {}, "payload": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"refused: the file holds pickled Python objects .*weights_only=True"):
        load_checkpoint(evil)
    before = evil.read_bytes()
    with pytest.raises(ConfigError, match=r"trainer.resume: cannot resume: .*last.pt: refused"):
        train_inprocess(tmp_path)
    assert not marker.exists() and evil.read_bytes() == before


def test_checksum_detects_damage_that_torch_load_misses(tmp_path: Path) -> None:
    from survopt_hydra.app.checkpoint import CheckpointError, load_checkpoint, load_latest, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint({"w": torch.ones(3), "epoch": 1}, path)
    save_checkpoint({"w": torch.ones(3) * 2, "epoch": 2}, path)
    assert load_checkpoint(path)["epoch"] == 2 and load_checkpoint(tmp_path / "last.prev.pt")["epoch"] == 1
    raw = torch.load(path, weights_only=True)
    raw["w"][0] = 7.0  # a flipped value: still a perfectly loadable file
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)
    state, used, problems = load_latest(path)
    assert used.name == "last.prev.pt" and state["epoch"] == 1 and "checksum mismatch" in problems[0]


def _forge_shard_reference(run: Path, name: str, digests: Any = None) -> None:
    """Rewrite last.pt (checksum valid, via the project's own writer) so it names ``name`` as its DCP shards."""
    from survopt_hydra.app.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(run / "last.pt")
    state["sharded"], state["shard_digests"] = name, digests
    save_checkpoint(state, run / "last.pt", keep_previous=False)
    (run / "last.prev.pt").unlink(missing_ok=True)


@pytest.mark.parametrize("where", ["absolute", "sibling"])
def test_checkpoint_naming_shards_never_unpickles_dcp_metadata(tmp_path: Path, where: str) -> None:
    """Issue 13, defect 1: a checkpoint's ``sharded`` entry is not followed outside the run dir, nor into a
    folder whose files the run did not write (DCP unpickles ``.metadata``); nothing executes, files stay."""
    import pickle

    run = tmp_path / "run"
    train_inprocess(run, "trainer.max_epochs=3")
    outside = tmp_path / "x" if where == "absolute" else run / "last.pt.shards-0123456789"
    outside.mkdir()
    marker = tmp_path / "pwned"
    (outside / ".metadata").write_bytes(pickle.dumps(_Evil(marker)))
    _forge_shard_reference(run, str(outside) if where == "absolute" else outside.name,
                           digests={".metadata": "0" * 64} if where == "sibling" else None)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    r = app(run, "trainer.max_epochs=3")
    assert r.returncode == 2, r.stderr
    if where == "absolute":  # not a folder name in the run dir: refused by the pre-flight's look at last.pt
        assert r.stderr.strip() == (f"error: trainer.resume: cannot resume: {run / 'last.pt'}: sharded: '{outside}' is "
                                    "not a shard folder name in the run dir; use a new hydra.run.dir or "
                                    "trainer.resume=false"), r.stderr
    else:  # a sibling folder whose files the run did not write: refused by the shard check
        assert r.stderr.strip().splitlines()[-1].startswith("error: distributed.checkpoint: "), r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()
    assert {name: (run / name).read_bytes() for name in before} == before  # (Hydra adds an empty train.log)


def test_verified_shard_dir_accepts_only_recorded_sibling_files(tmp_path: Path) -> None:
    from survopt_hydra.distributed.checkpoint import _folder_digests, verified_shard_dir
    from survopt_hydra.errors import ConfigError

    last = tmp_path / "last.pt"
    good = tmp_path / "last.pt.shards-abcdef0123"
    good.mkdir()
    (good / ".metadata").write_bytes(b"meta")
    (good / "__0_0.distcp").write_bytes(b"shard")
    digests = _folder_digests(good)
    assert verified_shard_dir(last, good.name, digests) == good
    # the fallback file last.prev.pt names the same folder
    assert verified_shard_dir(tmp_path / "last.prev.pt", good.name, digests) == good
    for name in ["/tmp/x", "../last.pt.shards-abcdef0123", "sub/last.pt.shards-abcdef0123", "..", 3, None]:
        with pytest.raises(ConfigError, match=r"distributed.checkpoint: .*refused"):
            verified_shard_dir(last, name, digests)
    with pytest.raises(ConfigError, match="records no checksums"):
        verified_shard_dir(last, good.name, None)
    (good / "__1_0.distcp").write_bytes(b"extra")
    with pytest.raises(ConfigError, match=r"files differ .*__1_0.distcp"):
        verified_shard_dir(last, good.name, digests)
    (good / "__1_0.distcp").unlink()
    (good / ".metadata").write_bytes(b"evil")
    with pytest.raises(ConfigError, match=r"\.metadata: checksum mismatch"):
        verified_shard_dir(last, good.name, digests)
