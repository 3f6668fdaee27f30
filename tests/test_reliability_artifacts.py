"""Artifacts are untrusted data, and the tools fail in one line (issue 25, items 1, 2, 6-8), against the real
app and tools.

Each scenario runs ``scripts/train.py`` or a tool as a subprocess (two at a time, in a module fixture) on a
copy of a real run whose files were forged the way an attacker or a careless colleague would - a re-signed
``last.pt`` with a crafted RNG state, ``monitor_bytes``, progress, metrics or weights; a ``best.pt`` whose
config names a secret file or ``${oc.env:...}``; links planted in the run dir - and records what a user would
see. The tests assert ONE stderr line, exit status 2, and that no file changed (the whole tree, or the files
named where the app had already started when it refused).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

from scenario_pool import run_scenarios

ROOT = Path(__file__).resolve().parents[1]
RUN = ["data=gbsg2", "trainer.max_epochs=3", "trainer.checkpoint_every=1", "trainer.early_stopping_patience=null",
       "optimizer.lr=3e-3", "trainer.progress_bar=false"]
SECRET = "hunter2-abc123"

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, **extra}


def app(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={run_dir}", *RUN,
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=180, env=_env())


def tool(name: str, *args: Any, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=180, env=_env(**env))


def snapshot(folder: Path) -> dict[str, Any]:
    """Every entry under ``folder`` (links as their target text, files by content hash, modes too)."""
    out: dict[str, Any] = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        if p.is_symlink():
            out[key] = ("link", os.readlink(p))
        elif p.is_file():
            out[key] = (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
        else:
            out[key] = "dir"
    return out


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------ forging a checkpoint
def forged(base: Path, source: str, d: Path, change: Callable[[dict], None], file: str = "last.pt") -> Path:
    """A copy of ``base/source`` whose ``file`` is changed and re-signed (a valid checksum: a checksum proves
    a file undamaged, not honest), with no ``last.prev.pt`` to fall back to."""
    from survopt_hydra.app.checkpoint import load_checkpoint, save_checkpoint

    run = d / "run"
    shutil.copytree(base / source, run, symlinks=True)
    (run / "last.prev.pt").unlink(missing_ok=True)
    state = load_checkpoint(run / file)
    change(state)
    save_checkpoint(state, run / file, keep_previous=False)
    return run


def _resume_forged(source: str, change: Callable[[dict], None], file: str = "last.pt") -> Callable[[Path, Path], dict]:
    def scenario(d: Path, base: Path) -> dict:
        run = forged(base, source, d, change, file)
        before = snapshot(run)
        proc = app(run)
        return {"proc": proc, "same": snapshot(run) == before, "run": run, "before": before, "after": snapshot(run)}

    return scenario


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        *parents, last = path.split(".")
        node = state
        for key in parents:
            node = node[int(key) if key.isdigit() else key]
        node[last] = value(node[last]) if callable(value) else value
        if path.startswith("rng."):  # the same state is kept per rank
            state["rng_ranks"] = [state["rng"]]

    return change


def _first_weight(kind: str) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        w = state["model"]["net.0.weight"]
        state["model"]["net.0.weight"] = w.long() if kind == "int64" else torch.zeros(w.shape[0] + 1, w.shape[1])

    return change


def _optimizer_state(state: dict) -> None:
    entry = state["engine"]["optimizer"]["state"][0]
    entry["exp_avg"] = torch.zeros(3, 3)


def _counters(state: dict) -> None:
    state["engine"]["counters"]["optimizer"] = 0  # StepEngine.load_state_dict would setattr it


def _scheduler(state: dict) -> None:
    state["engine"]["scheduler"]["step"] = 1  # torch's schedulers copy every key into their __dict__


def _forged_with_prev(d: Path, base: Path) -> dict:
    """A forged last.pt next to a good last.prev.pt: treated like a damaged file, resumed from the previous."""
    from survopt_hydra.app.checkpoint import load_checkpoint, save_checkpoint

    run = d / "run"
    shutil.copytree(base / "stopped", run)
    state = load_checkpoint(run / "last.pt")
    state["monitor_bytes"] = -1
    save_checkpoint(state, run / "last.pt", keep_previous=False)
    return {"proc": app(run), "metrics": json.loads((run / "metrics.json").read_text()),
            "reference": json.loads((base / "finished" / "metrics.json").read_text())}


# ------------------------------------------------------------------ links in the run dir
def _planted(name: str, target: str = "file") -> Callable[[Path, Path], dict]:
    """A copy of the stopped run whose ``name`` is a link to a file (6,600 bytes) or folder outside it."""
    def scenario(d: Path, base: Path) -> dict:
        run, outside = d / "run", d / "outside"
        shutil.copytree(base / "stopped", run)
        outside.mkdir()
        victim = outside / ("victim.txt" if target == "file" else "victim")
        if target == "file":
            victim.write_text("x" * 6600)
        elif target == "dir":
            victim.mkdir()
        (run / name).unlink(missing_ok=True) if not (run / name).is_dir() else shutil.rmtree(run / name)
        (run / name).symlink_to(victim)
        before, outside_before = snapshot(run), snapshot(outside)
        proc = app(run)
        return {"proc": proc, "same": snapshot(run) == before, "outside_same": snapshot(outside) == outside_before}

    return scenario


# ------------------------------------------------------------------ tools
def _in_tmp(name: str, *args: Any, **env: str) -> Callable[[Path, Path], dict]:
    """A tool run in an empty folder: one line and nothing written."""
    def scenario(d: Path, base: Path) -> dict:
        d.mkdir(parents=True)
        args_ = [str(a).replace("{base}", str(base)).replace("{d}", str(d)) for a in args]
        proc = tool(name, *args_, cwd=d, **env)
        return {"proc": proc, "same": snapshot(d) == {}, "base_same": _as_json(snapshot(base / "finished")) == base_snapshot(base)}

    return scenario


def base_snapshot(base: Path) -> dict:
    return json.loads((base / "finished.snapshot.json").read_text())


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _predict_out(kind: str) -> Callable[[Path, Path], dict]:
    def scenario(d: Path, base: Path) -> dict:
        d.mkdir(parents=True)
        rows = d / "rows.csv"
        shutil.copy(base / "rows.csv", rows)
        out = {"dir": d, "missing": d / "nope" / "p.csv", "file_in_file": rows / "p.csv"}.get(kind)
        if kind == "read_only":
            with read_only(d / "ro") as ro:
                before = snapshot(d)
                proc = tool("predict.py", base / "finished", rows, "--out", ro / "p.csv")
                return {"proc": proc, "same": snapshot(d) == before}
        before = snapshot(d)
        proc = tool("predict.py", base / "finished", rows, "--out", out)
        return {"proc": proc, "same": snapshot(d) == before}

    return scenario


@contextlib.contextmanager
def read_only(target: Path) -> Iterator[Path]:
    """A read-only folder: a read-only bind mount as root (root ignores modes), else mode 0555."""
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        try:
            yield target
        finally:
            target.chmod(0o755)
        return
    if not shutil.which("mount") or subprocess.run(["mount", "--bind", "-o", "ro", str(target), str(target)],
                                                   capture_output=True).returncode != 0:
        raise _Skip("needs bind mounts as root")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


class _Skip(Exception):
    pass


def _predict_pkg_default(d: Path, base: Path) -> dict:
    """``survopt-predict RUN pkg://...`` without --out: the output goes to the current directory, never
    into the installed package's folder."""
    from survopt_hydra.survival.data import resolve_path

    d.mkdir(parents=True)
    package = resolve_path("pkg://lifelines/datasets/gbsg2.csv").parent
    before = sorted(os.listdir(package))
    proc = tool("predict.py", base / "finished", "pkg://lifelines/datasets/gbsg2.csv", cwd=d)
    return {"proc": proc, "package_same": sorted(os.listdir(package)) == before, "written": sorted(os.listdir(d)),
            "mode": stat.S_IMODE((d / "gbsg2.predictions.csv").stat().st_mode) if proc.returncode == 0 else None}


def _predict_wrong_shape(d: Path, base: Path) -> dict:
    """best.pt of the same epoch holding a wider first layer than predictor.json's model."""
    run = forged(base, "finished", d, _first_weight("shape"), file="best.pt")
    shutil.copy(base / "rows.csv", d / "rows.csv")
    before = snapshot(d)
    proc = tool("predict.py", run, d / "rows.csv", "--out", d / "p.csv")
    return {"proc": proc, "same": snapshot(d) == before}


def _baseline_forged(change: Callable[[dict], None], **env: str) -> Callable[[Path, Path], dict]:
    def scenario(d: Path, base: Path) -> dict:
        run = forged(base, "finished", d, change, file="best.pt")
        (d / "secret.csv").write_text(f"API_KEY={SECRET}\n")
        before = snapshot(d)
        proc = tool("baseline_cox.py", "--run", run, "--resamples", "10", "--no-progress", **env)
        return {"proc": proc, "same": snapshot(d) == before}

    return scenario


def _baseline_unfinished(d: Path, base: Path) -> dict:
    d.mkdir(parents=True)
    before = snapshot(base / "stopped")
    proc = tool("baseline_cox.py", "--run", base / "stopped", "--resamples", "10", "--no-progress", cwd=d)
    return {"proc": proc, "same": snapshot(base / "stopped") == before and snapshot(d) == {}}


SCENARIOS: dict[str, Callable[[Path, Path], dict]] = {
    # a re-signed last.pt: refused by the pre-flight's resume check, before Hydra writes a byte
    "rng_torch_shape": _resume_forged("stopped", _set("rng.torch", torch.zeros(7, dtype=torch.uint8))),
    "rng_numpy_keys": _resume_forged("stopped", _set("rng.numpy.keys", torch.full((624,), 2**40))),
    "rng_python_state": _resume_forged("stopped", _set("rng.python", (3, (7,) * 10, None))),
    "monitor_bytes_negative": _resume_forged("stopped", _set("monitor_bytes", -1)),
    "monitor_bytes_huge": _resume_forged("stopped", _set("monitor_bytes", 10**30)),
    "monitor_bytes_text": _resume_forged("stopped", _set("monitor_bytes", "801")),
    "epoch_beyond_max": _resume_forged("finished", _set("progress.epoch", 1_000_000)),
    "history_short": _resume_forged("stopped", _set("progress.history", lambda h: h[:1])),
    "metrics_nan": _resume_forged("finished", _set("metrics.test_cindex", float("nan"))),
    "metrics_text": _resume_forged("finished", _set("metrics.test_cindex", "0.99")),
    "metrics_disagree": _resume_forged("finished", _set("metrics.best_epoch", 0)),
    "shard_path": _resume_forged("stopped", _set("sharded", "../../elsewhere")),
    # ... refused by the trainer, which checks them against the model and engine it built
    "weights_int64": _resume_forged("stopped", _first_weight("int64")),
    "weights_shape": _resume_forged("stopped", _first_weight("shape")),
    "optimizer_state_shape": _resume_forged("stopped", _optimizer_state),
    "engine_counters_key": _resume_forged("stopped", _counters),
    "scheduler_key": _resume_forged("stopped", _scheduler),
    "forged_with_prev": _forged_with_prev,
    # links planted in the run dir
    "monitors_link": _planted("monitors.csv"),
    "train_log_link": _planted("train.log"),
    "epochs_link": _planted("epochs.csv"),
    "hydra_dir_link": _planted(".hydra", target="dir"),
    # tools
    "predict_pkg_default": _predict_pkg_default,
    "predict_wrong_shape": _predict_wrong_shape,
    "predict_out_dir": _predict_out("dir"),
    "predict_out_missing": _predict_out("missing"),
    "predict_out_under_file": _predict_out("file_in_file"),
    "predict_out_read_only": _predict_out("read_only"),
    "predict_grid_huge": _in_tmp("predict.py", "{base}/finished", "{base}/rows.csv", "--grid", "0:1000:50000000"),
    "predict_batch_huge": _in_tmp("predict.py", "{base}/finished", "{base}/rows.csv", "--batch-size", "10000000000"),
    "plot_schedule_zero_steps": _in_tmp("plot_schedule.py", "--steps-per-epoch", "0"),
    "plot_schedule_huge": _in_tmp("plot_schedule.py", "trainer.max_epochs=10000000000", "--steps-per-epoch", "1"),
    "plot_schedule_out_missing": _in_tmp("plot_schedule.py", "--steps-per-epoch", "1", "--out", "{d}/no/such/x.png"),
    "plot_schedule_text_steps": _in_tmp("plot_schedule.py", "--steps-per-epoch", "abc"),
    "lr_find_beta_one": _in_tmp("lr_find.py", "--beta", "1"),
    "lr_find_diverge_negative": _in_tmp("lr_find.py", "--diverge", "-1"),
    "lr_find_nan_lr": _in_tmp("lr_find.py", "--max-lr", "nan"),
    "tune_seconds_nan": _in_tmp("tune.py", "data=gbsg2", "--seconds", "nan"),
    "tune_seconds_inf": _in_tmp("tune.py", "data=gbsg2", "--seconds", "inf"),
    "tune_out_missing": _in_tmp("tune.py", "data=gbsg2", "--trials", "1", "--out", "{d}/no/such/dir"),
    "baseline_out_dir": _in_tmp("baseline_cox.py", "data=gbsg2", "--json", "{d}"),
    "baseline_resamples_zero": _in_tmp("baseline_cox.py", "--run", "{base}/finished", "--resamples", "0"),
    "baseline_bad_flag": _in_tmp("baseline_cox.py", "--run", "{base}/finished", "optimizer.lr=1"),
    "baseline_unfinished": _baseline_unfinished,
    "baseline_env_secret": _baseline_forged(_set("config.data.path", "${oc.env:SURVOPT_TEST_SECRET}"),
                                            SURVOPT_TEST_SECRET=SECRET),
    "baseline_secret_file": _baseline_forged(lambda s: s["config"]["data"].update(name="csv", path="/etc/passwd")),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import pandas as pd

    from survopt_hydra.survival.data import resolve_path

    base = tmp_path_factory.mktemp("artifacts")
    finished = app(base / "finished")
    assert finished.returncode == 0, finished.stderr[-3000:]
    stopped = app(base / "stopped", "trainer.stop_after_epochs=2")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    pd.read_csv(resolve_path("pkg://lifelines/datasets/gbsg2.csv")).head(20).to_csv(base / "rows.csv", index=False)
    (base / "finished.snapshot.json").write_text(json.dumps(snapshot(base / "finished")))
    out = run_scenarios(SCENARIOS, base, "artifact", base)
    return {**out, "base": base}


def _result(results: dict, name: str) -> dict:
    r = results[name]
    if isinstance(r.get("error"), _Skip):
        pytest.skip(str(r["error"]))
    if "error" in r:
        raise r["error"]
    return r


def assert_one_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    err = lines(proc.stderr)
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith("error: ") and "Traceback" not in proc.stderr, err[0]
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


# ------------------------------------------------------------------ the tests
@pytest.mark.parametrize("name, fragments", [
    ("rng_torch_shape", ("trainer.resume: cannot resume: ", "last.pt: rng: torch: expected a uint8 tensor of shape")),
    ("rng_numpy_keys", ("last.pt: rng: numpy.keys: expected 624 int64 values in [0, 2**32)",)),
    ("rng_python_state", ("last.pt: rng: python: expected random.getstate()'s version-3 state",)),
    ("monitor_bytes_negative", ("last.pt: monitor_bytes: -1 is not a byte count",)),
    ("monitor_bytes_huge", ("monitor_bytes: 1000000000000000000000000000000 is not a byte count",)),
    ("monitor_bytes_text", ("monitor_bytes: '801' is not a byte count",)),
    ("epoch_beyond_max", ("last.pt: progress.epoch: 1000000 is not an epoch count in 0..3 (trainer.max_epochs)",)),
    ("history_short", ("last.pt: progress.history: expected one row per epoch (2)",)),
    ("metrics_nan", ("last.pt: metrics.test_cindex: nan is not a valid figure",)),
    ("metrics_text", ("last.pt: metrics.test_cindex: '0.99' is not a valid figure",)),
    ("metrics_disagree", ("last.pt: metrics: best epoch 0 of 3 run disagrees with the progress",)),
    ("shard_path", ("last.pt: sharded: '../../elsewhere' is not a shard folder name in the run dir",)),
])
def test_a_forged_run_state_is_refused_before_anything_is_written(results: dict, name: str, fragments: tuple) -> None:
    """A re-signed last.pt whose RNG state, monitor_bytes, progress or metrics its config cannot have produced:
    one line from the pre-flight, exit 2, the run dir byte-identical (Hydra never started)."""
    r = _result(results, name)
    assert_one_line(r["proc"], *fragments)
    assert r["same"], (r["before"].keys() ^ r["after"].keys(), name)


@pytest.mark.parametrize("name, fragment", [
    ("weights_int64", "model: net.0.weight is torch.int64 (16, 12), the model needs torch.float32 (16, 12)"),
    ("weights_shape", "model: net.0.weight is torch.float32 (17, 12), the model needs torch.float32 (16, 12)"),
    ("optimizer_state_shape", "engine.optimizer.state[0].exp_avg: shape (3, 3), the parameter is (16, 12)"),
    ("engine_counters_key", "engine.counters: expected the keys"),
    ("scheduler_key", "engine.scheduler: expected the keys"),
])
def test_forged_weights_and_engine_state_are_refused_before_use(results: dict, name: str, fragment: str) -> None:
    """Checked against the model and engine the trainer built - the pre-flight builds it before Hydra writes
    anything - before any of it is loaded: one line, exit 2, the run dir byte-identical."""
    r = _result(results, name)
    assert_one_line(r["proc"], "trainer.resume: ", "last.pt does not fit this run's model/optimizer (", fragment)
    assert r["same"], (r["before"].keys() ^ r["after"].keys(), name)


def test_a_forged_last_pt_falls_back_to_the_previous_checkpoint(results: dict) -> None:
    """Like a damaged file: a warning, last.prev.pt resumes, and the run ends as an uninterrupted one."""
    r = _result(results, "forged_with_prev")
    assert r["proc"].returncode == 0, r["proc"].stderr[-3000:]
    assert "monitor_bytes: -1 is not a byte count" in r["proc"].stdout + r["proc"].stderr
    assert "resuming from" in r["proc"].stdout + r["proc"].stderr
    for key in ("test_cindex", "val_cindex", "best_epoch", "epochs_run"):
        assert r["metrics"][key] == r["reference"][key], key


@pytest.mark.parametrize("name, link", [("monitors_link", "monitors.csv"), ("train_log_link", "train.log"),
                                        ("epochs_link", "epochs.csv"), ("hydra_dir_link", ".hydra")])
def test_a_link_in_the_run_dir_is_refused_and_nothing_outside_changes(results: dict, name: str, link: str) -> None:
    """monitors.csv linked to a 6,600-byte file used to get it truncated to 802 bytes on resume; a train.log
    link got appended to. Refused before Hydra (its log, .hydra/) or the app (its results) opens them."""
    r = _result(results, name)
    assert_one_line(r["proc"], "hydra.run.dir: ", f"{link} is a symbolic link; ")
    assert r["same"] and r["outside_same"]


def test_predict_on_a_package_file_writes_to_the_current_directory(results: dict) -> None:
    r = _result(results, "predict_pkg_default")
    assert r["proc"].returncode == 0, r["proc"].stderr
    assert r["package_same"] and r["written"] == ["gbsg2.predictions.csv"]
    assert r["mode"] == 0o666 & ~_umask()  # results follow the umask (issue 28, item 6)


@pytest.mark.parametrize("name, fragments", [
    ("predict_wrong_shape", ("best.pt: net.0.weight is torch.float32 (17, 12), the model needs torch.float32 (16, 12)",)),
    ("predict_out_dir", ("is a directory; give a file name",)),
    ("predict_out_missing", ("/nope does not exist; create it or choose another --out",)),
    ("predict_out_under_file", ("rows.csv does not exist; create it or choose another --out",)),
    ("predict_out_read_only", ("/ro is not writable; choose another --out",)),
    ("predict_grid_huge", ("--grid: 50000000 times; at most 1000",)),
    ("predict_batch_huge", ("--batch-size: must be in 1..1000000, got 10000000000",)),
    ("plot_schedule_zero_steps", ("--steps-per-epoch: must be in 1..100000, got 0",)),
    ("plot_schedule_huge", ("--steps-per-epoch: 10000000000 epochs x 1 batches",)),
    ("plot_schedule_out_missing", ("--out: ", "/no/such does not exist; create it first")),
    ("lr_find_beta_one", ("--beta: the smoothing factor must be in [0, 1), got 1",)),
    ("lr_find_diverge_negative", ("--diverge: ", "must be a finite number > 1, got -1",)),
    ("lr_find_nan_lr", ("--min-lr/--max-lr: need finite 0 < min-lr < max-lr",)),
    ("tune_seconds_nan", ("--seconds: must be a finite number of seconds, got nan",)),
    ("tune_seconds_inf", ("--seconds: must be a finite number of seconds, got inf",)),
    ("tune_out_missing", ("--out: ", "/no/such/dir does not exist; create it first")),
    ("baseline_out_dir", ("--json: ", "is a directory; give a file")),
    ("baseline_resamples_zero", ("--resamples: must be in 1..100000",)),
    ("baseline_unfinished", ("--run: ", "stopped holds no finished run (epoch 2): last.pt is not finished",)),
    ("baseline_env_secret", ("config.data.path holds the interpolation '${oc.env:SURVOPT_TEST_SECRET}'",)),
    ("baseline_secret_file", ("data.path: ", "best.pt names '/etc/passwd', outside its run dir",
                              "pass data.path=<file> on the command line")),
])
def test_tools_refuse_in_one_line_and_write_nothing(results: dict, name: str, fragments: tuple) -> None:
    r = _result(results, name)
    line = assert_one_line(r["proc"], *fragments)
    assert SECRET not in r["proc"].stderr + r["proc"].stdout and "root:" not in line
    assert r["same"]
    if "base_same" in r:
        assert r["base_same"]


@pytest.mark.parametrize("name, fragment", [
    ("plot_schedule_text_steps", "argument --steps-per-epoch: invalid int value: 'abc'"),
    ("baseline_bad_flag", "only data.path=... and data.test_path=... may go with it"),
])
def test_tool_usage_errors_exit_2_as_argparse_does(results: dict, name: str, fragment: str) -> None:
    r = _result(results, name)
    assert r["proc"].returncode == 2 and fragment in r["proc"].stderr and "Traceback" not in r["proc"].stderr
    assert r["same"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_results_are_shared_and_checkpoints_private(results: dict) -> None:
    """Issue 28, item 6: metrics.json, predictor.json and the CSVs follow the umask like other tools' files;
    the checkpoints stay 0600 (they hold the whole training state)."""
    run = results["base"] / "finished"
    shared = 0o666 & ~_umask()
    for name in ("metrics.json", "metrics.csv", "predictor.json", "epochs.csv", "lr_steps.csv", "test_predictions.csv",
                 "monitors.csv"):
        assert stat.S_IMODE((run / name).stat().st_mode) == shared, name
    for name in ("last.pt", "best.pt"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o600, name
