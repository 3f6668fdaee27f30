"""Whole-run checkpoint files: model + engine/optimizer + extra + every rank's RNG.

Split out because the file format, atomic writes, FSDP's sharded (DCP) folders and
the resume protocol (rank 0 reads, the others get a broadcast, errors reach every
rank) are one concern, separate from building the state dicts (:mod:`.state`).
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import nn
from torch.optim import Optimizer

from ..errors import ConfigError
from ..durable import rng_state, save_atomic, set_rng_state
from ..integrity import file_sha256, intact, with_checksum
from .context import DistContext
from .state import (
    consolidated_optimizer_state, load_engine_state, load_model_state_dict, load_optimizer_state, model_state_dict,
)
from .wrap import is_fsdp

CHECKPOINT_FORMAT = "survopt-distributed/2"  # /2: carries the package's checksum (survopt_hydra.integrity)
# A shard folder's name as save_shards makes it: one plain name (no separators), so the
# folder can only be a sibling of the checkpoint file.
_SHARD_NAME = re.compile(r"[A-Za-z0-9_.-]+\.shards-[0-9a-f]{10}")


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    ctx: DistContext,
    engine: Any = None,
    optimizer: Optimizer | None = None,
    extra: Mapping[str, Any] | None = None,
    sharded: bool = False,
) -> None:
    """Write one resumable checkpoint; call on every rank (it is collective).

    Full mode (default): rank 0 writes ``path`` atomically with the unwrapped model's
    state, ``engine.state_dict()`` (its ``optimizer`` entry replaced by the consolidated
    ZeRO / gathered FSDP state), ``extra`` and every rank's RNG state. Sharded mode
    (FSDP with ``distributed.checkpoint=sharded``): every rank writes its shards to a
    fresh DCP folder ``<path>.shards-<id>`` and rank 0 then swaps ``path`` (which
    names that folder) atomically, so a crash at any moment leaves a complete
    checkpoint. ``engine`` is duck-typed (``state_dict``/``load_state_dict``/``optimizer``).
    """
    path = Path(ctx.broadcast_object(str(path)))  # rank 0's path: Hydra run dirs can differ by rank
    opt = _optimizer_of(engine, optimizer)
    rngs = ctx.all_gather_object(rng_state())
    shard_dir, digests = None, None
    if sharded:
        if not is_fsdp(model):
            raise ConfigError("distributed.checkpoint", "'sharded' needs distributed=fsdp; allowed here: full")
        shard_dir, digests = save_shards(path, model, opt, ctx)
        model_sd, opt_sd = None, None
    else:
        model_sd = model_state_dict(model, ctx)
        opt_sd = consolidated_optimizer_state(opt, ctx, model)
    if ctx.is_main:
        engine_sd = None
        if engine is not None:
            engine_sd = dict(engine.state_dict())
            engine_sd["optimizer"] = opt_sd
        state = {
            "format": CHECKPOINT_FORMAT,
            "strategy": ctx.strategy,
            "world_size": ctx.world_size,
            "sharded": shard_dir.name if shard_dir is not None else None,
            "shard_digests": digests,
            "model": model_sd,
            "engine": engine_sd,
            "optimizer": opt_sd if engine is None else None,
            "extra": dict(extra) if extra is not None else None,
            "rng": rngs,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(with_checksum(state), path)
        if shard_dir is not None:  # the folder the previous file named, and any a crash left behind
            prune_shards(path, {shard_dir.name})
    ctx.barrier()


def save_shards(path: Path, model: nn.Module, optimizer: Optimizer, ctx: DistContext) -> tuple[Path, dict[str, str]]:
    """Every rank writes its FSDP model and optimizer shards to a fresh DCP folder
    ``<path>.shards-<id>`` (collective); returns the folder and the SHA-256 of every file
    in it, both of which ``path`` should record.

    A fresh folder per save means the folder the current ``path`` names is never touched,
    so a crash mid-save leaves the previous checkpoint whole; callers remove folders that
    no checkpoint names any more (:func:`prune_shards`). The digests matter because DCP
    reads its ``.metadata`` file with pickle: :func:`load_shards` only lets DCP read a
    folder whose every file is one this run wrote (see :func:`verified_shard_dir`).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    token = ctx.broadcast_object(uuid.uuid4().hex[:10])
    shard_dir = path.with_name(f"{path.name}.shards-{token}")
    msd, osd = get_state_dict(model, optimizer)
    if ctx.is_main:
        shard_dir.mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(shard_dir))
    ctx.barrier()  # every rank's files are complete before rank 0 hashes them
    digests = _folder_digests(shard_dir) if ctx.is_main else {}
    return shard_dir, ctx.broadcast_object(digests)


def _folder_digests(folder: Path) -> dict[str, str]:
    return {f.name: file_sha256(f) for f in sorted(folder.iterdir())}


def verified_shard_dir(path: Path, name: Any, digests: Any, key: str = "distributed.checkpoint") -> Path:
    """The shard folder a checkpoint at ``path`` names, or a ConfigError; nothing is unpickled.

    A checkpoint is data someone may have edited, so what it names is not trusted: the
    name must be this file's own ``<file>.shards-<hex>`` sibling (no separators, so
    nothing outside the run directory), the folder a real directory (not a link), and
    its files exactly the ones recorded at save time with the same SHA-256 - DCP
    unpickles ``.metadata``, so an unverified folder is never handed to it.
    """
    path = Path(path)
    if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
        raise ConfigError(key, f"{path} names shard folder {name!r}; refused: only a '<file>.shards-<id>' "
                          "folder beside it, written by this run, is read")
    folder = path.parent / name
    if folder.is_symlink() or not folder.is_dir():
        raise ConfigError(key, f"{folder} (the checkpoint's model/optimizer shards) is missing or not a "
                          "directory; every rank must see the run directory (a shared filesystem)")
    if not isinstance(digests, Mapping) or not digests:
        raise ConfigError(key, f"{path} records no checksums for {name}; refused: shards are only read when "
                          "every file matches the checksum the run recorded")
    found = {f.name: f for f in folder.iterdir()}
    if set(found) != set(digests):
        odd = sorted(set(found) ^ set(digests))[:3]
        raise ConfigError(key, f"{folder}: files differ from the ones the checkpoint recorded ({', '.join(odd)}); "
                          "refused")
    for fname, f in found.items():
        if f.is_symlink() or not f.is_file() or file_sha256(f) != digests[fname]:
            raise ConfigError(key, f"{f}: checksum mismatch with the checkpoint's record; refused (not read)")
    return folder


def load_shards(path: Path, name: Any, digests: Any, model: nn.Module, optimizer: Optimizer,
                ctx: DistContext) -> None:
    """Inverse of :func:`save_shards` on every rank; DCP reshards when the world size changed.

    ``path`` is the checkpoint file, ``name`` and ``digests`` what it recorded. Every rank
    checks the folder first (:func:`verified_shard_dir`) and the verdict is agreed, so a
    rank that cannot see or verify it makes every rank fail with the same line instead
    of leaving the others waiting inside DCP's collectives.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    error = None
    try:
        shard_dir = verified_shard_dir(path, name, digests)
    except ConfigError as exc:
        error = exc
    if ctx.any_rank(error is not None):
        raise error if error is not None else ConfigError(
            "distributed.checkpoint", f"{path.parent / str(name)}: another rank could not verify the shards")
    msd, osd = get_state_dict(model, optimizer)
    target = {"model": msd, "optimizer": osd}
    dcp.load(target, checkpoint_id=str(shard_dir))
    set_state_dict(model, optimizer, model_state_dict=target["model"], optim_state_dict=target["optimizer"])


def prune_shards(path: Path, keep: set[str]) -> None:
    """Remove ``<path>.shards-*`` folders whose names are not in ``keep`` (rank 0, after a save)."""
    for folder in path.parent.glob(f"{path.name}.shards-*"):
        if folder.name not in keep and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    ctx: DistContext,
    engine: Any = None,
    optimizer: Optimizer | None = None,
    restore_rng: bool = True,
    before_load: Callable[[dict[str, Any]], None] | None = None,
    error_key: str = "checkpoint",
    error_hint: str = "",
) -> dict[str, Any] | None:
    """Resume every rank from :func:`save_checkpoint`'s file; returns ``extra``.

    ``before_load(extra)`` runs on every rank before any state is touched (e.g. refuse
    a checkpoint written with a different config, with a clear error). A file rank 0
    cannot read (truncated, foreign) raises ``ConfigError(error_key, ... + error_hint)``
    on every rank, so no rank is left waiting.

    Returns ``None`` (and changes nothing) when ``path`` does not exist on rank 0, so
    re-running the same command starts fresh or resumes; else ``extra`` (``{}`` if none). Only rank 0 reads the file;
    the state reaches other ranks by broadcast (FSDP: ``broadcast_from_rank0``), so
    no shared filesystem is needed except for sharded checkpoints (DCP reads shards
    on every rank). Per-rank RNG states are restored when the world size matches.
    """
    path = Path(ctx.broadcast_object(str(path)))
    opt = _optimizer_of(engine, optimizer)
    state, error = None, None
    if ctx.is_main and path.exists():
        try:
            state = _load(path)
        except Exception as exc:  # truncated by hand, another program's file
            first = str(exc).splitlines()[0] if str(exc) else ""
            error = f"cannot resume from {path} ({type(exc).__name__}: {first})"
        else:
            if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
                error = f"cannot resume from {path} (not a survopt_hydra.distributed checkpoint)"
            elif not intact(state):
                error = f"cannot resume from {path} (damaged: checksum mismatch)"
    fsdp = is_fsdp(model)
    # what every rank needs; FSDP's full model/optimizer stay on rank 0 (broadcast later)
    heavy = ("model", "optimizer") if fsdp else ()
    light = None
    if state is not None:
        light = {k: v for k, v in state.items() if k not in heavy}
        if fsdp and light.get("engine") is not None:
            light["engine"] = {k: v for k, v in light["engine"].items() if k != "optimizer"}
    light = ctx.broadcast_object({"error": error} if error else light)
    if light is not None and light.get("error"):
        raise ConfigError(error_key, light["error"] + (f"; {error_hint}" if error_hint else ""))
    if light is None:
        return None  # nothing to resume (an empty ``extra`` comes back as {})
    if before_load is not None:
        before_load(light.get("extra") or {})
    engine_sd = light.get("engine")
    if light.get("sharded"):
        if not fsdp:
            raise ConfigError("distributed.checkpoint", f"{path} is a sharded (DCP) checkpoint; resume it with "
                              "distributed=fsdp")
        if engine is not None and engine_sd is not None:  # scheduler, scaler, counters; the optimizer below
            engine.load_state_dict(dict(engine_sd, optimizer=opt.state_dict()))
        load_shards(path, light["sharded"], light.get("shard_digests"), model, opt, ctx)
    else:
        full = state if ctx.is_main else light  # FSDP: the model / optimizer state stayed on rank 0
        load_model_state_dict(model, full.get("model"), ctx)
        if engine is not None and engine_sd is not None:
            load_engine_state(engine, full["engine"], ctx, model)
        else:
            load_optimizer_state(opt, full.get("optimizer") or (full.get("engine") or {}).get("optimizer"), ctx, model)
    rngs = light.get("rng") or []
    if restore_rng and len(rngs) == ctx.world_size:
        try:
            set_rng_state(rngs[ctx.rank])
        except ValueError as exc:  # a state this package did not write (every rank holds the same one)
            raise ConfigError(error_key, f"cannot resume from {path} ({exc})") from None
    ctx.barrier()
    return light.get("extra") or {}


# ----------------------------------------------------------------------------------
# File and RNG helpers
# ----------------------------------------------------------------------------------
def _load(path: Path) -> Any:
    """Checkpoints hold tensors and plain data only (``weights_only=True``), bounded by the file
    (:func:`survopt_hydra.integrity.load_torch_file`: zip member sizes, contiguous tensors)."""
    from ..integrity import load_torch_file

    return load_torch_file(path)


def _optimizer_of(engine: Any, optimizer: Optimizer | None) -> Optimizer:
    opt = optimizer if optimizer is not None else getattr(engine, "optimizer", None)
    if opt is None:
        raise ConfigError("checkpoint", "pass engine= (an object with .optimizer) or optimizer=")
    return opt
