"""Run a reliability suite's subprocess scenarios two at a time (the CI box has 2 cores)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable


def run_scenarios(scenarios: dict[str, Callable[..., dict]], base: Path, label: str, *args: Any) -> dict:
    """``{name: scenario(base / name, *args) + dir + seconds}``; an exception is kept under ``"error"``
    so that only the scenario's own test fails."""

    def run(name: str) -> tuple[str, dict]:
        tic = time.perf_counter()
        try:
            result = scenarios[name](base / name, *args)
        except BaseException as exc:  # reported by the scenario's own test
            result = {"error": exc}
        return name, {**result, "dir": base / name, "seconds": time.perf_counter() - tic}

    tic = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        out = dict(pool.map(run, scenarios))
    print(f"\n{label} scenarios in {time.perf_counter() - tic:.1f}s wall: "
          + ", ".join(f"{k} {v['seconds']:.1f}s" for k, v in out.items()))
    return out
