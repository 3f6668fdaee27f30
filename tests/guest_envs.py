"""Fresh virtual environments that see survopt_hydra the way other people's apps do.

Used by ``tests/test_external_app.py`` and ``benchmarks/bench_guest.py``. Nothing is
downloaded: each venv is made ``--without-pip`` and sees the dev venv's packages (torch,
hydra, Lightning, pip, setuptools ...) through one ``.pth`` line. Python does not process
``.pth`` files inside a directory added that way, so the dev venv's own editable install of
survopt_hydra stays invisible: an app in these venvs imports the copy installed there, or none.

* ``bare``: no survopt_hydra at all (what an app saw before the package was installed);
* ``wheel``: the wheel built from a copy of the sources (the shared tree gets no ``build/``);
* ``editable``: ``pip install -e`` of another copy of the sources (the README's install).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("survopt_hydra", "conf", "pyproject.toml", "README.md")  # what the build reads: no tests, no build/
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")


def run(cmd: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def clean_env() -> dict:
    """The environment for a venv's python: nothing that points back at the dev venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def copy_sources(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=_IGNORE)
        else:
            shutil.copy2(path, dest / name)
    return dest


def make_venv(path: Path) -> Path:
    """A venv without pip that sees the dev venv's site-packages; returns its python."""
    run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=path.parent).stdout.strip())
    (purelib / "_survopt_dev_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip_install(python: Path, *args: str | Path) -> None:
    # pip and the build backend come from the dev venv; --ignore-installed: pip sees the dev venv's
    # survopt-hydra through the .pth line and must never uninstall it
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--no-build-isolation",
         "--quiet", *args], cwd=python.parent, env=clean_env())


def build_wheel(root: Path) -> Path:
    src = copy_sources(root / "src_wheel")
    # -x: the build backend is already in the dev venv
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-x", "-o", root / "dist"], cwd=src)
    return next((root / "dist").glob("*.whl"))


def _wheel_venv(root: Path) -> dict:
    wheel = build_wheel(root)
    python = make_venv(root / "venv_wheel")
    pip_install(python, wheel)
    return {"python": python, "wheel": wheel}


def _editable_venv(root: Path) -> dict:
    src = copy_sources(root / "src_editable")
    python = make_venv(root / "venv_editable")
    pip_install(python, "-e", src)
    return {"python": python, "src": src}


def _bare_venv(root: Path) -> dict:
    return {"python": make_venv(root / "venv_bare")}


def make_envs(root: Path, kinds: tuple[str, ...] = ("bare", "wheel", "editable")) -> dict[str, dict]:
    """The venvs of ``kinds`` under ``root``, built concurrently; each maps to ``{"python": ...}``
    (plus ``wheel`` / ``src``)."""
    makers = {"bare": _bare_venv, "wheel": _wheel_venv, "editable": _editable_venv}
    with ThreadPoolExecutor(len(kinds)) as pool:
        futures = {kind: pool.submit(makers[kind], root) for kind in kinds}
        return {kind: future.result() for kind, future in futures.items()}
