"""survopt_hydra used as a user would: from ANOTHER Hydra app, through the installed wheel.

The wheel is built from a copy of the sources (the shared tree gets no ``build/``),
installed with ``--no-deps --no-index`` into a fresh venv that sees the dev venv's
torch/hydra through a ``.pth`` line (nothing is downloaded). ``.pth`` files inside that
added directory are not processed, so the dev venv's editable install stays invisible:
the app must import survopt_hydra and its search-path plugin from the new venv.
The app (``tests/external_app``) names only ``optimizer: adamw``, ``scheduler: cosine``,
``clipping: none``; those groups exist only inside the wheel.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
APP = Path(__file__).resolve().parent / "external_app"
SOURCES = ("survopt_hydra", "conf", "hydra_plugins", "pyproject.toml", "README.md")  # no build/ or tests


def _run(cmd: list, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("external")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    # -x: the build backend is already in the dev venv; see the report on pyproject's "wheel" requirement
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-x", "-o", str(root / "dist")], cwd=src)
    wheel = next((root / "dist").glob("*.whl"))

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=root).stdout.strip())
    (purelib / "_survopt_dev_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # pip comes from the dev venv too; --ignore-installed: never touch the dev venv's editable install
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--quiet",
          str(wheel)], cwd=root)

    app = root / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "outputs", "multirun"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {"root": root, "wheel": wheel, "python": python, "purelib": purelib, "app": app, "env": env}


@pytest.fixture(scope="module")
def runs(installed) -> dict:
    """Every app invocation at once (the machine may have few cores; they overlap imports)."""
    out = installed["root"] / "out"
    cases = {
        "default": [],
        "lr": ["optimizer.lr=0.05"],
        "preset": ["+preset=large_model"],
        "partial": ["optimizer._partial_=true"],
        "bad": ["optimizer.lr=-1"],
    }
    procs = {
        name: subprocess.Popen(
            [str(installed["python"]), "app.py", *args, f"hydra.run.dir={out / name}"],
            cwd=installed["app"], env=installed["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, args in cases.items()
    }
    procs["multirun"] = subprocess.Popen(
        [str(installed["python"]), "app.py", "-m", "optimizer.lr=1e-4,1e-3", f"hydra.sweep.dir={out / 'sweep'}"],
        cwd=installed["app"], env=installed["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[name] = {"rc": proc.returncode, "stdout": stdout, "stderr": stderr, "dir": out / name}
    return results


def _result(run: dict) -> dict:
    assert run["rc"] == 0, run["stdout"] + run["stderr"]
    line = next(ln for ln in run["stdout"].splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert json.loads((run["dir"] / "result.json").read_text()) == result
    return result


def _cosine(lr: float, epochs: int = 4, eta_min: float = 0.0) -> list[float]:
    return [eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / epochs)) / 2 for t in range(epochs)]


def test_wheel_ships_config_groups_and_plugin(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for required in (
        "survopt_hydra/conf/preset/large_model.yaml",
        "survopt_hydra/conf/preset/finetune.yaml",
        "survopt_hydra/app/train_conf/train.yaml",
        "survopt_hydra/app/train_conf/hydra/launcher/survopt_slurm.yaml",
        "survopt_hydra/config/torch_signatures.py",
        "hydra_plugins/survopt_hydra_searchpath/__init__.py",
        "survopt_hydra/seed_api.py",
    ):
        assert required in names, required
    assert "hydra_plugins/__init__.py" not in names  # a namespace package shared with other plugins
    # the options live in the ConfigStore; the app's configs only under its own config path
    assert not [n for n in names if n.startswith("survopt_hydra/conf/") and not n.startswith("survopt_hydra/conf/preset/")
                and not n.endswith("__init__.py")]


def test_wheel_ships_the_default_data_and_finds_it_installed(installed):
    """The app's default cohort is package data: ``pkg://survopt_hydra/...`` must resolve inside
    the installed wheel, not the source tree."""
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert {f"survopt_hydra/datasets/{f}" for f in ("support_train.csv", "support_test.csv", "README.md")} <= names
    probe = ("from survopt_hydra.survival.data import load_csv, resolve_path\n"
             "p = resolve_path('pkg://survopt_hydra/datasets/support_test.csv')\n"
             "print(p.resolve(), len(load_csv(str(p), 'duration', 'event')))")
    path, rows = _run([str(installed["python"]), "-c", probe], cwd=installed["root"],
                      env=installed["env"]).stdout.split()
    assert path.startswith(str(installed["purelib"].resolve())) and rows == "1775"


def test_default_run_uses_the_installed_wheel(installed, runs):
    result = _result(runs["default"])
    purelib = str(installed["purelib"].resolve())
    for module in ("survopt_hydra", "plugin"):
        path = str(Path(result[module]).resolve())
        assert path.startswith(purelib) and not path.startswith(str(REPO)), path
    assert (result["optimizer"], result["scheduler"], result["clipping"]) == ("AdamW", "CosineAnnealingLR", "none")
    assert result["lr"] == 1e-3 and result["weight_decay"] == 0.01  # torch's AdamW defaults
    assert result["betas"] == [0.9, 0.999] and result["partial"] is False
    assert result["lrs"] == pytest.approx(_cosine(1e-3), rel=1e-12)


def test_cli_override(runs):
    result = _result(runs["lr"])
    assert result["lr"] == 0.05 and result["lrs"] == pytest.approx(_cosine(0.05), rel=1e-12)


def test_preset_large_model(runs):
    result = _result(runs["preset"])
    assert result["betas"] == [0.9, 0.95] and result["lr"] == 3e-3 and result["weight_decay"] == 1e-4
    assert (result["clipping"], result["max_norm"]) == ("norm", 1.0)
    assert result["lrs"] == pytest.approx(_cosine(3e-3, eta_min=1e-6), rel=1e-12)


def test_partial_optimizer(runs):
    result = _result(runs["partial"])
    assert result["partial"] is True and result["optimizer"] == "AdamW" and result["lr"] == 1e-3


def test_bad_override_names_the_key(runs):
    run = runs["bad"]
    assert run["rc"] != 0
    assert "optimizer.lr: must be > 0, got -1.0" in run["stderr"], run["stderr"]


def test_multirun_two_jobs(runs):
    run = runs["multirun"]
    assert run["rc"] == 0, run["stdout"] + run["stderr"]
    sweep = run["dir"].parent / "sweep"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = [json.loads((p / "result.json").read_text())["lr"] for p in jobs]
    assert lrs == [1e-4, 1e-3]



# ------------------------------------------------------------------ issue 14: a lightning-hydra-template app
LHT = Path(__file__).resolve().parent / "lht_app"
LIBRARY_GROUPS = {"optimizer", "scheduler", "clipping", "amp", "distributed", "ema", "preset"}


def test_core_install_requires_no_survival_or_plotting_package(installed):
    meta = next(n for n in zipfile.ZipFile(installed["wheel"]).namelist() if n.endswith("METADATA"))
    lines = zipfile.ZipFile(installed["wheel"]).read(meta).decode().splitlines()
    core = {ln.split(":", 1)[1].split(";")[0].strip().split(">")[0].split("=")[0].strip().lower()
            for ln in lines if ln.startswith("Requires-Dist:") and "extra ==" not in ln}
    assert core == {"torch", "hydra-core", "omegaconf", "pyyaml", "numpy"}, core
    app_extra = {ln for ln in lines if ln.startswith("Requires-Dist:") and "extra == \"app\"" in ln}
    assert any("lifelines" in ln for ln in app_extra) and any("matplotlib" in ln for ln in app_extra)


@pytest.fixture(scope="module")
def lht_runs(installed) -> dict:
    """The template-layout app, one Lightning fit per feature, each with no extra flag."""
    app = installed["root"] / "lht_app"
    shutil.copytree(LHT, app, ignore=shutil.ignore_patterns("__pycache__", "outputs", "multirun"))
    out = installed["root"] / "lht_out"
    cases = {
        "plateau": ["experiment=plateau"],
        "preset": ["+preset@model=finetune"],
        "muon": ["optimizer@model.optimizer=muon"],
        "adafactor": ["optimizer@model.optimizer=adafactor"],
        "custom": ["optimizer@model.optimizer=custom", "model.optimizer.cls=torch.optim.Adamax",
                   "+model.optimizer.kwargs.betas=[0.8,0.9]"],
        "layer_decay": ["model.optimizer.layer_decay=0.75"],
        "wsd": ["scheduler@model.scheduler=wsd"],
        "wd": ["experiment=wd_schedule"],
        "help": ["--help"],
    }
    procs = {name: subprocess.Popen([str(installed["python"]), "train.py", *args, f"hydra.run.dir={out / name}"],
                                    cwd=app, env=installed["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name, args in cases.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=900)
        results[name] = {"rc": proc.returncode, "stdout": stdout, "stderr": stderr}
    return results


def _lht(run: dict) -> dict:
    assert run["rc"] == 0, run["stdout"][-3000:] + run["stderr"][-3000:]
    line = next(ln for ln in run["stdout"].splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_lht_help_lists_only_its_groups_and_the_librarys(lht_runs):
    run = lht_runs["help"]
    assert run["rc"] == 0, run["stderr"]
    section = run["stdout"].split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    groups = {ln.split(":", 1)[0].strip() for ln in section.splitlines() if ":" in ln and not ln.startswith("Compose")}
    assert groups == {"data", "model", "trainer", "experiment"} | LIBRARY_GROUPS, groups


def test_lht_warmup_plus_plateau_under_lightning_follows_the_engine(lht_runs):
    """``experiment=plateau``: _partial_ nodes under model., configure_optimizers from lightning_optimizers;
    the LR per epoch equals the StepEngine's for the same logged metric."""
    import torch

    from survopt_hydra import StepEngine, build_optimizer, build_scheduler

    result = _lht(lht_runs["plateau"])
    assert (result["optimizer"], result["scheduler"], result["inner"]) == ("AdamW", "WarmupScheduler", "ReduceLROnPlateau")
    model = torch.nn.Linear(2, 1)
    opt = build_optimizer(model, "adamw", lr=0.01)
    engine = StepEngine(model, opt, build_scheduler(opt, epochs=6, name="plateau", monitor="val_loss", warmup_epochs=2,
                                                    patience=0, factor=0.5))
    want = []
    for _ in range(6):
        want.append(opt.param_groups[0]["lr"])
        engine.end_epoch({"val_loss": 1.0})
    assert result["lrs"] == pytest.approx(want, rel=1e-12) and want[-1] < 0.01


def test_lht_preset_at_model(lht_runs):
    result = _lht(lht_runs["preset"])
    assert result["inner"] == "CosineAnnealingLR" and result["clipping"] == "norm"
    assert result["initial_lrs"] == pytest.approx({"backbone.*": 1e-6, "backbone.*/no_decay": 1e-6,
                                                   "default": 1e-5, "default/no_decay": 1e-5})


def test_lht_muon_adafactor_custom(lht_runs):
    muon = _lht(lht_runs["muon"])
    assert muon["optimizer"] == "MuonWithAdamW"
    assert sorted(muon["groups"]) == ["adamw/default", "adamw/default/no_decay", "muon/default"]
    assert _lht(lht_runs["adafactor"])["optimizer"] == "Adafactor"
    custom = _lht(lht_runs["custom"])
    assert custom["optimizer"] == "Adamax" and custom["defaults"]["betas"] == [0.8, 0.9]


def test_lht_layer_decay(lht_runs):
    result = _lht(lht_runs["layer_decay"])
    # blocks backbone.0-2 are layers 1-3, the head layer 4: lr x 0.75 ** (4 - layer)
    want = {f"default/layer{k}": 0.01 * 0.75 ** (4 - k) for k in (1, 2, 3, 4)}
    want.update({f"{name}/no_decay": lr for name, lr in want.items()})
    assert result["initial_lrs"] == pytest.approx(want)


def test_lht_wsd_and_weight_decay_schedule(lht_runs):
    wsd = _lht(lht_runs["wsd"])
    assert wsd["inner"] == "LambdaLR" and wsd["lrs"] == pytest.approx([1e-4, 0.00505, 0.01, 0.01, 0.01, 0.01])
    wd = _lht(lht_runs["wd"])
    assert wd["scheduler"] == "HyperParamScheduler"
    assert wd["wds"] == pytest.approx([0.05 * (0.1 + 0.9 * (1 + math.cos(math.pi * t / 6)) / 2) for t in range(6)])
