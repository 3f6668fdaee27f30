"""The one validation pass of a run: everything it needs to know before it builds anything.

:func:`plan_run` applies every rule in :mod:`.rules`, each once, in the order that fails
cheapest first: the config (no torch: unknown keys, schemas, cross-group rules), the launch
and device, the data (loaded once and kept for the trainer), the run length. The pre-flight
calls it for every job of a sweep; :class:`~.trainer.Trainer` calls it (or takes the plan it
was given) before it builds the model, so a direct ``train(cfg, run_dir)`` is checked the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .rules import batches_per_rank, check_config, check_launch, check_run, load_cohort_once


@dataclass
class RunPlan:
    """A checked run: its settings, its cohort, and how an epoch splits into batches."""

    settings: dict[str, dict[str, Any]]  # checked values: data, model, trainer and the library's groups
    world_size: int  # ranks this process trains with (torchrun / Slurm), 1 otherwise
    cohort: Any  # the loaded, checked cohort (app.data.Cohort), on the CPU
    rows_per_rank: int  # training rows each rank holds per epoch (DistributedSampler's count)
    n_batches: int  # training batches per epoch on each rank
    timings: Any = None  # .timings.Timings: start-up and load so far; the trainer goes on with it

    @property
    def steps_per_epoch(self) -> int:
        """Applied optimizer steps per epoch: batches divided by gradient accumulation, rounded up."""
        return math.ceil(self.n_batches / self.settings["trainer"]["accumulate_grad_batches"])


def plan_run(cfg: Mapping[str, Any], settings: dict[str, dict[str, Any]] | None = None) -> RunPlan:
    """Check ``cfg`` (a composed task config) and load its data; ConfigError / DataError on the first problem.

    ``settings``: :func:`~.rules.check_config`'s result when the caller already has it (a sweep
    checks every job's config before it loads any data)."""
    from .components import pick_device  # imports torch: only once the config is known to be sane

    settings = settings if settings is not None else check_config(cfg)
    trainer = settings["trainer"]
    world = check_launch(cfg)  # ddp/zero/fsdp without torchrun, none under torchrun
    from .data import load_cohort
    from .timings import Timings

    pick_device(trainer["device"])
    timings = Timings()
    with timings.phase("load"):  # under torchrun each rank keeps its shard only: the whole cohort is not cached
        cohort = load_cohort_once(settings["data"]) if world == 1 else load_cohort(settings["data"])
    rows = math.ceil(len(cohort.train) / world)
    n_batches = batches_per_rank(len(cohort.train), trainer["batch_size"], world)
    check_run(cfg, trainer, n_batches, rows)
    return RunPlan(settings, world, cohort, rows, n_batches, timings)
