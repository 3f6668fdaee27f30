"""The app's family seam (``family=...``), fast: config rules, heads, the per-batch loss, the validation
figures against independent references, competing-risks labels, predictor files read as untrusted data,
ensembles and the tuning preset's family search. The app itself runs in tests/test_app_families_runs.py."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from survopt_hydra.app import schemas
from survopt_hydra.app.compose import compose_train
from survopt_hydra.app.families import CurveRun, family_concordance
from survopt_hydra.app.family_fit import COX_HEAD, Head, fit_family, head_of
from survopt_hydra.errors import ConfigError
from survopt_hydra.survival import make_competing_risks
from survopt_hydra.survival.data import DataError, load_csv
from survopt_hydra.survival.families import FAMILIES, make_family
from survopt_hydra.survival.families.metrics import (antolini_cindex, bootstrap_concordance, cause_specific_cindex,
                                                     own_time_concordance, own_time_pairs)
from survopt_hydra.survival.models import MLP, LinearCox, SmallCNN


# ------------------------------------------------------------------ config
def test_every_library_family_is_a_config_option_with_the_librarys_defaults():
    """One source of truth for the families' options: the app's schema defaults are the library's."""
    assert set(schemas.FAMILIES) == {"cox", *FAMILIES}
    for name, cls in FAMILIES.items():
        lib = {f.name: f.default for f in dataclasses.fields(cls)}
        app = schemas.FAMILIES[name]()
        for field in dataclasses.fields(app):
            if field.name != "name":
                assert getattr(app, field.name) == lib[field.name], (name, field.name)
        fitted = {"cuts", "risks", "log_loc", "log_scale", "time_loc", "time_scale", "base_times", "base_log_hazard",
                  "bin_times"}
        assert set(lib) - {f.name for f in dataclasses.fields(app)} <= fitted, name


def test_family_composes_and_defaults_to_cox():
    cfg = compose_train([])
    assert cfg.family.name == "cox"
    settings = schemas.check_app_config(compose_train(["family=deephit", "family.alpha=0.5", "family.n_cuts=30"]))
    assert settings["family"] == {"name": "deephit", "n_cuts": 30, "scheme": "quantiles",
                                  "interpolation": "const_pdf", "alpha": 0.5, "sigma": 0.1}
    old = {k: v for k, v in dict(compose_train([])).items() if k != "family"}  # a config stored before families
    assert schemas.check_app_config(old)["family"] == {"name": "cox"}


@pytest.mark.parametrize("overrides,key,words", [
    (["data=competing"], "data.causes", "need family=deephit"),
    (["data=csv", "data.path=x.csv", "data.causes=3", "family=pmf"], "data.causes", "family=pmf models one event"),
    (["data=competing", "family=deephit", "family.interpolation=const_hazard"], "family.interpolation",
     "const_pdf or step"),
    (["data=synthetic_images", "model=cnn", "family=cox_time"], "family.name", "input column of a table"),
    (["family=deephit", "family.sigma=0.01"], "family.sigma", ">= 0.02"),
    (["family=pmf", "family.n_cuts=5000"], "family.n_cuts", "2..1000"),
    (["family=pmf", "family.alpha=1"], "family.alpha", "unknown key"),
    (["family=mtlr"], "family", "mtlr"),
])
def test_a_bad_family_setting_is_one_line_naming_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        schemas.check_app_config(compose_train(overrides))
    assert info.value.key.startswith(key) and words in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ heads
def test_the_cox_head_is_the_network_it_always_was():
    torch.manual_seed(0)
    old = MLP(5)
    torch.manual_seed(0)
    same = MLP(5, out_features=1, bias=False)
    assert list(old.state_dict()) == list(same.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), same.state_dict().values()))
    assert old(torch.zeros(3, 5)).shape == (3,) and "net.4.bias" not in old.state_dict()


@pytest.mark.parametrize("make,x", [(lambda h: LinearCox(4, h.outputs, h.bias), torch.zeros(3, 4)),
                                    (lambda h: MLP(4, out_features=h.outputs, bias=h.bias), torch.zeros(3, 4)),
                                    (lambda h: SmallCNN(1, (4,), 8, out_features=h.outputs, bias=h.bias),
                                     torch.zeros(3, 1, 8, 8))])
def test_a_family_head_gives_its_outputs_with_a_bias(make, x):
    family = make_family("deephit", risks=2, n_cuts=5).fit(torch.tensor([1.0, 2, 3, 4, 5, 6]),
                                                           torch.tensor([1, 2, 0, 1, 2, 1]))
    head = head_of(family)
    assert head == Head(family.n_outputs, bias=True) and head.outputs == 2 * len(family.cuts)
    net = make(head)
    net.eval()
    assert net(x).shape == (3, head.outputs)
    assert any(name.endswith("bias") and p.shape == (head.outputs,) for name, p in net.named_parameters())


def test_cox_time_head_adds_the_time_column_and_keeps_no_bias():
    family = make_family("cox_time").fit(torch.tensor([1.0, 2, 3]), torch.tensor([1, 0, 1]))
    head = head_of(family)
    assert head == Head(1, bias=False, time_input=True) and head.input_shape((7,)) == (8,)
    assert head_of(None) is COX_HEAD and COX_HEAD.input_shape((7,)) == (7,)


# ------------------------------------------------------------------ the per-batch loss
@pytest.mark.parametrize("name", ["logistic_hazard", "pmf", "deephit", "weibull_aft", "lognormal_aft", "cox_time"])
def test_the_batch_loss_is_the_familys_loss_on_the_batch_rows(name):
    """The trainer's targets are transformed once and indexed per batch: the same loss as transforming the
    batch's own labels (the library's reference path)."""
    cohort = make_competing_risks(300, seed=1, causes=1)
    d, e = torch.tensor(cohort.durations), torch.tensor(cohort.events).float()
    x = torch.tensor(cohort.x)
    family = make_family(name).fit(d[:200], e[:200])
    split = type("S", (), {"x": x, "durations": d, "events": e, "__len__": lambda s: 300})()
    run = CurveRun(family)
    run.prepare(type("C", (), {"train": split})())
    torch.manual_seed(0)
    net = torch.nn.Linear(5 + family.time_input, family.n_outputs)
    idx = torch.tensor([5, 17, 250, 3, 99, 42, 101, 7])
    torch.manual_seed(1)
    got = run.loss(run.forward(net, (x[idx],), idx), d[idx], e[idx], idx)
    target = family.transform(d[idx], e[idx])
    torch.manual_seed(1)
    want = family.loss(family.forward(net, x[idx], target), target)
    assert got.dtype == torch.float32 and torch.equal(got, want)


@pytest.mark.parametrize("name", ["logistic_hazard", "deephit", "weibull_aft", "cox_time"])
def test_under_autocast_the_loss_is_float32_of_the_half_precision_outputs(name):
    """The trainer runs the forward in the engine's autocast and the loss outside it: bf16 outputs, an fp32
    loss equal to the loss of those outputs cast to fp32 (no half-precision log-sums)."""
    cohort = make_competing_risks(200, seed=2, causes=1)
    d, e, x = torch.tensor(cohort.durations), torch.tensor(cohort.events).float(), torch.tensor(cohort.x)
    family = make_family(name).fit(d, e)
    split = type("S", (), {"x": x, "durations": d, "events": e, "__len__": lambda s: 200})()
    run = CurveRun(family)
    run.prepare(type("C", (), {"train": split})())
    torch.manual_seed(0)
    net = torch.nn.Linear(5 + family.time_input, family.n_outputs)
    idx = torch.arange(0, 200, 3)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run.forward(net, (x[idx],), idx)
    loss = run.loss(out, d[idx], e[idx], idx)
    half = out.case if name == "cox_time" else out
    assert half.dtype == torch.bfloat16 and loss.dtype == torch.float32
    widened = type(out)(*(t.float() if t.is_floating_point() else t for t in out)) if name == "cox_time" else out.float()
    assert torch.equal(loss, run.loss(widened, d[idx], e[idx], idx))


def test_the_batch_loss_makes_no_host_sync():
    """Targets and outputs on the meta device: any .item() or bool() of a tensor would fail."""
    family = make_family("deephit", risks=2, n_cuts=6).fit(torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8]),
                                                           torch.tensor([1, 2, 0, 1, 2, 1, 0, 1]))
    run = CurveRun(family, causes=2)
    run.train_target = {k: torch.empty_like(v, device="meta") for k, v in
                        family.transform(torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8]), torch.tensor([1, 2, 0, 1, 2, 1, 0, 1])).items()}
    net = torch.nn.Linear(3, family.n_outputs, device="meta")
    idx = torch.tensor([0, 3, 5], device="meta")
    loss = run.loss(run.forward(net, (torch.empty(3, 3, device="meta"),), idx), None, None, idx)
    assert loss.device.type == "meta" and loss.shape == ()


# ------------------------------------------------------------------ validation figures
def _curves(n: int, seed: int, crossing: bool):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(1, 60, (n,), generator=g).double()
    e = torch.randint(0, 3, (n,), generator=g)
    a = torch.rand(n, generator=g).double() + 0.1
    b = torch.rand(n, generator=g).double() if crossing else torch.zeros(n, dtype=torch.float64)
    return t, e, lambda at: torch.exp(-a[:, None] * (torch.as_tensor(at)[None, :] / 20) ** (1 + b[:, None])), a


def test_own_time_concordance_equals_the_grid_versions():
    t, e, surv, _ = _curves(400, 0, crossing=True)
    grid = torch.unique(t)
    assert own_time_concordance(surv, t, e) == pytest.approx(antolini_cindex(surv(grid), grid, t, (e > 0).double()),
                                                            abs=1e-15)
    for k in (1, 2):
        cif = lambda at: 1 - surv(at)  # noqa: E731
        assert own_time_concordance(cif, t, e, k, True) == pytest.approx(
            cause_specific_cindex(cif(grid), grid, t, e, k), abs=1e-15)


def test_for_curves_that_never_cross_the_validation_c_is_harrells():
    """Proportional hazards: Antolini's C is Harrell's C of the risk (lifelines' concordance_index)."""
    from lifelines.utils import concordance_index

    t, e, surv, a = _curves(300, 1, crossing=False)
    e = (e > 0).long()
    assert own_time_concordance(surv, t, e) == pytest.approx(concordance_index(t.numpy(), -a.numpy(), e.numpy()),
                                                            abs=1e-12)


def test_the_bootstrap_resamples_the_pairs_as_an_explicit_resample_would():
    """c K c / c U c per resample equals Antolini's C recomputed on the resampled rows (copies included)."""
    from survopt_hydra.survival.bootstrap import percentile_interval, resample_counts

    t, e, surv, _ = _curves(120, 2, crossing=True)
    e = (e > 0).long()
    values = []
    for counts in resample_counts(120, 40, 0):
        for c in counts:
            rows = torch.repeat_interleave(torch.arange(120), c.long())
            values.append(own_time_concordance(lambda at: surv(at)[rows], t[rows], e[rows]))
    assert bootstrap_concordance([(surv, None, False)], t, e, resamples=40) == pytest.approx(
        percentile_interval(torch.tensor(values, dtype=torch.float64)), abs=1e-12)
    weights, usable = own_time_pairs(surv, t, e)
    assert float(weights.sum() / usable.sum()) == pytest.approx(own_time_concordance(surv, t, e), abs=1e-15)


def test_competing_risks_validation_is_the_mean_cause_specific_c():
    cohort = make_competing_risks(600, seed=4)
    d, e = torch.tensor(cohort.durations), torch.tensor(cohort.events)
    family = make_family("deephit", risks=2, n_cuts=10).fit(d, e)
    torch.manual_seed(0)
    out = torch.randn(600, family.n_outputs)
    grid = torch.unique(d.double())
    cif = family.cif(out, grid)
    want = np.mean([cause_specific_cindex(cif[:, k - 1], grid, d, e, k) for k in (1, 2)])
    assert family_concordance(family, out, d, e.float(), causes=2) == pytest.approx(want, abs=1e-12)


# ------------------------------------------------------------------ data: competing causes
def _csv(tmp_path: Path, events: list[int]) -> Path:
    path = tmp_path / "cr.csv"
    rows = "\n".join(f"{i + 1},{code},{i % 3}" for i, code in enumerate(events))
    path.write_text("time,status,x\n" + rows + "\n")
    return path


def test_cause_codes_are_refused_for_one_cause_with_the_row_and_the_fix(tmp_path):
    path = _csv(tmp_path, [0, 1, 2, 1, 0, 1])
    with pytest.raises(DataError) as info:
        load_csv(path, "time", "status")
    assert "event value '2' in column 'status' at row 3; allowed: 0, 1 (codes of competing causes need " \
           "data.causes=<K> and family=deephit)" in str(info.value)
    table = load_csv(path, "time", "status", causes=2)
    assert table.events.tolist() == [0, 1, 2, 1, 0, 1]
    with pytest.raises(DataError, match=r"event value '3' .* at row 2; allowed: 0 \(censored\) or a cause 1..2"):
        load_csv(_csv(tmp_path, [0, 3, 1, 1]), "time", "status", causes=2)
    fractional = tmp_path / "fractional.csv"
    fractional.write_text("time,status,x\n1,1.5,0\n2,1,1\n3,0,2\n")
    with pytest.raises(DataError, match=r"event value '1.5' .* allowed: 0 \(censored\) or a cause"):
        load_csv(fractional, "time", "status", causes=2)


def test_data_competing_is_the_libraries_cohort_split_like_a_table():
    from survopt_hydra.app.data import load_cohort

    settings = schemas.check_app_config(compose_train(["data=competing", "data.n=400", "family=deephit"]))
    cohort = load_cohort(settings["data"])
    drawn = make_competing_risks(400, 0, 2, 5, 0.3, 1.5)
    assert len(cohort.train) + len(cohort.val) + len(cohort.test) == 400
    assert sorted(torch.cat([cohort.train.durations, cohort.val.durations, cohort.test.durations]).tolist()) == \
        pytest.approx(sorted(drawn.durations.tolist()))
    assert set(cohort.train.events.unique().tolist()) == {0.0, 1.0, 2.0}
    assert cohort.feature_names == [f"x{j}" for j in range(5)]
    assert cohort.train.x.mean(0).abs().max() < 1e-5  # standardized on the training rows
    family = fit_family(settings, cohort)
    assert family.risks == 2 and head_of(family).outputs == 2 * len(family.cuts)


def test_an_aft_family_refuses_training_durations_of_zero_in_one_line():
    from survopt_hydra.app.data import Cohort, Split

    split = Split(torch.zeros(4, 1), torch.tensor([0.0, 1, 2, 3]), torch.tensor([1.0, 0, 1, 1]))
    cohort = Cohort(split, split, split, ["x"], "toy.csv", "toy.csv")
    settings = {"family": {"name": "weibull_aft"}, "data": {}, "trainer": {"monitor": "val_cindex"}}
    with pytest.raises(DataError) as info:
        fit_family(settings, cohort)
    assert str(info.value) == ("toy.csv: family=weibull_aft cannot use the training rows: weibull_aft: durations must "
                               "be > 0 (the model is on log time)")


# ------------------------------------------------------------------ predictor files are data
@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    """A hand-made finished run of family=pmf: predictor.json (format /3) and best.pt, as the trainer writes."""
    from survopt_hydra.app.checkpoint import save_checkpoint
    from survopt_hydra.app.family_metrics import finish_curve_run
    from survopt_hydra.app.predictor import write_predictor
    from survopt_hydra.app.run_plan import plan_run
    from survopt_hydra.app.components import build_model

    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_train(["data=competing", "data.causes=1", "data.n=300", "family=pmf", "family.n_cuts=8"])
    plan = plan_run(cfg)
    run = CurveRun(plan.family, 1)
    run.prepare(plan.cohort)
    torch.manual_seed(0)
    net = build_model(plan.settings["model"], plan.cohort.input_shape, head=run.head)
    from omegaconf import OmegaConf

    metrics, art = finish_curve_run(run, net, plan.cohort, OmegaConf.to_container(cfg, resolve=True), 1)
    write_predictor(run_dir, art)
    save_checkpoint({"model": net.state_dict(), "epoch": 1}, run_dir / "best.pt")
    return run_dir, net, plan


def test_a_family_predictor_predicts_the_runs_own_curves(family_run):
    from survopt_hydra.app.predictor import Predictor

    run_dir, net, plan = family_run
    pred = Predictor.load(run_dir)
    test = plan.cohort.test
    with torch.no_grad():
        out = net.eval()(test.x)
    times = [0.5, 1.0, 2.0]
    assert torch.equal(pred.family.survival(pred.outputs(test.x), times), plan.family.survival(out, times))
    assert pred.curve_columns(times) == ["S(0.5)", "S(1)", "S(2)"]


def _forge(run_dir: Path, tmp_path: Path, edit) -> Path:
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(run_dir, forged)
    art = json.loads((forged / "predictor.json").read_text())
    edit(art)
    (forged / "predictor.json").write_text(json.dumps(art))
    return forged


@pytest.mark.parametrize("edit,words", [
    (lambda a: a["family"].update(family="mtlr"), "is not a family"),
    (lambda a: a["family"].update(n_cuts=10**9), "family.n_cuts: must be in 2..1000"),
    (lambda a: a["family"].update(cuts=None), "never fitted"),
    (lambda a: a["family"].update(cuts=[0.0, 2.0, 1.0]), "increasing"),
    (lambda a: a["family"].update(interpolation="cubic"), "family.interpolation"),
    (lambda a: a["family"].update(family="deephit", risks=10**6), "causes"),
    (lambda a: a.update(causes=3), "causes"),
    (lambda a: a.update(risk_time=float("nan")), "risk_time"),
    (lambda a: a.update(risk_time="${oc.env:HOME}"), "risk_time"),
    (lambda a: a["family"].update(_target_="os.system"), "unknown option"),
    (lambda a: a.pop("family"), "family"),
])
def test_a_forged_family_predictor_is_refused_in_one_line(family_run, tmp_path, edit, words):
    from survopt_hydra.app.predictor import Predictor

    forged = _forge(family_run[0], tmp_path, edit)
    with pytest.raises(DataError) as info:
        Predictor.load(forged)
    message = str(info.value)
    assert "unusable predictor file" in message and words in message and "\n" not in message


def test_a_family_predictor_whose_grid_disagrees_with_best_pt_is_refused_before_allocating(family_run, tmp_path):
    """A forged grid of another size than the weights: the meta-device build meets best.pt's shapes."""
    from survopt_hydra.app.predictor import Predictor

    forged = _forge(family_run[0], tmp_path, lambda a: a["family"].update(cuts=[0.0, 0.5, 1.0]))
    with pytest.raises(DataError, match="best.pt") as info:
        Predictor.load(forged)
    assert "\n" not in str(info.value)


def test_an_ensemble_refuses_members_with_different_curves(family_run, tmp_path):
    from survopt_hydra.app.ensemble import check_members

    class Member:
        def __init__(self, causes: int) -> None:
            self.columns, self.causes = ["x0"], causes

    check_members([Member(1), Member(1)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(DataError, match="predicts the CIFs of 2 causes, the first member S"):
        check_members([Member(1), Member(2)], [tmp_path / "a", tmp_path / "b"])


def test_curve_columns():
    from survopt_hydra.app.family_artifact import curve_columns

    assert curve_columns(1, [1, 2.5]) == ["S(1)", "S(2.5)"]
    assert curve_columns(2, [1, 3]) == ["CIF_1(1)", "CIF_1(3)", "CIF_2(1)", "CIF_2(3)"]


# ------------------------------------------------------------------ the tuning preset
def test_the_cox_only_preset_draws_what_it_always_drew():
    import optuna

    from survopt_hydra.app.tools import tune

    space = tune.searched([])
    trial = optuna.trial.FixedTrial({"lr": 0.01, "weight_decay": 0.01, "width": 16, "depth": 1, "dropout": 0.1,
                                     "batch_size": 512, "ties": "efron"})
    assert tune.draw_overrides(trial, [], space, tune.COX_ONLY) == [f"{k}={d(trial)}" for k, d in space.items()]
    assert tune.study_settings([], compose_train([]), 5, space) == {
        "overrides": [], "folds": 5, "monitor": "val_cindex", "space": sorted(space)}


def test_a_family_trial_draws_the_family_and_its_own_settings_only():
    import optuna

    from survopt_hydra.app.tools import tune

    space = tune.searched([])
    trial = optuna.trial.FixedTrial({"family": "deephit", "lr": 0.01, "weight_decay": 0.01, "width": 16,
                                     "depth": 1, "dropout": 0.1, "batch_size": 512, "n_cuts": 20, "alpha": 2.0,
                                     "sigma": 0.25})
    drawn = tune.draw_overrides(trial, [], space, ("cox", "deephit"))
    assert drawn[0] == "family=deephit" and "family.alpha=2" in drawn and "family.sigma=0.25" in drawn
    assert not any(o.startswith("trainer.ties") for o in drawn)
    fixed = tune.draw_overrides(trial, ["family.alpha=1"], space, ("cox", "deephit"))
    assert not any(o.startswith("family.alpha") for o in fixed)
    cfg = compose_train([])
    start = tune.baseline_params(cfg, space, ("cox", "deephit"))
    assert start["family"] == "cox" and start["ties"] == "breslow"
    start = tune.baseline_params(compose_train(["family=deephit"]), space, ("deephit",))
    assert "family" not in start and (start["n_cuts"], start["alpha"], start["sigma"]) == (20, 1.0, 0.1)
    assert "ties" not in start


@pytest.mark.parametrize("base,families,words", [
    ([], ["mtlr"], "unknown family 'mtlr'"),
    ([], ["cox", "cox"], "named twice"),
    (["family=pmf"], ["cox", "pmf"], "fix family"),
    (["data=competing"], ["deephit", "pmf"], "need deephit"),
    (["trainer.monitor=val_loss"], ["cox", "pmf"], "val_loss"),
    ([], ["pmf"], "pass family=pmf"),
])
def test_a_bad_families_flag_is_one_line(base, families, words):
    from survopt_hydra.app.tools import tune

    with pytest.raises(ConfigError) as info:
        tune.search_families(compose_train(base), base, families)
    assert info.value.key == "--families" and words in str(info.value)


def test_all_families():
    from survopt_hydra.app.tools import tune

    assert tune.search_families(compose_train([]), [], ["all"]) == tuple(schemas.FAMILIES)
    assert tune.search_families(compose_train(["family=pmf"]), ["family=pmf"], None) == ("pmf",)
    assert set(tune.FAMILY_SPACE) == set(schemas.FAMILIES)


# ------------------------------------------------------------------ the featureless start
@pytest.mark.parametrize("name,options,causes", [("logistic_hazard", {}, 1), ("pmf", {}, 1),
                                                 ("deephit", {"alpha": 0.0}, 1), ("deephit", {"risks": 2, "alpha": 0.0}, 2)])
def test_marginal_outputs_are_the_featureless_maximum_of_the_likelihood(name, options, causes):
    """The same outputs for every row, at the grid's Kaplan-Meier (Aalen-Johansen) masses: the loss's gradient
    there is zero but for the 1e-6 clamp of empty intervals, and Logistic-Hazard and PMF reach the same
    likelihood (one discrete distribution, two parametrisations)."""
    cohort = make_competing_risks(1500, seed=2, causes=causes)
    d, e = torch.tensor(cohort.durations), torch.tensor(cohort.events)
    family = make_family(name, **options).fit(d, e)
    start = family.marginal_outputs(d, e).double().requires_grad_()
    target = family.transform(d, e)
    loss = family.loss(start[None, :].expand(len(d), -1), target)
    loss.backward()
    assert float(start.grad.abs().max()) < 1e-5
    if causes == 1:
        other = make_family("pmf" if name == "logistic_hazard" else "logistic_hazard").fit(d, e)
        assert float(other.loss(other.marginal_outputs(d, e).double()[None, :].expand(len(d), -1), target)) == \
            pytest.approx(float(loss.detach()), rel=1e-6)  # float32 outputs, 1e-6 clamps


def test_a_built_in_model_starts_at_the_training_curve_and_a_custom_one_is_left_alone():
    from survopt_hydra.app.components import build_model
    from survopt_hydra.app.data import Cohort, Split

    cohort = make_competing_risks(400, seed=3, causes=1)
    split = Split(torch.tensor(cohort.x), torch.tensor(cohort.durations), torch.tensor(cohort.events).float())
    family = make_family("logistic_hazard", n_cuts=8).fit(split.durations, split.events)
    run = CurveRun(family)
    run.prepare(Cohort(split, split, split, [], "toy", "toy"))
    net = build_model({"name": "linear"}, (5,), head=run.head)
    run.init_head(net, "linear")
    with torch.no_grad():
        torch.nn.init.zeros_(net.linear.weight)
        curves = family.survival(net(split.x), family.cuts)
    want = family.survival(family.marginal_outputs(split.durations, split.events)[None, :], family.cuts)
    assert torch.allclose(curves, want.expand_as(curves), atol=1e-6)
    custom = build_model({"name": "linear"}, (5,), head=run.head)
    before = custom.linear.bias.detach().clone()
    run.init_head(custom, "custom")
    assert torch.equal(custom.linear.bias, before)
