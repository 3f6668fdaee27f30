"""Crash-safe checkpoints and the RNG state that makes a resumed run exact.

Writing (:func:`save_checkpoint`): the state goes to a temporary file in the same
directory, flushed and fsynced; the current ``last.pt`` is renamed to ``last.prev.pt``;
the temporary file is renamed to ``last.pt``; the directory is fsynced. A kill at any
moment therefore leaves a complete ``last.pt``, or (between the two renames) a complete
``last.prev.pt`` - never only a torn file. Every checkpoint carries a SHA-256 of its
content (``checksum``), so a file damaged *after* it was written (truncated by a copy,
a bad disk) is detected too, and :func:`load_latest` falls back to ``last.prev.pt``.

Reading: a checkpoint is untrusted data, whoever wrote it. ``torch.load(weights_only=True)``
only, so a checkpoint can hold tensors and plain Python data but never pickled code; a file
that contains a pickled object is refused (:class:`CheckpointError`), never executed. The
numpy RNG state is therefore stored as a tensor rather than a numpy array. Before and after
``torch.load`` the file is bounded (:func:`survopt_hydra.integrity.load_torch_file`): zip
members that declare more than the file holds, expanded or overlapping tensors and other
allocations the file does not justify are refused before the checksum touches them. What a
checkpoint holds is then checked against what it is used for: weights against the model
(:func:`check_weights`: names, dtypes, shapes, finite values), a stored config as plain data
(:func:`stored_config`: never resolved, never a path it names read), and the run state on
resume (``run_checkpoints.check_run_state``).
"""
from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..durable import (fsync_dir, rng_problem, rng_state, save_atomic, set_rng_state,  # noqa: F401 (re-exported)
                       write_text_atomic)
from ..errors import ConfigError, first_line
from ..integrity import (CHECKSUM_KEY, NotTorchZipError, UntrustedFileError, load_torch_file, matches,  # one checksum
                         with_checksum)  # and one bounded reader for every checkpoint format


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (unreadable, damaged, or not plain data); one line."""


# ------------------------------------------------------------------ writing
def previous_path(path: str | os.PathLike) -> Path:
    """``last.pt`` -> ``last.prev.pt``: the checkpoint kept until a newer one is complete."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike, keep_previous: bool = True,
                    before: Callable[[str], None] | None = None) -> None:
    """Write ``state`` (+ its checksum) to ``path``, keeping the old file as ``last.prev.pt``.

    ``keep_previous=False`` replaces ``path`` without rotating (used when ``path`` is
    known to be damaged, so the good ``last.prev.pt`` is not overwritten by it).
    ``before(stage)`` is a test hook, called with ``"written"`` (temp file complete) and
    ``"rotated"`` (old file moved aside, new one not yet in place).
    """
    path = Path(path)
    payload = with_checksum(state)

    def rotate(tmp: Path) -> None:
        if before is not None:
            before("written")
        if keep_previous and path.exists():
            os.replace(path, previous_path(path))
            if before is not None:
                before("rotated")

    save_atomic(payload, path, before_replace=rotate)


# ------------------------------------------------------------------ reading
def load_checkpoint(path: str | os.PathLike, verify: bool = True, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint onto the CPU, tensors and plain data only; CheckpointError if unusable.

    ``verify`` recomputes the checksum (files written before checksums existed pass);
    ``mmap=True, verify=False`` is a cheap look at e.g. the stored config.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind != "file":  # a FIFO would block torch.load forever; a directory or link is not ours to follow
        raise CheckpointError(f"{path}: {kind}, not a checkpoint file; move it away")
    if path.stat().st_size == 0:  # torch's mmap reader would only say "cannot mmap an empty file"
        raise CheckpointError(f"{path}: empty (0 bytes); truncated or not a checkpoint")
    try:
        state = load_torch_file(path, mmap=mmap)
    except NotTorchZipError:
        raise CheckpointError(f"{path}: unreadable ({path.stat().st_size} bytes, not a torch zip archive); "
                              "truncated or not a checkpoint") from None
    except UntrustedFileError as exc:
        raise CheckpointError(f"{exc}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply; not a checkpoint") from None
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            detail = next((line.strip() for line in text.splitlines() if "Unsupported global" in line), "")
            raise CheckpointError(
                f"{path}: refused: the file holds pickled Python objects ({detail or 'not plain data'}); "
                "checkpoints are loaded with weights_only=True and never run code") from None
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(f"{path}: unreadable ({size} bytes, {type(exc).__name__}: {first_line(exc)}); "
                              "truncated or not a checkpoint") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(state).__name__}, not a dict)")
    if verify and CHECKSUM_KEY in state and not matches(state, state[CHECKSUM_KEY]):
        raise CheckpointError(f"{path}: damaged (checksum mismatch)")
    state.pop(CHECKSUM_KEY, None)
    problem = _own_run_state_problem(state)
    if problem:  # a run checkpoint whose progress, metrics or RNG state its own config cannot have produced
        raise CheckpointError(f"{path}: {problem}")
    return state


def _own_run_state_problem(state: Mapping[str, Any]) -> str | None:
    """:func:`run_state_problem` of a ``last.pt`` against the config it stores (None for other files,
    or when that config has no usable ``trainer.max_epochs``: the resume check refuses those). A
    resume may only raise ``max_epochs``, so this is the stricter test; it runs wherever the file is
    read - the pre-flight included, before anything is written."""
    config = state.get("config")
    trainer = config.get("trainer") if isinstance(config, Mapping) else None
    if "progress" not in state or not isinstance(trainer, Mapping) or not count(trainer.get("max_epochs"), 1):
        return None
    return run_state_problem(state, config)


# ------------------------------------------------------------------ what a checkpoint holds
def weights_problem(weights: Any, reference: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``weights`` (read from a file) cannot go into a model whose ``state_dict()`` is ``reference``
    (None: they fit): the same names, and per tensor the same dtype and shape and finite values.
    ``reference`` may live on the meta device (:func:`..components.model_from_artifact`): only its
    metadata is read, so a config that describes a huge model is refused before it is built."""
    if not isinstance(weights, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in weights.items()):
        return "the weights are not a mapping of names to tensors"
    missing, unexpected = sorted(set(reference) - set(weights)), sorted(set(weights) - set(reference))
    if missing or unexpected:
        return f"the weights do not fit the model (missing: {missing[:3]}, unexpected: {unexpected[:3]})"
    for name, want in reference.items():
        got = weights[name]
        if got.dtype != want.dtype or got.shape != want.shape:
            return (f"{name} is {got.dtype} {tuple(got.shape)}, the model needs {want.dtype} {tuple(want.shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            return f"{name} holds non-finite values (NaN or infinity)"
    return None


def check_weights(weights: Any, reference: Mapping[str, torch.Tensor], where: Any) -> None:
    """:func:`weights_problem` as a one-line :class:`CheckpointError` naming ``where``."""
    problem = weights_problem(weights, reference)
    if problem:
        raise CheckpointError(f"{where}: {problem}")


def stored_config(config: Any, where: Any) -> dict[str, Any]:
    """The config a checkpoint stores, as plain data: a mapping of string keys whose values are
    numbers, strings, booleans, None, lists and mappings, with no interpolation (``${...}``) in any
    string. Nothing is resolved: an artifact never reads an environment variable, a resolver's output
    or another key through its config. CheckpointError (one line) otherwise."""
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{where}: holds no config (a survopt-train checkpoint stores its run's config)")
    stack: list[tuple[str, Any]] = [("config", config)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise CheckpointError(f"{where}: {key} has a non-string key {k!r}; not a stored config")
                stack.append((f"{key}.{k}", v))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, str):
            if "${" in value:
                raise CheckpointError(f"{where}: {key} holds the interpolation {value[:80]!r}; a stored config is "
                                      "plain data and is never resolved (no ${...}, no environment variables)")
        elif value is not None and not isinstance(value, (bool, int, float)):
            raise CheckpointError(f"{where}: {key} holds a {type(value).__name__}; not a stored config")
    return dict(config)


def file_kind(path: str | os.PathLike) -> str:
    """``"file"`` for a regular file (not a link); else what ``path`` is, in words (``"missing"`` ...)."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "a device or special file"


def load_latest(path: str | os.PathLike, verify: bool = True,
                mmap: bool = False) -> tuple[dict[str, Any], Path, list[str]] | None:
    """The newest usable checkpoint of ``path`` and ``previous_path(path)``.

    Returns ``(state, the file used, problems with newer files)`` - a non-empty problem
    list means the caller fell back and should warn - or ``None`` when neither file
    exists. Raises CheckpointError when files exist but none is usable.
    """
    problems: list[str] = []
    for candidate in (Path(path), previous_path(path)):
        if file_kind(candidate) == "missing":
            continue
        try:
            return load_checkpoint(candidate, verify=verify, mmap=mmap), candidate, problems
        except CheckpointError as exc:
            problems.append(str(exc))
    if problems:
        raise CheckpointError("; ".join(problems))
    return None


# ------------------------------------------------------------------ RNG
def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global RNG and Python's ``random``."""
    seed = int(seed) % (2**32)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A per-epoch seed derived from (seed, epoch) only, so epoch e draws the same
    shuffles and dropout masks whether or not the run was interrupted before it."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


# ------------------------------------------------------------------ what a run checkpoint may hold
RESUME_HINT = "use a new hydra.run.dir or trainer.resume=false"
_BIG = 2**62  # counters beyond this are no run's


def count(value: Any, low: int = 0, high: int = _BIG) -> bool:
    """An int (not a bool) in ``low..high``."""
    return type(value) is int and low <= value <= high


def number(value: Any, finite: bool = True) -> bool:
    """An int or float (not a bool), finite unless ``finite=False``."""
    return type(value) in (int, float) and (not finite or math.isfinite(value))


def _unit(value: Any) -> bool:
    return number(value) and 0.0 <= value <= 1.0


def _progress_problem(p: Any, max_epochs: int) -> str | None:
    from .state import Progress

    fields = Progress._FIELDS
    if not isinstance(p, Mapping) or not set(fields) <= set(p):
        return f"progress: expected the fields {', '.join(fields)}"
    epoch, best = p["epoch"], p["best_epoch"]
    if not count(epoch, 0, max_epochs):
        return f"progress.epoch: {epoch!r} is not an epoch count in 0..{max_epochs} (trainer.max_epochs)"
    if not count(best, 0, epoch) or not count(p["bad_epochs"], 0, epoch):
        return f"progress: best_epoch {best!r} and bad_epochs {p['bad_epochs']!r} must be counts in 0..epoch ({epoch})"
    if type(p["done"]) is not bool or type(p["stopped_early"]) is not bool:
        return "progress: done and stopped_early must be true or false"
    if not number(p["train_seconds"]) or p["train_seconds"] < 0:
        return f"progress.train_seconds: {p['train_seconds']!r} is not a finite number >= 0"
    score, val_c = p["best_score"], p["best_val_cindex"]
    if best == 0:
        if score != -math.inf or p["best_weights"] is not None:
            return "progress: no best epoch yet, but a best score or best weights"
    elif not (number(score) and _unit(val_c) and isinstance(p["best_weights"], Mapping)):
        return (f"progress: best epoch {best} needs a finite best_score, a best_val_cindex in [0, 1] (got {val_c!r}) "
                "and its weights")
    history = p["history"]
    if not isinstance(history, list) or len(history) != epoch:
        return f"progress.history: expected one row per epoch ({epoch})"
    for i, row in enumerate(history):
        if not isinstance(row, Mapping) or row.get("epoch") != i + 1 or not all(
                isinstance(k, str) and number(v, finite=False) for k, v in row.items()):
            return f"progress.history[{i}]: expected epoch {i + 1} and numbers"
    steps = p["lr_steps"]
    if not isinstance(steps, list) or not all(isinstance(r, Mapping) and all(
            isinstance(k, str) and number(v, finite=False) for k, v in r.items()) for r in steps):
        return "progress.lr_steps: expected rows of numbers"
    return None


#: metrics.json figures a finished last.pt must hold, with their kind (the summary line prints them).
_METRICS = {"test_cindex": _unit, "val_cindex": _unit, "best_epoch": count, "epochs_run": count,
            "stopped_early": lambda v: type(v) is bool}


def _metrics_problem(metrics: Any, progress: Mapping[str, Any]) -> str | None:
    if not isinstance(metrics, Mapping):
        return "metrics: a finished run must hold its metrics"
    for key, ok in _METRICS.items():
        if key not in metrics or not ok(metrics[key]):
            return f"metrics.{key}: {metrics.get(key, '<missing>')!r} is not a valid figure"
    if (metrics["best_epoch"], metrics["epochs_run"]) != (progress["best_epoch"], progress["epoch"]):
        return (f"metrics: best epoch {metrics['best_epoch']} of {metrics['epochs_run']} run disagrees with the "
                f"progress (best epoch {progress['best_epoch']} of {progress['epoch']})")
    stack: list[tuple[str, Any]] = [(k, v) for k, v in metrics.items()]
    while stack:  # every other figure: a finite number, text, true/false, null, or a list of those
        key, value = stack.pop()
        if isinstance(value, list):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, Mapping):
            stack.extend((f"{key}.{k}", v) for k, v in value.items())
        elif not (value is None or isinstance(value, (str, bool)) or number(value)):
            return f"metrics.{key}: {value!r} is not a finite number, text, true/false or null"
    return None


def check_run_state(state: Mapping[str, Any], config: Mapping[str, Any], path: Any) -> None:
    """Refuse (ConfigError ``trainer.resume``, one line) a ``last.pt`` whose run state does not fit
    ``config`` (the run's checked config): progress counters within ``trainer.max_epochs``, a
    history row per epoch, metrics of the right kind that agree with the progress, RNG states of
    the right shapes and dtypes (:func:`survopt_hydra.durable.rng_problem`), a ``monitor_bytes``
    that is a byte count, a shard folder that is a plain name in the run dir. Needs no model, so
    the pre-flight can call it before anything is written."""
    problem = run_state_problem(state, config)
    if problem:
        raise ConfigError("trainer.resume", f"cannot resume: {path}: {problem}; {RESUME_HINT}")


def run_state_problem(state: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """:func:`check_run_state`'s finding, or None."""
    max_epochs = int(config["trainer"]["max_epochs"])
    progress = state.get("progress")
    problem = _progress_problem(progress, max_epochs)
    if problem:
        return problem
    if type(state.get("finished")) is not bool:
        return "finished: must be true or false"
    if state["finished"]:
        problem = _metrics_problem(state.get("metrics"), progress)
        if problem or not progress["done"]:
            return problem or "finished, but its progress is not done"
    elif state.get("metrics") is not None:
        return "metrics: an unfinished run holds none"
    if not count(state.get("monitor_bytes"), 0, 2**53):
        return f"monitor_bytes: {state.get('monitor_bytes')!r} is not a byte count"
    ranks = state.get("rng_ranks") or []
    if not isinstance(ranks, list) or len(ranks) > 4096:
        return "rng_ranks: expected one RNG state per rank"
    for i, rng in enumerate([state.get("rng"), *ranks]):
        problem = rng_problem(rng)
        if problem:
            return f"{'rng' if i == 0 else f'rng_ranks[{i - 1}]'}: {problem}"
    shards = state.get("sharded")
    if shards is not None and (not isinstance(shards, str) or Path(shards).name != shards
                               or not shards.startswith("last.pt.shards-")):
        return f"sharded: {str(shards)[:80]!r} is not a shard folder name in the run dir"
    return None
