"""Training monitors: learning rates, gradient/weight norms and update ratios.

Why this module is shaped the way it is
---------------------------------------
Monitors run inside the hot training loop, so the contract is: on a step that
is not a log step (``step % log_interval != 0``) a monitor does an integer
modulo and returns - no tensor op, no allocation, no host sync.  On a log step
all norms are computed with ``torch._foreach_norm`` (one vectorised call per
tensor list) and brought to the host with a single ``.tolist()`` of one stacked
tensor, so a log step costs one device sync, not one per parameter.

Records are flat ``dict[str, float]`` with a ``"step"`` key, handed to *sinks*
(any callable taking the record) and always to the
``logging.getLogger("survopt_hydra.engine.monitors")`` logger.  Flat string keys such
as ``"grad_norm/encoder.0.weight"`` map directly onto TensorBoard tags, CSV rows
and experiment-tracker metric names.
"""

from __future__ import annotations

import csv
import logging
import math
import operator
import os
from collections.abc import Callable, Iterable
from typing import Any, Union

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = [
    "CSVSink",
    "GradientMonitor",
    "ListSink",
    "MonitorConfigError",
    "OptimizerMonitor",
    "Record",
    "Sink",
    "SinkUnavailableError",
    "TensorBoardSink",
]

logger = logging.getLogger("survopt_hydra.engine.monitors")

Record = dict[str, Any]
#: A sink is any callable taking one record.
Sink = Callable[[Record], Any]
SinkSpec = Union[Sink, Iterable[Sink], None]


#: Old name of the error; every monitor error is a plain :class:`ConfigError` (``monitors.<field>``).
MonitorConfigError = ConfigError


class SinkUnavailableError(ConfigError, ImportError):
    """A sink's optional dependency is missing.

    An ``ImportError`` because that is what it is, and a ``ConfigError`` (so a
    ``ValueError``) because the config asked for a sink that cannot run here -
    apps report it like any other config problem.
    """


def _check_interval(value: Any) -> int:
    try:
        interval = operator.index(value)  # ints, numpy ints; not floats
    except TypeError:
        interval = 0
    if isinstance(value, bool) or interval < 1:
        raise ConfigError("monitors.log_interval", f"must be an integer >= 1, got {value!r}")
    return interval


def _as_sinks(sink: SinkSpec) -> list[Sink]:
    if sink is None:
        return []
    if callable(sink):
        return [sink]
    sinks = list(sink)
    for s in sinks:
        if not callable(s):
            raise ConfigError(
                "monitors.sink", f"must be a callable taking a record (or a list of them), got {s!r}"
            )
    return sinks


class _Emitter:
    """Shared record fan-out: the logger first, then every sink."""

    def __init__(self, sink: SinkSpec, log_level: int) -> None:
        self.sinks = _as_sinks(sink)
        self.log_level = log_level

    def emit(self, record: Record) -> Record:
        if logger.isEnabledFor(self.log_level):
            logger.log(self.log_level, "%s", record)
        for s in self.sinks:
            s(record)
        return record


# --------------------------------------------------------------------------- #
# sinks
# --------------------------------------------------------------------------- #


class ListSink:
    """Keep records in memory (``.records``) - for tests, notebooks and callbacks."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def __call__(self, record: Record) -> None:
        self.records.append(dict(record))

    def values(self, key: str) -> list[tuple[int, Any]]:
        """``(step, value)`` for every record that has ``key``."""
        return [(r["step"], r[key]) for r in self.records if key in r]


class CSVSink:
    """Append records to a CSV file in long ("tidy") format: ``step,key,value``.

    Why long format: the set of keys is not known up front (parameters without
    a gradient are skipped, ``update_ratio/*`` records come separately, several
    monitors share a file), and a wide CSV would have to be rewritten whenever
    a new key appears.  With one row per value, a new key is just new rows and
    the header never changes; ``pandas.read_csv(path).pivot(index="step",
    columns="key", values="value")`` gives the wide table back.

    The header is written only when the file is new or empty, so runs resumed
    with the same path keep appending.  Each record is flushed, so the file is
    readable while training runs (records are rare: one per log interval).
    """

    HEADER = ("step", "key", "value")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        from ..durable import nofollow_opener  # a link is refused, never appended through

        self._file = open(self.path, "a", newline="", encoding="utf-8", opener=nofollow_opener)
        new = os.fstat(self._file.fileno()).st_size == 0
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(self.HEADER)
            self._file.flush()

    def __call__(self, record: Record) -> None:
        step = record.get("step")
        self._writer.writerows(
            (step, key, repr(value) if isinstance(value, float) else value)
            for key, value in record.items()
            if key != "step"
        )
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "CSVSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; call close() for determinism
        try:
            self.close()
        except Exception:
            pass


class TensorBoardSink:
    """Write each finite numeric record value as a TensorBoard scalar (tag = key).

    The library's one TensorBoard writer: monitors and apps (per-epoch rows with
    ``step_key="epoch"``) share it. ``writer_kwargs`` go to ``SummaryWriter`` (e.g.
    ``purge_step`` to drop events a killed run logged after its last checkpoint).
    Non-finite values are skipped: one NaN ruins TensorBoard's axis scaling.

    ``torch.utils.tensorboard`` is imported here, not at module import, because
    it pulls in the ``tensorboard`` package (slow, optional).  If it is not
    installed the constructor raises :class:`SinkUnavailableError` - at setup,
    not at the first log step hours into a run.
    """

    def __init__(self, log_dir: str | os.PathLike[str], step_key: str = "step", **writer_kwargs: Any) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise SinkUnavailableError(
                "monitors.sink",
                f"tensorboard needs the 'tensorboard' package (pip install tensorboard): {exc}",
            ) from exc
        self.log_dir = os.fspath(log_dir)
        self.step_key = step_key
        self.writer = SummaryWriter(log_dir=self.log_dir, **writer_kwargs)

    def __call__(self, record: Record) -> None:
        step = record.get(self.step_key)
        for key, value in record.items():
            if (key != self.step_key and isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value)):
                self.writer.add_scalar(key, value, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# --------------------------------------------------------------------------- #
# monitors
# --------------------------------------------------------------------------- #


class OptimizerMonitor:
    """Record the learning rate of every param group every ``log_interval`` steps.

    Keys are ``"lr/<group name>"`` where the name is ``group.get("name",
    f"group{i}")`` - giving groups a ``"name"`` when building the optimizer
    makes the curves readable.  Two groups with the same name get ``"#<i>"``
    appended to the later ones so no value is overwritten.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        log_interval: int = 100,
        sink: SinkSpec = None,
        *,
        log_level: int = logging.DEBUG,
    ) -> None:
        self.optimizer = optimizer
        self.log_interval = _check_interval(log_interval)
        self._emitter = _Emitter(sink, log_level)

    def keys(self) -> list[str]:
        keys: list[str] = []
        seen: set[str] = set()
        for i, group in enumerate(self.optimizer.param_groups):
            key = f"lr/{group.get('name', f'group{i}')}"
            if key in seen:
                key = f"{key}#{i}"
            seen.add(key)
            keys.append(key)
        return keys

    def log_lr(self, step: int) -> Record | None:
        """On log steps, record and return ``{"step", "lr/<name>"...}``; else return None.

        A tensor LR (capturable optimizers) is read with ``float()`` - a host
        sync, but only on log steps.
        """
        if step % self.log_interval:
            return None
        record: Record = {"step": step}
        for key, group in zip(self.keys(), self.optimizer.param_groups):
            record[key] = float(group["lr"])
        return self._emitter.emit(record)


class _Pending:
    """Weights snapshotted on a log step, waiting for ``log_update``."""

    __slots__ = ("step", "names", "params", "before", "weight_norms")

    def __init__(
        self,
        step: int,
        names: list[str],
        params: list[Tensor],
        before: list[Tensor],
        weight_norms: Tensor,
    ) -> None:
        self.step = step
        self.names = names
        self.params = params
        self.before = before
        self.weight_norms = weight_norms


def _stack_norms(norms: Iterable[Tensor]) -> Tensor:
    """Stack 0-D norms into one float32 vector on one device (for one ``.tolist()``)."""
    norms = list(norms)
    dev = norms[0].device
    if any(n.device != dev for n in norms):
        norms = [n.to(dev) for n in norms]
    return torch.stack(norms).to(torch.float32)


def _clone_all(tensors: list[Tensor]) -> list[Tensor]:
    """Copy every tensor, with one foreach call where torch has it."""
    clone = getattr(torch, "_foreach_clone", None)
    if clone is not None:
        return list(clone(tensors))
    return [t.detach().clone() for t in tensors]  # pragma: no cover - older torch


class GradientMonitor:
    """Record gradient norms, weight norms and update-to-weight ratios.

    Call :meth:`log_gradients` after ``backward()`` and before
    ``optimizer.step()``, and :meth:`log_update` right after
    ``optimizer.step()``.  On log steps ``log_gradients`` records
    ``grad_norm/global`` (L2 norm of all gradients together) and, with
    ``per_layer=True``, ``grad_norm/<name>`` and ``weight_norm/<name>`` for every
    parameter that has a gradient.

    Update ratio: with ``track_updates=True`` (default) ``log_gradients`` also
    snapshots the weights - on log steps only, so the copy costs one model's
    worth of memory for one step every ``log_interval`` steps - and the next
    ``log_update`` records ``update_ratio/<name>`` = ||W_after - W_before|| /
    ||W_before|| (and ``update_ratio/global`` over all parameters), then drops
    the snapshot.  This ratio is what learning-rate tuning heuristics look at
    (~1e-3 is the classic healthy value); it is ``inf`` for a parameter whose
    weights were all zero (e.g. freshly zero-initialised biases).

    ``step=None`` uses an internal counter that counts ``log_gradients`` calls
    starting at 0 (so the first call is a log step); ``log_update(None)``
    follows the pending snapshot.  Pass explicit steps to align with other
    loggers.
    """

    def __init__(
        self,
        model: nn.Module,
        log_interval: int = 100,
        sink: SinkSpec = None,
        per_layer: bool = True,
        *,
        track_updates: bool = True,
        log_level: int = logging.DEBUG,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(
                "monitors.model", f"must be a torch.nn.Module, got {type(model).__name__}"
            )
        self.model = model
        self.log_interval = _check_interval(log_interval)
        self.per_layer = bool(per_layer)
        self.track_updates = bool(track_updates)
        self._emitter = _Emitter(sink, log_level)
        self._calls = 0
        self._pending: _Pending | None = None

    def log_gradients(self, step: int | None = None) -> Record | None:
        """Record gradient/weight norms on log steps; return the record or None.

        Returns None (after an integer modulo, nothing else) on other steps, and
        on a log step where no parameter has a gradient yet.
        """
        if step is None:
            step = self._calls
            self._calls += 1
        # a snapshot lives until the next log_gradients call at most, even if
        # log_update was never called for it
        self._pending = None
        if step % self.log_interval:
            return None
        with torch.no_grad():
            names: list[str] = []
            params: list[Tensor] = []
            for name, p in self.model.named_parameters():
                if p.grad is not None:
                    names.append(name)
                    params.append(p)
            if not params:  # e.g. called before the first backward: nothing to report
                return None
            grads = [p.grad for p in params]
            grad_norms = _stack_norms(torch._foreach_norm(grads))  # type: ignore[arg-type]
            parts = [torch.linalg.vector_norm(grad_norms).reshape(1), grad_norms]
            weight_norms: Tensor | None = None
            if self.per_layer or self.track_updates:
                weight_norms = _stack_norms(torch._foreach_norm(params))
                if self.per_layer:
                    parts.append(weight_norms)
            if self.track_updates:
                assert weight_norms is not None
                # one foreach call copying every weight: the snapshot taken only on log steps
                before = _clone_all(params)
                self._pending = _Pending(step, names, params, before, weight_norms)
            values = torch.cat(parts).tolist()  # the single host transfer of this step
        record: Record = {"step": step, "grad_norm/global": values[0]}
        if self.per_layer:
            n = len(names)
            for i, name in enumerate(names):
                record[f"grad_norm/{name}"] = values[1 + i]
            for i, name in enumerate(names):
                record[f"weight_norm/{name}"] = values[1 + n + i]
        return self._emitter.emit(record)

    def log_update(self, step: int | None = None) -> Record | None:
        """After ``optimizer.step()``: record update ratios for the pending log step.

        Returns None (doing nothing) when no snapshot is pending, i.e. on every
        non-log step, or when ``step`` is given and is not the snapshotted step.
        """
        pending = self._pending
        if pending is None or (step is not None and step != pending.step):
            return None
        self._pending = None
        with torch.no_grad():
            # W_before - W_after, in place in the snapshot: same norm as the update
            torch._foreach_sub_(pending.before, pending.params)
            upd = _stack_norms(torch._foreach_norm(pending.before))
            w = pending.weight_norms.to(upd.device)
            global_ratio = torch.linalg.vector_norm(upd) / torch.linalg.vector_norm(w)
            parts = [global_ratio.reshape(1)]
            if self.per_layer:
                parts.append(upd / w)
            values = torch.cat(parts).tolist()
        record: Record = {"step": pending.step, "update_ratio/global": values[0]}
        if self.per_layer:
            for name, v in zip(pending.names, values[1:]):
                record[f"update_ratio/{name}"] = v
        return self._emitter.emit(record)
