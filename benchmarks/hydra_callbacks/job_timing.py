"""Hydra callback for the sweep benchmark: stamps each job's start and end (wall clock, epoch s).

Writes ``<job dir>/job_timing.json`` = {"start": ..., "end": ...}; with ``metrics.json``'s
``train_seconds`` that gives each job's overhead beyond training. Loaded with
``+hydra.callbacks.timing._target_=job_timing.JobTiming`` and this folder on PYTHONPATH.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback


class JobTiming(Callback):
    def __init__(self) -> None:
        self.start = 0.0

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self.start = time.time()

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        out = Path(job_return.hydra_cfg.hydra.runtime.output_dir)
        (out / "job_timing.json").write_text(json.dumps({"start": self.start, "end": time.time()}))
