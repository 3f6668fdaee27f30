"""The run dir under hostile conditions (issue 13, defects 3, 6-9), against the real app.

Each scenario runs ``scripts/train.py`` as a subprocess (two at a time, in a module fixture) and
records what a user would see; the tests then assert it: exit status 2 and ONE stderr line naming
the key or file, or a correct result - and that nothing already written was lost.

* two runs in one run dir (an advisory lock; a SIGKILLed holder leaves no stale lock);
* ``trainer.resume=false`` over an old run (its results are moved aside, not mixed with new ones);
* a ``-m`` sweep with a failing job (every job runs, ``status.json`` per job, non-zero exit);
* a full disk (simulated with the test-only ``disk_full@E`` fault, and for real on a small tmpfs
  when the tests run as root);
* ``hydra.run.dir`` a file, under ``/proc``, read-only (a read-only bind mount, root only), with
  unquoted unicode; re-reporting a finished run in a read-only dir;
* ``last.pt`` a directory, a FIFO, 0 bytes; ``best.pt`` a directory;
* batches that can never hold a comparable pair (``trainer.batch_size=1``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from scenario_pool import run_scenarios

ROOT = Path(__file__).resolve().parents[1]
RUN = ["data=gbsg2", "trainer.max_epochs=3", "trainer.checkpoint_every=1", "trainer.early_stopping_patience=null", "optimizer.lr=3e-3"]

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "scripts/train.py", *args]


def app(run_dir: Path | str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(f"hydra.run.dir={run_dir}", *RUN, *extra), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def epoch_of(path: Path) -> int:
    from survopt_hydra.app.checkpoint import load_checkpoint

    return load_checkpoint(path)["progress"]["epoch"]


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(f"/tmp/survopt-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], capture_output=True)
    probe.rmdir()
    return ok


@contextlib.contextmanager
def mounted(args: list[str], target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


# ------------------------------------------------------------------ scenarios
def _two_runs(d: Path, base: Path) -> dict:
    """Run A pauses inside epoch 2; run B (another LR) starts in the same dir; then A is SIGKILLed and
    rerun: the lock it held died with it."""
    run = d / "run"
    proc = subprocess.Popen(_cmd(f"hydra.run.dir={run}", *RUN, "trainer.fault_injection=sleep_step@2:60"), cwd=ROOT,
                            env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(150, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if "fault injection:" in line:
                break
        time.sleep(1.0)  # A's file log handler writes the same line just after the console one
        before = snapshot(run)
        second = app(run, "optimizer.lr=0.1", "trainer.resume=false")  # would start over: must not touch A's files
        after = snapshot(run)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"second": second, "same_files": before == after, "lock_left": (run / ".survopt.lock").exists(),
            "rerun": app(run), "overrides": (run / ".hydra" / "overrides.yaml").read_text()}


def _fresh_over_old(d: Path, base: Path) -> dict:
    run = d / "run"
    shutil.copytree(base / "finished", run)
    old = (run / "metrics.json").read_bytes()
    proc = app(run, "trainer.resume=false", "trainer.stop_after_epochs=1")
    return {"proc": proc, "old": old, "files": sorted(p.name for p in run.iterdir())}


def _sweep_with(faults: str) -> Callable[[Path, Path], dict]:
    """A 3-job sweep whose jobs get ``trainer.fault_injection=<faults>`` (nan_loss@1-99 makes a job diverge)."""
    def scenario(d: Path, base: Path) -> dict:
        sweep = d / "sweep"
        proc = subprocess.run(_cmd("-m", f"hydra.sweep.dir={sweep}", *RUN, "trainer.max_nonfinite_steps=2",
                                   f"trainer.fault_injection={faults}"),
                              cwd=ROOT, capture_output=True, text=True, timeout=240, env=_env())
        status = {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/status.json"))}
        metrics = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
        return {"proc": proc, "status": status, "metrics": metrics}

    return scenario


def _empty_run_dir(d: Path, base: Path) -> dict:
    """``hydra.run.dir=`` would write checkpoints, logs and plots into the current directory."""
    d.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "hydra.run.dir=", *RUN], cwd=d,
                          capture_output=True, text=True, timeout=120, env=_env())
    return {"proc": proc, "files": sorted(p.name for p in d.iterdir())}


def _sweep_dir(where: str) -> Callable[[Path, Path], dict]:
    def scenario(d: Path, base: Path) -> dict:
        d.mkdir()
        target = d / "a_file"
        target.write_text("keep me\n")
        sweep_dir = {"file": target, "proc": Path("/proc/survopt-sweep-dir-test"), "empty": ""}[where]
        proc = subprocess.run(_cmd("-m", f"hydra.sweep.dir={sweep_dir}", *RUN, "optimizer.lr=1e-3,2e-3"),
                              cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())
        return {"proc": proc, "content": target.read_text()}

    return scenario


def _disk_full_fault(d: Path, base: Path) -> dict:
    run = d / "run"
    proc = app(run, "trainer.fault_injection=disk_full@2")
    facts = {"proc": proc, "epoch": epoch_of(run / "last.pt"), "finished": (run / "metrics.json").exists()}
    return {**facts, "rerun": app(run)}


def _disk_full_tmpfs(d: Path, base: Path) -> dict:
    if not _can_mount():
        return {"skip": "needs root and tmpfs mounts"}
    from survopt_hydra.app.checkpoint import load_latest

    with mounted(["-t", "tmpfs", "-o", "size=150k", "tmpfs"], d / "small") as small:
        proc = app(small / "run", "trainer.max_epochs=60")
        found = load_latest(small / "run" / "last.pt")  # verifies the checksum
        return {"proc": proc, "usable_epoch": found[0]["progress"]["epoch"] if found else None}


def _run_dir_is_file(d: Path, base: Path) -> dict:
    d.mkdir()
    target = d / "a_file"
    target.write_text("keep me\n")
    return {"proc": app(target), "content": target.read_text()}


def _run_dir_in_proc(d: Path, base: Path) -> dict:
    return {"proc": app("/proc/survopt-run-dir-test")}


def _run_dir_read_only(d: Path, base: Path) -> dict:
    if not _can_mount():
        return {"skip": "needs root and bind mounts"}
    source = d / "source"
    shutil.copytree(base / "finished", source / "finished")
    with mounted(["--bind", "-o", "ro", str(source)], d / "ro") as ro:
        before = snapshot(ro)
        fresh = app(ro / "new_run")
        report = app(ro / "finished")
        return {"fresh": fresh, "report": report, "same": snapshot(ro) == before,
                "metrics": json.loads((ro / "finished" / "metrics.json").read_text())}


def _unicode_run_dir(d: Path, base: Path) -> dict:
    return {"proc": app(d / "é"), "created": (d / "é").exists()}


def _special_last(kind: str) -> Callable[[Path, Path], dict]:
    def scenario(d: Path, base: Path) -> dict:
        run = d / "run"
        shutil.copytree(base / "finished", run)
        for name in ("last.pt", "last.prev.pt"):
            (run / name).unlink()
        if kind == "directory":
            (run / "last.pt").mkdir()
        elif kind == "fifo":
            os.mkfifo(run / "last.pt")
        elif kind == "empty":
            (run / "last.pt").write_bytes(b"")
        elif kind == "best_directory":
            shutil.copy(base / "finished" / "last.pt", run / "last.pt")
            (run / "best.pt").unlink()
            (run / "best.pt").mkdir()
        before = snapshot(run)
        proc = app(run, timeout=60)
        return {"proc": proc, "same": snapshot(run) == before, "run": run}

    return scenario


def _empty_last_with_prev(d: Path, base: Path) -> dict:
    run = d / "run"
    shutil.copytree(base / "stopped", run)  # last.pt: epoch 2, last.prev.pt: epoch 1
    (run / "last.pt").write_bytes(b"")
    return {"proc": app(run), "run": run}


def _batch(*extra: str) -> Callable[[Path, Path], dict]:
    def scenario(d: Path, base: Path) -> dict:
        return {"proc": app(d / "run", *extra), "created": (d / "run").exists()}

    return scenario


SCENARIOS: dict[str, Callable[[Path, Path], dict]] = {
    "two_runs": _two_runs,
    "fresh_over_old": _fresh_over_old,
    "sweep": _sweep_with("null,nan_loss@1-99,null"),
    "sweep_fails_late": _sweep_with("null,nan_loss@1-99,nan_loss@1-99"),  # the middle AND the last job fail
    "empty_run_dir": _empty_run_dir,
    "sweep_dir_is_file": _sweep_dir("file"),
    "sweep_dir_in_proc": _sweep_dir("proc"),
    "sweep_dir_empty": _sweep_dir("empty"),
    "disk_full_fault": _disk_full_fault,
    "disk_full_tmpfs": _disk_full_tmpfs,
    "run_dir_is_file": _run_dir_is_file,
    "run_dir_in_proc": _run_dir_in_proc,
    "run_dir_read_only": _run_dir_read_only,
    "unicode_run_dir": _unicode_run_dir,
    "last_directory": _special_last("directory"),
    "last_fifo": _special_last("fifo"),
    "last_empty": _special_last("empty"),
    "best_directory": _special_last("best_directory"),
    "empty_last_with_prev": _empty_last_with_prev,
    "batch1_batchnorm": _batch("trainer.batch_size=1"),
    "batch1_linear": _batch("model=linear", "trainer.batch_size=1"),
    "batch_odd_pairs": _batch("model=linear", "trainer.batch_size=2"),  # 480 rows: 240 batches of 2, fine
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("run_dir")
    finished = app(base / "finished")
    assert finished.returncode == 0, finished.stderr[-3000:]
    stopped = app(base / "stopped", "trainer.stop_after_epochs=2")
    assert stopped.returncode == 0, stopped.stderr[-3000:]

    out = run_scenarios(SCENARIOS, base, "run-dir", base)
    return {**out, "base": base}


def _result(results: dict, name: str) -> dict:
    r = results[name]
    if "error" in r:
        raise r["error"]
    if "skip" in r:
        pytest.skip(r["skip"])
    return r


def assert_one_line(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    err = lines(proc.stderr)
    assert proc.returncode == code and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith("error: " + fragments[0]) and "Traceback" not in proc.stderr, err[0]
    for fragment in fragments[1:]:
        assert fragment in err[0], err[0]
    return err[0]


# ------------------------------------------------------------------ tests
def test_second_run_in_a_locked_dir_is_refused_and_a_killed_holder_leaves_no_stale_lock(results: dict) -> None:
    r = _result(results, "two_runs")
    assert_one_line(r["second"], "hydra.run.dir:", "in use by another run")
    assert r["same_files"]  # the refused run wrote nothing (not even .hydra/)
    assert not r["lock_left"]  # the lock is on the run dir itself: no lock file, and it died with the process
    assert r["rerun"].returncode == 0 and "resuming from" in r["rerun"].stdout, r["rerun"].stderr[-2000:]
    assert "optimizer.lr=0.1" not in r["overrides"]


def test_fresh_start_moves_old_results_aside(results: dict) -> None:
    r = _result(results, "fresh_over_old")
    assert r["proc"].returncode == 0, r["proc"].stderr[-2000:]
    run = r["dir"] / "run"
    assert "metrics.json" not in r["files"]  # the old run's result no longer sits beside the new checkpoints
    assert (run / "replaced-1" / "metrics.json").read_bytes() == r["old"]  # moved, not lost
    assert epoch_of(run / "last.pt") == 1 and not (run / "last.prev.pt").exists()
    assert "moved them to replaced-1" in r["proc"].stdout


def test_sweep_runs_every_job_and_records_the_failed_one(results: dict) -> None:
    r = _result(results, "sweep")
    proc = r["proc"]
    assert r["status"]["0"] == {"status": "ok"} and r["status"]["2"] == {"status": "ok"}
    failed = r["status"]["1"]
    assert failed["status"] == "failed" and failed["exit_code"] == 1 and "training diverged" in failed["error"]
    assert "\n" not in failed["error"]
    assert r["metrics"] == ["0", "2"]  # job 3 ran after job 2 failed
    last = lines(proc.stderr)[-1]
    assert proc.returncode == 1 and last.startswith("error: 1 of 3 sweep jobs failed"), proc.stderr[-2000:]
    assert "#1 (" in last and "nan_loss@1-99" in last and "Traceback" not in proc.stderr


def test_sweep_failing_in_the_middle_and_at_the_end_records_both(results: dict) -> None:
    r = _result(results, "sweep_fails_late")
    proc = r["proc"]
    assert r["status"]["0"] == {"status": "ok"} and r["metrics"] == ["0"]
    for job in ("1", "2"):
        assert r["status"][job]["status"] == "failed" and "training diverged" in r["status"][job]["error"]
    last = lines(proc.stderr)[-1]
    assert proc.returncode == 1 and last.startswith("error: 2 of 3 sweep jobs failed"), proc.stderr[-2000:]
    assert "#1 (" in last and "#2 (" in last and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name, fragments", [
    ("sweep_dir_is_file", ("hydra.sweep.dir:", "a_file exists and is not a directory")),
    ("sweep_dir_in_proc", ("hydra.sweep.dir:", "/proc/survopt-sweep-dir-test: cannot create it")),
    ("sweep_dir_empty", ("hydra.sweep.dir: is empty",)),
    ("empty_run_dir", ("hydra.run.dir: is empty", "would write into the current directory")),
])
def test_empty_or_unusable_output_dirs_are_one_line_and_write_nothing(results: dict, name: str,
                                                                     fragments: tuple) -> None:
    r = _result(results, name)
    assert_one_line(r["proc"], *fragments)
    if "content" in r:
        assert r["content"] == "keep me\n"
    if "files" in r:
        assert r["files"] == []  # nothing landed in the current directory


def test_full_disk_is_one_line_and_checkpoints_stay_usable(results: dict) -> None:
    r = _result(results, "disk_full_fault")
    assert_one_line(r["proc"], "last.pt: disk full", "checkpoints already written are intact")
    assert r["epoch"] == 1 and not r["finished"]
    rerun = r["rerun"]
    assert rerun.returncode == 0 and "after epoch 1" in rerun.stdout, rerun.stderr[-2000:]


def test_really_full_tmpfs_is_one_line(results: dict) -> None:
    r = _result(results, "disk_full_tmpfs")
    assert_one_line(r["proc"], str(results["base"] / "disk_full_tmpfs" / "small" / "run"), "disk full")
    assert r["usable_epoch"] is not None and r["usable_epoch"] >= 1


@pytest.mark.parametrize("name, fragments", [
    ("run_dir_is_file", ("hydra.run.dir:", "a_file exists and is not a directory")),
    ("run_dir_in_proc", ("hydra.run.dir:", "/proc/survopt-run-dir-test")),
    ("unicode_run_dir", ("hydra.run.dir:", "character 'é'", "quote the value")),
    ("batch1_batchnorm", ("trainer.batch_size:", "smallest of 1 row", "use trainer.batch_size >= 2")),
    ("batch1_linear", ("trainer.batch_size:", "no comparable pair")),
])
def test_bad_run_dir_or_batch_is_one_line_and_writes_nothing(results: dict, name: str, fragments: tuple) -> None:
    r = _result(results, name)
    assert_one_line(r["proc"], *fragments)
    if "content" in r:
        assert r["content"] == "keep me\n"
    if "created" in r:
        assert not r["created"]


def test_two_row_batches_train(results: dict) -> None:
    r = _result(results, "batch_odd_pairs")
    assert r["proc"].returncode == 0, r["proc"].stderr[-2000:]


def test_read_only_run_dir(results: dict) -> None:
    r = _result(results, "run_dir_read_only")
    assert_one_line(r["fresh"], "hydra.run.dir:", "not writable")
    report = r["report"]  # a finished run is re-reported without writing
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr[-2000:]
    assert lines(report.stdout)[-1].startswith(f"test C-index: {r['metrics']['test_cindex']:.4f} (95% CI ")
    assert f"(best epoch {r['metrics']['best_epoch']}, " in lines(report.stdout)[-1]
    assert r["same"]


@pytest.mark.parametrize("name, fragments", [
    ("last_directory", ("trainer.resume:", "last.pt: a directory, not a checkpoint file")),
    ("last_fifo", ("trainer.resume:", "last.pt: a FIFO (named pipe), not a checkpoint file")),
    ("last_empty", ("trainer.resume:", "last.pt: empty (0 bytes)")),
    ("best_directory", ("trainer.resume:", "best.pt is a directory")),
])
def test_unusable_checkpoint_files_are_one_line_and_kept(results: dict, name: str, fragments: tuple) -> None:
    r = _result(results, name)
    message = assert_one_line(r["proc"], *fragments)
    assert "mmap" not in message
    assert r["same"]


def test_empty_last_falls_back_and_names_the_file_used(results: dict) -> None:
    r = _result(results, "empty_last_with_prev")
    proc = r["proc"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "last.pt: empty (0 bytes)" in proc.stdout and "resuming from last.prev.pt instead" in proc.stdout
    assert f"resuming from {r['run'] / 'last.prev.pt'} after epoch 1" in proc.stdout


@pytest.mark.parametrize("kind, fragment", [
    ("garbage", "last.pt: unreadable (1024 bytes, not a torch zip archive); truncated or not a checkpoint"),
    ("foreign", "last.pt is not a survopt-train checkpoint"),
])
def test_bad_checkpoint_shapes_are_named_plainly(tmp_path: Path, kind: str, fragment: str) -> None:
    """Re-probe of defect 8: random bytes as ``last.pt`` (no torch's "mmap can only be used" text) and a plain
    torch file claiming an empty config (no "different config (: {} -> '<unset>')")."""
    import torch

    from survopt_hydra.app.rules import resume_state
    from survopt_hydra.errors import ConfigError

    if kind == "garbage":
        (tmp_path / "last.pt").write_bytes(bytes(range(256)) * 4)
    else:
        torch.save({"progress": {"epoch": 1}, "config": {}}, tmp_path / "last.pt")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as err:
        resume_state(tmp_path, {"data": {}, "model": {}, "trainer": {}}, verify=False, mmap=True)
    assert str(err.value).startswith("trainer.resume: cannot resume: ") and fragment in str(err.value)
    assert "mmap" not in str(err.value) and "\n" not in str(err.value)
    assert snapshot(tmp_path) == before
