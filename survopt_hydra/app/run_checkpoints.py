"""A run's checkpoints: when to write ``last.pt``, what goes in it, resuming, and ``best.pt``.

One place for the rules the trainer follows (see ``docs/failure_modes.md``):

* **cadence** (:meth:`RunCheckpoints.due`): ``last.pt`` is written when
  ``trainer.checkpoint_every_s`` seconds of wall time have passed since the last write
  (and every ``trainer.checkpoint_every`` epochs when that is set), always at the end of the
  run (also ``trainer.stop_after_epochs``) and on SIGTERM / Ctrl-C. Fewer writes cost no
  exactness: each epoch's randomness depends only on (seed, epoch) and ``last.pt`` holds
  every other piece of state, so a run killed anywhere and rerun replays the lost epochs
  and ends bit-identical to an uninterrupted one. The cadence only bounds the work at risk.
  (A fsynced checkpoint costs ~40 ms; one per epoch was half the wall time of a short run.)
* **what** (:meth:`save`): model, engine (optimizer, scheduler, GradScaler, counters, EMA),
  :class:`~.state.Progress` (early stopping, best weights, logs), every rank's RNG state,
  the config; checksummed, written atomically, the previous file kept as ``last.prev.pt``;
  under ``distributed.checkpoint=sharded`` each rank's DCP shards, whose SHA-256 digests go
  into the checksummed ``last.pt``.
* **best.pt** is written after the ``last.pt`` that holds the same best weights, so it never
  names an epoch ``last.pt`` lacks; on resume and at the end it is checked against the best
  epoch in memory and rebuilt (with a warning) when missing, stale or damaged.
* **resume** (:meth:`resume`): ``last.pt`` (or ``last.prev.pt`` when ``last.pt`` is damaged)
  if its config is compatible; only reads files, so a refused resume changes no byte. A checksum
  proves a file undamaged, not honest, so what it holds is checked before any of it is used:
  the progress, metrics, RNG states and ``monitor_bytes`` against the config
  (:func:`check_run_state`), the weights, optimizer state and the engine's other state against
  the model and engine this run built (:meth:`RunCheckpoints.resume`). A file that fails is
  refused in one line (``trainer.resume``), never half-loaded.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..distributed import engine_state_dict, load_engine_state, load_model_state_dict, model_state_dict
from ..distributed.checkpoint import load_shards, prune_shards, save_shards
from ..engine.step_engine import StepEngine, unwrap_model
from ..errors import ConfigError
from .checkpoint import (RESUME_HINT, CheckpointError, count, file_kind, load_checkpoint, number, rng_state,
                         run_state_problem, save_checkpoint, set_rng_state, weights_problem)
from .rules import resume_state
from .state import FaultInjection, Progress, lock_run_dir

log = logging.getLogger(__name__)



# ------------------------------------------------------------------ what last.pt may hold
def structure_problem(saved: Any, fresh: Any, key: str) -> str | None:
    """Why ``saved`` (read from a file) does not have the structure of ``fresh`` (the same object's
    ``state_dict()`` in this run), or None: the same keys, list lengths, tensor dtypes and shapes
    (floating tensors finite), and numbers, text and flags where ``fresh`` has them. ``None`` on
    either side matches a plain value. Torch's schedulers copy every key of their state into their
    attributes, so only keys the object already has may come from a file."""
    if saved is None or fresh is None:
        return None if not isinstance(saved if fresh is None else fresh, (torch.Tensor, Mapping)) else \
            f"{key}: expected {type(fresh).__name__}, found {type(saved).__name__}"
    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.dtype != fresh.dtype or saved.shape != fresh.shape:
            got = f"{saved.dtype} {tuple(saved.shape)}" if isinstance(saved, torch.Tensor) else type(saved).__name__
            return f"{key}: is {got}, expected {fresh.dtype} {tuple(fresh.shape)}"
        if saved.is_floating_point() and not bool(torch.isfinite(saved).all()):
            return f"{key}: holds non-finite values"
        return None
    if isinstance(fresh, Mapping):
        if not isinstance(saved, Mapping) or set(saved) != set(fresh):
            extra = sorted(map(str, set(saved) - set(fresh)))[:3] if isinstance(saved, Mapping) else []
            return f"{key}: expected the keys {sorted(map(str, fresh))[:6]}" + (f", found {extra}" if extra else "")
        for k, v in fresh.items():
            problem = structure_problem(saved[k], v, f"{key}.{k}")
            if problem:
                return problem
        return None
    if isinstance(fresh, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(fresh):
            return f"{key}: expected {len(fresh)} entries"
        for i, (a, b) in enumerate(zip(saved, fresh)):
            problem = structure_problem(a, b, f"{key}[{i}]")
            if problem:
                return problem
        return None
    kinds = (bool,) if type(fresh) is bool else (int, float) if type(fresh) in (int, float) else (type(fresh),)
    if type(saved) not in kinds:
        return f"{key}: {saved!r} is not a {kinds[0].__name__}"
    return None


def optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer) -> str | None:
    """Why ``saved`` cannot be this optimizer's state (None: it can): the same param groups holding
    the same parameters with the same hyper-parameter keys, and per parameter a state of tensors
    shaped like it (or scalars such as Adam's step), finite. A name-keyed state (FSDP's) is left to
    torch's own loader."""
    fresh = optimizer.state_dict()
    if not isinstance(saved, Mapping) or set(saved) != {"state", "param_groups"}:
        return "engine.optimizer: expected state and param_groups"
    groups, state = saved["param_groups"], saved["state"]
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        return f"engine.optimizer.param_groups: expected {len(fresh['param_groups'])} groups"
    shapes: dict[int, torch.Size] = {}
    for i, (group, want, live) in enumerate(zip(groups, fresh["param_groups"], optimizer.param_groups)):
        if not isinstance(group, Mapping) or group.get("params") != want["params"]:
            return f"engine.optimizer.param_groups[{i}]: holds other parameters than this run's model"
        problem = structure_problem({k: v for k, v in group.items() if k != "params"},
                                    {k: v for k, v in want.items() if k != "params"}, f"engine.optimizer.param_groups[{i}]")
        if problem:
            return problem
        shapes.update(zip(want["params"], (p.shape for p in live["params"])))
    if not isinstance(state, Mapping) or not all(type(k) is int for k in state):
        return None if isinstance(state, Mapping) else "engine.optimizer.state: expected a mapping"
    for index, entry in state.items():
        if index not in shapes or not isinstance(entry, Mapping):
            return f"engine.optimizer.state[{index}]: no such parameter"
        for name, value in entry.items():
            where = f"engine.optimizer.state[{index}].{name}"
            if isinstance(value, torch.Tensor):
                if value.shape != shapes[index] and value.numel() > 1:
                    return f"{where}: shape {tuple(value.shape)}, the parameter is {tuple(shapes[index])}"
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    return f"{where}: holds non-finite values"
            elif not (value is None or number(value) or isinstance(value, bool)):
                return f"{where}: {type(value).__name__} is not optimizer state"
    return None


def best_problem(path: Path, weights: dict[str, Any], epoch: int) -> str | None:
    """Why ``best.pt`` at ``path`` does not hold ``weights`` of best epoch ``epoch`` (None: it does)."""
    if file_kind(path) == "missing":
        return f"{path}: missing"
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        return str(exc)
    model = state.get("model")
    if state.get("epoch") != epoch:
        return f"{path}: holds epoch {state.get('epoch')!r}, but the best epoch is {epoch}"
    if (not isinstance(model, dict) or model.keys() != weights.keys()
            or not all(torch.equal(model[k], weights[k].to(model[k].device)) for k in weights)):
        return f"{path}: its weights are not the best epoch's"
    return None


class RunCheckpoints:
    """``last.pt`` / ``best.pt`` of one run (collective calls: every rank takes part, rank 0 writes)."""

    def __init__(self, run_dir: Path, model: nn.Module, engine: StepEngine, progress: Progress, ctx: Any,
                 dist: Any, config: dict[str, Any], trainer: dict[str, Any], faults: FaultInjection) -> None:
        self.run_dir, self.model, self.engine, self.progress = run_dir, model, engine, progress
        self.ctx, self.dist, self.config, self.faults = ctx, dist, config, faults
        self.every_epochs: int | None = trainer["checkpoint_every"]
        self.every_s: float | None = trainer["checkpoint_every_s"]
        self.last_write = time.monotonic()  # the cadence counts from the start of training
        self.keep_previous = True  # False while last.pt is known to be damaged (see resume)
        self.saved_epoch: int | None = None  # the epoch last.pt holds
        self.best_saved: int | None = None  # the best epoch best.pt holds (None: not known to match)
        self.resumed_from: Path | None = None  # the checkpoint file the run resumed from
        self.shards: str | None = None  # checkpoint=sharded: the DCP folder last.pt names

    # -- cadence ---------------------------------------------------------------------
    def due(self, must: bool) -> bool:
        """Whether to write ``last.pt`` after the epoch just recorded; rank 0's clock decides for all."""
        epoch = self.progress.epoch
        every = self.every_epochs is not None and epoch % self.every_epochs == 0
        late = self.every_s is not None and time.monotonic() - self.last_write >= self.every_s
        return self.ctx.agree(must or every or late)

    # -- resume ----------------------------------------------------------------------
    def resume(self, enabled: bool, max_epochs: int) -> dict[str, Any] | None:
        """Load last.pt (or last.prev.pt when last.pt is damaged) into model, engine, progress and RNGs."""
        if self.ctx.is_main and self.run_dir.is_dir():  # no other run may write here while we read and train
            lock_run_dir(self.run_dir)
        found = self.ctx.on_main(resume_state, self.run_dir, self.config) if enabled else None
        if found is None:
            return None
        state, path, problems = found
        problem = run_state_problem(state, self.config)
        if problem:
            raise ConfigError("trainer.resume", f"cannot resume: {path}: {problem}; {RESUME_HINT}")
        problem = self._fit_problem(state)
        if problem:  # before any of it is loaded: a refused resume leaves the model and engine untouched
            raise ConfigError("trainer.resume", f"{path} does not fit this run's model/optimizer ({problem}); did "
                              f"the data's columns change? {RESUME_HINT}")
        self.resumed_from = path
        if problems:
            log.warning("%s; resuming from %s instead", "; ".join(problems), path.name)
            self.keep_previous = False  # overwrite the damaged last.pt, keep the good last.prev.pt
        try:
            self._load_weights(state, path)
        except ConfigError:
            raise
        except (RuntimeError, ValueError, KeyError) as exc:  # a different model shape or param-group layout
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise ConfigError("trainer.resume", f"{path} does not fit this run's model/optimizer ({first}); did the "
                              "data's columns change? use a new hydra.run.dir or trainer.resume=false") from None
        p = self.progress
        p.load_state_dict(state["progress"])
        rngs = state.get("rng_ranks") or []
        set_rng_state(rngs[self.ctx.rank] if len(rngs) == self.ctx.world_size else state["rng"])
        self.saved_epoch = p.epoch
        if state["finished"] and not p.stopped_early and p.epoch < max_epochs:
            state["finished"], p.done = False, False  # trainer.max_epochs was raised: train on
        return state

    def _fit_problem(self, state: Mapping[str, Any]) -> str | None:
        """Why ``state``'s weights and engine state cannot go into this run's model and engine (None: they
        fit). FSDP's sharded model and name-keyed optimizer state are left to torch's own loaders."""
        engine = state.get("engine")
        if not isinstance(engine, Mapping):
            return "engine: expected the step engine's state"
        optimizer = self.engine.optimizer
        optimizer.state_dict = lambda: None  # the template needs no optimizer state (ZeRO's is sharded until consolidated)
        try:
            fresh = self.engine.state_dict()
        finally:
            del optimizer.state_dict
        problem = structure_problem({k: v for k, v in engine.items() if k != "optimizer"},
                                    {k: v for k, v in fresh.items() if k != "optimizer"}, "engine")
        if problem:
            return problem
        counters = engine["counters"]
        if not all(count(v) for v in counters.values()) or not count(engine["window"], 0,
                                                                         max(self.engine.accumulate - 1, 0)):
            return "engine: counters must be counts, the accumulation window below trainer.accumulate_grad_batches"
        if self.dist.strategy == "fsdp":  # sharded weights and a name-keyed optimizer state: torch's loaders check them
            return None
        reference = unwrap_model(self.model).state_dict()
        for key, weights in (("model", state.get("model")), ("progress.best_weights", state["progress"]["best_weights"])):
            if key == "model" and state.get("sharded") is not None:
                continue
            problem = weights_problem(weights, reference) if weights is not None or key == "model" else None
            if problem:
                return f"{key}: {problem}"
        if state.get("sharded") is None and self.dist.strategy != "zero":  # ZeRO: each rank holds a shard
            return optimizer_problem(engine["optimizer"], self.engine.optimizer)
        return None

    def _load_weights(self, state: dict[str, Any], path: Path) -> None:
        if state.get("sharded") is None:
            load_model_state_dict(self.model, state["model"], self.ctx)
            load_engine_state(self.engine, state["engine"], self.ctx, self.model)
            return
        # fsdp + checkpoint=sharded: every rank reads its own shards (DCP), verified against last.pt's digests
        if not self.dist.checkpoint_sharded:
            raise ConfigError("distributed.checkpoint", f"{path} names sharded (DCP) state but this run does not "
                              "use distributed=fsdp distributed.checkpoint=sharded; refused")
        self.engine.load_state_dict(dict(state["engine"], optimizer=self.engine.optimizer.state_dict()))
        load_shards(path, state["sharded"], state.get("shard_digests"), self.model, self.engine.optimizer, self.ctx)
        self.shards = state["sharded"]

    # -- writing ---------------------------------------------------------------------
    def save(self, finished: bool = False, metrics: dict[str, Any] | None = None) -> None:
        """Write ``last.pt`` (collective: FSDP gathers, ZeRO consolidates, rank 0 writes)."""
        last, shards, digests = self.run_dir / "last.pt", None, None
        if self.dist.checkpoint_sharded:  # every rank writes its own model/optimizer shards; last.pt names them
            shards, digests = save_shards(last, self.model, self.engine.optimizer, self.ctx)
            model_sd = None
            engine_sd = dict(self.engine.state_dict(), optimizer=None) if self.ctx.is_main else None
        else:
            model_sd = model_state_dict(self.model, self.ctx)
            engine_sd = engine_state_dict(self.engine, self.ctx, self.model)
        rngs = self.ctx.all_gather_object(rng_state())
        if self.ctx.is_main:
            state = {"model": model_sd, "engine": engine_sd, "progress": self.progress.state_dict(),
                     "rng": rngs[0], "rng_ranks": rngs, "config": self.config,
                     "monitor_bytes": self.monitor_bytes(), "finished": finished, "metrics": metrics,
                     "sharded": shards.name if shards is not None else None, "shard_digests": digests}
            save_checkpoint(state, last, keep_previous=self.keep_previous,
                            before=self.faults.save_hook(self.progress.epoch))
            if shards is not None:  # keep the folders last.pt and last.prev.pt name, drop older/orphaned ones
                prune_shards(last, {shards.name, self.shards} - {None})
        if shards is not None:
            self.shards = shards.name
        self.ctx.barrier()
        self.keep_previous, self.saved_epoch, self.last_write = True, self.progress.epoch, time.monotonic()

    def save_with_best(self) -> None:
        """last.pt, then best.pt when the best epoch changed: best.pt never holds an epoch last.pt lacks."""
        self.save()
        p = self.progress
        if self.ctx.is_main and p.best_weights is not None and self.best_saved != p.best_epoch:
            self.write_best()

    def write_best(self) -> None:
        """best.pt = the best weights last.pt holds (checksummed like last.pt; rank 0)."""
        p = self.progress
        state = {"model": p.best_weights, "epoch": p.best_epoch, "val_cindex": p.best_val_cindex,
                 "config": self.config}
        save_checkpoint(state, self.run_dir / "best.pt", keep_previous=False,
                        before=self.faults.best_hook(p.best_epoch))
        self.best_saved = p.best_epoch

    def sync_best(self, reread: bool = False) -> None:
        """Check best.pt against the best epoch in memory (= last.pt's); rebuild it when missing,
        stale or damaged (rank 0). ``reread``: read it back even if this run wrote it. Writes
        nothing when it matches (a finished run in a read-only dir)."""
        p = self.progress
        if reread:
            self.best_saved = None
        if p.best_weights is None or self.best_saved == p.best_epoch:
            return
        problem = best_problem(self.run_dir / "best.pt", p.best_weights, p.best_epoch)
        if problem:
            source = self.resumed_from.name if self.resumed_from is not None else "memory"
            log.warning("%s; rebuilding it from %s (best epoch %d)", problem, source, p.best_epoch)
            self.write_best()
        self.best_saved = p.best_epoch

    def monitor_bytes(self) -> int:
        """Size of monitors.csv when last.pt is written: a resumed run truncates rows logged after it."""
        path = self.run_dir / "monitors.csv"
        return path.stat().st_size if path.exists() else 0
