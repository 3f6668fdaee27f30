"""The run's rules, shared by the pre-flight and the trainer: one copy of each check.

Config values against their schemas and cross-group rules, the launch (torchrun or
not), the run length, resume compatibility and the cohort (loaded once, handed from the
pre-flight to the trainer). Each raises a ConfigError/DataError naming the key or file.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

from ..schemas import GROUPS
from ..errors import ConfigError, did_you_mean
from ..api.validation import NAME_FIELDS, check_no_closure, check_run_length, validate_groups  # noqa: F401
from .schemas import APP_GROUPS, check_app_config
from .state import EPOCH_METRICS, config_difference

#: Top-level keys of a composed config: one per config group.
TOP_LEVEL = tuple(sorted({*APP_GROUPS, *GROUPS}))
#: Groups the trainer cannot do without (clipping, amp, distributed are optional).
REQUIRED = ("data", "model", "trainer", "optimizer", "scheduler")


def check_monitor(cfg: Mapping[str, Any]) -> None:
    """A plateau scheduler must read a metric the trainer computes, in the right direction."""
    sched = cfg.get("scheduler")
    if sched is None or sched.get("name") != "plateau":
        return
    monitor, mode = sched.get("monitor"), sched.get("mode")
    if monitor not in EPOCH_METRICS:
        raise ConfigError("scheduler.monitor", f"'{monitor}' is never computed{did_you_mean(monitor, EPOCH_METRICS)}; "
                          f"allowed: {', '.join(EPOCH_METRICS)}")
    want = "max" if monitor == "val_cindex" else "min"
    if mode != want:
        better = "higher" if want == "max" else "lower"
        raise ConfigError("scheduler.mode", f"'{mode}' contradicts scheduler.monitor={monitor} ({better} is better); "
                          f"use scheduler.mode={want}")


def check_config(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Everything about a composed config that needs neither torch nor the data, each rule once:
    top-level keys, the groups the app needs, the app's and the library's schemas, cross-group
    rules, the plateau monitor, the fine-tuning warning.

    Returns the checked values: the app's ``data``/``model``/``trainer`` and the library's groups.
    """
    for key in cfg:
        if key not in TOP_LEVEL:
            raise ConfigError(str(key), f"unknown key{did_you_mean(key, TOP_LEVEL)}; allowed: {', '.join(TOP_LEVEL)}")
    for group in REQUIRED:
        if cfg.get(group) is None:
            raise ConfigError(group, f"missing config group; add '{group}: <option>' to the defaults list")
    settings = check_app_config(cfg)
    settings.update(validate_groups(cfg))  # every library group against its schema; the run length comes later
    check_no_closure(cfg)  # the trainer steps once per batch
    for group in GROUPS:
        node = cfg.get(group)
        if node is not None and node.get("_partial_") in (True, "true", "True"):
            raise ConfigError(f"{group}._partial_", "the app builds this group itself, with the run's model and "
                                                    "length; allowed: false")
    check_monitor(cfg)
    warn_finetune_without_weights(cfg)
    return settings


def batches_per_rank(n_train: int, batch_size: int, world_size: int = 1) -> int:
    """Training batches per epoch on each rank: every rank gets ceil(n / world) rows (DistributedSampler)."""
    return math.ceil(math.ceil(n_train / world_size) / batch_size)


def check_launch(cfg: Mapping[str, Any]) -> int:
    """The number of ranks this process will train with; ConfigError for a strategy the launch cannot run.

    ``distributed=ddp|zero|fsdp`` needs torchrun (or ``distributed.allow_single_process=true``);
    ``distributed=none`` must not run under a multi-process torchrun. The same rules and messages
    as :meth:`~survopt_hydra.distributed.DistributedSettings.setup`, checked before Hydra writes.
    """
    node = cfg.get("distributed")
    strategy = (node.get("strategy") if node is not None else None) or "none"
    if strategy == "none" and "WORLD_SIZE" not in os.environ:
        return 1  # the common case, without importing torch
    from ..distributed.launch import TORCHRUN_HINT, torchrun_env

    env = torchrun_env()  # ConfigError for a malformed launcher environment
    world = env["world_size"] if env is not None else 1
    if strategy == "none":
        if world > 1:
            raise ConfigError("distributed.strategy", f"'none' but torchrun started {world} processes (each would "
                              "train alone); allowed: ddp, zero, fsdp, or launch one process without torchrun")
        return 1
    if env is None and not os.environ.get("SUBMITIT_EXECUTOR") and not node.get("allow_single_process", False):
        raise ConfigError("distributed.strategy", f"'{strategy}' needs torchrun: "
                          + TORCHRUN_HINT.format(strategy=strategy))
    return world


def check_run(cfg: Any, trainer: Mapping[str, Any], n_batches: int, rows: int | None = None) -> None:
    """The checks that need the data's size: every batch holds a pair, the schedules fit the run.

    ``n_batches``: training batches per epoch on one rank (:func:`batches_per_rank`);
    ``rows``: training rows per rank, to check the smallest batch (:func:`check_batch_rows`)."""
    if rows is not None:
        check_batch_rows(rows, n_batches, trainer["batch_size"])
    check_run_length(cfg, trainer["max_epochs"], math.ceil(n_batches / trainer["accumulate_grad_batches"]))


def check_batch_rows(rows: int, n_batches: int, batch_size: int) -> None:
    """Every training batch must hold >= 2 rows: a one-row batch never holds a comparable pair (its
    Cox loss is exactly 0, so it trains nothing) and batch norm cannot normalise it.

    The trainer splits each epoch's ``rows`` into ``n_batches`` near-equal batches (``tensor_split``).
    """
    smallest = rows // max(n_batches, 1)
    if smallest >= 2:
        return
    if rows < 2:
        raise ConfigError("trainer.batch_size", f"{rows} training row(s) per process cannot form a comparable pair; "
                          "the data split leaves too few rows to train on")
    fix = next(b for b in range(max(batch_size, 2), rows + 1) if rows // math.ceil(rows / b) >= 2)
    raise ConfigError("trainer.batch_size", f"{batch_size} splits {rows} training rows into {n_batches} batches, the "
                      f"smallest of {smallest} row; a one-row batch holds no comparable pair (zero Cox loss, nothing "
                      f"learnt) and batch norm rejects it; use trainer.batch_size >= {fix}")


def resume_state(run_dir: Path, config: Mapping[str, Any], verify: bool = True,
                 mmap: bool = False) -> tuple[dict[str, Any], Path, list[str]] | None:
    """The checkpoint a run in ``run_dir`` resumes from (see :func:`..checkpoint.load_latest`).

    ConfigError (``trainer.resume``) when checkpoints exist but none is usable, or the
    usable one was written with an incompatible config; the files are only read.
    """
    from .checkpoint import CheckpointError, file_kind, load_latest

    hint = "use a new hydra.run.dir or trainer.resume=false"
    try:
        found = load_latest(Path(run_dir) / "last.pt", verify=verify, mmap=mmap)
    except CheckpointError as exc:
        # torch's complaint when mmap meets a file that is no zip archive names mmap, not the file's problem
        why = re.sub(r"RuntimeError: mmap can only be used with files saved with .*?\.\)", "not a torch zip archive)",
                     str(exc))
        raise ConfigError("trainer.resume", f"cannot resume: {why}; {hint}") from None
    if found is None:
        return None
    state, path, problems = found
    best = Path(run_dir) / "best.pt"
    kind = file_kind(best)
    if kind not in ("file", "missing"):
        raise ConfigError("trainer.resume", f"cannot resume: {best} is {kind}, not a checkpoint file; move it away")
    written = state.get("config")
    if not isinstance(written, Mapping) or "progress" not in state or not all(g in written for g in REQUIRED):
        raise ConfigError("trainer.resume", f"cannot resume: {path} is not a survopt-train checkpoint; {hint}")
    diff = config_difference(state["config"], config)
    if diff:
        raise ConfigError("trainer.resume", f"{path} was written with a different config ({diff}); {hint}")
    return state, path, problems


# ================================================================== data, loaded once
_COHORTS: dict[str, tuple[Any, Any]] = {}


def _data_key(data: Mapping[str, Any]) -> tuple[str, Any]:
    """A key for the cohort a data dict describes, and the files' (size, mtime) stamps."""
    from ..survival.data import DataError, resolve_path

    stamps = []
    for key in ("path", "test_path", "manifest"):
        if data.get(key):
            try:
                st = resolve_path(data[key], f"data.{key}").stat()
                stamps.append((st.st_size, st.st_mtime_ns))
            except (DataError, OSError):
                stamps.append(None)
    return json.dumps(dict(data), sort_keys=True, default=str) + "@" + os.getcwd(), stamps


def load_cohort_once(data: Mapping[str, Any]) -> Any:
    """Load (and check) a cohort once per process: the next job of a sweep with the same data (an LR
    sweep) reuses it while its files are unchanged. Nothing writes into a cohort's tensors, and
    ``tests/test_sweeps.py`` checks that a sequential sweep's jobs equal the parallel launcher's,
    whose workers each load their own."""
    from .data import load_cohort

    key, stamps = _data_key(data)
    if key in _COHORTS and _COHORTS[key][1] == stamps:
        return _COHORTS[key][0]
    cohort = load_cohort(data)
    _COHORTS[key] = (cohort, stamps)
    return cohort


# ================================================================== fine-tuning needs something to fine-tune
_WARNED: set[str] = set()
PRETRAINED_CNN = "pkg://survopt_hydra/app/pretrained/cnn_synthetic32.pt"


def warn_finetune_without_weights(cfg: Mapping[str, Any]) -> str | None:
    """One warning line when a fine-tuning config has no pretrained weights to fine-tune (returned, and logged).

    The rule (docs/prediction.md): a config fine-tunes when ``optimizer.lr_mult`` gives a
    ``backbone.*`` pattern a multiplier below 1 (``+preset=finetune`` does: 0.1 at lr 1e-5).
    Then ``model=cnn`` without ``model.pretrained``, or a model with no pretrained weights at all
    (mlp, linear), trains random weights at a fine-tuning LR, which trains little (SUPPORT: 0.48 vs 0.62 with
    the defaults; synthetic scans: best epoch 2, 0.772 vs 0.785 from scratch).
    A warning, not a refusal: a short fine-tuning-style run from scratch is legal, only pointless.
    """
    import fnmatch

    opt, model = cfg.get("optimizer") or {}, cfg.get("model") or {}
    mults = opt.get("lr_mult") or {}
    if not any(fnmatch.fnmatchcase("backbone.x", str(p).lstrip("?")) and float(m) < 1 for p, m in mults.items()):
        return None
    name = model.get("name")
    if name == "custom" or (name == "backbone" and model.get("pretrained")):
        return None  # the user's own module may load weights itself; a backbone has them
    if name == "cnn" and not model.get("pretrained"):
        msg = (f"warning: model.pretrained: unset, but optimizer.lr_mult shrinks the backbone's LR (+preset=finetune, "
               f"lr {opt.get('lr')}): this fine-tunes random weights, which trains little; set model.pretrained="
               f"{PRETRAINED_CNN} (model.pretrained_head=true for the same endpoint) or drop the preset")
    elif name == "backbone":
        msg = (f"warning: model.pretrained: unset, but optimizer.lr_mult shrinks the backbone's LR (+preset=finetune, "
               f"lr {opt.get('lr')}): this fine-tunes random weights, which trains little; set model.pretrained=<a "
               "local state dict of the backbone> or drop the preset")
    elif name != "cnn":
        msg = (f"warning: model: model={name} has no pretrained weights, but optimizer.lr_mult shrinks a backbone's "
               f"LR (+preset=finetune, lr {opt.get('lr')}): this fine-tunes random weights, which trains little; drop "
               "the preset (or use model=cnn model.pretrained=...)")
    else:
        return None
    if msg not in _WARNED:  # once per process: a sweep's jobs share their config's warning
        _WARNED.add(msg)
        print(msg, file=sys.stderr, flush=True)  # one line before Hydra starts writing (a log line would be later)
    return msg
