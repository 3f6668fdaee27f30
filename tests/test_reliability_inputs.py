"""Bad input is refused before anything runs or is written (issue: reliability, item 1).

Runs the REAL app (``python scripts/train.py ...``) as a subprocess on a catalogue of bad
commands, all pointed at the run dir of one good tiny run, and asserts for each: exit
status 2, no traceback, exactly one non-blank stderr line ``error: <key or file>: ...``
naming the key, and the run dir byte-identical afterwards (checkpoints, metrics, logs,
``.hydra/`` - nothing added, nothing changed).

Config errors fail in the pre-flight before torch is imported (~0.4 s each); data and
run-length errors need torch (~3 s). Cases run two at a time (the CI box has 2 cores).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ["trainer.max_epochs=3"]
WORKERS = 2

pytestmark = pytest.mark.slow

# (id, overrides, fragments the one stderr line must contain - it starts with the first, the
# key or file). "{data}" is the folder of the bad data files, "{sweep}" a sweep dir.
CATALOGUE: list[tuple[str, list[str], tuple[str, ...]]] = [
    # -- unknown group options: the group, the allowed options, a near miss
    ("opt_adamx", ["optimizer=adamx"], ("optimizer: unknown option 'adamx'", "did you mean 'adamw'?", "allowed: adadelta, adafactor, adagrad")),
    ("sched_cosinee", ["scheduler=cosinee"], ("scheduler: unknown option 'cosinee'", "did you mean 'cosine'?")),
    ("amp_fp8", ["amp=fp8"], ("amp: unknown option 'fp8'", "allowed: bf16, fp16, none")),
    ("dist_mpi", ["distributed=mpi"], ("distributed: unknown option 'mpi'", "allowed: ddp, fsdp, none, zero")),
    ("model_resnet", ["model=resnet"], ("model: unknown option 'resnet'", "allowed: backbone, cnn, custom, linear, mlp")),
    ("clip_nrom", ["clipping=nrom"], ("clipping: unknown option 'nrom'", "did you mean 'norm'?")),
    ("preset_typo", ["+preset=finetuen"], ("preset: unknown option 'finetuen'", "did you mean 'finetune'?")),
    ("launcher_typo", ["hydra/launcher=basik"], ("hydra/launcher: unknown option 'basik'", "did you mean 'basic'?")),
    # -- unknown keys: the full key, the selected schema's fields, a near miss
    ("key_lrr", ["optimizer.lrr=0.1"], ("optimizer.lrr: unknown key", "did you mean 'lr'?", "allowed: name, lr,")),
    ("key_max_epoch", ["trainer.max_epoch=3"], ("trainer.max_epoch: unknown key", "did you mean 'max_epochs'?")),
    ("key_T0", ["scheduler=cosine_warm_restarts", "scheduler.T0=5"], ("scheduler.T0: unknown key", "did you mean 'T_0'?")),
    ("key_append", ["+optimizer.momentun=0.9"], ("optimizer.momentun: unknown key",)),
    ("key_top", ["+trainr.max_epochs=3"], ("trainr: unknown key", "did you mean 'trainer'?")),
    # -- wrong types
    ("type_lr", ["optimizer.lr=abc"], ("optimizer.lr: must be a number, got 'abc'",)),
    ("type_batch", ["trainer.batch_size=abc"], ("trainer.batch_size: must be an integer, got 'abc'",)),
    ("type_epochs_float", ["trainer.max_epochs=2.5"], ("trainer.max_epochs: must be an integer",)),
    ("type_bool", ["trainer.progress_bar=maybe"], ("trainer.progress_bar: must be true or false",)),
    ("type_betas", ["optimizer.betas=abc"], ("optimizer.betas: must be a list",)),
    ("type_null", ["trainer.batch_size=null"], ("trainer.batch_size: must not be null",)),
    # -- out of range, every numeric field the issue names
    ("range_lr", ["optimizer.lr=0"], ("optimizer.lr: must be > 0, got 0",)),
    ("range_wd", ["optimizer.weight_decay=-0.1"], ("optimizer.weight_decay: must be >= 0",)),
    ("range_betas", ["optimizer=adam", "optimizer.betas=[0.9,1.5]"], ("optimizer.betas: must be two values, each in [0, 1)",)),
    ("range_momentum", ["optimizer=sgd", "optimizer.momentum=-0.5"], ("optimizer.momentum: must be >= 0",)),
    ("range_eps", ["optimizer=adam", "optimizer.eps=0"], ("optimizer.eps: must be > 0",)),
    ("range_T0", ["scheduler=cosine_warm_restarts", "scheduler.T_0=0"], ("scheduler.T_0: must be >= 1",)),
    ("range_Tmult", ["scheduler=cosine_warm_restarts", "scheduler.T_mult=0"], ("scheduler.T_mult: must be >= 1",)),
    ("range_pct_start", ["scheduler=onecycle", "scheduler.pct_start=1.5"], ("scheduler.pct_start: must be in the open interval (0, 1)",)),
    ("range_factor", ["scheduler=plateau", "scheduler.factor=1.0"], ("scheduler.factor: must be in the open interval (0, 1)",)),
    ("range_patience", ["scheduler=plateau", "scheduler.patience=-1"], ("scheduler.patience: must be >= 0",)),
    ("range_gamma", ["scheduler=exponential", "scheduler.gamma=0"], ("scheduler.gamma: must be > 0",)),
    ("range_max_norm", ["clipping=norm", "clipping.max_norm=0"], ("clipping.max_norm: must be > 0",)),
    ("range_clip_factor", ["clipping=adaptive", "clipping.clip_factor=-1"], ("clipping.clip_factor: must be > 0",)),
    ("range_max_epochs", ["trainer.max_epochs=0"], ("trainer.max_epochs: must be >= 1, got 0",)),
    ("range_batch_size", ["trainer.batch_size=0"], ("trainer.batch_size: must be >= 1, got 0",)),
    ("range_ema_decay", ["ema=ema", "ema.decay=1.5"], ("ema.decay: must be in the open interval (0, 1), got 1.5",)),
    ("cross_ema_fsdp", ["ema=ema", "distributed=fsdp"], ("ema.mode: 'ema' averages whole parameters, but "
                                                          "distributed=fsdp shards them",)),
    ("amp_init_scale_overflow", ["amp=fp16", "amp.init_scale=1e300"],
     ("amp.init_scale: must be > 0 and fit in float32 (<= 3.403e+38", "got 1e+300")),
    ("amp_init_scale_inf", ["amp=fp16", "amp.init_scale=.inf"], ("amp.init_scale: must be a finite number, got inf",)),
    ("norm_type_negative_inf", ["clipping.norm_type=-.inf"], ("clipping.norm_type: must be a finite number, got -inf",)),
    ("range_accumulate", ["trainer.accumulate_grad_batches=0"], ("trainer.accumulate_grad_batches: must be >= 1",)),
    ("range_val_fraction", ["data.val_fraction=1.5"], ("data.val_fraction: must be in the open interval (0, 1)",)),
    ("range_fault_spec", ["trainer.fault_injection=explode@3"], ("trainer.fault_injection: 'explode@3' is not a fault",)),
    # -- inconsistent combinations
    ("plateau_metric", ["scheduler=plateau", "scheduler.monitor=val_acc"],
     ("scheduler.monitor: 'val_acc' is never computed", "allowed: train_loss, val_cindex, val_loss")),
    ("plateau_mode", ["scheduler=plateau", "scheduler.monitor=val_loss"], ("scheduler.mode: 'max' contradicts",)),
    ("warmup_too_long", ["scheduler=warmup_cosine", "scheduler.warmup_epochs=5"],
     ("scheduler.warmup_epochs: warmup of 5 epochs is 5 epochs once rounded, not shorter than the run (3 epochs); allowed: at most 2 epochs",)),
    ("cnn_on_table", ["model=cnn"], ("model.name: cnn needs image data",)),
    ("fractions", ["data=gbsg2", "data.val_fraction=0.5", "data.test_fraction=0.45"], ("data.test_fraction: val_fraction + test_fraction",)),
    ("fraction_with_test_file", ["data.test_fraction=0.3"], ("data.test_fraction: has no effect: data.test_path",
                                                          "data.test_path=null")),
    ("fold_without_folds", ["data.fold=2"], ("data.fold: has no effect without data.folds",)),
    ("fold_out_of_range", ["data.folds=5", "data.fold=5"], ("data.fold: must be in 0..4 (data.folds=5), got 5",)),
    ("folds_one", ["data.folds=1"], ("data.folds: must be >= 2",)),
    ("folds_more_than_events", ["data=gbsg2", "data.folds=400"],
     ("pkg://lifelines/datasets/gbsg2.csv: data.folds=400: ", "event(s) cannot give each of 400 folds an event",
      "lower data.folds")),
    ("no_optimizer", ["~optimizer"], ("optimizer: no option selected",)),
    ("csv_without_path", ["data=csv"], ("data.path: is required",)),
    # -- Hydra keys the app would ignore or misuse (issue 25)
    ("data_target", ["+data._target_=os.system"], ("data._target_: the app builds its data from the option's fields",)),
    ("trainer_target", ["+trainer._target_=os.system"], ("trainer._target_: the app builds its trainer",)),
    ("clipping_partial", ["clipping._partial_=true"], ("clipping._partial_: the app builds this group itself",
                                                       "allowed: false")),
    ("scheduler_partial", ["scheduler._partial_=true"], ("scheduler._partial_: the app builds this group itself",)),
    ("distributed_partial", ["distributed._partial_=true"], ("distributed._partial_: the app builds this group",)),
    ("clipping_args", ["+clipping._args_=[x]"], ("clipping._args_: not a key Hydra or the library reads here",)),
    ("threads_bound", ["trainer.num_threads=1000000000"], ("trainer.num_threads: must be in 1..1024",)),
    ("warmup_fraction_and_epochs", ["scheduler=warmup_cosine", "scheduler.warmup_fraction=0.1"],
     ("scheduler.warmup_fraction: set either warmup_epochs (5) or warmup_fraction",)),
    # -- syntax and sweeps
    ("parse_error", ["optimizer.lr=1e-3)"], ("optimizer.lr=1e-3): cannot parse this override",)),
    ("ambiguous_list", ["optimizer.lr=1e-3,1e-2"], ("optimizer.lr: ambiguous value",)),
    ("sweep_bad_value", ["-m", "hydra.sweep.dir={sweep}", "optimizer.lr=1e-3,abc"], ("optimizer.lr: must be a number, got 'abc'",)),
    ("sweep_bad_option", ["-m", "hydra.sweep.dir={sweep}", "optimizer=adam,adamx"], ("optimizer: unknown option 'adamx'",)),
    # -- bad data: the file (and column, row)
    ("data_missing_file", ["data=csv", "data.path={data}/nope.csv"], ("data.path: file not found", "nope.csv")),
    ("data_missing_column", ["data=csv", "data.path={data}/ok.csv", "data.event_col=status"],
     ("{data}/ok.csv: column 'status' not found", "available: time, event, age, stage")),
    ("data_non_numeric", ["data=csv", "data.path={data}/non_numeric.csv"],
     ("{data}/non_numeric.csv: non-numeric value 'soon' in column 'time' at row 2",)),
    ("data_negative_duration", ["data=csv", "data.path={data}/negative.csv"],
     ("{data}/negative.csv: negative duration '-2.0' in column 'time' at row 2",)),
    ("data_bad_event", ["data=csv", "data.path={data}/bad_event.csv"],
     ("{data}/bad_event.csv: event value '2' in column 'event' at row 2; allowed: 0, 1",)),
    ("data_empty", ["data=csv", "data.path={data}/empty.csv"], ("{data}/empty.csv: file is empty",)),
    ("data_no_events", ["data=csv", "data.path={data}/no_events.csv"], ("{data}/no_events.csv: no events",)),
    ("data_dur_1e39", ["data=csv", "data.path={data}/dur_1e39.csv"],
     ("{data}/dur_1e39.csv: value '1e+39' in column 'time' at row 2 overflows float32",)),
    ("data_feat_neg_inf", ["data=csv", "data.path={data}/feat_neg_inf.csv"],
     ("{data}/feat_neg_inf.csv: non-finite value '-inf' in column 'age' at row 2",)),
    ("data_dur_infinity_text", ["data=csv", "data.path={data}/dur_inf_text.csv"],
     ("{data}/dur_inf_text.csv: non-finite value 'Infinity' in column 'time' at row 2",)),
    ("data_comma_decimal", ["data=csv", "data.path={data}/comma_decimal.csv"],
     ("{data}/comma_decimal.csv: column 'age' is numeric except for 1 of 30 cells, first '61,5' at row 6",)),
    ("data_event_words", ["data=csv", "data.path={data}/event_yes.csv"],
     ("{data}/event_yes.csv: non-numeric value 'no' in column 'event' at row 1",)),
    ("lr_underflow", ["optimizer.lr=1e-320"], ("optimizer.lr: must be >= 1.175e-38 (smaller underflows in float32",)),
    ("lr_nan_text", ["optimizer.lr='NaN'"], ("optimizer.lr: must be a finite number, got 'NaN'",)),
    ("split_too_few_to_rank", ["data=gbsg2", "data.val_fraction=0.003"],
     ("pkg://lifelines/datasets/gbsg2.csv: the validation split has 2 row(s), 1 event(s) and 1 comparable pair(s): "
      "too few to rank",)),
    ("sweep_dir_empty", ["-m", "hydra.sweep.dir=", "optimizer.lr=1e-3,2e-3"], ("hydra.sweep.dir: is empty",)),
    # -- resuming the existing run with a different computation
    ("resume_changed", ["optimizer.lr=0.5"], ("trainer.resume:", "different config (optimizer.lr: 0.01 -> 0.5)")),
]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def _app(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env or _env())


def snapshot(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every file under ``run_dir`` (checkpoints, metrics, logs, .hydra/)."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _write(path: Path, rows: list[list[object]], header: tuple[str, ...] = ("time", "event", "age", "stage")) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _data_files(folder: Path) -> None:
    good = [[1.0 + i, i % 2, 40 + i, "I" if i % 3 else "II"] for i in range(30)]
    _write(folder / "ok.csv", good)
    _write(folder / "non_numeric.csv", [good[0], ["soon", 1, 60, "II"], *good[2:]])
    _write(folder / "negative.csv", [good[0], [-2.0, 1, 60, "II"], *good[2:]])
    _write(folder / "bad_event.csv", [good[0], [2.0, 2, 60, "II"], *good[2:]])
    _write(folder / "no_events.csv", [[r[0], 0, r[2], r[3]] for r in good])
    (folder / "empty.csv").write_text("")
    # re-probe of issue 13 (defects 4, 5): other overflow spellings, other mixed-type cells
    _write(folder / "dur_1e39.csv", [good[0], [1e39, 1, 60, "II"], *good[2:]])
    _write(folder / "feat_neg_inf.csv", [good[0], [2.0, 1, "-inf", "II"], *good[2:]])
    _write(folder / "dur_inf_text.csv", [good[0], ["Infinity", 1, 60, "II"], *good[2:]])
    _write(folder / "comma_decimal.csv", [*good[:5], [2.0, 1, "61,5", "II"], *good[6:]])
    _write(folder / "event_yes.csv", [[r[0], "yes" if r[1] else "no", r[2], r[3]] for r in good])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One good tiny run, then every catalogue command against its run dir (2 at a time)."""
    base = tmp_path_factory.mktemp("inputs")
    run_dir, data, sweep = base / "run", base / "data", base / "sweep"
    data.mkdir()
    _data_files(data)
    good = _app(f"hydra.run.dir={run_dir}", *BASE)
    assert good.returncode == 0, good.stderr[-3000:]
    before = snapshot(run_dir)
    assert {"last.pt", "best.pt", "metrics.json", "epochs.csv", ".hydra/config.yaml", "train.log"} <= set(before)

    def run_case(case: tuple[str, list[str], tuple[str, ...]]) -> tuple[str, dict]:
        name, overrides, _ = case
        args = [o.format(data=data, sweep=sweep / name) for o in overrides]
        multirun = [a for a in args if a == "-m"]
        args = multirun + [f"hydra.run.dir={run_dir}", *BASE] + [a for a in args if a != "-m"]
        tic = time.perf_counter()
        proc = _app(*args)
        return name, {"proc": proc, "seconds": time.perf_counter() - tic, "after": snapshot(run_dir),
                      "sweep_exists": (sweep / name).exists()}

    tic = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        out = dict(pool.map(run_case, CATALOGUE))
    wall = time.perf_counter() - tic
    print(f"\n{len(CATALOGUE)} bad commands in {wall:.1f}s wall with {WORKERS} workers; per case: "
          + ", ".join(f"{k} {v['seconds']:.1f}s" for k, v in out.items()))
    return {"cases": out, "before": before, "run_dir": run_dir, "data": data}


def test_catalogue_is_big_enough() -> None:
    assert len(CATALOGUE) >= 40
    assert len({name for name, _, _ in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("case", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_is_one_line_and_writes_nothing(results: dict, case: tuple) -> None:
    name, overrides, fragments = case
    fragments = tuple(f.format(data=results["data"]) for f in fragments)
    r = results["cases"][name]
    proc = r["proc"]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: " + fragments[0]), lines[0]
    for fragment in fragments[1:]:
        assert fragment in lines[0], (fragment, lines[0])
    assert proc.stdout.strip() == "", proc.stdout  # not even a log line: Hydra never started
    assert r["after"] == results["before"], f"{name} changed the existing run dir"
    assert not r["sweep_exists"], f"{name} created its sweep dir"


def test_run_dir_untouched_after_all_cases(results: dict) -> None:
    assert snapshot(results["run_dir"]) == results["before"]


def test_traceback_only_when_asked(tmp_path: Path) -> None:
    """HYDRA_FULL_ERROR=1 or trainer.debug=true show the full story instead of one line."""
    full = _app(f"hydra.run.dir={tmp_path}", "optimizer.lr=-1", env={**_env(), "HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr and "optimizer.lr: must be > 0" in full.stderr
    debug = _app(f"hydra.run.dir={tmp_path}", "optimizer.lr=-1", "trainer.debug=true")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert not tmp_path.joinpath(".hydra").exists()


def test_good_sweep_passes_preflight_and_every_value_is_checked() -> None:
    """The pre-flight expands -m sweeps with Hydra's parser; a big sweep checks every value once."""
    from survopt_hydra.app import preflight

    jobs = preflight.sweep_jobs(["optimizer.lr=1e-3,1e-2", "optimizer=adam,sgd", "trainer.max_epochs=3"])
    assert len(jobs) == 4 and ["optimizer.lr=0.001", "optimizer=sgd", "trainer.max_epochs=3"] in jobs
    many = preflight.sweep_jobs(["optimizer.lr=range(1,60)", "trainer.seed=1,2,3"])
    assert len(many) == 59  # 177 jobs > MAX_SWEEP_JOBS: each swept value once
    assert {j[0] for j in many} == {f"optimizer.lr={i}" for i in range(1, 60)}
    assert {j[1] for j in many} == {"trainer.seed=1", "trainer.seed=2", "trainer.seed=3"}


def test_plateau_reads_only_metrics_the_trainer_computes(tmp_path: Path) -> None:
    """EPOCH_METRICS (what the pre-flight allows) is what the trainer hands to end_epoch."""
    import inspect

    from survopt_hydra.app import trainer
    from survopt_hydra.app.state import EPOCH_METRICS

    source = inspect.getsource(trainer.Trainer.train)
    call = source[source.index("self.engine.end_epoch("):].split("\n")[0]
    assert sorted(m for m in EPOCH_METRICS if f'"{m}"' in call) == sorted(EPOCH_METRICS)


def test_remote_launcher_sweeps_check_config_only() -> None:
    """Jobs that run elsewhere (Slurm) check their data and device there, not on the login node."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from survopt_hydra.app import preflight
    from survopt_hydra.errors import ConfigError

    remote = ["hydra/launcher=survopt_slurm", "optimizer.lr=1e-3,2e-3", "data=csv", "data.path=/cluster/only.csv"]
    assert preflight.check_command(remote, multirun=True) == 2
    with pytest.raises(ConfigError, match="optimizer.lr: must be > 0"):
        preflight.check_command(["hydra/launcher=survopt_slurm", "optimizer.lr=1e-3,-1"], multirun=True)


def test_preflight_imports_neither_dynamo_nor_fsdp(tmp_path: Path) -> None:
    """Issue 16 item 2: the pre-flight's checks (run-length check on a dummy optimizer included) import
    neither ``torch._dynamo`` nor FSDP (seconds each)."""
    probe = (
        "import sys\n"
        "from survopt_hydra.app.preflight import check_command\n"
        "print(check_command([]))\n"
        "print(sorted(m for m in ('torch._dynamo', 'torch.distributed.fsdp', 'sympy') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["1", "[]"]


_GC_PROBE = (
    "import atexit, gc, sys\n"
    "atexit.register(lambda: print('gc', gc.isenabled(), gc.get_freeze_count() > 100_000, file=sys.stderr))\n"
    "sys.argv = ['train.py', *sys.argv[1:]]\n"
    "from survopt_hydra.app.train import main\n"
    "main()\n"
)


def test_start_up_runs_without_gc_and_training_with_it(tmp_path: Path) -> None:
    """Collection is back on for training, with start-up's ~10^6 objects frozen (``_training_gc``); the
    run's .hydra/ files are Hydra's own (no pre-flight composition is handed to it any more)."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _GC_PROBE, f"hydra.run.dir={run_dir}", "trainer.max_epochs=1",
                           "optimizer=sgd", "hydra.job.name=mine"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == "gc True True"
    hydra_yaml = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())
    assert hydra_yaml["hydra"]["job"]["name"] == "mine" and hydra_yaml["hydra"]["run"]["dir"] == str(run_dir)
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["optimizer"]["name"] == "sgd"


def test_a_sweep_set_by_hydra_mode_still_sweeps(tmp_path: Path) -> None:
    """``hydra.mode=MULTIRUN`` without ``-m``: every job runs, each composed by Hydra."""
    sweep = subprocess.run([sys.executable, "-c", _GC_PROBE, "hydra.mode=MULTIRUN",
                            f"hydra.sweep.dir={tmp_path / 'sw'}", "trainer.max_epochs=1", "optimizer.lr=1e-3,2e-3"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env())
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    lrs = [yaml.safe_load((tmp_path / "sw" / j / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"]
           for j in ("0", "1")]
    assert lrs == [1e-3, 2e-3]
    assert all(json.loads((tmp_path / "sw" / j / "metrics.json").read_text())["epochs_run"] == 1 for j in ("0", "1"))


def test_yaml_spelling_of_infinity_on_the_command_line_trains_with_the_max_norm(tmp_path: Path) -> None:
    """Issue 13 defect 9: ``clipping.norm_type=.inf`` (as written in YAML) works on the command line."""
    import math

    import yaml

    run_dir = tmp_path / "run"
    proc = _app(f"hydra.run.dir={run_dir}", "trainer.max_epochs=1", "clipping.norm_type=.inf", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "clipping.norm_type=inf" in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["clipping"]["norm_type"] == math.inf
    assert (run_dir / "metrics.json").is_file()


def test_a_bad_config_value_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    """The pre-flight checks the config before it imports the trainer: a typo costs well under a second."""
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr))\n"
             "sys.argv = ['train.py', *sys.argv[1:]]\n"
             "from survopt_hydra.app.train import main\n"
             "main()\n")
    proc = subprocess.run([sys.executable, "-c", probe, f"hydra.run.dir={tmp_path / 'run'}", "optimizer.lr=-1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == "False", proc.stderr
    assert proc.stderr.splitlines()[0].startswith("error: optimizer.lr: must be > 0")
    assert not (tmp_path / "run").exists()
