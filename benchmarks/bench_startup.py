"""Start-up costs: importing the package, and composing + instantiating the app config.

* ``import_overhead_s``: seconds ``from survopt_hydra import create_optimizer`` adds
  after ``import torch`` (the lazy export forces the real import of
  ``survopt_hydra.api.factory``, hence of the optimizer/scheduler builders and the
  schemas), timed with ``perf_counter`` inside fresh interpreters, median of 7;
  ``import_bare_s`` is plain ``import survopt_hydra`` (lazy exports only).  One more
  interpreter runs with ``-X importtime`` and ``import_top`` lists what dominates
  (cumulative microseconds of the biggest modules outside torch).
* ``compose_instantiate_ms``: ``initialize_config_dir(conf/)`` + ``compose("train")`` +
  ``instantiate(cfg.optimizer, params=model)`` + ``instantiate(cfg.scheduler, ...)`` on
  the default app model, warm: median over repeats in one process.
  ``compose_instantiate_cold_ms`` is the first such call in a fresh interpreter that has
  only imported torch, so it includes importing Hydra/OmegaConf, Hydra's plugin discovery and
  the ``torch._dynamo`` import that torch does in the first ``torch.optim.Optimizer.__init__``
  of a process (``compose_cold_breakdown_ms`` splits it).  Diagnostic:
  ``compose_hydra_floor_ms`` (compose of an empty config: Hydra's own ``hydra`` node).

Usage: ``python benchmarks/bench_startup.py [--quick]``; ``run(quick)`` returns the dict.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_IMPORT_PROBE = """
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import survopt_hydra
t2 = time.perf_counter()
from survopt_hydra import create_optimizer
t3 = time.perf_counter()
print(json.dumps({"torch": t1 - t0, "bare": t2 - t1, "full": t3 - t1}))
"""

_COLD_PROBE = """
import json, sys, time
sys.path.insert(0, {here!r})
import torch
t0 = time.perf_counter()
import hydra, hydra.utils, omegaconf
t1 = time.perf_counter()
import bench_engine
from hydra.utils import instantiate
cfg, source = bench_engine.compose_app_config()
t2 = time.perf_counter()
model = bench_engine.default_model(cfg, source)
t3 = time.perf_counter()
import torch._dynamo  # what torch.optim.Optimizer.__init__ imports on the first optimizer
t4 = time.perf_counter()
opt = instantiate(cfg.optimizer, params=model)
sched = instantiate(cfg.scheduler, optimizer=opt, epochs=100, steps_per_epoch=1)
t5 = time.perf_counter()
print(json.dumps({{"total": t2 - t0 + t5 - t3, "import_hydra": t1 - t0, "compose": t2 - t1,
                  "torch_dynamo_import": t4 - t3, "instantiate": t5 - t4, "source": source}}))
"""


def _python(code: str, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300, check=True)


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def import_times(n: int) -> dict:
    runs = [_last_json(_python(_IMPORT_PROBE).stdout) for _ in range(n)]
    return {k: statistics.median(r[k] for r in runs) for k in ("torch", "bare", "full")}


def import_top(limit: int = 8) -> list[dict]:
    """Biggest imports outside torch (cumulative us) under ``-X importtime``."""
    err = _python("import torch; from survopt_hydra import create_optimizer", "-X", "importtime").stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|")
        if not self_us.strip().isdigit():
            continue  # the header line
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((name.strip(), int(self_us), int(cum_us), depth))
    # everything after the last top-level torch module belongs to survopt_hydra's import
    last_torch = max(i for i, r in enumerate(rows) if r[0] == "torch" and r[3] == 0)
    ours = [r for r in rows[last_torch + 1:] if not r[0].startswith("torch")]
    ours.sort(key=lambda r: -r[2])
    seen: set[str] = set()
    top = []
    for mod, self_us, cum_us, _ in ours:
        if mod not in seen:
            seen.add(mod)
            top.append({"module": mod, "cumulative_us": cum_us, "self_us": self_us})
    return top[:limit]


def _median_ms(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def compose_warm(repeats: int, diagnostics: bool = True) -> dict:
    """Warm compose + instantiate; with ``diagnostics`` also Hydra's floor."""
    sys.path.insert(0, str(HERE))
    import bench_engine
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg, source = bench_engine.compose_app_config()
    model = bench_engine.default_model(cfg, source)

    def full() -> None:
        c, _ = bench_engine.compose_app_config()
        opt = instantiate(c.optimizer, params=model)
        instantiate(c.scheduler, optimizer=opt, epochs=100, steps_per_epoch=1)

    if not diagnostics:
        return {"ms": _median_ms(full, repeats), "compose_ms": _median_ms(bench_engine.compose_app_config, repeats),
                "source": source}

    def floor() -> None:  # Hydra composes its own ``hydra`` node even for an empty config
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
            compose(None)

    variants: dict[str, Any] = {"ms": full, "compose_ms": bench_engine.compose_app_config, "floor_ms": floor}
    return {"source": source, **_interleaved_ms(variants, repeats)}


def _interleaved_ms(variants: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median ms of each variant, called in turn (so load changes hit all of them alike)."""
    for fn in variants.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}


def run(quick: bool = False) -> dict:
    n_import = 1 if quick else 7
    imports = import_times(n_import)
    warm = compose_warm(3 if quick else 30, diagnostics=not quick)
    cold_runs = [_last_json(_python(_COLD_PROBE.format(here=str(HERE))).stdout) for _ in range(1 if quick else 3)]
    parts = ("import_hydra", "compose", "torch_dynamo_import", "instantiate")
    cold = {k: statistics.median(r[k] for r in cold_runs) for k in ("total", *parts)}
    out = {
        "benchmark": "startup",
        "import_runs": n_import,
        "import_torch_s": round(imports["torch"], 4),
        "import_bare_s": round(imports["bare"], 4),
        "import_overhead_s": round(imports["full"], 4),
        "compose_config_source": warm["source"],
        "compose_instantiate_ms": round(warm["ms"], 2),
        "compose_only_ms": round(warm["compose_ms"], 2),
        "compose_hydra_floor_ms": round(warm["floor_ms"], 2) if "floor_ms" in warm else None,
        "compose_instantiate_cold_ms": round(cold["total"] * 1e3, 1),
        "compose_cold_breakdown_ms": {k: round(cold[k] * 1e3, 1) for k in parts},
    }
    if not quick:
        out["import_top"] = import_top()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    res = run(parser.parse_args().quick)
    print(f"import_overhead_s={res['import_overhead_s']} compose_instantiate_ms={res['compose_instantiate_ms']}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
