"""The step engine: the order and cadence of one training step, done once, right.

What hand-written loops (and several peers) get wrong, and this object does not:

* gradient accumulation scales each micro-batch loss by 1/k, and a short last window
  of an epoch by 1/(its length); DDP syncs gradients only on a window's last micro-batch;
* under fp16 the order is scale -> backward -> unscale -> clip -> step -> update, so
  clipping sees true gradients; a step the GradScaler skips does not advance the
  scheduler and is counted;
* a non-finite gradient (NaN loss, exploding grads) skips the step instead of
  poisoning the weights, and is counted;
* step-interval schedulers advance once per *applied* optimizer step, epoch-interval
  ones and plateau in :meth:`end_epoch`, plateau reading its ``monitor`` metric;
* an optional weight average (``ema`` group, :mod:`survopt_hydra.ema`) follows the
  *applied* steps only;
* :meth:`state_dict` holds everything needed to resume bit-identically.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, ContextManager, Mapping

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .amp import AmpSettings, autocast
from .errors import ConfigError, did_you_mean

_COUNTERS = ("global_step", "epoch", "micro_step", "skipped_steps", "nonfinite_steps", "consecutive_nonfinite")


class StepEngine:
    """Owns optimizer, scheduler, clipper and GradScaler for one model.

    Per micro-batch: ``with engine.autocast(): loss = ...``; ``engine.backward(loss)``;
    ``engine.step()`` (returns True when an optimizer step was applied). Per epoch:
    ``engine.end_epoch(metrics)``.
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
        ema: Any = None,
    ) -> None:
        if not isinstance(accumulate_grad_batches, int) or accumulate_grad_batches < 1:
            raise ConfigError("trainer.accumulate_grad_batches", f"must be an integer >= 1, got {accumulate_grad_batches!r}")
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.clipper = clipper
        # a WeightAverager attached to the unwrapped model, or None; .ema.module is the average
        self.ema = ema.attach(_unwrapped(model)) if ema is not None and ema.enabled else None
        self.accumulate = accumulate_grad_batches
        self.batches_per_epoch = batches_per_epoch
        first = next((p for p in model.parameters()), None)
        self.device_type = first.device.type if first is not None else "cpu"
        settings = amp if isinstance(amp, AmpSettings) else AmpSettings(amp or "none")
        self.amp_dtype, use_scaler = settings.resolve(self.device_type)
        self.scaler = torch.amp.GradScaler(
            self.device_type, init_scale=settings.init_scale, growth_interval=settings.growth_interval, enabled=use_scaler
        )
        self.params = [(n, p) for n, p in _unwrapped(model).named_parameters() if p.requires_grad]
        # names matter only to AGC's exclude patterns; plain tensors spare the clipper a split per step
        self._clip_params = self.params if getattr(clipper, "mode", None) == "adaptive" else [p for _, p in self.params]
        self.interval = getattr(scheduler, "interval", "epoch")
        self.monitor = getattr(scheduler, "monitor", None)
        self.last_grad_norm: torch.Tensor | None = None
        self._window = 0  # micro-batches accumulated since the last optimizer step
        for name in _COUNTERS:
            setattr(self, name, 0)

    @classmethod
    def from_config(
        cls, cfg: Any, model: nn.Module, batches_per_epoch: int, epochs: int, optimizer: Optimizer | None = None
    ) -> "StepEngine":
        """Instantiate every group of a composed config for this model and run length.

        ``steps_per_epoch`` given to the scheduler counts applied optimizer steps,
        ceil(batches / k), so step schedules end exactly with the run.
        """
        from hydra.utils import instantiate

        trainer = cfg.get("trainer") or {}
        k = int(trainer.get("accumulate_grad_batches", 1))
        if trainer.get("compile", False):
            model = compile_model(model)
        if optimizer is None:
            optimizer = instantiate(cfg.optimizer, params=_unwrapped(model))
        scheduler = instantiate(
            cfg.scheduler, optimizer=optimizer, epochs=epochs, steps_per_epoch=math.ceil(batches_per_epoch / k)
        )
        clipper = instantiate(cfg.clipping) if cfg.get("clipping") else None
        amp = instantiate(cfg.amp) if cfg.get("amp") else None
        ema = instantiate(cfg.ema) if cfg.get("ema") else None
        return cls(model, optimizer, scheduler, clipper, amp, k, batches_per_epoch, ema)

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

    def backward(self, loss: torch.Tensor) -> None:
        """Scale by the window length (and the GradScaler) and backpropagate."""
        window = self._window_size()
        last_of_window = self._window + 1 >= window
        sync = contextlib.nullcontext()
        if not last_of_window and hasattr(self.model, "no_sync"):
            sync = self.model.no_sync()  # DDP: all-reduce once per window
        with sync:
            self.scaler.scale(loss if window == 1 else loss / window).backward()
        self._window += 1
        self.micro_step += 1

    def step(self) -> bool:
        """Apply an optimizer step if the accumulation window is complete."""
        if self._window < self._window_size():
            return False
        return self._apply()

    def _apply(self) -> bool:
        self._window = 0
        scaling = self.scaler.is_enabled()
        if scaling:
            self.scaler.unscale_(self.optimizer)
        norm = self._clip()
        self.last_grad_norm = norm
        if scaling:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skips internally on inf/NaN
            self.scaler.update()
            applied = self.scaler.get_scale() >= scale
            if not applied:
                self.skipped_steps += 1
        else:
            # one host sync per applied step; .item() beats torch.isfinite's kernels on CPU
            applied = math.isfinite(norm.item()) if norm is not None else True
            if applied:
                self.optimizer.step()
                self.consecutive_nonfinite = 0
            else:
                self.nonfinite_steps += 1
                self.consecutive_nonfinite += 1
        self.optimizer.zero_grad(set_to_none=True)
        if applied:
            self.global_step += 1
            if self.scheduler is not None and self.interval == "step":
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update(_unwrapped(self.model))
        return applied

    def _clip(self) -> torch.Tensor | None:
        if self.clipper is not None:
            return self.clipper.clip_gradients(self._clip_params)
        grads = [p.grad for _, p in self.params if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else None

    # -- per epoch -------------------------------------------------------------------
    def end_epoch(self, metrics: Mapping[str, float] | None = None) -> None:
        """Flush a partial window, then advance epoch-interval schedulers / plateau."""
        if self._window:
            self._rescale_partial_window()
            self._apply()
        self.epoch += 1
        self.micro_step = 0
        if self.scheduler is None or self.interval != "epoch":
            return
        if self.monitor is not None:
            metrics = dict(metrics or {})
            if self.monitor not in metrics:
                raise ConfigError(
                    "scheduler.monitor",
                    f"metric '{self.monitor}' was not computed{did_you_mean(self.monitor, metrics)}; "
                    f"available: {', '.join(sorted(metrics)) or 'none'}",
                )
            self.scheduler.step(float(metrics[self.monitor]))
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
            from .ema import WeightAverager

            (self.ema or WeightAverager()).load_state_dict(state.get("ema"))


def _unwrapped(model: nn.Module) -> nn.Module:
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
