"""Distributed-training schemas: ``none``, ``ddp``, ``zero`` and ``fsdp``.

Behaviour lives in :mod:`survopt_hydra.distributed`; these only say what to build.
"""
from __future__ import annotations

from dataclasses import dataclass

from .checks import fld, one_of


@dataclass
class DistributedConfig:
    _target_: str = "survopt_hydra.distributed.DistributedSettings"
    _partial_: bool = False  # true: instantiate gives a functools.partial
    strategy: str = "none"
    backend: str = fld("auto", one_of("auto", "nccl", "gloo"), "auto: nccl on CUDA, gloo on CPU")
    lr_scaling: str = fld("none", one_of("none", "linear", "sqrt"), "scale LR with the global batch")
    allow_single_process: bool = fld(False, doc="run as one process when not launched by torchrun")


@dataclass
class NoDistributedConfig(DistributedConfig):
    strategy: str = "none"


@dataclass
class DDPConfig(DistributedConfig):
    strategy: str = "ddp"
    find_unused_parameters: bool = False
    gradient_as_bucket_view: bool = True
    static_graph: bool = False


@dataclass
class ZeroConfig(DDPConfig):
    strategy: str = "zero"
    overlap_with_ddp: bool = False


@dataclass
class FSDPConfig(DistributedConfig):
    strategy: str = "fsdp"
    reshard_after_forward: bool = True
    checkpoint: str = fld("full", one_of("full", "sharded"), "full: rank 0 saves one file")


DISTRIBUTED: dict[str, type[DistributedConfig]] = {
    "none": NoDistributedConfig,
    "ddp": DDPConfig,
    "zero": ZeroConfig,
    "fsdp": FSDPConfig,
}
