"""Console scripts and optional packages: every tool is an installed command, and a command whose extra
is missing says so in one line naming the pip command (exit 2, no traceback, nothing written).

A missing package is simulated faithfully: the command runs in a fresh interpreter without the venv's
site-packages (``python -S``) but with a copy of it made of links to every entry except the hidden
package (its module folder and its ``.dist-info``), so the package is absent from the file system as
that interpreter sees it, exactly as if it had never been installed.
"""
from __future__ import annotations

import importlib
import re
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from survopt_hydra.errors import ConfigError, pip_command, require_package

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOOLS = {"survopt-tune": "tune", "survopt-report": "sweep_report", "survopt-plot": "plot_run",
         "survopt-schedule": "plot_schedule", "survopt-lr-find": "lr_find", "survopt-baseline": "baseline_cox"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_without(root: Path, hidden: list[str]) -> Path:
    """A site-packages made of links to the venv's entries, without ``hidden`` (top-level names such as
    ``optuna``, or ``hydra_plugins/hydra_joblib_launcher``) and without their projects' ``.dist-info``."""
    real = Path(next(p for p in site.getsitepackages() if Path(p, "torch").exists()))
    out = root / "site"

    def link_all(src: Path, dst: Path, skip: set[str]) -> None:
        dst.mkdir(parents=True)
        for entry in src.iterdir():
            project = _normal(entry.name.split("-")[0]) if entry.name.endswith(".dist-info") else None
            if entry.name in skip or entry.name.removesuffix(".py") in skip or project in {_normal(s) for s in skip}:
                continue
            nested = {h.split("/", 1)[1] for h in hidden if h.startswith(entry.name + "/")}
            if nested:
                link_all(entry, dst / entry.name, nested)
            else:
                (dst / entry.name).symlink_to(entry)

    link_all(real, out, {h.split("/")[-1] for h in hidden})
    return out


def run_without(tmp_path: Path, hidden: list[str], entry: str, *args: str) -> subprocess.CompletedProcess:
    """``entry`` (``module:function``, a console script's target) with ``args``, ``hidden`` uninstalled."""
    sites = site_without(tmp_path, hidden)
    module, function = entry.split(":")
    code = (f"import site, sys; site.addsitedir({str(sites)!r}); sys.argv = ['x', *sys.argv[1:]]; "
            f"import {module} as m; sys.exit(m.{function}())")
    work = tmp_path / "work"
    work.mkdir()
    return subprocess.run([sys.executable, "-S", "-c", code, *args], cwd=work, capture_output=True, text=True,
                          timeout=300)


def test_console_scripts_are_the_tools_entry_points() -> None:
    """pyproject.toml names a command for each tool, pointing at the package (not scripts/), and each
    target is a callable whose --help is that command's."""
    scripts = PYPROJECT["project"]["scripts"]
    assert {**{k: f"survopt_hydra.app.tools.{v}:main" for k, v in TOOLS.items()},
            "survopt-train": "survopt_hydra.app.train:main",
            "survopt-predict": "survopt_hydra.app.predict:main"} == scripts
    for name, target in scripts.items():
        module, function = target.split(":")
        main = getattr(importlib.import_module(module), function)
        if name == "survopt-train":
            continue  # Hydra's own --help
        with pytest.raises(SystemExit) as done:
            main(["--help"])
        assert done.value.code == 0, name


def test_the_wheel_lists_every_package() -> None:
    """Every folder of survopt_hydra with Python files is a package the wheel ships (app/tools included)."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "survopt_hydra").rglob("*.py")}
    assert found - {"survopt_hydra.conf"} <= listed and "survopt_hydra.app.tools" in listed


def test_pip_command_names_the_extra_that_lists_the_package() -> None:
    """The hint comes from the installed metadata, which is pyproject.toml's optional dependencies: each
    package of an extra other than dev is installed by the first extra listing it."""
    first: dict[str, str] = {}
    for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items():
        for requirement in requirements if extra != "dev" else ():
            first.setdefault(_normal(re.match(r"[A-Za-z0-9._-]+", requirement).group()), extra)
    assert {"optuna", "matplotlib", "lifelines", "tensorboard", "tqdm", "hydra-joblib-launcher",
            "hydra-submitit-launcher"} <= set(first)
    for project, extra in first.items():
        assert pip_command(project) == f'pip install "survopt-hydra[{extra}]"', project
    assert pip_command("hydra_joblib_launcher") == 'pip install "survopt-hydra[parallel]"'  # any spelling
    assert pip_command("no-such-project") == "pip install no-such-project"


def test_require_package_looks_up_without_importing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an uninstalled package looks like to find_spec
    with pytest.raises(ConfigError) as err:
        require_package("optuna", "survopt-tune")
    assert str(err.value) == 'survopt-tune: needs optuna, which is not installed: pip install "survopt-hydra[tune]"'
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    require_package("matplotlib", "x")  # installed: nothing raised
    assert "matplotlib" not in sys.modules  # and not imported by the check


PARALLEL = 'pip install "survopt-hydra[parallel]"'
APP = 'pip install "survopt-hydra[app]"'
CASES = {
    "tune": (["optuna"], "survopt_hydra.app.tools.tune:main", ["data=gbsg2", "--trials", "1"],
             'error: survopt-tune: needs optuna, which is not installed: pip install "survopt-hydra[tune]"'),
    "parallel": (["hydra_plugins/hydra_joblib_launcher"], "survopt_hydra.app.train:main",
                 ["-m", "hydra/launcher=survopt_parallel", "data=gbsg2", "optimizer.lr=1e-3,1e-2"],
                 f"error: hydra/launcher=survopt_parallel: needs hydra-joblib-launcher, which is not installed: "
                 f"{PARALLEL}"),
    "slurm": (["hydra_plugins/hydra_submitit_launcher"], "survopt_hydra.app.train:main",
              ["-m", "hydra/launcher=survopt_slurm", "optimizer.lr=1e-3,1e-2"],
              "error: hydra/launcher=survopt_slurm: needs hydra-submitit-launcher, which is not installed: "
              'pip install "survopt-hydra[slurm]"'),
    "plots": (["matplotlib"], "survopt_hydra.app.train:main", ["trainer.plots=true", "trainer.max_epochs=1"],
              f"error: trainer.plots: needs matplotlib, which is not installed: {APP}"),
    "tensorboard": (["tensorboard"], "survopt_hydra.app.train:main", ["trainer.tensorboard=true"],
                    f"error: trainer.tensorboard: needs tensorboard, which is not installed: {APP}"),
    "tqdm": (["tqdm"], "survopt_hydra.app.train:main", [],
             f"error: survopt-train: needs tqdm, which is not installed: {APP}"),
    "gbsg2": (["lifelines"], "survopt_hydra.app.train:main", ["data=gbsg2"],
              "error: data.path: file not found: pkg://lifelines/datasets/gbsg2.csv (package 'lifelines' is not "
              f"installed: {APP})"),
    "plot": (["matplotlib"], "survopt_hydra.app.tools.plot_run:main", ["."],
             f"error: survopt-plot: needs matplotlib, which is not installed: {APP}"),
    "report": (["matplotlib"], "survopt_hydra.app.tools.sweep_report:main", ["."],
               f"error: survopt-report: needs matplotlib, which is not installed: {APP}"),
    "schedule": (["matplotlib"], "survopt_hydra.app.tools.plot_schedule:main", [],
                 f"error: survopt-schedule: needs matplotlib, which is not installed: {APP}"),
    "lr-find": (["matplotlib"], "survopt_hydra.app.tools.lr_find:main", [],
                f"error: survopt-lr-find: needs matplotlib, which is not installed: {APP}"),
    "baseline": (["lifelines"], "survopt_hydra.app.tools.baseline_cox:main", [],
                 f"error: survopt-baseline: needs lifelines, which is not installed: {APP}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_missing_extra_is_one_line_naming_the_pip_command(tmp_path: Path, case: str) -> None:
    hidden, entry, args, line = CASES[case]
    proc = run_without(tmp_path, hidden, entry, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip() == line and "Traceback" not in proc.stderr
    assert not list((tmp_path / "work").iterdir())  # refused before anything was written (no outputs/)


@pytest.mark.slow
def test_the_hidden_package_is_really_absent_and_the_rest_works(tmp_path: Path) -> None:
    """Guards the simulation: without optuna, optuna cannot be imported but the app's own tools can,
    and with nothing hidden the same tool gets past the check."""
    sites = site_without(tmp_path, ["optuna"])
    code = (f"import site; site.addsitedir({str(sites)!r}); import importlib.util as u, survopt_hydra.app.tools.tune; "
            "print(u.find_spec('optuna'), u.find_spec('matplotlib') is not None)")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["None", "True"], proc.stderr
    present = run_without(tmp_path / "all", [], "survopt_hydra.app.tools.tune:main", "optimizer.lrr=1", "--trials", "1")
    assert present.returncode == 2 and "optimizer.lrr: unknown key" in present.stderr  # the next check ran


@pytest.mark.slow
def test_installed_console_scripts_run(tmp_path: Path) -> None:
    """The commands pip installed next to this interpreter (pip install -e . after a change to them)."""
    bin_dir = Path(sys.executable).parent
    for name in [*TOOLS, "survopt-predict"]:
        script = bin_dir / name
        if not script.exists():
            pytest.fail(f"{script} missing: reinstall the package (pip install -e .)")
        proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {name} "), (name, proc.stderr[-2000:])
