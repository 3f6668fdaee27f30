"""The training recipe of ``survopt-train``: set up, train, score the test set once.

Read it top to bottom, like a torchtune recipe:

* :class:`Trainer.__init__` is the set-up, one visible step per config group (distributed,
  data, model, optimizer, scheduler + clipping + AMP + EMA in the engine, checkpoints,
  resume); everything is built and checked before anything is written, so a bad value or a
  bad file fails with one line and leaves the run dir untouched;
* :meth:`Trainer.train` is the one loop: per epoch re-seed from (seed, epoch), train
  (:meth:`_train_epoch`), validate, record (early stopping, best weights), checkpoint when due;
* :meth:`Trainer._finish` restores the best epoch's weights and scores the test set once.

Each policy lives in one named place: the step order and the non-finite streak in
:class:`~survopt_hydra.engine.StepEngine`; when a run has diverged in :mod:`.divergence`; early
stopping and best weights in :class:`~.state.Progress`; checkpoint cadence, resume and ``best.pt`` in
:class:`~.run_checkpoints.RunCheckpoints`; SIGTERM / Ctrl-C in :class:`~.state.GracefulStop`
(stop after the epoch, with ``last.pt`` saved). Because each epoch's randomness depends only
on (seed, epoch) and ``last.pt`` holds every other piece of state, a run killed anywhere and
rerun ends exactly where an uninterrupted one does.

With ``ema=ema`` the validation C-index, early stopping, ``best.pt`` and the test score all
use the weight average (:mod:`survopt_hydra.engine.ema`); training steps the raw weights.

What the network's outputs mean is the ``family`` group's (:mod:`.families`): the trainer calls
its seam for the head, the loss of each batch, the validation figures and the end of the run,
whatever the family (Cox by default, exactly as before the families existed).

Under torchrun (``distributed=ddp|zero|fsdp``) every rank runs this same sequence on its own
shard of every epoch; evaluation is gathered so every rank computes the same C-index, and
every decision (early stopping, a stop signal, a non-finite step, a checkpoint) is agreed
before it is acted on. Only rank 0 writes files or prints.
"""
from __future__ import annotations

import gc
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from ..distributed import DistributedSettings, load_model_state_dict, model_state_dict, shard_indices, sync_buffers
from ..durable import truncate_file
from ..engine.step_engine import StepEngine, compile_model, unwrap_model
from ..optim.stepping import Stepping
from ..engine.monitors import CSVSink, GradientMonitor, OptimizerMonitor
from .checkpoint import epoch_seed, seed_everything
from .components import build_model, evaluate, load_best, pick_device, set_threads  # noqa: F401 (tools import them here)
from ..errors import ConfigError
from .data import Cohort, Split
from .divergence import TrainingError, check_learnt, check_loss, check_nonfinite
from .families import run_family
from .image_data import ImageSplit
from .outputs import RunOutputs, archive_old_results, summary_line
from .run_plan import RunPlan, plan_run
from .run_checkpoints import RunCheckpoints
from .state import FaultInjection, GracefulStop, Progress, RunInterrupted, lock_run_dir, unlock_run_dir
from .timings import Timings

log = logging.getLogger(__name__)


class _FullWeights:
    """What Progress snapshots as best weights: plain names, full tensors, on every rank."""

    def __init__(self, model: torch.nn.Module, ctx: Any) -> None:
        self.model, self.ctx = model, ctx

    def state_dict(self) -> dict[str, torch.Tensor]:
        return model_state_dict(self.model, self.ctx, all_ranks=True)


class _Nothing:
    """Ranks other than 0 write nothing; FSDP's sharded gradients are not monitored."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Trainer:
    """One run: ``__init__`` builds and checks everything, :meth:`train` trains and writes."""

    def __init__(self, cfg: DictConfig, run_dir: Path, plan: RunPlan | None = None) -> None:
        from hydra.utils import instantiate

        plan = plan or plan_run(cfg)  # the one validation pass (the pre-flight hands over its own)
        self.timings, tic = plan.timings or Timings(), time.perf_counter()  # timings.json: where the time went
        self.t = t = plan.settings["trainer"]
        self.dist = instantiate(cfg.distributed) if cfg.get("distributed") is not None else DistributedSettings()
        self.ctx = self.dist.setup(device=pick_device(t["device"]))  # one-line ConfigError without torchrun
        try:
            self.run_dir = Path(self.ctx.broadcast_object(str(run_dir)))  # rank 0's: Hydra run dirs may differ by rank
            if not self.ctx.is_main:
                logging.getLogger().setLevel(logging.WARNING)
            set_threads(t, plan.settings["data"], self.ctx.device)
            self.cohort: Cohort = self._setup_data(plan)
            self.family = run_family(plan.settings, plan.family)  # family=...: the loss, scores and curves
            self.family.prepare(self.cohort)
            seed_everything(t["seed"])
            head, model = self.family.head, plan.settings["model"]
            net = build_model(model, head.input_shape(self.cohort.input_shape), self.cohort.covariates, head=head)
            self.family.init_head(net, model["name"])  # a family's output bias starts at its training curve
            self.model = self.dist.wrap_model(net, self.ctx)
            self.optimizer = self._setup_optimizer(cfg.optimizer)
            self.engine = self._setup_engine(cfg, instantiate, plan.steps_per_epoch)
            self.progress = Progress()
            self.config = OmegaConf.to_container(cfg, resolve=True)
            self.faults = FaultInjection(t["fault_injection"])  # test-only; nothing when unset
            self.checkpoints = RunCheckpoints(self.run_dir, self.model, self.engine, self.progress, self.ctx,
                                              self.dist, self.config, t, self.faults)
            self.resumed = self.checkpoints.resume(t["resume"], t["max_epochs"])
            self.faults.wrap_backward(self.engine, self.progress.epoch * self.n_batches)
            self.stop = GracefulStop()
            self.timings.add("setup", time.perf_counter() - tic)
        except BaseException:  # every rank fails the same way here (same config, same data, rank 0's checkpoint)
            for name in ("engine", "model", "optimizer", "checkpoints"):  # DDP/ZeRO hold the process group
                self.__dict__.pop(name, None)
            self.ctx.teardown()
            raise

    # -- set-up ------------------------------------------------------------------------
    def _setup_data(self, plan: RunPlan) -> Cohort:
        """The cohort the plan loaded (``data`` group), on the device; batches per rank. Under torchrun each
        rank keeps the inputs of its own rows only (:meth:`.data.Cohort.sharded`)."""
        if plan.world_size != self.ctx.world_size:  # the launch the plan read is the one setup() joined
            raise ConfigError("distributed.strategy", f"planned for {plan.world_size} ranks but the process group "
                                                      f"has {self.ctx.world_size}")
        self.rows_per_rank, self.n_batches = plan.rows_per_rank, plan.n_batches
        # Cox on tensors: each rank keeps its rows' inputs only. A family indexes its training targets by
        # position in the whole split, and image files are read per batch anyway: those keep every row.
        self.sharded = self.ctx.world_size > 1 and plan.family is None and isinstance(plan.cohort.train, Split)
        cohort = plan.cohort.sharded(self.ctx, self.t["seed"]) if self.sharded else plan.cohort
        cohort = cohort.to(self.ctx.device)
        self.train_rows = cohort.train.local() if self.sharded else cohort.train  # what _train_epoch draws from
        return cohort

    def _setup_optimizer(self, node: DictConfig) -> torch.optim.Optimizer:
        """``optimizer`` group through the distributed strategy (ZeRO wraps it; LR scaled, recorded)."""
        bs, k, ws = self.t["batch_size"], self.t["accumulate_grad_batches"], self.ctx.world_size
        return self.dist.build_optimizer(node, self.model, self.ctx, global_batch=min(bs, self.rows_per_rank) * k * ws,
                                         base_batch=min(bs, len(self.cohort.train)) * k)

    def _setup_engine(self, cfg: DictConfig, instantiate: Any, steps_per_epoch: int) -> StepEngine:
        """``scheduler``, ``clipping``, ``amp`` and ``ema`` groups, one instantiate each, in the step engine."""
        t, k = self.t, self.t["accumulate_grad_batches"]
        # steps_per_epoch counts applied optimizer steps, so step schedules end with the run
        scheduler = instantiate(cfg.scheduler, optimizer=self.optimizer, epochs=t["max_epochs"],
                                steps_per_epoch=steps_per_epoch)
        clipper = instantiate(cfg.clipping) if cfg.get("clipping") else None
        amp = instantiate(cfg.amp) if cfg.get("amp") else None
        ema = instantiate(cfg.ema) if cfg.get("ema") else None
        forward = compile_model(self.model) if t["compile"] else self.model
        return StepEngine(forward, self.optimizer, scheduler, clipper, amp, k, self.n_batches, ema,
                          max_nonfinite_steps=t["max_nonfinite_steps"], any_rank=self.ctx.any_rank,
                          stepping=Stepping.of(cfg.scheduler))

    def _setup_outputs(self) -> None:
        """epochs.csv / TensorBoard / plots (rank 0), monitors.csv rows after last.pt dropped."""
        main, start = self.ctx.is_main, self.progress.epoch
        monitors = self.run_dir / "monitors.csv"
        if main:  # drop rows an earlier try logged after its checkpoint (never through a link, never longer)
            truncate_file(monitors, self.resumed["monitor_bytes"] if self.resumed is not None else 0)
        self.outputs = (RunOutputs(self.run_dir, purge_epoch=start + 1, tensorboard=self.t["tensorboard"],
                                   plots=self.t["plots"]) if main else _Nothing())
        self.sink = CSVSink(monitors) if main else None
        self.opt_monitor = OptimizerMonitor(self.optimizer, self.t["log_interval"], self.sink)
        # GradientMonitor reads full gradients (.tolist()); FSDP's are sharded DTensors: off under fsdp
        self.grad_monitor = (GradientMonitor(unwrap_model(self.model), self.t["log_interval"], self.sink)
                             if self.dist.strategy != "fsdp" else _Nothing())

    def _describe(self) -> None:
        if self.resumed is not None:
            log.info("resuming from %s after epoch %d", self.checkpoints.resumed_from, self.progress.epoch)
        log.info("data: %s; %s", self.cohort.source, self.cohort.describe())
        log.info("model: %d parameters on %s; %d batches/epoch", sum(p.numel() for p in self.model.parameters()),
                 self.ctx.device, self.n_batches)
        log.info("distributed: %s", self.dist.describe(self.ctx))

    # -- the loop ----------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train until done, early stopping or ``trainer.stop_after_epochs``; {} when stopped so."""
        if self._claim_run_dir():
            return self.resumed["metrics"]  # type: ignore[index]
        self._describe()
        self._setup_outputs()
        t, p, ctx, tm = self.t, self.progress, self.ctx, self.timings
        end = min(t["max_epochs"], t["stop_after_epochs"] or t["max_epochs"])
        try:
            with self.stop:  # SIGTERM / Ctrl-C: finish the epoch, save last.pt, raise RunInterrupted
                for epoch in self._epochs(p.epoch, end):
                    tic = time.perf_counter()
                    seed_everything(epoch_seed(t["seed"], epoch) + ctx.rank)  # own dropout masks per rank
                    lrs = self.engine.lrs()
                    with tm.phase("train"):
                        train_loss = self._train_epoch(epoch)
                    check_loss(epoch, train_loss, p.history, t["max_loss_ratio"], self.checkpoints.saved_epoch)
                    with tm.phase("validate"):
                        val_c, val_loss = self._validate()
                    self.engine.end_epoch({"val_cindex": val_c, "val_loss": val_loss, "train_loss": train_loss})
                    row = {"epoch": epoch + 1, "train_loss": train_loss, "val_cindex": val_c, "val_loss": val_loss,
                           **{f"lr/{k}": v for k, v in lrs.items()}, "seconds": time.perf_counter() - tic}
                    with tm.phase("record"):
                        self._record(row)
                    stop = ctx.any_rank(self.stop.requested)  # a signal may reach the ranks at different batches
                    if self.checkpoints.due(p.done or epoch + 1 >= end or stop):
                        with tm.phase("checkpoints"):
                            self.checkpoints.save_with_best()
                    if p.done:
                        break
                    self._stop_if_asked()
            self.bar.close()
            if p.done:
                return self._finish()
            self.outputs.write_lr_steps(p.lr_steps)
            log.warning("stopped after epoch %d (trainer.stop_after_epochs); rerun to resume", p.epoch)
            return {}
        except RunInterrupted as exc:
            self.outputs.write_lr_steps(p.lr_steps)
            log.warning("%s", exc)
            raise
        finally:  # never let a failing close (a full disk) hide the error that ended the run
            self._close()

    def _claim_run_dir(self) -> bool:
        """Lock the run dir; archive an earlier run's results (fresh start) or check best.pt against
        last.pt (resume: a kill may have come between them). True: the run had already finished."""
        if self.ctx.is_main:
            lock_run_dir(self.run_dir)  # held since the resume check when the dir existed
            if self.resumed is None:
                archive_old_results(self.run_dir)
            else:
                self.checkpoints.sync_best()
        finished = self.resumed is not None and self.resumed["finished"]
        if finished:
            log.info("run already finished; reporting its metrics")
        return finished

    def _epochs(self, start: int, end: int) -> Any:
        """Epoch numbers ``start..end-1``, with a tqdm bar on a terminal (rank 0)."""
        from tqdm import tqdm

        # progress.done: killed between the last epoch's checkpoint and the end of the run
        epochs = range(start, start if self.progress.done else end)
        show = self.t["progress_bar"] and sys.stderr.isatty() and self.ctx.is_main
        self.bar = tqdm(epochs, initial=start, total=self.t["max_epochs"], disable=not show,
                        unit="epoch", dynamic_ncols=True, leave=False)
        return self.bar

    def _train_epoch(self, epoch: int) -> float:
        """One pass over the training rows; the mean loss of the batches that held a comparable pair."""
        e, data, ctx = self.engine, self.train_rows, self.ctx
        e.train_mode()
        if self.sharded:  # this rank's own shard of the rows (Cohort.sharded), reshuffled per epoch
            g = torch.Generator().manual_seed(self.t["seed"] + epoch)
            perm = torch.randperm(len(data), generator=g).to(ctx.device)
        elif ctx.world_size > 1:  # DistributedSampler: a disjoint share of the whole split per rank, per epoch
            perm = shard_indices(len(data), epoch, self.t["seed"], ctx).to(ctx.device)
        else:
            perm = torch.randperm(len(data), device=ctx.device)  # global RNG, seeded per epoch
        empty = torch.zeros((), dtype=torch.int64, device=ctx.device)  # counted on the device: no sync per batch
        for i, (idx, inputs, durations, events) in enumerate(self._batches(data, perm, epoch)):
            with e.autocast():
                out = self.family.forward(e.model, inputs, idx)
            loss = self.family.loss(out, durations, events, idx)  # fp32 by design, whatever the family
            empty += loss.detach() == 0  # exactly 0 only without a comparable pair: it trained nothing
            e.backward(loss)
            if e.will_step():
                step, lrs = e.global_step, e.lrs()
                self.opt_monitor.log_lr(step)
                self.grad_monitor.log_gradients(step)
                if e.step():
                    self.progress.lr_steps.append({"step": step, **{f"lr/{g}": v for g, v in lrs.items()}})
                    self.grad_monitor.log_update(step)
                if e.consecutive_nonfinite:
                    check_nonfinite(e, self.progress.epoch, i + 1, self.t["max_nonfinite_steps"],
                                    self.checkpoints.saved_epoch)
        mean, count = e.read_loss()  # the losses rode each step's existing host transfer
        n_empty = int(empty)
        check_learnt(epoch, ctx.any_rank(n_empty == self.n_batches), self.n_batches)  # collective: all stop together
        if n_empty:  # their exact zeros are in the sum but must not be in the mean
            mean = mean * count / (count - n_empty) if count > n_empty else math.nan
        return ctx.all_reduce_mean(mean)

    def _batches(self, data: Split | ImageSplit, perm: torch.Tensor, epoch: int) -> Iterator[Any]:
        """(row positions, model inputs, durations, events) of each of the epoch's ``n_batches`` slices of
        ``perm`` (the positions index the family's training targets).

        Tensors in memory are indexed directly (no DataLoader: the tabular path stays as fast as
        it was); image files come through the split's DataLoader, augmented under the epoch's seed."""
        chunks = torch.tensor_split(perm, self.n_batches)
        if isinstance(data, ImageSplit):
            yield from ((idx, *batch) for idx, batch in zip(chunks, data.train_batches(chunks, epoch_seed(
                self.t["seed"], epoch))))
            return
        for idx in chunks:
            yield idx, (data.x[idx],), data.durations[idx], data.events[idx]

    def _validate(self) -> tuple[float, float]:
        """(C-index, loss) on the validation rows of the model that is selected (EMA: the average); what the
        C-index and the loss are depends on the family (:mod:`.families`)."""
        self.engine.eval_mode()  # a schedule-free optimizer's averaged weights are the ones to score and keep
        sync_buffers(self.model, self.ctx)  # rank 0's BatchNorm statistics: same eval everywhere, exact resume
        if self.engine.ema is not None:  # its averaged statistics followed each rank's own: same fix
            sync_buffers(self.engine.ema.module, self.ctx)
        return self.family.evaluate(self._scored(), self.cohort.val, self.ctx)

    def _scored(self) -> torch.nn.Module:
        return self.engine.ema.module if self.engine.ema is not None else self.model

    def _record(self, row: dict[str, Any]) -> None:
        """Early stopping and best weights (Progress), epochs.csv, the bar and the log line."""
        p, t = self.progress, self.t
        p.record(row, t["monitor"], _FullWeights(self._scored(), self.ctx), t["early_stopping_patience"],
                 row["seconds"])
        p.done = self.ctx.agree(p.done or p.epoch >= t["max_epochs"])
        self.bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_c=f"{row['val_cindex']:.3f}", best=p.best_epoch)
        if self.bar.disable and p.epoch % max(1, t["max_epochs"] // 10) == 0:
            log.info("epoch %d: train loss %.4f, val C-index %.4f", p.epoch, row["train_loss"], row["val_cindex"])
        self.outputs.epoch_end(p.history)

    def _stop_if_asked(self) -> None:
        """The safe point: a SIGTERM / Ctrl-C (on any rank) ends the run here, with last.pt saved."""
        if not self.ctx.any_rank(self.stop.requested):
            return
        if self.checkpoints.saved_epoch != self.progress.epoch:  # e.g. it landed while best.pt was written
            self.checkpoints.save_with_best()
        self.bar.close()
        raise RunInterrupted(self.stop.signum or signal.SIGTERM, self.progress.epoch)

    def _finish(self) -> dict[str, Any]:
        """Best weights back, the test set scored once, metrics.json, predictor.json, the final last.pt."""
        p, ctx, tm = self.progress, self.ctx, self.timings
        if p.best_weights is None:
            raise TrainingError("the validation C-index was never finite; no epoch to select (see epochs.csv)")
        if ctx.is_main:
            with tm.phase("checkpoints"):
                self.checkpoints.sync_best(reread=True)  # verified before metrics.json names its epoch
        with tm.phase("final_metrics"):
            metrics, artefact = self._final_metrics()
        with tm.phase("writes"):
            if ctx.is_main:
                from .predictor import write_predictor

                write_predictor(self.run_dir, artefact)
            self.outputs.finish(metrics, p.history, p.lr_steps)
        with tm.phase("checkpoints"):
            self.checkpoints.save(finished=True, metrics=metrics)
        if ctx.is_main:
            tm.write(self.run_dir)
        return metrics

    def _final_metrics(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(metrics, predictor artefact) of the best weights; test_predictions.csv (rank 0, timed as a write)."""
        p, ctx = self.progress, self.ctx
        load_model_state_dict(self.model, p.best_weights, ctx)
        test_c, test_loss = self.family.evaluate(self.model, self.cohort.test, ctx, final=True)
        best_row = next((r for r in p.history if r["epoch"] == p.best_epoch), {})
        val_loss = best_row.get("val_loss", math.nan)
        metrics = {"test_cindex": test_c, "test_loss": test_loss if math.isfinite(test_loss) else None,
                   "val_cindex": p.best_val_cindex, "val_loss": val_loss if math.isfinite(val_loss) else None,
                   "monitor": self.t["monitor"],
                   "best_epoch": p.best_epoch, "epochs_run": p.epoch, "stopped_early": p.stopped_early,
                   "train_seconds": round(p.train_seconds, 3), "optimizer_steps": self.engine.global_step,
                   "skipped_steps": self.engine.skipped_steps, "nonfinite_steps": self.engine.nonfinite_steps,
                   "n_train": len(self.cohort.train), "n_val": len(self.cohort.val), "n_test": len(self.cohort.test),
                   "test_source": self.cohort.test_source, "world_size": ctx.world_size,
                   "lr_scale": self.dist.lr_scale}
        extra, artefact = self.family.finish(self.model, self.cohort, self.config, p.best_epoch, ctx,
                                             self.run_dir if ctx.is_main else None, timings=self.timings)
        metrics.update(extra)
        return metrics, artefact

    def _close(self) -> None:
        for close in ((self.sink.close if self.sink is not None else None), self.outputs.close):
            try:
                if close is not None:
                    close()
            except OSError as exc:
                log.warning("could not close an output file: %s", exc)


def train(cfg: DictConfig, run_dir: Path, trainer: Trainer | None = None, report: bool = True) -> dict[str, Any]:
    """Build (and check) everything, then train; returns metrics ({} when stopped by stop_after_epochs).

    ``trainer``: one already built for ``cfg`` and ``run_dir`` (the app's pre-flight builds it
    before Hydra writes anything, so a refused run leaves no trace). ``report``: print the final
    line (the Python API, whose "test" rows are its validation rows, prints none)."""
    try:
        trainer = trainer if trainer is not None else Trainer(cfg, run_dir)
        ctx = trainer.ctx
        try:
            metrics = trainer.train()
        finally:
            del trainer  # DDP/FSDP modules hold the process group: release them first
            if ctx.distributed:
                # the app's pre-flight built the trainer before main's gc.freeze (train._training_gc), and
                # frozen objects are never collected: the DDP wrapper would outlive destroy_process_group
                # into interpreter exit, where gloo's threads abort the rank now and then (pytorch#179291).
                # Freezing before the build instead leaves the modules it imports (torch._dynamo with the
                # first optimizer ...) to every later collection: +0.2 s of a default run, measured.
                gc.unfreeze()
            ctx.teardown()
    finally:
        unlock_run_dir(run_dir)
    if metrics and ctx.is_main and report:
        print(summary_line(metrics), flush=True)
    return metrics
