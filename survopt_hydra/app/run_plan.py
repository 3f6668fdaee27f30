"""The one validation pass of a run: everything it needs to know before it builds anything.

:func:`plan_run` applies every rule in :mod:`.rules`, each once, in the order that fails
cheapest first: the config (no torch: unknown keys, schemas, cross-group rules), the optional
packages it asks for (:func:`check_packages`), the launch and device, the data (loaded once and kept for the trainer),
the model family fitted to the training rows (:func:`.family_fit.fit_family`: its grid, its time scale), the run length. The pre-flight
calls it for every job of a sweep; :class:`~.trainer.Trainer` calls it (or takes the plan it
was given) before it builds the model, so a direct ``train(cfg, run_dir)`` is checked the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .rules import batches_per_rank, check_config, check_launch, check_run, load_cohort_once


@dataclass
class RunPlan:
    """A checked run: its settings, its cohort, and how an epoch splits into batches."""

    settings: dict[str, dict[str, Any]]  # checked values: data, model, trainer and the library's groups
    world_size: int  # ranks this process trains with (torchrun / Slurm), 1 otherwise
    cohort: Any  # the loaded, checked cohort (app.data.Cohort), on the CPU
    rows_per_rank: int  # training rows each rank holds per epoch (DistributedSampler's count)
    n_batches: int  # training batches per epoch on each rank
    family: Any = None  # the fitted library family (survival.families), None for family=cox
    timings: Any = None  # .timings.Timings: start-up and load so far; the trainer goes on with it

    @property
    def steps_per_epoch(self) -> int:
        """Applied optimizer steps per epoch: batches divided by gradient accumulation, rounded up."""
        return math.ceil(self.n_batches / self.settings["trainer"]["accumulate_grad_batches"])


def check_packages(trainer: Mapping[str, Any]) -> None:
    """The app's optional packages (the ``app`` extra) a run needs: tqdm always (the epoch loop), and what
    its own settings ask for (``trainer.plots``: matplotlib, ``trainer.tensorboard``: tensorboard). A
    missing one is one line naming the pip command before anything is built, not a traceback at the first
    epoch or a run that ends hours later without what it was asked to write."""
    from ..errors import require_package

    require_package("tqdm", "survopt-train")
    if trainer.get("plots"):
        require_package("matplotlib", "trainer.plots")
    if trainer.get("tensorboard"):
        require_package("tensorboard", "trainer.tensorboard")


def plan_run(cfg: Mapping[str, Any], settings: dict[str, dict[str, Any]] | None = None,
             load_data: Callable[[dict[str, Any]], Any] | None = None) -> RunPlan:
    """Check ``cfg`` (a composed task config) and load its data; ConfigError / DataError on the first problem.

    ``settings``: :func:`~.rules.check_config`'s result when the caller already has it (a sweep
    checks every job's config before it loads any data). ``load_data``: builds the cohort from the
    checked ``data`` settings (the Python API's reads a DataFrame, :func:`.data.cohort_from_table`);
    default: the files ``cfg.data`` names (:func:`~.rules.load_cohort_once`)."""
    from .components import pick_device  # imports torch: only once the config is known to be sane
    from .family_fit import fit_family

    settings = settings if settings is not None else check_config(cfg)
    trainer = settings["trainer"]
    check_packages(trainer)
    world = check_launch(cfg)  # ddp/zero/fsdp without torchrun, none under torchrun
    from .data import load_cohort
    from .timings import Timings

    pick_device(trainer["device"])
    timings = Timings()
    with timings.phase("load"):  # under torchrun each rank keeps its shard only: the whole cohort is not cached
        cohort = (load_data or (load_cohort_once if world == 1 else load_cohort))(settings["data"])
    family = fit_family(settings, cohort)
    rows = math.ceil(len(cohort.train) / world)
    n_batches = batches_per_rank(len(cohort.train), trainer["batch_size"], world)
    check_run(cfg, trainer, n_batches, rows)
    return RunPlan(settings, world, cohort, rows, n_batches, family, timings)
