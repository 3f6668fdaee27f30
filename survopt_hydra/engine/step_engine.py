"""The step engine: the order and cadence of one training step, done once, right.

What hand-written loops (and several peers) get wrong, and this object does not:

* gradient accumulation scales each micro-batch loss by 1/k, and a short last window
  of an epoch by 1/(its length); DDP syncs gradients only on a window's last micro-batch;
* under fp16 the order is scale -> backward -> unscale -> clip -> step -> update, so
  clipping sees true gradients; a step the GradScaler skips does not advance the
  scheduler and is counted;
* a non-finite gradient (NaN loss, exploding grads) skips the step instead of
  poisoning the weights, and is counted; the streak of windows in a row with a
  non-finite loss or gradient is counted here, once (:attr:`consecutive_nonfinite`,
  :attr:`diverged`);
* the scheduler advances as its :class:`~survopt_hydra.optim.Stepping` says (an explicit
  argument, read from the scheduler's config by :meth:`from_config`): ``interval="step"``
  once per *applied* optimizer step, ``"epoch"`` (and plateau) in :meth:`end_epoch`, a
  plateau reading its ``monitor`` metric; every ``frequency`` of them;
* an optional weight average (``ema`` group, :mod:`survopt_hydra.engine.ema`) follows the
  *applied* steps only;
* the loss reaches the host with the step's one existing transfer (the gradient-norm
  check), not through a ``float(loss)`` sync per batch; :meth:`read_loss` gives the mean
  of the finite losses whenever the caller wants it (once per log interval or epoch);
* :meth:`state_dict` holds everything needed to resume bit-identically.

The engine is a library object: it takes built objects (or, in :meth:`from_config`, the
library's config groups) and never reads an app's own settings.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Callable, ContextManager, Mapping

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..optim.stepping import Stepping
from .amp import AmpSettings, autocast
from .clipping import total_norm
from .ema import WeightAverager
from ..errors import ConfigError, did_you_mean

_COUNTERS = ("global_step", "epoch", "micro_step", "skipped_steps", "nonfinite_steps", "consecutive_nonfinite")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside DDP / torch.compile wrappers (for parameter names)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` where it works, else the model unchanged with one warning."""
    try:
        return torch.compile(model)
    except Exception as exc:  # compile support varies by platform and Python version
        warnings.warn(f"trainer.compile: torch.compile unavailable ({exc.__class__.__name__}); running eagerly")
        return model


def _refuse_closure_driven(optimizer: Optimizer) -> None:
    """The engine calls ``optimizer.step()`` once per applied step, never with a closure (LBFGS needs one)."""
    from ..schemas.optimizer import OPTIM_INFO

    for info in OPTIM_INFO.values():
        if info.closure and info.module == "torch.optim" and isinstance(optimizer, getattr(torch.optim, info.cls)):
            raise ConfigError("optimizer.name", f"{info.name} is closure-driven (step(closure) re-evaluates the loss "
                              "several times); the StepEngine steps once per batch without a closure. Use it with "
                              "instantiate() in your own loop; here allowed: any other optimizer")


class StepEngine:
    """Owns optimizer, scheduler, clipper and GradScaler for one model.

    Per micro-batch: ``with engine.autocast(): loss = ...``; ``engine.backward(loss)``;
    ``engine.step()`` (returns True when an optimizer step was applied;
    :meth:`will_step` says beforehand whether it ends a window). Per epoch:
    ``engine.end_epoch(metrics)``. ``max_nonfinite_steps``: :attr:`diverged` turns true
    after that many windows in a row with a non-finite loss or gradient (None: never);
    ``any_rank`` (e.g. ``DistContext.any_rank``) makes every rank agree on a bad window.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        scheduler: LRScheduler | None = None,
        clipper: Any = None,
        amp: AmpSettings | str | None = None,
        accumulate_grad_batches: int = 1,
        batches_per_epoch: int | None = None,
        ema: WeightAverager | None = None,
        max_nonfinite_steps: int | None = None,
        any_rank: Callable[[bool], bool] | None = None,
        stepping: Stepping | None = None,
    ) -> None:
        if not isinstance(accumulate_grad_batches, int) or accumulate_grad_batches < 1:
            raise ConfigError("trainer.accumulate_grad_batches", f"must be an integer >= 1, got {accumulate_grad_batches!r}")
        _refuse_closure_driven(optimizer)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.clipper = clipper
        # a WeightAverager attached to the unwrapped model, or None; .ema.module is the average
        self.ema = ema.attach(unwrap_model(model)) if ema is not None and ema.enabled else None
        self.accumulate = accumulate_grad_batches
        self.batches_per_epoch = batches_per_epoch
        self.max_nonfinite_steps = max_nonfinite_steps
        self._any_rank = any_rank
        first = next((p for p in model.parameters()), None)
        self.device_type = first.device.type if first is not None else "cpu"
        settings = amp if isinstance(amp, AmpSettings) else AmpSettings(amp or "none")
        self.amp_dtype, use_scaler = settings.resolve(self.device_type)
        self.scaler = torch.amp.GradScaler(
            self.device_type, init_scale=settings.init_scale, growth_interval=settings.growth_interval, enabled=use_scaler
        )
        self.params = [(n, p) for n, p in unwrap_model(model).named_parameters() if p.requires_grad]
        # names matter only to AGC's exclude patterns; plain tensors spare the clipper a split per step
        self._clip_params = self.params if getattr(clipper, "mode", None) == "adaptive" else [p for _, p in self.params]
        self.stepping = stepping if stepping is not None else Stepping()  # none given: per epoch, as Lightning does
        self.last_grad_norm: torch.Tensor | None = None
        self._window = 0  # micro-batches accumulated since the last optimizer step
        self._window_losses: list[torch.Tensor] = []  # this window's losses, detached (at most k)
        self._loss_sum = 0.0  # finite losses since the last read_loss()
        self._loss_count = 0
        for name in _COUNTERS:
            setattr(self, name, 0)

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        model: nn.Module,
        batches_per_epoch: int,
        epochs: int,
        optimizer: Optimizer | None = None,
        accumulate_grad_batches: int = 1,
        compile: bool = False,
        **engine_options: Any,
    ) -> "StepEngine":
        """Build the library's groups of a composed config for this model and run length.

        Reads only the library groups ``optimizer`` (unless ``optimizer`` is given),
        ``scheduler``, and the optional ``clipping``, ``amp`` and ``ema``; everything an app
        decides (accumulation, compile, the non-finite limit) comes as an argument.
        ``steps_per_epoch`` given to the scheduler counts applied optimizer steps,
        ceil(batches / k), so step schedules end exactly with the run.
        """
        from hydra.utils import instantiate

        k = accumulate_grad_batches
        if compile:
            model = compile_model(model)
        if optimizer is None:
            optimizer = instantiate(cfg.optimizer, params=unwrap_model(model))
        scheduler = instantiate(cfg.scheduler, optimizer=optimizer, epochs=epochs, steps_per_epoch=math.ceil(batches_per_epoch / k))
        clipper = instantiate(cfg.clipping) if cfg.get("clipping") else None
        amp = instantiate(cfg.amp) if cfg.get("amp") else None
        ema = instantiate(cfg.ema) if cfg.get("ema") else None
        return cls(model, optimizer, scheduler, clipper, amp, k, batches_per_epoch, ema,
                   stepping=Stepping.of(cfg.scheduler), **engine_options)

    # -- modes -----------------------------------------------------------------------
    def train_mode(self) -> None:
        """The model in train mode, and an optimizer that keeps two weight sequences (schedule-free
        AdamW: ``optimizer.train()`` / ``eval()``) on its training one."""
        self.model.train()
        if callable(getattr(self.optimizer, "train", None)):
            self.optimizer.train()

    def eval_mode(self) -> None:
        """The model in eval mode, and a schedule-free optimizer's weights on the averaged sequence: what to
        validate, select and save (its ``eval()`` swaps them in)."""
        self.model.eval()
        if callable(getattr(self.optimizer, "eval", None)):
            self.optimizer.eval()

    # -- per micro-batch -------------------------------------------------------------
    def autocast(self) -> ContextManager:
        """Autocast context for the forward pass (a no-op without AMP)."""
        return autocast(self.device_type, self.amp_dtype)

    def _window_size(self) -> int:
        """Length of the accumulation window the current micro-batch belongs to."""
        if self.batches_per_epoch is None:
            return self.accumulate
        start = (self.micro_step // self.accumulate) * self.accumulate
        return max(1, min(self.accumulate, self.batches_per_epoch - start))

    def will_step(self) -> bool:
        """True when the next :meth:`step` ends an accumulation window (and tries an optimizer step).

        After :meth:`backward` this says whether that micro-batch was the window's last;
        a caller uses it to do per-step work (monitors) only on those micro-batches.
        """
        return self._window >= self._window_size()

    def backward(self, loss: torch.Tensor) -> None:
        """Scale by the window length (and the GradScaler) and backpropagate."""
        window = self._window_size()
        last_of_window = self._window + 1 >= window
        sync = contextlib.nullcontext()
        if not last_of_window and hasattr(self.model, "no_sync"):
            sync = self.model.no_sync()  # DDP: all-reduce once per window
        with sync:
            self.scaler.scale(loss if window == 1 else loss / window).backward()
        self._window_losses.append(loss.detach())
        self._window += 1
        self.micro_step += 1

    def step(self) -> bool:
        """Apply an optimizer step if the accumulation window is complete."""
        if not self.will_step():
            return False
        return self._apply()

    def _apply(self) -> bool:
        self._window = 0
        losses, self._window_losses = self._window_losses, []
        scaling = self.scaler.is_enabled()
        if scaling:
            self.scaler.unscale_(self.optimizer)
        norm = self._clip()
        self.last_grad_norm = norm
        # The step's one host transfer: the gradient norm (outside the GradScaler, a non-finite
        # norm skips the step) together with this window's losses, so reading the loss costs
        # no sync of its own. (With the GradScaler, which syncs inside step(), only the losses.)
        check_norm = norm is not None and not scaling
        grad_ok = True
        if check_norm and type(norm) is not torch.Tensor:  # FSDP's DTensor: its .item() does the reduction
            grad_ok, check_norm = math.isfinite(norm.item()), False
        tensors = ([norm] if check_norm else []) + losses
        if self.device_type == "cpu":  # reading host memory: no sync, and no kernel to launch
            values = [t.item() for t in tensors]
        else:
            values = torch.cat([t.reshape(1) for t in tensors]).tolist() if tensors else []
        if check_norm:
            grad_ok = math.isfinite(values.pop(0))
        loss_ok = self._add_losses(values)
        if scaling:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skips internally on inf/NaN
            self.scaler.update()
            applied = self.scaler.get_scale() >= scale
            if not applied:
                self.skipped_steps += 1
        else:
            applied = grad_ok
            if applied:
                self.optimizer.step()
            else:
                self.nonfinite_steps += 1
        # a bad window: a non-finite loss, or a non-finite gradient outside the GradScaler (whose
        # skips with finite losses are loss-scale calibration, not divergence)
        bad = not grad_ok or not loss_ok
        if self._any_rank is not None:
            bad = self._any_rank(bad)
        self.consecutive_nonfinite = self.consecutive_nonfinite + 1 if bad else 0
        self.optimizer.zero_grad(set_to_none=True)
        if applied:
            self.global_step += 1
            if self.scheduler is not None and self.stepping.interval == "step" \
                    and self.global_step % self.stepping.frequency == 0:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update(unwrap_model(self.model))
        return applied

    def _add_losses(self, values: list[float]) -> bool:
        """Add the window's finite losses to the running sum; True when all were finite."""
        finite = [v for v in values if math.isfinite(v)]
        for v in finite:  # one at a time, in batch order: the same float64 sum as a caller's loop
            self._loss_sum += v
        self._loss_count += len(finite)
        return len(finite) == len(values)

    def read_loss(self) -> tuple[float, int]:
        """(mean of the finite losses, their count) since the last call, and reset.

        The losses reach the host with the step's existing gradient-norm transfer (see
        :meth:`_apply`), so this costs nothing and a loop needs no ``float(loss)`` (a device
        sync) per batch. Losses of a window still open are counted once it ends.
        """
        total, count = self._loss_sum, self._loss_count
        self._loss_sum, self._loss_count = 0.0, 0
        return (total / count if count else math.nan), count

    @property
    def diverged(self) -> bool:
        """``max_nonfinite_steps`` windows in a row had a non-finite loss or gradient."""
        return self.max_nonfinite_steps is not None and self.consecutive_nonfinite >= self.max_nonfinite_steps

    def _clip(self) -> torch.Tensor | None:
        if self.clipper is not None:
            return self.clipper.clip_gradients(self._clip_params)
        grads = [p.grad for _, p in self.params if p.grad is not None]
        return total_norm(grads) if grads else None

    # -- per epoch -------------------------------------------------------------------
    def end_epoch(self, metrics: Mapping[str, float] | None = None) -> None:
        """Flush a partial window, then advance epoch-interval schedulers / plateau."""
        if self._window:
            self._rescale_partial_window()
            self._apply()
        self.epoch += 1
        self.micro_step = 0
        step = self.stepping
        if self.scheduler is None or step.interval != "epoch" or self.epoch % step.frequency:
            return
        if step.monitor is not None:
            metrics = dict(metrics or {})
            if step.monitor not in metrics:
                raise ConfigError(
                    "scheduler.monitor",
                    f"metric '{step.monitor}' was not computed{did_you_mean(step.monitor, metrics)}; "
                    f"available: {', '.join(sorted(metrics)) or 'none'}",
                )
            self.scheduler.step(float(metrics[step.monitor]))
        else:
            self.scheduler.step()

    def _rescale_partial_window(self) -> None:
        """Without a known epoch length the last window was scaled 1/k; fix it to 1/r."""
        factor = self.accumulate / self._window
        grads = [p.grad for _, p in self.params if p.grad is not None]
        if grads and factor != 1.0:
            torch._foreach_mul_(grads, factor)

    # -- introspection and resume ----------------------------------------------------
    def lrs(self) -> dict[str, float]:
        """Learning rate of each named param group."""
        return {g.get("name", f"group{i}"): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "counters": {name: getattr(self, name) for name in _COUNTERS},
            "window": self._window,
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for name, value in state["counters"].items():
            setattr(self, name, value)
        self._window = state.get("window", 0)
        if self.ema is not None or state.get("ema") is not None:
            (self.ema or WeightAverager()).load_state_dict(state.get("ema"))
