"""Does installing survopt-hydra slow down a Hydra app that does not use it?

Issue 26: the old search-path plugin cost every Hydra app in the environment ~0.7 s at start-up.
Now the library's groups are opted into per app (``hydra.searchpath``), so an app that does not
opt in should start exactly as before. Measured here as a user sees it: the wall time of whole
app runs in fresh venvs (``tests/guest_envs.py``) that differ only in survopt-hydra being
installed (``bare``: not installed; ``wheel``; ``editable``: ``pip install -e``):

* ``guest_app``: ``tests/guest_apps/yaml_app`` (imports torch, composes its own
  ``optimizer/adamw``, builds the optimizer);
* ``hydra_only``: a Hydra app that composes a two-key config and prints it (no torch), where a
  fixed start-up cost would show most.

Rounds are interleaved (bare, wheel, editable, in a rotating order, then the next round), so
load from other processes hits every side alike; each ratio (installed / bare) is taken per
round and the median over rounds is reported.

Usage: ``python benchmarks/bench_guest.py [--rounds N] [--quick] [--no-write]``. Writes
``benchmarks/results/guest_startup.{json,md}`` with the machine and the date.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
import guest_envs  # noqa: E402

RESULTS = HERE / "results"
KINDS = ("bare", "wheel", "editable")

_HYDRA_ONLY_APP = '''
import hydra
from omegaconf import OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    print(OmegaConf.to_yaml(cfg))


main()
'''


def _apps(root: Path) -> dict[str, Path]:
    guest = root / "guest_app"
    shutil.copytree(REPO / "tests" / "guest_apps" / "yaml_app", guest)
    bare = root / "hydra_only"
    (bare / "conf").mkdir(parents=True)
    (bare / "app.py").write_text(_HYDRA_ONLY_APP)
    (bare / "conf" / "config.yaml").write_text("seed: 0\nname: probe\n")
    return {"guest_app": guest, "hydra_only": bare}


def _time_run(python: Path, app: Path, out: Path) -> float:
    env = guest_envs.clean_env()
    start = time.perf_counter()
    subprocess.run([str(python), "app.py", f"hydra.run.dir={out}"], cwd=app, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return time.perf_counter() - start


def measure(rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_guest_") as tmp:
        root = Path(tmp)
        envs = guest_envs.make_envs(root, KINDS)
        apps = _apps(root)
        times = {app: {kind: [] for kind in KINDS} for app in apps}
        for app, path in apps.items():  # warm-up: page cache, .pyc files of each venv
            for kind in KINDS:
                _time_run(envs[kind]["python"], path, root / "out" / f"warm-{app}-{kind}")
        for r in range(rounds):
            order = KINDS[r % 3:] + KINDS[:r % 3]
            for app, path in apps.items():
                for kind in order:
                    times[app][kind].append(_time_run(envs[kind]["python"], path, root / "out" / f"{app}-{kind}-{r}"))
    figures = {}
    for app, by_kind in times.items():
        figures[app] = {
            "median_s": {kind: statistics.median(ts) for kind, ts in by_kind.items()},
            "ratio_vs_bare": {kind: statistics.median(t / b for t, b in zip(by_kind[kind], by_kind["bare"]))
                              for kind in ("wheel", "editable")},
        }
    return {"rounds": rounds, "figures": figures, "times_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 rounds, nothing written")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = measure(rounds)
    import hydra
    import torch
    from run import cpu_model

    result.update({
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "hydra": hydra.__version__},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_avg_1min": {"before": load_before, "after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
    })
    for app, fig in result["figures"].items():
        med, ratio = fig["median_s"], fig["ratio_vs_bare"]
        print(f"{app}: bare {med['bare']:.3f} s, wheel {med['wheel']:.3f} s, editable {med['editable']:.3f} s; "
              f"ratio vs bare: wheel {ratio['wheel']:.3f}, editable {ratio['editable']:.3f}")
    if args.quick or args.no_write:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guest_startup.json").write_text(json.dumps(result, indent=1) + "\n")
    m, load = result["machine"], result["load_avg_1min"]
    lines = [
        "# Start-up of a Hydra app that does not opt in, with and without survopt-hydra installed",
        "",
        f"`python benchmarks/bench_guest.py` ({result['rounds']} interleaved rounds, median), {result['date']}; "
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, Hydra {m['hydra']}; "
        f"1-minute load average {load['before']:.2f} before, {load['after']:.2f} after (a shared machine).",
        "",
        "| app | bare venv (s) | + wheel (s) | + editable (s) | wheel / bare | editable / bare |",
        "|---|---|---|---|---|---|",
    ]
    for app, fig in result["figures"].items():
        med, ratio = fig["median_s"], fig["ratio_vs_bare"]
        lines.append(f"| `{app}` | {med['bare']:.3f} | {med['wheel']:.3f} | {med['editable']:.3f} | "
                     f"{ratio['wheel']:.3f} | {ratio['editable']:.3f} |")
    lines += ["", "`guest_app`: `tests/guest_apps/yaml_app` (torch, its own `optimizer/adamw`); `hydra_only`: a Hydra "
              "app composing a two-key config (no torch). Ratios are per round, then the median."]
    (RESULTS / "guest_startup.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
