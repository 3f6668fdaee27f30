"""A Hydra callback for tests: records what the launcher hands a sweeper for each job.

``on_job_end`` receives the job's ``JobReturn``; ``return_value`` is exactly what a sweeper
(Optuna, Nevergrad, ...) would optimize. It is written as JSON to ``<job dir>/sweeper_value.json``
so a test can compare it with the job's ``metrics.json``. Used with
``+hydra.callbacks.record._target_=record_return.RecordReturn`` and this folder on PYTHONPATH.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class RecordReturn(Callback):
    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        out = Path(job_return.hydra_cfg.hydra.runtime.output_dir)
        (out / "sweeper_value.json").write_text(json.dumps({"return_value": job_return.return_value}))
