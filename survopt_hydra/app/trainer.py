"""The training loop of ``survopt-train``, top to bottom.

Order matters and is the point of this module:

1. validate the whole config, load and split the data, build the model and the
   :class:`~survopt_hydra.engine.StepEngine` - all before writing anything, so a bad
   value or a bad file fails with one line and leaves the run dir untouched;
2. resume from ``last.pt`` when the run dir has one (compatible config required; the
   rules, the pre-flight and the fallback to ``last.prev.pt`` are in docs/failure_modes.md);
3. per epoch: re-seed from (seed, epoch), shuffle with ``torch.randperm`` over the
   in-memory tensors, Cox loss per micro-batch, validation C-index, early stopping,
   ``last.pt``; because each epoch's randomness depends only on (seed, epoch) and the
   checkpoint holds every other piece of state, a killed-and-rerun run ends exactly
   where an uninterrupted one does; SIGTERM / Ctrl-C stop after the epoch's checkpoint;
4. restore the best epoch's weights and score the test set once.

With ``ema=ema`` the validation C-index, early stopping, ``best.pt`` and the test score all
use the weight average (:mod:`survopt_hydra.ema`); training steps the raw weights.

Under torchrun (``distributed=ddp|zero|fsdp``) every rank runs this same sequence:
each trains on its own shard of every epoch (:func:`~survopt_hydra.distributed.shard_indices`),
evaluation is gathered so every rank computes the same C-index, and every decision
(early stopping, a stop signal, a non-finite step) is agreed before it is acted on.
Checkpoints are collective (all ranks take part, rank 0 writes); on resume rank 0
reads and checks, every rank loads. Only rank 0 writes files or prints.
"""
from __future__ import annotations

import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..distributed import (
    DistContext, DistributedSettings, engine_state_dict, eval_indices, gather_by_index, load_engine_state,
    load_model_state_dict, model_state_dict, shard_indices, sync_buffers,
)
from ..distributed.checkpoint import load_shards, prune_shards, save_shards
from ..engine import StepEngine, unwrap_model as _unwrapped
from ..errors import ConfigError
from ..monitors import CSVSink, GradientMonitor, OptimizerMonitor
from ..survival import LinearCox, MLP, SmallCNN, concordance_index, cox_ph_loss
from ..survival.data import resolve_path
from .checkpoint import epoch_seed, rng_state, save_checkpoint, seed_everything, set_rng_state
from .config import check_app_config
from .data import Cohort, Split
from .outputs import RunOutputs, archive_old_results, best_problem, summary_line
from .rules import batches_per_rank, check_run, resume_state, take_cohort
from .state import FaultInjection, GracefulStop, Progress, RunInterrupted, lock_run_dir, unlock_run_dir

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, nothing to select); the message is one line."""


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device", "'cuda' but torch sees no CUDA device; allowed here: auto, cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def set_threads(trainer: dict[str, Any], data: dict[str, Any], device: torch.device) -> None:
    """Tabular Cox models are tiny matmuls: extra intra-op threads only add sync overhead
    (10-50x slower steps on a busy 2-core machine) and change float summation order.
    Fixing the count also keeps a resumed run bit-identical to an uninterrupted one."""
    threads = trainer["num_threads"] or (1 if data["name"] != "synthetic_images" else None)
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)


def build_model(model: dict[str, Any], input_shape: tuple[int, ...]) -> nn.Module:
    """The ``model`` group's network for inputs of ``input_shape`` (without the batch dim)."""
    opts = {k: v for k, v in model.items() if k != "name"}
    if model["name"] == "linear":
        return LinearCox(input_shape[0])
    if model["name"] == "mlp":
        return MLP(input_shape[0], **opts)
    if opts.get("pretrained"):  # pkg:// names a file shipped in a package, e.g. the app's pretrained backbone
        opts["pretrained"] = resolve_path(opts["pretrained"], key="model.pretrained")  # DataError: one line
    try:
        return SmallCNN(in_channels=input_shape[0], **opts)
    except ValueError as exc:  # a bad pretrained file
        raise ConfigError("model.pretrained", str(exc)) from None


def load_best(run_dir: str | Path) -> tuple[dict[str, dict[str, Any]], Cohort, nn.Module, dict[str, Any]]:
    """A finished run's ``best.pt`` in a plain model (eval mode), with the run's checked settings,
    its cohort (same split, same standardization) and the checkpoint: to score a run afterwards.

    Raises :class:`~.checkpoint.CheckpointError` when the file is missing or unusable."""
    from .checkpoint import CheckpointError, load_checkpoint
    from .data import load_cohort

    path = Path(run_dir) / "best.pt"
    if not path.is_file():
        raise CheckpointError(f"{path} not found; pass the run directory of a finished survopt-train run")
    state = load_checkpoint(path)
    settings = check_app_config(OmegaConf.create(state["config"]))
    cohort = load_cohort(settings["data"])
    model = build_model(settings["model"], cohort.input_shape)
    model.load_state_dict(state["model"])
    model.eval()
    return settings, cohort, model, state


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, ties: str, ctx: DistContext | None = None) -> tuple[float, float]:
    """(C-index, Cox loss) of ``split`` in eval mode and fp32; NaNs when the risk is not finite."""
    model.eval()
    ctx = ctx or DistContext()  # each rank scores its share; every rank gets every risk, in order
    idx = eval_indices(len(split), ctx).to(split.x.device)
    risk = gather_by_index(torch.cat([model(split.x[i]) for i in idx.split(4096)]).float(), idx, len(split), ctx)
    if not bool(torch.isfinite(risk).all()):
        return math.nan, math.nan
    loss = float(cox_ph_loss(risk, split.durations, split.events, ties))
    return concordance_index(risk, split.durations, split.events), loss


class _FullWeights:
    """What Progress snapshots as best weights: plain names, full tensors, on every rank."""

    def __init__(self, model: nn.Module, ctx: DistContext) -> None:
        self.model, self.ctx = model, ctx

    def state_dict(self) -> dict[str, torch.Tensor]:
        return model_state_dict(self.model, self.ctx, all_ranks=True)


class _NoOutputs:
    """Ranks other than 0 write nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Trainer:
    """One run: everything built and checked by ``__init__``, nothing written before :meth:`fit`."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        from hydra.utils import instantiate

        self.cfg = cfg
        settings = check_app_config(cfg)
        self.t = settings["trainer"]
        self.dist = instantiate(cfg.distributed) if cfg.get("distributed") is not None else DistributedSettings()
        self.ctx = self.dist.setup(device=pick_device(self.t["device"]))  # one-line ConfigError without torchrun
        self.device = self.ctx.device
        try:
            self._build(cfg, settings, run_dir)
        except BaseException:  # every rank fails the same way here (same config, same data, rank 0's checkpoint)
            for name in ("engine", "model"):  # wrapped modules and ZeRO hold the process group: release first
                self.__dict__.pop(name, None)
            self.ctx.teardown()
            raise

    def _build(self, cfg: DictConfig, settings: dict[str, Any], run_dir: Path) -> None:
        """Everything after the process group is up: data, checks, model, engine, resume."""
        self.run_dir = Path(self.ctx.broadcast_object(str(run_dir)))  # rank 0's: Hydra run dirs may differ by rank
        if not self.ctx.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        set_threads(self.t, settings["data"], self.device)
        self.cohort: Cohort = take_cohort(settings["data"]).to(self.device)  # loaded once, by the pre-flight
        n_train, ws, bs = len(self.cohort.train), self.ctx.world_size, self.t["batch_size"]
        self.rows_per_rank = math.ceil(n_train / ws)  # DistributedSampler's count, the same on every rank
        self.n_batches = batches_per_rank(n_train, bs, ws)
        check_run(cfg, self.t, self.n_batches, self.rows_per_rank)  # run-length checks (per-rank batches), plateau monitor
        self.faults = FaultInjection(self.t["fault_injection"])  # test-only; no-op when unset
        self.stop = GracefulStop()
        self._keep_previous = True  # False while last.pt is known to be damaged (see _maybe_resume)
        self.saved_epoch: int | None = None  # the epoch last.pt holds
        self.best_saved: int | None = None  # the best epoch best.pt holds (None: not known to match)
        self.resumed_from: Path | None = None  # the checkpoint file the run resumed from
        self._shards: str | None = None  # checkpoint=sharded: the DCP folder last.pt names
        seed_everything(self.t["seed"])
        self.model = self.dist.wrap_model(build_model(settings["model"], self.cohort.input_shape), self.ctx)
        k = self.t["accumulate_grad_batches"]
        optimizer = self.dist.build_optimizer(cfg.optimizer, self.model, self.ctx,  # LR scaling, recorded
                                              global_batch=min(bs, self.rows_per_rank) * k * ws,
                                              base_batch=min(bs, n_train) * k)
        self.engine = StepEngine.from_config(cfg, self.model, self.n_batches, self.t["max_epochs"], optimizer=optimizer,
                                             accumulate_grad_batches=k, compile=self.t["compile"])
        self.progress = Progress()
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.resumed = self._maybe_resume()

    # -- resume ------------------------------------------------------------------------
    def _maybe_resume(self) -> dict[str, Any] | None:
        """Load last.pt (or last.prev.pt when last.pt is damaged) if the config is compatible.

        Only reads the files: a refused resume leaves them byte-identical."""
        if self.ctx.is_main and self.run_dir.is_dir():  # no other run may write here while we read and train
            lock_run_dir(self.run_dir)
        found = self.ctx.on_main(resume_state, self.run_dir, self.config) if self.t["resume"] else None
        if found is None:
            return None
        state, path, problems = found
        self.resumed_from = path
        if problems:
            log.warning("%s; resuming from %s instead", "; ".join(problems), path.name)
            self._keep_previous = False  # overwrite the damaged last.pt, keep the good last.prev.pt
        try:
            if state.get("sharded") is not None:  # fsdp + checkpoint=sharded: every rank reads its shards (DCP)
                if not self.dist.checkpoint_sharded:
                    raise ConfigError("distributed.checkpoint", f"{path} names sharded (DCP) state but this run "
                                      "does not use distributed=fsdp distributed.checkpoint=sharded; refused")
                self.engine.load_state_dict(dict(state["engine"], optimizer=self.engine.optimizer.state_dict()))
                load_shards(path, state["sharded"], state.get("shard_digests"), self.model,
                            self.engine.optimizer, self.ctx)
                self._shards = state["sharded"]
            else:
                load_model_state_dict(self.model, state["model"], self.ctx)
                load_engine_state(self.engine, state["engine"], self.ctx, self.model)
        except ConfigError:
            raise
        except (RuntimeError, ValueError, KeyError) as exc:  # a different model shape or param-group layout
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise ConfigError("trainer.resume", f"{path} does not fit this run's model/optimizer ({first}); did the "
                              "data's columns change? use a new hydra.run.dir or trainer.resume=false") from None
        self.progress.load_state_dict(state["progress"])
        rngs = state.get("rng_ranks") or []
        set_rng_state(rngs[self.ctx.rank] if len(rngs) == self.ctx.world_size else state["rng"])
        p = self.progress
        self.saved_epoch = p.epoch
        if state["finished"] and not p.stopped_early and p.epoch < self.t["max_epochs"]:
            state["finished"], p.done = False, False  # trainer.max_epochs was raised: train on
        return state

    def _checkpoint(self, finished: bool = False, metrics: dict | None = None) -> None:
        last, shards, digests = self.run_dir / "last.pt", None, None
        if self.dist.checkpoint_sharded:  # every rank writes its own model/optimizer shards; last.pt names them
            shards, digests = save_shards(last, self.model, self.engine.optimizer, self.ctx)
            model_sd = None
            engine_sd = dict(self.engine.state_dict(), optimizer=None) if self.ctx.is_main else None
        else:
            model_sd = model_state_dict(self.model, self.ctx)  # collective (FSDP gathers); rank 0 gets it
            engine_sd = engine_state_dict(self.engine, self.ctx, self.model)  # collective (ZeRO consolidates)
        rngs = self.ctx.all_gather_object(rng_state())
        if self.ctx.is_main:
            state = {"model": model_sd, "engine": engine_sd, "progress": self.progress.state_dict(),
                     "rng": rngs[0], "rng_ranks": rngs, "config": self.config,
                     "monitor_bytes": self._monitor_bytes(), "finished": finished, "metrics": metrics,
                     "sharded": shards.name if shards is not None else None, "shard_digests": digests}
            save_checkpoint(state, last, keep_previous=self._keep_previous,
                            before=self.faults.save_hook(self.progress.epoch))
            if shards is not None:  # keep the folders last.pt and last.prev.pt name, drop older/orphaned ones
                prune_shards(last, {shards.name, self._shards} - {None})
        if shards is not None:
            self._shards = shards.name
        self.ctx.barrier()
        self._keep_previous, self.saved_epoch = True, self.progress.epoch

    def _save(self) -> None:
        """last.pt, then best.pt when the best epoch changed: best.pt never holds an epoch last.pt lacks."""
        self._checkpoint()
        if self.ctx.is_main and self.progress.best_weights is not None and self.best_saved != self.progress.best_epoch:
            self._write_best()

    def _best_state(self) -> dict[str, Any]:
        p = self.progress
        return {"model": p.best_weights, "epoch": p.best_epoch, "val_cindex": p.best_val_cindex,
                "config": self.config}

    def _write_best(self) -> None:
        """best.pt = the best weights last.pt holds (checksummed like last.pt; rank 0)."""
        save_checkpoint(self._best_state(), self.run_dir / "best.pt", keep_previous=False,
                        before=self.faults.best_hook(self.progress.best_epoch))
        self.best_saved = self.progress.best_epoch

    def _sync_best(self) -> None:
        """Check best.pt against the best epoch in memory (= last.pt's); rebuild it when missing,
        stale or damaged. Writes nothing when it matches (a finished run in a read-only dir)."""
        p = self.progress
        if p.best_weights is None or self.best_saved == p.best_epoch:
            return
        problem = best_problem(self.run_dir / "best.pt", p.best_weights, p.best_epoch)
        if problem:
            source = self.resumed_from.name if self.resumed_from is not None else "memory"
            log.warning("%s; rebuilding it from %s (best epoch %d)", problem, source, p.best_epoch)
            self._write_best()
        self.best_saved = p.best_epoch

    def _monitor_bytes(self) -> int:
        path = self.run_dir / "monitors.csv"
        return path.stat().st_size if path.exists() else 0

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        if self.ctx.is_main:
            lock_run_dir(self.run_dir)
            if self.resumed is None:  # a fresh start: earlier results must not end up beside this run's
                archive_old_results(self.run_dir)
            else:  # best.pt must hold the best epoch that last.pt records (a kill may have come between them)
                self._sync_best()
        if self.resumed is not None and self.resumed["finished"]:
            log.info("run already finished; reporting its metrics")
            return self.resumed["metrics"]
        start = self.progress.epoch
        if self.resumed is not None:
            log.info("resuming from %s after epoch %d", self.resumed_from, start)
        monitors = self.run_dir / "monitors.csv"
        if self.ctx.is_main and monitors.exists():  # drop rows an earlier try logged after its checkpoint
            with monitors.open("r+b") as handle:
                handle.truncate(self.resumed["monitor_bytes"] if self.resumed is not None else 0)
        log.info("data: %s; %s", self.cohort.source, self.cohort.describe())
        log.info("model: %d parameters on %s; %d batches/epoch", sum(p.numel() for p in self.model.parameters()),
                 self.device, self.n_batches)
        log.info("distributed: %s", self.dist.describe(self.ctx))
        main = self.ctx.is_main
        self.outputs = (RunOutputs(self.run_dir, purge_epoch=start + 1, tensorboard=self.t["tensorboard"],
                                   plots=self.t["plots"]) if main else _NoOutputs())
        sink = CSVSink(self.run_dir / "monitors.csv") if main else None
        self.opt_monitor = OptimizerMonitor(self.engine.optimizer, self.t["log_interval"], sink)
        # GradientMonitor reads full gradients (.tolist()); FSDP's are sharded DTensors: off under fsdp
        self.grad_monitor = (GradientMonitor(_unwrapped(self.model), self.t["log_interval"], sink)
                             if self.dist.strategy != "fsdp" else _NoOutputs())
        try:
            with self.stop:  # SIGTERM / Ctrl-C: finish the epoch, save last.pt, raise RunInterrupted
                self._epochs(start)
                if self.progress.done:
                    return self._finish()
            self.outputs.write_lr_steps(self.progress.lr_steps)
            log.warning("stopped after epoch %d (trainer.stop_after_epochs); rerun to resume", self.progress.epoch)
            return {}
        except RunInterrupted as exc:
            self.outputs.write_lr_steps(self.progress.lr_steps)
            log.warning("%s", exc)
            raise
        finally:  # never let a failing close (a full disk) hide the error that ended the run
            for close in ((sink.close if sink is not None else None), self.outputs.close):
                try:
                    if close is not None:
                        close()
                except OSError as exc:
                    log.warning("could not close an output file: %s", exc)

    def _epochs(self, start: int) -> None:
        from tqdm import tqdm

        if self.progress.done:  # killed between the last epoch's checkpoint and the end of fit()
            return
        show = self.t["progress_bar"] and sys.stderr.isatty()
        end = min(self.t["max_epochs"], self.t["stop_after_epochs"] or self.t["max_epochs"])
        show = show and self.ctx.is_main
        bar = tqdm(range(start, end), initial=start, total=self.t["max_epochs"], disable=not show,
                   unit="epoch", dynamic_ncols=True, leave=False)
        p = self.progress
        for epoch in bar:
            tic = time.perf_counter()
            seed_everything(epoch_seed(self.t["seed"], epoch) + self.ctx.rank)  # own dropout masks per rank
            lrs = self.engine.lrs()
            train_loss = self.ctx.all_reduce_mean(self._train_epoch(epoch))
            sync_buffers(self.model, self.ctx)  # rank 0's BatchNorm statistics: same eval everywhere, exact resume
            if self.engine.ema is not None:  # its averaged statistics followed each rank's own: same fix
                sync_buffers(self.engine.ema.module, self.ctx)
            scored = self.engine.ema.module if self.engine.ema is not None else self.model  # ema: the average
            val_c, val_loss = evaluate(scored, self.cohort.val, self.t["ties"], self.ctx)
            self.engine.end_epoch({"val_cindex": val_c, "val_loss": val_loss, "train_loss": train_loss})
            seconds = time.perf_counter() - tic
            row = {"epoch": epoch + 1, "train_loss": train_loss, "val_cindex": val_c, "val_loss": val_loss,
                   **{f"lr/{k}": v for k, v in lrs.items()}, "seconds": seconds}
            p.record(row, self.t["monitor"], _FullWeights(scored, self.ctx), self.t["early_stopping_patience"],
                     seconds)
            bar.set_postfix(loss=f"{train_loss:.3f}", val_c=f"{val_c:.3f}", best=p.best_epoch)
            if not show and (epoch + 1) % max(1, self.t["max_epochs"] // 10) == 0:
                log.info("epoch %d: train loss %.4f, val C-index %.4f", epoch + 1, train_loss, val_c)
            self.outputs.epoch_end(p.history)
            p.done = self.ctx.agree(p.done or epoch + 1 >= self.t["max_epochs"])
            stop = self.ctx.any_rank(self.stop.requested)  # a signal may reach the ranks at different batches
            if p.done or epoch + 1 >= end or (epoch + 1) % self.t["checkpoint_every"] == 0 or stop:
                self._save()
            if p.done:
                break
            # the safe point, agreed again: a signal may also land during the save above
            if self.ctx.any_rank(self.stop.requested):
                if self.saved_epoch != p.epoch:  # e.g. it landed while best.pt was written
                    self._save()
                bar.close()  # this epoch is complete and saved
                raise RunInterrupted(self.stop.signum or signal.SIGTERM, p.epoch)
        bar.close()

    def _train_epoch(self, epoch: int) -> float:
        """One pass over the training rows; returns the mean loss of the finite batches."""
        e, t, data = self.engine, self.t, self.cohort.train
        self.model.train()
        if self.ctx.world_size > 1:  # DistributedSampler: a disjoint share per rank, reshuffled per epoch
            perm = shard_indices(len(data), epoch, t["seed"], self.ctx).to(self.device)
        else:
            perm = torch.randperm(len(data), device=self.device)  # global RNG, seeded per epoch
        k, total, count, empty, bad_window = t["accumulate_grad_batches"], 0.0, 0, 0, False
        first_batch = self.progress.epoch * self.n_batches + 1  # 1-based batch number across epochs
        for i, idx in enumerate(torch.tensor_split(perm, self.n_batches)):
            with e.autocast():
                risk = e.model(data.x[idx])
            loss = cox_ph_loss(risk, data.durations[idx], data.events[idx], t["ties"])  # fp32 by design
            loss = self.faults.loss(loss, first_batch + i)  # test-only NaN injection
            value = float(loss.detach())
            if value == 0.0:  # exactly 0 only without a comparable pair: it trained nothing, do not average it in
                empty += 1
            elif math.isfinite(value):
                total, count = total + value, count + 1
            else:
                bad_window = True
            e.backward(loss)
            self.faults.step(first_batch + i)  # test-only pause mid-epoch
            if (i + 1) % k and i + 1 < self.n_batches:
                continue  # inside an accumulation window
            step, lrs, nonfinite = e.global_step, e.lrs(), e.nonfinite_steps
            self.opt_monitor.log_lr(step)
            self.grad_monitor.log_gradients(step)
            if e.step():
                self.progress.lr_steps.append({"step": step, **{f"lr/{g}": v for g, v in lrs.items()}})
                self.grad_monitor.log_update(step)
            # a GradScaler skip with a finite loss is loss-scale calibration, not divergence
            bad_window = self.ctx.any_rank(bad_window or e.nonfinite_steps > nonfinite)
            self.progress.nonfinite_streak = self.progress.nonfinite_streak + 1 if bad_window else 0
            if bad_window:
                log.warning("epoch %d, batch %d: non-finite loss or gradient, optimizer step skipped (%d in a row, "
                            "limit trainer.max_nonfinite_steps=%d)", self.progress.epoch + 1, i + 1,
                            self.progress.nonfinite_streak, t["max_nonfinite_steps"])
            bad_window = False
            if self.progress.nonfinite_streak >= t["max_nonfinite_steps"]:
                raise TrainingError(
                    f"training diverged: {t['max_nonfinite_steps']} optimizer steps in a row had a non-finite "
                    f"loss or gradient (last loss {value}); "
                    + (f"last.pt keeps the last good state (epoch {self.saved_epoch}); " if self.saved_epoch else "")
                    + "lower optimizer.lr, use clipping=norm, or raise trainer.max_nonfinite_steps and rerun")
        if self.ctx.any_rank(empty == self.n_batches):  # collective: every rank stops together
            raise TrainingError(f"epoch {self.progress.epoch + 1}: none of the {self.n_batches} training batches held "
                                "a comparable pair (an event and a row still at risk): nothing was learnt; raise "
                                "trainer.batch_size or check data.event_col")
        return total / count if count else math.nan

    def _finish(self) -> dict[str, Any]:
        p = self.progress
        if p.best_weights is None:
            raise TrainingError("the validation C-index was never finite; no epoch to select (see epochs.csv)")
        if self.ctx.is_main:
            self.best_saved = None  # read best.pt back: verified before metrics.json names its epoch
            self._sync_best()
        load_model_state_dict(self.model, p.best_weights, self.ctx)
        test_c, test_loss = evaluate(self.model, self.cohort.test, self.t["ties"], self.ctx)
        best_row = next((r for r in p.history if r["epoch"] == p.best_epoch), {})
        metrics = {"test_cindex": test_c, "test_loss": test_loss, "val_cindex": p.best_val_cindex,
                   "val_loss": best_row.get("val_loss", math.nan), "monitor": self.t["monitor"],
                   "best_epoch": p.best_epoch, "epochs_run": p.epoch, "stopped_early": p.stopped_early,
                   "train_seconds": round(p.train_seconds, 3), "optimizer_steps": self.engine.global_step,
                   "skipped_steps": self.engine.skipped_steps, "nonfinite_steps": self.engine.nonfinite_steps,
                   "n_train": len(self.cohort.train), "n_val": len(self.cohort.val), "n_test": len(self.cohort.test),
                   "test_source": self.cohort.test_source, "world_size": self.ctx.world_size,
                   "lr_scale": self.dist.lr_scale}
        from .predictor import finish_run, write_predictor  # S(t|x), time-dependent metrics, predictor.json
        extra, artefact = finish_run(self.model, self.cohort, self.config, p.best_epoch, self.ctx,
                                     self.run_dir if self.ctx.is_main else None)
        metrics.update(extra)
        if self.ctx.is_main:
            write_predictor(self.run_dir, artefact)
        self.outputs.finish(metrics, p.history, p.lr_steps)
        self._checkpoint(finished=True, metrics=metrics)
        return metrics


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build (and check) everything, then train; returns metrics ({} when stopped by stop_after_epochs)."""
    try:
        trainer = Trainer(cfg, run_dir)
        ctx = trainer.ctx
        try:
            metrics = trainer.fit()
        finally:
            del trainer  # DDP/FSDP modules hold the process group: release them first
            ctx.teardown()
    finally:
        unlock_run_dir(run_dir)
    if metrics and ctx.is_main:
        print(summary_line(metrics), flush=True)
    return metrics
