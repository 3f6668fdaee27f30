"""survopt_hydra as a guest in other people's Hydra apps, installed as a user installs it (issue 26).

Every app runs in two fresh venvs (``tests/guest_envs.py``): one with the built wheel, one with
``pip install -e`` of a copy of the sources; both see the dev venv's torch/hydra/Lightning and
nothing of this checkout. The apps are layouts we did not invent:

* ``tests/guest_apps/``: someone's existing app with its own ``optimizer/adamw`` (a YAML file in
  ``yaml_app``, a ConfigStore entry in ``store_app``), run as it is and opted in;
* ``tests/external_app``: a plain ``@hydra.main`` training loop;
* ``tests/zen_app``: hydra-zen (``store``, ``builds``, ``make_config``, ``zen``) on the library's dataclasses;
* ``tests/lht_app``: the lightning-hydra-template layout (``configs/`` with data, model, callbacks, logger,
  trainer, paths, extras, hydra, experiment, hparams_search, local, debug), the model node holding only the
  optimizer and scheduler partials beside the net; Lightning clips and steps the schedulers.

Each opted-in app adds one line (``hydra.searchpath: [pkg://survopt_hydra.conf]``) and nothing else.
All invocations run at once (a few at a time) in one module fixture; the references are torch's own
classes, the apps' own files and hand-computed rules. Every app writes ``result.json`` (and its
composed config pickled with the standard library) into its Hydra output folder.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import pickle
import shutil
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch.optim import lr_scheduler as torch_sched

import guest_envs

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
INSTALLED = ("wheel", "editable")
WHEEL = ("wheel",)  # the features run from the wheel; each app's main case from both installs
ALL = ("bare",) + INSTALLED
APPS = {  # app -> (folder, script)
    "yaml_app": (TESTS / "guest_apps" / "yaml_app", "app.py"),
    "store_app": (TESTS / "guest_apps" / "store_app", "app.py"),
    "store_optin": (TESTS / "guest_apps" / "store_app", "optin_app.py"),
    "plain": (TESTS / "external_app", "app.py"),
    "zen": (TESTS / "zen_app", "app.py"),
    "lht": (TESTS / "lht_app", "src/train.py"),
}
LIBRARY_OPTIONS = {group.name: sorted(p.stem for p in group.glob("*.yaml")) for group in (REPO / "conf").iterdir()
                   if group.is_dir()}
#: options that need more than their name on the command line, or cannot share a sweep
NOT_SWEPT = {"optimizer": {"sparse_adam", "lbfgs", "custom"}, "scheduler": {"plateau"}}
SWEPT_OPTIMIZERS = [o for o in LIBRARY_OPTIONS["optimizer"] if o not in NOT_SWEPT["optimizer"]]
SWEPT_SCHEDULERS = [s for s in LIBRARY_OPTIONS["scheduler"] if s not in NOT_SWEPT["scheduler"]]

CASES = [  # (app, case, arguments, venvs); the Lightning ones first: they take longest
    ("lht", "example", ["experiment=example"], INSTALLED),
    ("lht", "finetune", ["+preset@model=finetune"], WHEEL),
    ("lht", "cosine_plateau", ["experiment=cosine_plateau"], WHEEL),
    ("lht", "grid", ["hparams_search=optimizer_grid"], WHEEL),
    ("lht", "bad", ["model.optimizer.lr=-1"], WHEEL),
    ("plain", "optimizers", ["-m", "optimizer=" + ",".join(SWEPT_OPTIMIZERS)], INSTALLED),
    ("plain", "schedulers", ["-m", "scheduler=" + ",".join(SWEPT_SCHEDULERS), "optimizer=sparse_adam", "train=false",
                             "epochs=40", "batches=3"], WHEEL),
    ("plain", "engine", ["-m", "clipping=" + ",".join(LIBRARY_OPTIONS["clipping"]),
                         "amp=" + ",".join(LIBRARY_OPTIONS["amp"]), "ema=ema"], WHEEL),
    ("plain", "distributed", ["-m", "distributed=" + ",".join(LIBRARY_OPTIONS["distributed"]),
                              "distributed.allow_single_process=true"], WHEEL),
    ("plain", "presets", ["-m", "optimizer=adamw,sgd", "+preset=finetune,large_model"], WHEEL),
    ("plain", "muon_plateau", ["optimizer=muon", "scheduler=plateau", "scheduler.monitor=val_loss",
                               "scheduler.patience=0", "scheduler.factor=0.5", "scheduler.threshold=0.1"], WHEEL),
    ("plain", "custom", ["optimizer=custom", "optimizer.cls=torch.optim.Adamax", "+optimizer.kwargs.betas=[0.8,0.9]"],
     WHEEL),
    ("plain", "lbfgs", ["optimizer=lbfgs"], WHEEL),
    ("plain", "bad", ["optimizer._partial_=true", "optimizer.lr=-1"], WHEEL),
    ("zen", "main", ["-m", "optimizer=zen_adamw,muon"], INSTALLED),
    ("zen", "finetune", ["+preset=finetune"], WHEEL),
    ("zen", "sgd_large", ["optimizer=sgd", "+preset=large_model"], WHEEL),
    ("zen", "bad", ["optimizer.lr=-1"], WHEEL),
    ("yaml_app", "own", [], ALL),
    ("store_app", "own", [], ALL),
    ("yaml_app", "help", ["--help"], ALL),
    ("yaml_app", "optin", ["--config-name", "optin", "-m", "optimizer=adamw,sgd"], INSTALLED),
    ("store_app", "optin", ["--config-name", "optin", "-m", "optimizer=adamw,sgd"], INSTALLED),
    ("store_optin", "own", ["-m", "optimizer=adamw,sgd"], INSTALLED),
]


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    folder: Path  # the app's copy: its Hydra output folders are inside

    def ok(self) -> "Run":
        assert self.rc == 0, f"rc {self.rc}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        return self

    def results(self) -> list[dict]:
        """Every job's result.json (one per job of a multirun, in job order)."""
        def job(path: Path) -> tuple:
            return (int(path.parent.name) if path.parent.name.isdigit() else -1, str(path))
        return [json.loads(p.read_text()) for p in sorted(self.folder.rglob("result.json"), key=job)]

    def result(self, **choices: str) -> dict:
        """The one job whose Hydra choices include ``choices``."""
        found = [r for r in self.ok().results() if all(r["choices"].get(k) == v for k, v in choices.items())]
        assert len(found) == 1, (choices, [r["choices"] for r in self.results()])
        return found[0]

    def printed(self) -> list[dict]:
        return [json.loads(line[len("RESULT "):]) for line in self.stdout.splitlines() if line.startswith("RESULT ")]

    def output_dir(self) -> Path:
        """A single run's Hydra output folder."""
        return next(self.folder.rglob("result.json")).parent


def _execute(python: Path, folder: Path, script: str, args: list[str]) -> Run:
    env = {**guest_envs.clean_env(), "OMP_NUM_THREADS": "1"}  # several apps share few cores
    proc = subprocess.run([str(python), script, *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=900)
    return Run(proc.returncode, proc.stdout, proc.stderr, folder)


@pytest.fixture(scope="module")
def envs(tmp_path_factory) -> dict:
    return guest_envs.make_envs(tmp_path_factory.mktemp("guest_envs"))


@pytest.fixture(scope="module")
def runs(envs, tmp_path_factory) -> dict[tuple[str, str, str], Run]:
    """(app, case, venv) -> Run, for every case of CASES, each in a fresh copy of its app."""
    root = tmp_path_factory.mktemp("guest_runs")
    ignore = shutil.ignore_patterns("__pycache__", "outputs", "multirun", "logs")
    jobs = {}
    for app, case, args, kinds in CASES:
        folder, script = APPS[app]
        for kind in kinds:
            copy = root / kind / f"{app}-{case}"
            shutil.copytree(folder, copy, ignore=ignore)
            jobs[app, case, kind] = (envs[kind]["python"], copy, script, args)
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 1) as pool:
        futures = {key: pool.submit(_execute, *job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def _refused_in_one_line(run: Run, line: str) -> None:
    assert run.rc != 0, run.stdout[-2000:]
    assert line in run.stderr.splitlines(), run.stderr[-3000:]
    assert "Traceback" not in run.stderr and not run.results(), run.stderr[-3000:]


def _pickled_equals_composed(pkl: Path) -> None:
    """The app's pickle of its composed config, read back here, equals what Hydra saved as composed."""
    restored = pickle.loads(pkl.read_bytes())
    saved = OmegaConf.load(pkl.parent / ".hydra" / "config.yaml")
    assert OmegaConf.to_container(restored) == OmegaConf.to_container(saved)


# ------------------------------------------------------------------ references


def _trajectory(make, lr: float, epochs: int, per_epoch: int = 1, per_step: bool = False,
                metrics: list[float] | None = None, opt_cls=torch.optim.SGD) -> list[float]:
    """LR at the start of each epoch, torch's schedulers stepped like the apps step them."""
    opt = opt_cls([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedulers = make(opt)
    out = []
    for epoch in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        if per_step:
            for _ in range(per_epoch):
                schedulers[0].step()
            continue
        for s in schedulers:  # in the apps' order: plateau after validation, with its metric
            s.step(metrics[epoch]) if isinstance(s, torch_sched.ReduceLROnPlateau) else s.step()
    return out


def _warmup_cosine(warm: int, epochs: int, start: float = 0.01):
    """Linear warm-up from ``start`` x LR over ``warm`` epochs, then cosine to 0 over the rest."""
    S = torch_sched
    return lambda o: [S.SequentialLR(o, [S.LinearLR(o, start, 1.0, warm), S.CosineAnnealingLR(o, T_max=epochs - warm)],
                                     milestones=[warm])]


def _torch_schedule(name: str, lr: float, epochs: int, per_epoch: int) -> list[float]:
    """Each scheduler option at its defaults, as torch's own classes (or the documented formula) give it."""
    S, E = torch_sched, epochs
    makers = {
        "cosine": lambda o: [S.CosineAnnealingLR(o, T_max=E)],
        "warmup_cosine": _warmup_cosine(5, E),
        "cosine_warm_restarts": lambda o: [S.CosineAnnealingWarmRestarts(o, T_0=10)],
        "step": lambda o: [S.StepLR(o, 30, 0.1)],
        "multistep": lambda o: [S.MultiStepLR(o, [30, 60, 90], 0.1)],
        "exponential": lambda o: [S.ExponentialLR(o, 0.95)],
        "linear_warmup": lambda o: [S.LinearLR(o, 0.01, 1.0, 5)],
        "polynomial": lambda o: [S.PolynomialLR(o, total_iters=E, power=1.0)],
    }
    if name in ("none", "constant"):
        return [lr] * E
    if name == "onecycle":  # per optimizer step
        return _trajectory(lambda o: [S.OneCycleLR(o, max_lr=lr, total_steps=E * per_epoch)], lr, E, per_epoch, True)
    if name == "inverse_sqrt":  # lr x sqrt(timescale / (t + timescale)), timescale 1 without a warmup
        return [lr * math.sqrt(1 / (t + 1)) for t in range(E)]
    if name == "wsd":  # constant, then linear to 0 over the last 10% of the run
        stable = E - round(0.1 * E)
        return [lr if t < stable else lr * (1 - (t - stable) / (E - stable)) for t in range(E)]
    return _trajectory(makers[name], lr, E)


def _torch_defaults(qualname: str) -> dict:
    module, cls = qualname.rsplit(".", 1)
    optimizer = getattr(importlib.import_module(module), cls)(torch.nn.Linear(2, 2).parameters())
    return {k: list(v) if isinstance(v, tuple) else v for k, v in optimizer.defaults.items()}


def _group_of(result: dict, param: str) -> dict:
    return next(g for g in result["groups"] if param in g["params"])


# ------------------------------------------------------------------ the wheel


def test_wheel_ships_every_module_and_config_and_no_plugin(envs):
    names = set(zipfile.ZipFile(envs["wheel"]["wheel"]).namelist())
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "survopt_hydra").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert sources - names == set()  # no subpackage left out of pyproject's list
    from survopt_hydra.schemas import GROUPS

    options = {f"survopt_hydra/conf/{group}/{option}.yaml" for group, opts in GROUPS.items() for option in opts}
    presets = {f"survopt_hydra/conf/preset/{option}.yaml" for option in LIBRARY_OPTIONS["preset"]}
    shipped = {n for n in names if n.startswith("survopt_hydra/conf/")}
    assert options | presets | {"survopt_hydra/conf/__init__.py"} == shipped
    app_conf = {p.relative_to(REPO).as_posix() for p in (REPO / "survopt_hydra/app/train_conf").rglob("*.yaml")}
    assert app_conf - names == set() and app_conf
    assert {f"survopt_hydra/datasets/{f}" for f in ("support_train.csv", "support_test.csv", "README.md")} <= names
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"survopt_hydra", "survopt_hydra-0.1.0.dist-info"}, tops  # no hydra_plugins: no search-path plugin


def test_core_install_requires_no_survival_or_plotting_package(envs):
    wheel = zipfile.ZipFile(envs["wheel"]["wheel"])
    meta = next(n for n in wheel.namelist() if n.endswith("METADATA"))
    lines = wheel.read(meta).decode().splitlines()
    core = {ln.split(":", 1)[1].split(";")[0].strip().split(">")[0].split("<")[0].split("=")[0].strip().lower()
            for ln in lines if ln.startswith("Requires-Dist:") and "extra ==" not in ln}
    assert core == {"torch", "hydra-core", "omegaconf", "pyyaml", "numpy"}, core
    app_extra = [ln for ln in lines if ln.startswith("Requires-Dist:") and 'extra == "app"' in ln]
    assert any("lifelines" in ln for ln in app_extra) and any("matplotlib" in ln for ln in app_extra)


@pytest.mark.parametrize("kind", INSTALLED)
def test_installed_copy_finds_its_configs_and_data(envs, kind):
    """``pkg://`` paths resolve inside the installed copy (site-packages, or the editable source copy)."""
    probe = ("import importlib.resources as r, survopt_hydra\n"
             "from survopt_hydra.survival.data import load_csv, resolve_path\n"
             "p = resolve_path('pkg://survopt_hydra/datasets/support_test.csv')\n"
             "rows = len(load_csv(str(p), 'duration', 'event'))\n"
             "print(survopt_hydra.__file__, r.files('survopt_hydra.conf'), p.resolve(), rows)")
    python = envs[kind]["python"]
    module, conf, data, rows = guest_envs.run([python, "-c", probe], cwd=python.parent,
                                              env=guest_envs.clean_env()).stdout.split()
    home = str(envs[kind]["src"]) if kind == "editable" else str(python.parents[1])
    for path in (module, conf, data):
        assert path.startswith(home) and not path.startswith(str(REPO)), path
    assert (Path(conf) / "optimizer" / "adamw.yaml").is_file() and rows == "1775"


# ------------------------------------------------------------------ someone's existing app


@pytest.mark.parametrize("app,lr", [("yaml_app", 0.05), ("store_app", 0.123)])
def test_an_app_that_does_not_opt_in_runs_unchanged(runs, app, lr):
    """Its own optimizer/adamw (a YAML file; a ConfigStore entry), composed and built exactly as
    in a venv without the package, which it never imports."""
    printed = {kind: runs[app, "own", kind].ok().printed() for kind in ALL}
    assert printed["bare"] == [{"node": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": lr},
                                "optimizer": "torch.optim.adamw.AdamW", "lr": lr, "survopt_hydra_imported": False}]
    assert printed["wheel"] == printed["bare"] and printed["editable"] == printed["bare"]
    for kind in ALL:
        assert "schema" not in runs[app, "own", kind].stderr


def test_installing_adds_no_group_to_an_app(runs):
    helps = {kind: runs["yaml_app", "help", kind].ok().stdout for kind in ALL}
    assert helps["wheel"] == helps["bare"] and helps["editable"] == helps["bare"]
    groups = helps["bare"].split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    assert [ln.strip() for ln in groups.splitlines() if ln.strip()][1:] == ["optimizer: adamw"]


@pytest.mark.parametrize("kind", INSTALLED)
def test_an_app_that_opts_in_keeps_its_own_yaml_option(runs, kind):
    run = runs["yaml_app", "optin", kind].ok()
    own, library = run.printed()
    assert own == {"node": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.05},
                   "optimizer": "torch.optim.adamw.AdamW", "lr": 0.05, "survopt_hydra_imported": True}
    assert library["node"]["_target_"] == "survopt_hydra.optim.build_optimizer" and library["node"]["name"] == "sgd"
    assert library["optimizer"] == "torch.optim.sgd.SGD"  # the opt-in works: the library's sgd is there
    assert "validated against ConfigStore schema" not in run.stderr


@pytest.mark.parametrize("kind", INSTALLED)
def test_an_app_that_opts_in_reaches_the_library_options_beside_its_configstore_ones(runs, kind):
    _, library = runs["store_app", "optin", kind].ok().printed()
    assert library["node"]["name"] == "sgd" and library["optimizer"] == "torch.optim.sgd.SGD"


@pytest.mark.parametrize("kind", INSTALLED)
def test_a_configstore_app_opting_in_from_python_keeps_its_own_option(runs, kind):
    """store_options(): the library's options enter the ConfigStore except where the app stored its own."""
    run = runs["store_optin", "own", kind].ok()
    own, library = run.printed()
    assert own["node"] == {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.123} and own["lr"] == 0.123
    assert library["node"]["_target_"] == "survopt_hydra.optim.build_optimizer" and library["node"]["name"] == "sgd"
    assert "validated against ConfigStore schema" not in run.stderr


@pytest.mark.parametrize("kind", INSTALLED)
def test_a_configstore_app_opting_in_by_search_path_is_told_in_one_line(runs, kind):
    """The search path shadows a ConfigStore entry of the same name (Hydra searches the ConfigStore last):
    never silently - one line names the entry and the opt-in that keeps it."""
    run = runs["store_app", "optin", kind].ok()
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: hydra.searchpath")]
    assert len(warnings) == 1 and "optimizer/adamw" in warnings[0] and "store_options()" in warnings[0], run.stderr


# ------------------------------------------------------------------ a plain @hydra.main loop


@pytest.mark.parametrize("kind", INSTALLED)
def test_plain_app_uses_the_installed_copy(runs, envs, kind):
    result = runs["plain", "optimizers", kind].result(optimizer="adamw")
    home = str(envs[kind]["src"]) if kind == "editable" else str(envs[kind]["python"].parents[1])
    assert result["survopt_hydra"].startswith(home) and not result["survopt_hydra"].startswith(str(REPO))


@pytest.mark.parametrize("kind", INSTALLED)
def test_plain_every_optimizer_is_torchs_class_with_torchs_defaults(runs, kind):
    from survopt_hydra.schemas.optimizer import OPTIM_INFO

    run = runs["plain", "optimizers", kind].ok()
    assert sorted(r["choices"]["optimizer"] for r in run.results()) == SWEPT_OPTIMIZERS
    for result in run.results():
        name = result["choices"]["optimizer"]
        assert math.isfinite(result["final_loss"]) and len(result["trace"]) == 8  # 4 epochs x 2 steps
        if name == "muon":
            continue  # two torch optimizers: test_plain_muon_*
        info = OPTIM_INFO[name]
        want_cls = f"{info.module}.{info.cls}"
        assert result["optimizer"].rsplit(".", 1)[1] == info.cls and result["optimizer"].startswith(info.module), name
        want = _torch_defaults(want_cls)
        # documented: implementation=auto picks the fused kernel; SGD's momentum is 0.9
        diff = {k: (result["defaults"].get(k), v) for k, v in want.items() if result["defaults"].get(k) != v}
        assert set(diff) <= {"fused"} | ({"momentum"} if name == "sgd" else set()), (name, diff)
        # timm's policy: no decay on 1-D parameters and on what model.no_weight_decay() names
        if "weight_decay" in result["defaults"]:
            assert sorted(_group_of(result, "body.weight")["params"]) == ["body.weight", "head.weight"], name
            for p in ("pos_embed", "gate", "body.bias", "norm.weight", "head.bias"):
                assert _group_of(result, p)["weight_decay"] == 0.0, (name, p)
    adamw = run.results()[[r["choices"]["optimizer"] for r in run.results()].index("adamw")]
    assert _group_of(adamw, "head.weight")["weight_decay"] == 0.01  # torch's AdamW default
    assert adamw["lrs"] == pytest.approx(_torch_schedule("cosine", 1e-3, 4, 2), rel=1e-12)
    _pickled_equals_composed(next(run.folder.rglob("cfg.pkl")))


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_every_scheduler_follows_torch(runs, kind):
    run = runs["plain", "schedulers", kind].ok()
    assert sorted(r["choices"]["scheduler"] for r in run.results()) == SWEPT_SCHEDULERS
    for result in run.results():
        name = result["choices"]["scheduler"]
        assert result["optimizer"] == "torch.optim.sparse_adam.SparseAdam"
        assert result["lrs"] == pytest.approx(_torch_schedule(name, 1e-3, 40, 3), rel=1e-9, abs=1e-15), name


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_plateau_follows_torch(runs, kind):
    result = runs["plain", "muon_plateau", kind].ok().results()[0]
    want = _trajectory(lambda o: [torch_sched.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=0, threshold=0.1)],
                       1e-3, 4, metrics=result["val_losses"])
    assert result["lrs"] == pytest.approx(want, rel=1e-12) and want[-1] < want[0]


def _muon_halves(result: dict) -> dict[str, list[str]]:
    halves: dict[str, list[str]] = {"muon": [], "adamw": []}
    for group in result["groups"]:
        halves[group["name"].split("/", 1)[0]] += group["params"]
    return {k: sorted(v) for k, v in halves.items()}


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_muon_takes_the_hidden_matrices(runs, kind):
    result = runs["plain", "muon_plateau", kind].ok().results()[0]
    assert result["optimizer"] == "survopt_hydra.optim.muon.MuonWithAdamW"
    # the documented recipe: Muon for hidden 2-D matrices; AdamW for embeddings, the head, biases and norms
    assert _muon_halves(result) == {"muon": ["body.weight", "gate"],
                                    "adamw": ["body.bias", "head.bias", "head.weight", "norm.bias", "norm.weight",
                                              "pos_embed"]}


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_muon_honours_no_weight_decay_in_both_halves(runs, kind):
    result = runs["plain", "muon_plateau", kind].ok().results()[0]
    assert _group_of(result, "gate")["name"].startswith("muon/")
    assert _group_of(result, "pos_embed")["name"].startswith("adamw/")
    assert _group_of(result, "gate")["weight_decay"] == 0.0 and _group_of(result, "pos_embed")["weight_decay"] == 0.0


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_clipping_amp_and_ema_follow_torch(runs, kind):
    run = runs["plain", "engine", kind].ok()
    assert len(run.results()) == len(LIBRARY_OPTIONS["clipping"]) * len(LIBRARY_OPTIONS["amp"])
    with torch.autocast("cpu", dtype=torch.float16):  # torch's own answer: does CPU autocast take fp16?
        fp16 = torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float16
    for result in run.results():
        clipping, amp = result["choices"]["clipping"], result["choices"]["amp"]
        rec = result["clip"]
        params = {n: _with_grad(g) for n, g in rec["before"].items()}
        if clipping == "norm":  # torch's own functions on the same gradients
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        elif clipping == "value":
            torch.nn.utils.clip_grad_value_(list(params.values()), 1.0)
        elif clipping == "adaptive":
            for n, p in params.items():
                p.grad = _agc(p.grad, torch.tensor(rec["weights"][n]), rec["shapes"][n])
        for n, p in params.items():
            assert rec["after"][n] == pytest.approx(p.grad.tolist(), rel=1e-5, abs=1e-7), (clipping, amp, n)
        if clipping != "none":
            assert rec["after"] != rec["before"], clipping  # the settings are tight enough to clip something
        expected_amp = {"none": ["None", False, "torch.float32"], "bf16": ["torch.bfloat16", False, "torch.bfloat16"],
                        "fp16": ["torch.float16", True, "torch.float16"] if fp16 else
                        ["torch.bfloat16", False, "torch.bfloat16"]}[amp]
        assert result["amp"] == expected_amp, (amp, result["amp"])
        # EMA by hand: the first update copies; the n-th later one keeps min(0.999, (1 + n) / (10 + n))
        assert result["ema"] == {"mode": "ema", "decay": 0.999, "warmup": True}
        average = None
        for n, point in enumerate(result["trace"]):
            d = min(0.999, (1 + n) / (10 + n))
            average = point["head.bias"] if average is None else d * average + (1 - d) * point["head.bias"]
            assert point["ema"] == pytest.approx(average, rel=1e-5, abs=1e-7)


def _with_grad(grad: list[float]) -> torch.Tensor:
    p = torch.zeros(len(grad), requires_grad=True)
    p.grad = torch.tensor(grad)
    return p


def _agc(g: torch.Tensor, w: torch.Tensor, shape: list[int]) -> torch.Tensor:
    g, w = g.reshape(shape), w.reshape(shape)
    dims = tuple(range(1, len(shape))) if len(shape) > 1 else None
    g_norm = g.norm(dim=dims, keepdim=True) if dims else g.norm()
    w_norm = w.norm(dim=dims, keepdim=True) if dims else w.norm()
    max_norm = 0.01 * w_norm.clamp(min=1e-3)
    return torch.where(g_norm > max_norm, g * max_norm / g_norm.clamp(min=1e-6), g).flatten()


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_distributed_strategies_train_like_one_process(runs, kind):
    run = runs["plain", "distributed", kind].ok()
    by = {r["choices"]["distributed"]: r for r in run.results()}
    assert sorted(by) == LIBRARY_OPTIONS["distributed"]
    assert by["none"]["distributed"]["model"] == "Net" and by["none"]["optimizer"] == "torch.optim.adamw.AdamW"
    for strategy in ("ddp", "zero", "fsdp"):  # one rank: the same steps as without a process group
        assert by[strategy]["distributed"]["process_group"] is True
        assert by[strategy]["final_loss"] == pytest.approx(by["none"]["final_loss"], rel=1e-6), strategy
    assert by["ddp"]["distributed"]["model"] == "DistributedDataParallel"
    assert by["zero"]["optimizer"].endswith("ZeroRedundancyOptimizer")
    assert "FSDP" in by["fsdp"]["distributed"]["model"]


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_presets(runs, kind):
    run = runs["plain", "presets", kind]
    finetune = run.result(preset="finetune", optimizer="adamw")
    assert finetune["choices"]["scheduler"] == "warmup_cosine" and finetune["optimizer"] == "torch.optim.adamw.AdamW"
    assert {(g["lr"], g["weight_decay"]) for g in finetune["groups"]} == {(1e-5, 1e-4), (1e-5, 0.0)}
    warm = max(1, round(0.05 * 4))  # 5% of the run, at least one epoch
    assert finetune["lrs"] == pytest.approx(_trajectory(_warmup_cosine(warm, 4), 1e-5, 4), rel=1e-12)
    sgd_finetune = run.result(preset="finetune", optimizer="sgd")
    assert sgd_finetune["optimizer"] == "torch.optim.sgd.SGD" and sgd_finetune["defaults"]["lr"] == 1e-5
    large = run.result(preset="large_model", optimizer="adamw")
    assert large["defaults"]["betas"] == [0.9, 0.95] and large["defaults"]["lr"] == 3e-3
    cosine = _trajectory(lambda o: [torch_sched.CosineAnnealingLR(o, T_max=4, eta_min=1e-6)], 3e-3, 4)
    assert large["lrs"] == pytest.approx(cosine, rel=1e-12)
    sgd = run.result(preset="large_model", optimizer="sgd")  # optimizer=sgd +preset=large_model
    assert sgd["optimizer"] == "torch.optim.sgd.SGD" and "betas" not in sgd["defaults"]
    assert (sgd["defaults"]["lr"], sgd["defaults"]["weight_decay"], sgd["defaults"]["momentum"]) == (3e-3, 1e-4, 0.9)
    assert sgd["lrs"] == pytest.approx(cosine, rel=1e-12)


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_custom_optimizer(runs, kind):
    result = runs["plain", "custom", kind].ok().results()[0]
    assert result["optimizer"] == "torch.optim.adamax.Adamax" and result["defaults"]["betas"] == [0.8, 0.9]
    assert _group_of(result, "pos_embed")["name"] == "default/no_decay"


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_lbfgs_in_its_own_closure_loop(runs, kind):
    result = runs["plain", "lbfgs", kind].ok().results()[0]
    assert result["optimizer"] == "torch.optim.lbfgs.LBFGS"


@pytest.mark.parametrize("kind", WHEEL)
def test_plain_bad_value_of_a_partial_is_one_line_up_front(runs, kind):
    _refused_in_one_line(runs["plain", "bad", kind], "error: optimizer.lr: must be > 0, got -1.0")


# ------------------------------------------------------------------ hydra-zen


@pytest.mark.parametrize("kind", INSTALLED)
def test_zen_app_stores_the_librarys_dataclasses_as_partials(runs, kind):
    from survopt_hydra.schemas.clipping import NormClippingConfig
    from survopt_hydra.schemas.optimizers import AdamWConfig
    from survopt_hydra.schemas.scheduler import WarmupCosineConfig

    run = runs["zen", "main", kind]
    result = run.result(optimizer="zen_adamw")
    assert result["partials"] == ["partial", "partial"] and result["optimizer"] == "torch.optim.adamw.AdamW"
    assert {g["name"]: (g["lr"], g["weight_decay"]) for g in result["groups"]} == {
        "default": (3e-3, 0.05), "default/no_decay": (3e-3, 0.0)}
    assert sorted(_group_of(result, "pos_embed")["params"]) == ["head.bias", "mix.bias", "mix.weight", "pos_embed"]
    warm = max(1, round(0.25 * 4))
    assert result["lrs"] == pytest.approx(_trajectory(_warmup_cosine(warm, 4), 3e-3, 4), rel=1e-12)
    assert result["clipper"] == "GradientClipper(mode='norm', norm_type=2.0, max_norm=0.5)"
    nodes = pickle.loads((run.folder / _job_dir(run, optimizer="zen_adamw") / "nodes.pkl").read_bytes())
    assert nodes["optimizer"] == AdamWConfig(_partial_=True, lr=3e-3, weight_decay=0.05)
    assert nodes["scheduler"] == WarmupCosineConfig(_partial_=True, warmup_epochs=0.0, warmup_fraction=0.25)
    assert nodes["clipping"] == NormClippingConfig(max_norm=0.5)


def _job_dir(run: Run, **choices: str) -> Path:
    for path in run.folder.rglob("result.json"):
        if all(json.loads(path.read_text())["choices"].get(k) == v for k, v in choices.items()):
            return path.parent.relative_to(run.folder)
    raise AssertionError(choices)


@pytest.mark.parametrize("kind", WHEEL)
def test_zen_presets(runs, kind):
    finetune = runs["zen", "finetune", kind].result()
    assert (finetune["choices"]["optimizer"], finetune["choices"]["scheduler"]) == ("adamw", "warmup_cosine")
    assert finetune["partials"] == ["partial", "partial"]
    assert {(g["lr"], g["weight_decay"]) for g in finetune["groups"]} == {(1e-5, 1e-4), (1e-5, 0.0)}
    warm = max(1, round(0.05 * 4))  # 5% of the run, at least one epoch
    assert finetune["lrs"] == pytest.approx(_trajectory(_warmup_cosine(warm, 4), 1e-5, 4), rel=1e-12)
    sgd = runs["zen", "sgd_large", kind].result()
    assert sgd["optimizer"] == "torch.optim.sgd.SGD" and "betas" not in sgd["defaults"]
    assert (sgd["defaults"]["lr"], sgd["defaults"]["weight_decay"]) == (3e-3, 1e-4)
    cosine = _trajectory(lambda o: [torch_sched.CosineAnnealingLR(o, T_max=4, eta_min=1e-6)], 3e-3, 4)
    assert sgd["lrs"] == pytest.approx(cosine, rel=1e-12)


@pytest.mark.parametrize("kind", INSTALLED)
def test_zen_muon_takes_the_hidden_matrix(runs, kind):
    result = runs["zen", "main", kind].result(optimizer="muon")
    assert result["optimizer"] == "survopt_hydra.optim.muon.MuonWithAdamW"
    assert _muon_halves(result) == {"muon": ["mix.weight"],
                                    "adamw": ["head.bias", "head.weight", "mix.bias", "pos_embed", "tok_embed.weight"]}


@pytest.mark.parametrize("kind", INSTALLED)
def test_zen_muon_honours_no_weight_decay_in_both_halves(runs, kind):
    result = runs["zen", "main", kind].result(optimizer="muon")
    assert _group_of(result, "mix.weight")["weight_decay"] == 0.0  # the Muon half
    assert _group_of(result, "pos_embed")["weight_decay"] == 0.0  # the AdamW half


@pytest.mark.parametrize("kind", WHEEL)
def test_zen_bad_value_is_one_line_before_instantiation(runs, kind):
    _refused_in_one_line(runs["zen", "bad", kind], "error: optimizer.lr: must be > 0, got -1.0")


# ------------------------------------------------------------------ lightning-hydra-template


@pytest.mark.parametrize("kind", INSTALLED)
def test_lht_example_experiment(runs, kind):
    """``experiment=example``: Adam and cosine from the library under model., Lightning clips; fit, then test
    the best checkpoint; the composed config pickles."""
    run = runs["lht", "example", kind]
    result = run.result()
    assert result["optimizer"] == "torch.optim.adam.Adam" and result["schedulers"] == ["CosineAnnealingLR"]
    assert result["gradient_clip_val"] == 0.5 and result["max_epochs"] == 10
    assert result["lrs"] == pytest.approx(_trajectory(lambda o: [torch_sched.CosineAnnealingLR(o, T_max=10)],
                                                      2e-3, 10), rel=1e-12)
    assert Path(result["best_checkpoint"]).is_file() and math.isfinite(result["metrics"]["test/loss"])
    _pickled_equals_composed(run.output_dir() / "cfg.pkl")


@pytest.mark.parametrize("kind", WHEEL)
def test_lht_preset_at_model(runs, kind):
    result = runs["lht", "finetune", kind].result()
    assert (result["choices"]["optimizer@model.optimizer"], result["choices"]["scheduler@model.scheduler"]) == \
        ("adamw", "warmup_cosine")
    assert {(g["lr"], g["weight_decay"]) for g in result["groups"]} == {(1e-5, 1e-4), (1e-5, 0.0)}
    warm = max(1, round(0.05 * 10))
    assert result["lrs"] == pytest.approx(_trajectory(_warmup_cosine(warm, 10), 1e-5, 10), rel=1e-12)


@pytest.mark.parametrize("kind", WHEEL)
def test_lht_lightning_steps_cosine_and_plateau(runs, kind):
    result = runs["lht", "cosine_plateau", kind].result()
    assert result["schedulers"] == ["CosineAnnealingLR", "ReduceLROnPlateau"]
    cosine = _trajectory(lambda o: [torch_sched.CosineAnnealingLR(o, T_max=10)], 1e-2, 10)
    assert result["lrs"][:2] == pytest.approx(cosine[:2], rel=1e-12)
    assert result["lrs"] != pytest.approx(cosine, rel=1e-9)  # the plateau cut the LR (threshold: 10% better)


@pytest.mark.parametrize("kind", WHEEL)
def test_lht_cosine_and_plateau_compose_like_torchs(runs, kind):
    """Lightning steps the cosine after the last training batch, the plateau after validation."""
    result = runs["lht", "cosine_plateau", kind].result()
    want = _trajectory(lambda o: [torch_sched.CosineAnnealingLR(o, T_max=10),
                                  torch_sched.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=0, threshold=0.1)],
                       1e-2, 10, metrics=result["val_losses"], opt_cls=torch.optim.Adam)
    assert result["lrs"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind", WHEEL)
def test_lht_optimizer_grid_sweeps_the_librarys_options(runs, kind):
    """hparams_search=optimizer_grid: a multirun over optimizer@model.optimizer, Muon included."""
    run = runs["lht", "grid", kind]
    classes = {r["choices"]["optimizer@model.optimizer"]: r["optimizer"] for r in run.ok().results()}
    assert classes == {"adamw": "torch.optim.adamw.AdamW", "sgd": "torch.optim.sgd.SGD",
                       "muon": "survopt_hydra.optim.muon.MuonWithAdamW"}
    muon = run.result(**{"optimizer@model.optimizer": "muon"})
    assert _muon_halves(muon)["muon"] == ["model.0.weight", "model.3.weight"]  # the head (model.6) goes to AdamW


@pytest.mark.parametrize("kind", WHEEL)
def test_lht_bad_value_is_one_line_before_training(runs, kind):
    _refused_in_one_line(runs["lht", "bad", kind], "error: model.optimizer.lr: must be > 0, got -1.0")
