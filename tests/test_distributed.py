"""survopt_hydra.distributed: DDP / ZeRO / FSDP2 on 2 gloo CPU ranks, launch checks, checkpoints.

The multi-process tests launch ``tests/dist_workers/*_worker.py`` with torchrun (one
launch per worker, shared by the tests that read its results) and are marked slow;
the in-process tests cover the launcher checks, single-process mode, the Hydra/Slurm
launcher config and the data helpers.
"""
from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from survopt_hydra import ConfigError, DistributedOptimizer, StepEngine, build_scheduler
from survopt_hydra.distributed import (
    DistContext, DistributedSettings, eval_indices, fully_shard_available, gather_by_index, is_main,
    load_checkpoint, lr_scale_factor, save_checkpoint, shard_indices,
)

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ROOT / "tests" / "dist_workers"
sys.path.insert(0, str(WORKERS))
import _common as C  # noqa: E402  (the workers' model and data, for single-process references)

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
              "GROUP_RANK", "TORCHELASTIC_RUN_ID", "SUBMITIT_EXECUTOR")
TORCHRUN_TIMEOUT = 180


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_command(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run in a new session; on timeout kill the whole group (torchrun's workers too)."""
    proc = subprocess.Popen(cmd, cwd=cwd or ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TORCHRUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {TORCHRUN_TIMEOUT}s: {' '.join(cmd)}\n{out[-3000:]}\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def torchrun(script: Path, *args: str, nproc: int = 2, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` (a free port is picked by the c10d rendezvous)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(script), *args]
    proc = run_command(cmd, cwd)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith(("W1", "I1"))]
        pytest.fail(f"{script.name} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n" + "\n".join(lines)[:12000])
    return proc


def run_worker(name: str, out: Path) -> list[dict]:
    torchrun(WORKERS / f"{name}_worker.py", str(out))
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    for r, res in enumerate(results):
        assert res["ok"], f"rank {r}: {res.get('traceback')}"
    return results


@pytest.fixture
def no_launcher(monkeypatch):
    for key in LAUNCH_ENV:
        monkeypatch.delenv(key, raising=False)
    yield
    if dist.is_initialized():  # a failed test must not leak its group into the next
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------
# DDP (one torchrun launch)
# ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    return run_worker("ddp", tmp_path_factory.mktemp("ddp"))


@pytest.mark.slow
def test_ddp_gradients_equal_single_process_full_batch(ddp_run):
    for res in ddp_run:
        assert res["launcher"] == "torchrun" and res["backend"] == "gloo" and res["world_size"] == 2
        assert res["wrapped"] == "DistributedDataParallel"
        assert res["grad_diff"] <= 1e-6
        # StepEngine with accumulate_grad_batches=2 (no_sync on the first micro-batch)
        assert res["engine_steps"] == 3
        assert res["engine_param_diff"] <= 1e-6
        assert res["params_equal_across_ranks"] == 0.0
    assert [r["is_main"] for r in ddp_run] == [True, False]


@pytest.mark.slow
def test_teardown_then_setup_again_in_one_process(ddp_run):
    for res in ddp_run:
        assert res["after_teardown"] is False
        assert res["resetup"] == [2, "torchrun", 1.5]


@pytest.mark.slow
def test_ddp_collectives_and_data_helpers(ddp_run):
    r0, r1 = ddp_run
    for res in ddp_run:
        assert res["gather_shape"] == [3, 2] and res["gather_values"] == [0.0, 1.0, 1.0]  # 1 row + 2 rows
        assert res["broadcast"] == {"from": 0}
        assert res["mean"] == 0.5 and res["mean_tensor"] == [0.5, 1.0]
        assert res["agree"] is True
        assert res["any_rank"] == [True, False]
        assert res["on_main"] == {"read_by": 0}  # rank 0 ran it, every rank got its result
        assert res["on_main_error"] == ["trainer.resume", "trainer.resume: written with a different config"]
        assert res["eval_count"] == 6  # ceil(11 / 2) on both ranks: same number of forwards
        assert res["gathered_scores"] == [10.0 * i for i in range(11)]
    for epoch in ("shard_e0", "shard_e1"):
        assert len(r0[epoch]) == len(r1[epoch]) == 6
        assert sorted(set(r0[epoch]) | set(r1[epoch])) == list(range(11))  # 12 slots, one padded repeat
    assert r0["shard_e0"] != r0["shard_e1"]  # set_epoch reshuffles


@pytest.mark.slow
def test_lr_scaling_is_applied_and_recorded(ddp_run):
    for res in ddp_run:
        assert res["sqrt_scale"] == pytest.approx(math.sqrt(2))
        assert res["sqrt_lr"] == pytest.approx(0.1 * math.sqrt(2))
        assert res["linear_scale"] == 4.0  # global 64 / base 16
        d = res["describe"]
        assert d["lr_scaling"] == "linear" and d["lr_scale"] == 4.0 and d["lr"] == pytest.approx(0.4)
        assert d["world_size"] == 2 and d["strategy"] == "ddp"


@pytest.mark.slow
def test_seed_api_world_size_mismatch_is_refused(ddp_run):
    for res in ddp_run:
        assert res["mismatch"]["key"] == "distributed.world_size"
        assert res["mismatch"]["message"].startswith(
            "distributed.world_size: got 4 but the process group has 2 ranks; launch with torchrun --nproc_per_node=4")
        seed = res["seed"]  # world_size=2 matches: DDP + AdamW, linear scaling x2
        assert seed["model"] == "DistributedDataParallel" and seed["optimizer"] == "AdamW"
        assert seed["lr_scale"] == 2.0 and seed["lr"] == pytest.approx(2e-4)
        assert seed["state_keys"] == ["param_groups", "state"]


# ----------------------------------------------------------------------------------
# ZeRO (one torchrun launch)
# ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zero_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("zero")
    return out, run_worker("zero", out)


@pytest.mark.slow
def test_zero_shards_optimizer_state(zero_run):
    _, results = zero_run
    owned = [set(res["state_params"]) for res in results]
    n = results[0]["n_params"]
    assert all(0 < len(o) < n for o in owned)  # each rank: a strict, non-empty subset
    assert owned[0].isdisjoint(owned[1])
    assert owned[0] | owned[1] == set(range(n))
    for res in results:
        assert res["optimizer"] == "SurvoptZeroRedundancyOptimizer" and res["local_optimizer"] == "AdamW"
        assert res["groups"] == res["local_groups"] == ["default", "default/no_decay"]  # named groups kept


@pytest.mark.slow
def test_zero_matches_plain_optimizer_on_full_batch(zero_run):
    _, results = zero_run
    for res in results:
        assert res["param_diff"] <= 1e-6
        assert res["lrs"] == pytest.approx(res["ref_lrs"])  # the scheduler drives ZeRO's groups


@pytest.mark.slow
def test_zero_checkpoint_round_trip(zero_run):
    out, results = zero_run
    for res in results:
        assert res["before_load_diff"] > 0.1  # the fresh model really differed
        assert res["extra"] == {"epoch": 2} and res["counters"] == [8, 2]
        assert res["resume_diff"] == 0.0
        assert res["missing"] is None  # no file: nothing to resume
    assert (out / "zero.pt").is_file() and not list(out.glob(".zero.pt.tmp*"))


def _one_process_engine(**engine_options):
    """The workers' model, AdamW and cosine schedule as one plain process: what a resumed
    checkpoint from a torchrun run is loaded into (engine options as the worker used them)."""
    settings = DistributedSettings("none")
    ctx = settings.setup(device="cpu")
    model = C.make_model(99, norm=True)
    opt = settings.build_optimizer({"name": "adamw", "lr": 0.01, "weight_decay": 0.1}, model, ctx)
    return ctx, model, StepEngine(model, opt, build_scheduler(opt, name="cosine", epochs=4), **engine_options)


@pytest.mark.slow
def test_zero_checkpoint_resumes_in_one_process(zero_run, no_launcher):
    """The consolidated ZeRO state is torch's plain format: a single process continues it."""
    out, results = zero_run
    ctx, model, engine = _one_process_engine()
    assert load_checkpoint(out / "zero.pt", model, ctx, engine=engine) == {"epoch": 2}
    for bx, by in C.make_batches(8, seed=7)[:4]:
        engine.backward(nn.functional.mse_loss(model(bx), by))
        engine.step()
    engine.end_epoch()
    expected = torch.tensor(results[0]["resumed_params"])
    assert C.max_diff(C.flat_params(model), expected) <= 1e-6


# ----------------------------------------------------------------------------------
# FSDP2 (one torchrun launch)
# ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    if not fully_shard_available():
        pytest.skip(f"torch {torch.__version__} has no FSDP2 fully_shard")
    out = tmp_path_factory.mktemp("fsdp")
    return out, run_worker("fsdp", out)


@pytest.mark.slow
def test_fsdp_steps_equal_ddp(fsdp_run):
    _, results = fsdp_run
    for res in results:
        assert res["param_type"] == "DTensor" and res["model_type"].startswith("FSDP")
        assert res["groups"] == ["default", "default/no_decay"]
        assert res["steps"] == [3, 3]
        assert res["grad_norms"][0] == pytest.approx(res["grad_norms"][1], abs=1e-6)  # clipping on shards
        assert res["fsdp_vs_ddp"] <= 1e-6
        assert res["all_ranks_state"]["keys"] == ["0.weight", "0.bias"]
        assert res["all_ranks_state"]["diff"] == 0.0


@pytest.mark.slow
def test_fsdp_full_and_sharded_checkpoints_round_trip(fsdp_run):
    _, results = fsdp_run
    for res in results:
        for mode in ("full", "sharded"):
            assert res[f"{mode}_extra"] == {"mode": mode}
            assert res[f"{mode}_load_diff"] == 0.0
            assert res[f"{mode}_resume_diff"] == 0.0
            assert res[f"{mode}_counters"] == [5, 5]
        shard_dirs = [f for f in res["files"] if ".shards-" in f]
        assert len(shard_dirs) == 1  # saving twice removed the older shard folder
        assert {"fsdp_full.pt", "fsdp_sharded.pt"} <= set(res["files"])


@pytest.mark.slow
def test_fsdp_full_checkpoint_resumes_in_one_process(fsdp_run, no_launcher):
    """FSDP's name-keyed optimizer state loads into a plain optimizer (by parameter name)."""
    from survopt_hydra.engine.clipping import GradientClipper

    out, results = fsdp_run
    ctx, model, engine = _one_process_engine(clipper=GradientClipper(mode="norm", max_norm=0.05),
                                             accumulate_grad_batches=2)
    assert load_checkpoint(out / "fsdp_full.pt", model, ctx, engine=engine) == {"mode": "full"}
    for bx, by in C.make_batches(4, seed=9):
        engine.backward(nn.functional.mse_loss(model(bx), by))
        engine.step()
    assert C.max_diff(C.flat_params(model), torch.tensor(results[0]["final_params"])) <= 1e-6


# ----------------------------------------------------------------------------------
# Launch checks and single-process mode (in this process)
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["ddp", "zero", "fsdp"])
def test_strategy_without_torchrun_is_refused(strategy, no_launcher):
    with pytest.raises(ConfigError) as err:
        DistributedSettings(strategy).setup(device="cpu")
    assert err.value.key == "distributed.strategy"
    assert str(err.value) == (
        f"distributed.strategy: '{strategy}' needs torchrun: torchrun --standalone --nproc_per_node=N "
        f"scripts/train.py distributed={strategy} (or set distributed.allow_single_process=true)")
    assert not dist.is_initialized()


def _train_steps(settings, ctx, steps=3, seed=0):
    model = settings.wrap_model(C.make_model(seed, norm=True), ctx)
    opt = settings.build_optimizer({"name": "adamw", "lr": 0.01, "weight_decay": 0.1}, model, ctx)
    engine = StepEngine(model, opt)
    for bx, by in C.make_batches(steps):
        engine.backward(nn.functional.mse_loss(model(bx), by))
        engine.step()
    return model, opt, engine


def _reference_params(steps=3):
    model, _, _ = _train_steps(DistributedSettings("none"), DistContext(), steps)
    return C.flat_params(model)


@pytest.mark.parametrize("strategy", ["ddp", "zero", "fsdp"])
def test_allow_single_process_runs_as_one_process(strategy, no_launcher, tmp_path):
    if strategy == "fsdp" and not fully_shard_available():
        pytest.skip("no FSDP2 fully_shard in this torch")
    settings = DistributedSettings(strategy, allow_single_process=True)
    ctx = settings.setup(device="cpu")
    try:
        assert (ctx.rank, ctx.world_size, ctx.launcher, ctx.backend) == (0, 1, "single_process", "gloo")
        assert dist.is_initialized() and dist.get_world_size() == 1 and ctx.is_main and is_main()
        model, opt, engine = _train_steps(settings, ctx)
        expected = {"ddp": "DistributedDataParallel", "zero": "DistributedDataParallel"}.get(strategy)
        if expected:
            assert type(model).__name__ == expected
        if strategy == "zero":
            assert type(opt).__name__ == "SurvoptZeroRedundancyOptimizer"
        assert C.max_diff(C.flat_params(model), _reference_params()) <= 1e-6
        save_checkpoint(tmp_path / "one.pt", model, ctx, engine=engine, extra={"k": 1})
        m2, o2, e2 = _train_steps(settings, ctx, steps=1, seed=5)
        assert load_checkpoint(tmp_path / "one.pt", m2, ctx, engine=e2) == {"k": 1}
        assert C.max_diff(C.flat_params(m2), C.flat_params(model)) == 0.0
        assert e2.global_step == 3
    finally:
        ctx.teardown()
    assert not dist.is_initialized()


def test_strategy_none_under_a_multi_process_launcher_is_refused(no_launcher, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    with pytest.raises(ConfigError, match=r"^distributed.strategy: 'none' but torchrun started 2 processes"):
        DistributedSettings("none").setup(device="cpu")


def test_nccl_on_cpu_is_refused(no_launcher):
    with pytest.raises(ConfigError, match=r"^distributed.backend: 'nccl' needs CUDA devices"):
        DistributedSettings("ddp", backend="nccl", allow_single_process=True).setup(device="cpu")
    assert not dist.is_initialized()


def test_settings_are_validated():
    with pytest.raises(ConfigError, match=r"distributed.strategy: unknown name 'ddpp' \(did you mean 'ddp'\?\)"):
        DistributedSettings("ddpp")
    with pytest.raises(ConfigError, match=r"^distributed.checkpoint: unknown key"):
        DistributedSettings("ddp", checkpoint="sharded")  # an fsdp-only key
    with pytest.raises(ConfigError, match=r"^distributed.lr_scaling: 'cubic' is not allowed"):
        DistributedSettings("ddp", lr_scaling="cubic")
    s = DistributedSettings("fsdp", reshard_after_forward="false", checkpoint="sharded")
    assert s.options == {"reshard_after_forward": False, "checkpoint": "sharded"} and s.checkpoint_sharded


def test_settings_instantiate_from_the_config_group():
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module("survopt_hydra.conf", version_base="1.3"):
        cfg = compose(overrides=["+distributed=zero", "distributed.lr_scaling=sqrt"])
    s = instantiate(cfg.distributed)
    assert isinstance(s, DistributedSettings)
    assert (s.strategy, s.lr_scaling, s.options["overlap_with_ddp"]) == ("zero", "sqrt", False)


def test_lr_scale_factor():
    assert lr_scale_factor("none", 512, 64) == 1.0
    assert lr_scale_factor("linear", 512, 64) == 8.0
    assert lr_scale_factor("sqrt", 512, 128) == 2.0
    s = DistributedSettings("ddp", lr_scaling="linear")
    assert s.lr_factor(DistContext(world_size=4)) == 4.0  # default: each rank runs the configured batch
    assert s.lr_factor(DistContext(world_size=4), base_batch=32) == 4.0
    assert s.lr_factor(DistContext(world_size=4), global_batch=256, base_batch=64) == 4.0
    assert s.lr_scale_info["lr_scale"] == 4.0 and s.lr_scale_info["global_batch"] == 256


def test_single_process_helpers_are_identities(no_launcher):
    ctx = DistributedSettings("none").setup(device="cpu")
    assert (ctx.world_size, ctx.launcher, ctx.distributed) == (1, "none", False)
    t = torch.arange(5.0)
    assert ctx.all_gather_tensor(t) is t and ctx.broadcast_object({"a": 1}) == {"a": 1}
    assert ctx.all_reduce_mean(2.5) == 2.5 and ctx.agree(True) and ctx.any_rank(True)
    assert ctx.on_main(lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(ConfigError, match="^x.y: bad$"):
        ctx.on_main(lambda: (_ for _ in ()).throw(ConfigError("x.y", "bad")))
    ctx.barrier()
    ctx.teardown()
    g = torch.Generator().manual_seed(7 + 3)  # DistributedSampler: seed + epoch
    assert shard_indices(10, epoch=3, seed=7, ctx=ctx).tolist() == torch.randperm(10, generator=g).tolist()
    idx = eval_indices(7, ctx)
    assert idx.tolist() == list(range(7))
    assert torch.equal(gather_by_index(idx.double(), idx, 7, ctx), torch.arange(7.0, dtype=torch.float64))


def test_gather_by_index_refuses_missing_rows():
    ctx = DistContext()
    with pytest.raises(ValueError, match="2 of 5 examples were not computed"):
        gather_by_index(torch.zeros(3), torch.tensor([0, 1, 2]), 5, ctx)


def test_seed_api_without_a_process_group(no_launcher):
    model = C.make_model(0)
    opt = DistributedOptimizer(model=model, optimizer_type="adamw", learning_rate=1e-4, world_size=1, weight_decay=0.05)
    assert opt.model is model and type(opt.optimizer).__name__ == "AdamW" and opt.lr_scale == 1.0
    assert opt.param_groups[0]["lr"] == 1e-4 and opt.param_groups[0]["weight_decay"] == 0.05
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    opt.zero_grad()
    assert set(opt.state_dict()) == {"state", "param_groups"}
    with pytest.raises(ConfigError, match=r"^distributed.world_size: got 4 but no process group is initialized; "
                                          r"launch with torchrun --nproc_per_node=4"):
        DistributedOptimizer(model=model, optimizer_type="adamw", learning_rate=1e-4, world_size=4)
    with pytest.raises(ConfigError, match=r"^optimizer.lr: must be > 0"):
        DistributedOptimizer(model=model, optimizer_type="adamw", learning_rate=-1.0)


def test_load_checkpoint_refuses_unreadable_files_and_checks_before_loading(tmp_path, no_launcher):
    from survopt_hydra import build_optimizer

    ctx = DistContext()
    model = C.make_model(0)
    opt = build_optimizer(model, "sgd", lr=0.1)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"^trainer.resume: cannot resume from .*bad.pt \(.*\); use a new"):
        load_checkpoint(tmp_path / "bad.pt", model, ctx, optimizer=opt, error_key="trainer.resume",
                        error_hint="use a new hydra.run.dir")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError, match=r"^checkpoint: cannot resume from .*foreign.pt \(not a survopt"):
        load_checkpoint(tmp_path / "foreign.pt", model, ctx, optimizer=opt)
    save_checkpoint(tmp_path / "ok.pt", model, ctx, optimizer=opt, extra={"config": {"lr": 0.1}})
    other = C.make_model(5)
    before = C.flat_params(other).clone()

    def refuse(extra):
        raise ConfigError("trainer.resume", f"written with a different config ({extra['config']})")

    with pytest.raises(ConfigError, match="different config"):
        load_checkpoint(tmp_path / "ok.pt", other, ctx, optimizer=build_optimizer(other, "sgd", lr=0.1),
                        before_load=refuse)
    assert torch.equal(C.flat_params(other), before)  # nothing was loaded
    assert load_checkpoint(tmp_path / "ok.pt", other, ctx, optimizer=build_optimizer(other, "sgd", lr=0.1)) == {
        "config": {"lr": 0.1}}
    assert torch.equal(C.flat_params(other), C.flat_params(model))


def test_checkpoint_carries_the_package_checksum_and_a_damaged_one_is_refused(tmp_path, no_launcher):
    """One checkpoint format: the distributed file is checksummed as the app's last.pt is."""
    from survopt_hydra import build_optimizer
    from survopt_hydra.integrity import CHECKSUM_KEY, checksum

    ctx = DistContext()
    model = C.make_model(0)
    save_checkpoint(tmp_path / "ok.pt", model, ctx, optimizer=build_optimizer(model, "sgd", lr=0.1))
    state = torch.load(tmp_path / "ok.pt", weights_only=True)
    assert state[CHECKSUM_KEY] == checksum(state)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1.0  # damaged after writing; checksum kept
    torch.save(state, tmp_path / "damaged.pt")
    other = C.make_model(5)
    before = C.flat_params(other).clone()
    with pytest.raises(ConfigError, match=r"^checkpoint: cannot resume from .*damaged.pt \(damaged: checksum mismatch\)$"):
        load_checkpoint(tmp_path / "damaged.pt", other, ctx, optimizer=build_optimizer(other, "sgd", lr=0.1))
    assert torch.equal(C.flat_params(other), before)


# ----------------------------------------------------------------------------------
# Slurm / submitit through Hydra
# ----------------------------------------------------------------------------------
def test_slurm_launcher_config_composes_without_a_cluster():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_module

    with initialize_config_module("survopt_hydra.app.train_conf", version_base="1.3"):
        cfg = compose(overrides=["+distributed=ddp", "hydra/launcher=survopt_slurm", "hydra.launcher.nodes=2",
                                 "hydra.launcher.tasks_per_node=8", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 8, 8)
    assert launcher.partition == "gpu" and launcher.max_num_timeout == 3
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "survopt_slurm"
    with pytest.raises(Exception, match="tasks_per_nod"):  # the launcher schema checks keys
        with initialize_config_module("survopt_hydra.app.train_conf", version_base="1.3"):
            compose(overrides=["hydra/launcher=survopt_slurm", "hydra.launcher.tasks_per_nod=2"],
                    return_hydra_config=True)


def test_slurm_task_environment_becomes_the_rank(no_launcher, monkeypatch):
    """Inside a submitit Slurm job, SLURM_* variables give rank, world size and master."""
    pytest.importorskip("submitit")
    from survopt_hydra.distributed import submitit_env

    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.setenv(key, "x")  # registered so monkeypatch restores what export() writes
        monkeypatch.delenv(key)
    env = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
           "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1",
           "SLURM_JOB_NODELIST": "gpu[07-08]"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert submitit_env() == {"rank": 5, "world_size": 8, "local_rank": 1}
    assert os.environ["MASTER_ADDR"] == "gpu07" and os.environ["RANK"] == "5"
    assert 20000 <= int(os.environ["MASTER_PORT"]) <= 60000


@pytest.mark.slow
def test_hydra_sweep_on_submitit_runs_one_multi_rank_job_per_point(tmp_path):
    """``-m hydra/launcher=submitit_local tasks_per_node=2``: the Slurm code path, locally."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cmd = [sys.executable, str(WORKERS / "hydra_app.py"), "-m", "hydra/launcher=submitit_local",
           "hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=3", "optimizer.lr=0.1,0.2",
           f"hydra.sweep.dir={tmp_path}"]
    proc = run_command(cmd)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads((tmp_path / str(i) / "result.json").read_text()) for i in range(2)]
    for lr, res in zip((0.1, 0.2), results):
        assert (res["world_size"], res["launcher"], res["strategy"], res["lr"]) == (2, "submitit", "ddp", lr)
        assert res["ranks_agree"]
    assert results[0]["params"] != results[1]["params"]


@pytest.mark.slow
def test_hydra_sweep_under_one_torchrun_runs_each_point_on_all_ranks(tmp_path):
    """``torchrun ... app.py -m a=1,2``: every rank runs every sweep point (one group, kept between points)."""
    torchrun(WORKERS / "hydra_app.py", "-m", "optimizer.lr=0.1,0.2", f"hydra.sweep.dir={tmp_path}")
    results = [json.loads((tmp_path / str(i) / "result.json").read_text()) for i in range(2)]
    for lr, res in zip((0.1, 0.2), results):
        assert (res["world_size"], res["launcher"], res["lr"]) == (2, "torchrun", lr)
        assert res["ranks_agree"]
    # same computation as the single-process model on the full batch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    ref = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert C.max_diff(torch.tensor(results[0]["params"]), ref) <= 1e-6


# ----------------------------------------------------------------------------------
# The app under torchrun (run once survopt-train accepts distributed=...)
# ----------------------------------------------------------------------------------
def _trainer_runs_distributed() -> bool:
    source = ROOT / "survopt_hydra" / "app" / "trainer.py"
    return source.is_file() and "survopt-train runs one process" not in source.read_text()


app_distributed = pytest.mark.skipif(
    not _trainer_runs_distributed(),
    reason="survopt-train still refuses distributed.strategy != none (trainer integration: docs/distributed.md)")
APP_RUN = ["trainer.max_epochs=6", "trainer.checkpoint_every=1", "trainer.early_stopping_patience=null", "trainer.log_interval=2"]


def train_app(run_dir: Path, *overrides: str, nproc: int = 0) -> subprocess.CompletedProcess:
    """``scripts/train.py`` as one process (nproc 0) or under ``torchrun --nproc_per_node``."""
    launch = [sys.executable] if not nproc else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    proc = run_command([*launch, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={run_dir}", *overrides])
    assert proc.returncode == 0, proc.stderr[-6000:]
    return proc


def app_metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds", None)
    return metrics


@pytest.mark.slow
@app_distributed
def test_app_ddp_reaches_the_single_process_cindex(tmp_path):
    run = ["trainer.max_epochs=30"]
    train_app(tmp_path / "one", *run)
    proc = train_app(tmp_path / "ddp", *run, "distributed=ddp", nproc=2)
    single, ddp = app_metrics(tmp_path / "one"), app_metrics(tmp_path / "ddp")
    assert abs(single["test_cindex"] - ddp["test_cindex"]) <= 0.02, (single, ddp)
    assert proc.stdout.count("test C-index:") == 1  # only rank 0 prints and writes


@pytest.mark.slow
@app_distributed
@pytest.mark.parametrize("overrides", [["distributed=ddp"], ["distributed=zero"], ["distributed=fsdp"],
                                       ["distributed=fsdp", "distributed.checkpoint=sharded"],
                                       ["distributed=ddp", "ema=ema", "ema.decay=0.9"]],
                         ids=["ddp", "zero", "fsdp", "fsdp-sharded", "ddp-ema"])
def test_app_stop_and_rerun_under_torchrun_resumes_identically(tmp_path, overrides):
    run = [*APP_RUN, *overrides]
    train_app(tmp_path / "full", *run, nproc=2)
    train_app(tmp_path / "resumed", *run, "trainer.stop_after_epochs=3", nproc=2)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    train_app(tmp_path / "resumed", *run, nproc=2)  # the same torchrun command again
    assert app_metrics(tmp_path / "full") == app_metrics(tmp_path / "resumed")
    assert epoch_rows(tmp_path / "full") == epoch_rows(tmp_path / "resumed")


def test_the_apps_ddp_model_is_collected_before_its_process_group_is_destroyed(no_launcher, tmp_path):
    """``survopt-train`` freezes start-up's objects (``gc.freeze``) to spare training the rescans; frozen
    objects are never collected, so the run must be built after the freeze. When the trainer was frozen
    with them, the DDP wrapper outlived ``destroy_process_group`` into interpreter exit, where gloo
    aborted a rank now and then (CI: "terminate called without an active exception")."""
    proc = run_command([sys.executable, str(WORKERS / "app_release_probe.py"), "distributed=ddp",
                        "distributed.allow_single_process=true", "trainer.max_epochs=1",
                        "trainer.early_stopping_patience=null", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("after teardown:")]
    assert lines and lines[-1] == "after teardown: DistributedDataParallel->NoneType", proc.stdout[-2000:]


def epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    import csv

    with (run_dir / "epochs.csv").open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.slow
@app_distributed
def test_app_sharded_checkpoints_hold_shards_not_full_weights(tmp_path):
    """distributed.checkpoint=sharded: each rank writes its shards (DCP); last.pt only names the folder;
    folders no checkpoint names any more are removed; a missing folder is refused in one line."""
    import shutil

    run = [*APP_RUN, "distributed=fsdp", "distributed.checkpoint=sharded", "trainer.stop_after_epochs=4"]
    if not fully_shard_available():
        pytest.skip("FSDP2 fully_shard not available in this torch build")
    train_app(tmp_path, *run, nproc=2)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    prev = torch.load(tmp_path / "last.prev.pt", weights_only=True)
    assert last["model"] is None and last["engine"]["optimizer"] is None and last["progress"]["epoch"] == 4
    folders = sorted(p.name for p in tmp_path.glob("last.pt.shards-*"))
    assert folders == sorted({last["sharded"], prev["sharded"]}) and len(folders) == 2  # 4 saves, 2 kept
    assert sorted(p.name for p in (tmp_path / last["sharded"]).glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    shutil.rmtree(tmp_path / last["sharded"])
    before = (tmp_path / "last.pt").read_bytes()
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = run_command([*launch, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={tmp_path}", *run[:-1]])
    assert proc.returncode != 0 and "exitcode: 2" in proc.stderr  # torchrun reports each rank's exit status 2
    assert f"error: distributed.checkpoint: {tmp_path / last['sharded']} (the checkpoint's model/optimizer shards) " \
           "is missing" in proc.stderr and "survopt_hydra/" not in proc.stderr  # one line, no traceback of ours
    assert (tmp_path / "last.pt").read_bytes() == before


@pytest.mark.slow
@app_distributed
def test_app_ranks_hold_only_their_shard_and_score_every_row(tmp_path):
    """Issue 27, item 5: under torchrun each rank keeps the inputs of its own rows only, so the
    training tensors per rank are half of one process's (ceil(n / 2) rows), every row is held by
    one rank (one repeat pads the shards to equal size); and the run's figures are those of the
    whole data: the test C-index and the Breslow baseline, recomputed in one process from best.pt
    on every row, equal what the sharded run wrote."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_cohort import write_cohort

    from survopt_hydra.app.components import evaluate
    from survopt_hydra.app.predictor import BASELINE_KNOTS, split_risks
    from survopt_hydra.survival.compaction import compact_baseline
    from survopt_hydra.app.trainer import load_best
    from survopt_hydra.survival.breslow import BreslowBaseline

    cohort_file = write_cohort(tmp_path / "cohort.csv", 2001)
    torchrun(WORKERS / "shard_worker.py", str(tmp_path / "out"), str(cohort_file))
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["ok"] for r in ranks), [r.get("traceback") for r in ranks]
    run_dir = tmp_path / "out" / "run"
    _, cohort, model, _ = load_best(run_dir, {"path": str(cohort_file)})  # one process, every row
    for name in ("train", "val", "test"):
        n = len(getattr(cohort, name))
        full_bytes = getattr(cohort, name).x.numel() * 4
        held = [r["held"][name] for r in ranks]
        assert all(h["n"] == n and len(h["rows"]) == math.ceil(n / 2) for h in held), name
        assert all(h["x_bytes"] == math.ceil(n / 2) * 20 * 4 <= full_bytes / 2 + 20 * 4 for h in held), name
        rows = held[0]["rows"] + held[1]["rows"]
        assert sorted(set(rows)) == list(range(n)) and len(rows) - n == n % 2, name  # all, one repeat if odd
    assert ranks[0]["held"]["train"]["local_rows"] == math.ceil(len(cohort.train) / 2)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert ranks[0]["metrics"]["test_cindex"] == ranks[1]["metrics"]["test_cindex"] == metrics["test_cindex"]
    c, _ = evaluate(model, cohort.test, "breslow")
    assert c == pytest.approx(metrics["test_cindex"], abs=1e-9)
    base = BreslowBaseline.fit(split_risks(model, cohort.train), cohort.train.durations, cohort.train.events)
    stored = json.loads((run_dir / "predictor.json").read_text())["baseline"]
    ref = compact_baseline(base.to_dict(), BASELINE_KNOTS)
    assert stored["exact"] and ref["times"] == stored["times"]
    assert ref["shift"] == pytest.approx(stored["shift"], rel=1e-6)
    assert torch.allclose(torch.tensor(ref["cumhaz"]), torch.tensor(stored["cumhaz"]), rtol=1e-5, atol=0)
