"""Where a run's wall time goes: ``timings.json`` in the run dir, one figure per phase.

Why: at 10^5-10^6 patients the work around training (reading, the final metrics, the files) can
outweigh training itself; ``benchmarks/bench_scale.py`` splits each run's wall time with these
figures (issue 27). They cost a ``perf_counter`` pair per phase.

Every second between the start of the data load and the end of the last write belongs to exactly
one phase: a phase timed inside another is taken out of the outer one, and what no phase claims
(Hydra creating the run dir and its logs, the tqdm bar ...) is ``other``. ``startup`` is the
process's age when the data load began (imports, composing the config, the pre-flight's checks),
read from ``/proc/self/stat`` (Linux; absent elsewhere), for the first run of a process only. The
figures are this process's: a resumed run's ``train`` covers the epochs it ran itself
(``metrics.json``'s ``train_seconds`` adds up every try's).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

FILE = "timings.json"
#: The phases in the order a run passes through them (``timings.json`` lists them so).
PHASES = ("startup", "load", "setup", "train", "validate", "record", "checkpoints", "final_metrics", "writes",
          "other")
_FIRST_RUN = [True]


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), None where that is not known."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: starttime, in ticks
    except (OSError, ValueError, IndexError):
        return None


class Timings:
    """Wall seconds per phase (:data:`PHASES`); :meth:`phase` times a block, nested blocks count once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()
        self._inner: list[float] = []  # per open phase: seconds its nested phases took
        if _FIRST_RUN[0]:
            _FIRST_RUN[0] = False
            age = process_age()
            if age is not None:
                self.seconds["startup"] = age

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        tic = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            spent = time.perf_counter() - tic
            inner = self._inner.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + spent - inner
            if self._inner:
                self._inner[-1] += spent

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` (timed outside :meth:`phase`) to phase ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if self._inner:
            self._inner[-1] += seconds

    def report(self) -> dict[str, float]:
        """Every phase's seconds (3 decimals), ``other`` = the rest of the time since :meth:`__init__`."""
        claimed = sum(v for k, v in self.seconds.items() if k != "startup")
        out = dict(self.seconds, other=max(0.0, time.perf_counter() - self.started - claimed))
        return {k: round(out[k], 3) for k in sorted(out, key=lambda k: PHASES.index(k) if k in PHASES else 99)}

    def write(self, run_dir: Path) -> None:
        """``timings.json`` (not durable: a figure about the machine, not a result)."""
        from ..durable import write_text_atomic

        write_text_atomic(json.dumps(self.report(), indent=1) + "\n", Path(run_dir) / FILE, durable=False)
