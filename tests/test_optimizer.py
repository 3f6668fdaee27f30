"""The optimizer group: real torch classes, parameter groups, fused defaults, validation."""
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from survopt_hydra import ConfigError, build_optimizer
from survopt_hydra.schemas.optimizer import OPTIM_INFO

CONF = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture(scope="module")
def compose_cfg():
    def _compose(*overrides):
        with initialize_config_dir(config_dir=CONF, version_base=None):
            return compose(config_name=None, overrides=list(overrides))

    return _compose


@pytest.mark.parametrize("name", sorted(set(OPTIM_INFO) - {"muon"}))
def test_every_option_instantiates_the_torch_class(compose_cfg, tiny_model, name):
    cfg = compose_cfg(f"+optimizer={name}", "optimizer.lr=0.01")
    opt = instantiate(cfg.optimizer, params=tiny_model)
    assert type(opt) is OPTIM_INFO[name].torch_class()
    assert all(g["lr"] == pytest.approx(0.01) for g in opt.param_groups)
    if "betas" in opt.defaults:
        assert isinstance(opt.param_groups[0]["betas"], tuple)


def test_params_can_be_module_iterable_or_groups(tiny_model):
    from_module = build_optimizer(tiny_model, "adamw", lr=1e-3, weight_decay=0.1)
    from_iter = build_optimizer(tiny_model.parameters(), "adamw", lr=1e-3, weight_decay=0.1)
    groups = [{"params": tiny_model[0].parameters(), "lr": 0.5}, {"params": tiny_model[3].parameters()}]
    from_groups = build_optimizer(groups, "sgd", lr=0.1, no_weight_decay_1d=False)
    n = sum(p.numel() for p in tiny_model.parameters())
    for opt in (from_module, from_iter):
        assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == n
    assert [g["lr"] for g in from_groups.param_groups] == [0.5, 0.1]
    assert [g["name"] for g in from_groups.param_groups] == ["group0", "group1"]


def test_no_weight_decay_on_biases_and_norm_weights(tiny_model):
    opt = build_optimizer(tiny_model, "adamw", lr=1e-3, weight_decay=0.05)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["default"]["weight_decay"] == 0.05
    assert by_name["default/no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in by_name["default"]["params"])
    # two Linear biases + BatchNorm weight and bias
    assert len(by_name["default/no_decay"]["params"]) == 4
    everything = build_optimizer(tiny_model, "adamw", lr=1e-3, weight_decay=0.05, no_weight_decay_1d=False)
    assert [g["weight_decay"] for g in everything.param_groups] == [0.05]


def test_lr_multiplier_by_name_pattern():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(3, 3))
    model.add_module("head", nn.Linear(3, 1))
    opt = build_optimizer(model, "adamw", lr=1e-3, lr_mult={"backbone.*": 0.1})
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"backbone.*": 1e-4, "backbone.*/no_decay": 1e-4, "default": 1e-3, "default/no_decay": 1e-3})


def test_fused_by_default_where_supported(tiny_model):
    for name in ("adam", "adamw", "sgd", "adagrad"):
        assert build_optimizer(tiny_model, name).defaults.get("fused") is True, name
    # rmsprop has no fused kernel: silently torch's default
    assert not build_optimizer(tiny_model, "rmsprop").defaults.get("fused")
    assert build_optimizer(tiny_model, "adamw", implementation="foreach").defaults["foreach"] is True


def test_fused_step_matches_for_loop_step():
    # No BatchNorm here: a bias feeding BN has an exactly-zero true gradient, and Adam
    # turns its rounding noise into full-size steps of either sign.
    torch.manual_seed(1)
    x = torch.randn(16, 4)
    reference = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    results = []
    for impl in ("fused", "for_loop"):
        model = __import__("copy").deepcopy(reference)
        opt = build_optimizer(model, "adamw", lr=1e-2, weight_decay=0.1, implementation=impl)
        for _ in range(3):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_partial_instantiate(compose_cfg, tiny_model):
    cfg = compose_cfg("+optimizer=sgd", "optimizer._partial_=true")
    factory = instantiate(cfg.optimizer)
    opt = factory(params=tiny_model)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9


@pytest.mark.parametrize(
    "name, options, key",
    [
        ("adamw", {"lr": 0}, "optimizer.lr"),
        ("adamw", {"lr": -1e-3}, "optimizer.lr"),
        ("adamw", {"weight_decay": -0.1}, "optimizer.weight_decay"),
        ("adam", {"betas": [0.9]}, "optimizer.betas"),
        ("adam", {"betas": [0.9, 1.0]}, "optimizer.betas"),
        ("sgd", {"momentum": -0.5}, "optimizer.momentum"),
        ("adam", {"eps": 0}, "optimizer.eps"),
        ("adamw", {"lrr": 0.1}, "optimizer.lrr"),
        ("adamw", {"lr": "abc"}, "optimizer.lr"),
        ("adamw", {"implementation": "cuda"}, "optimizer.implementation"),
        ("adamx", {}, "optimizer.name"),
        ("adamw", {"lr_mult": {"x.*": -1}}, "optimizer.lr_mult.x.*"),
    ],
)
def test_bad_values_name_the_key(tiny_model, name, options, key):
    with pytest.raises(ConfigError) as err:
        build_optimizer(tiny_model, name, **options)
    assert err.value.key == key
    assert str(err.value).startswith(key)


def test_unknown_name_lists_allowed_and_suggests(tiny_model):
    with pytest.raises(ConfigError, match=r"did you mean 'adamw'.*allowed: adadelta, adafactor, adagrad, adam, adamax, adamw, adamw_schedulefree, asgd, custom"):
        build_optimizer(tiny_model, "adamx")


def test_numeric_strings_from_yaml_are_coerced(tiny_model):
    opt = build_optimizer(tiny_model, "adamw", lr="1e-4", weight_decay="1e-4")
    assert opt.param_groups[0]["lr"] == 1e-4 and opt.param_groups[0]["weight_decay"] == 1e-4


def test_explicit_fused_without_a_kernel_is_refused(tiny_model):
    with pytest.raises(ConfigError, match="optimizer.implementation: RMSprop has no fused kernel"):
        build_optimizer(tiny_model, "rmsprop", implementation="fused")


# ------------------------------------------------------------------ open surface (issue 14, item 5)
def _written_from(text: str) -> str:
    """The package versions a generated schemas file names in its docstring ("from torch 2.13.0 ... and")."""
    return text.split("``python -m survopt_hydra.schemas.signatures`` from ", 1)[1].split(" and the records", 1)[0]


def test_every_torch_optimizer_has_a_record_and_the_generated_schemas_are_current():
    """schemas/optimizers.py is what the installed classes' signatures give (regenerate after upgrading).
    Under other versions than it was written from (the package accepts torch >= 2.4), every keyword it
    accepts must still be one the installed class takes: a newer torch's new keywords are not offered."""
    import dataclasses
    import importlib

    from survopt_hydra.schemas import optimizers as generated
    from survopt_hydra.schemas import signatures

    written, current = signatures.TARGET.read_text(), signatures.render()
    if _written_from(written) == _written_from(current):
        assert written == current, "run: python -m survopt_hydra.schemas.signatures"
    checked = 0
    for schema in vars(generated).values():
        if not (isinstance(schema, type) and dataclasses.is_dataclass(schema) and "keywords" in vars(schema)):
            continue
        info = OPTIM_INFO[schema.name]
        try:
            cls = getattr(importlib.import_module(info.module), info.cls)
        except ImportError:  # an extra's optimizer that is not installed
            continue
        assert set(schema.keywords) <= set(signatures.read_signature(cls)), schema.name
        checked += 1
    assert checked >= len(generated.TORCH_CLASSES)
    classes = {n for n, c in vars(torch.optim).items()
               if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer}
    assert {info.cls for info in OPTIM_INFO.values() if info.module == "torch.optim"} == classes
    assert {"adafactor", "adamax", "adadelta", "asgd", "rprop", "lbfgs", "muon"} <= set(OPTIM_INFO)


def test_torch_keywords_pass_through_with_checks(tiny_model):
    opt = build_optimizer(tiny_model, "adamw", foreach=True, maximize=True)
    assert opt.defaults["foreach"] is True and opt.defaults["maximize"] is True and not opt.defaults["fused"]
    assert build_optimizer(tiny_model, "rprop", etas=[0.4, 1.5]).defaults["etas"] == (0.4, 1.5)
    with pytest.raises(ConfigError, match=r"^optimizer.maximize: must be true or false"):
        build_optimizer(tiny_model, "adamw", maximize="maybe")
    with pytest.raises(ConfigError, match=r"^optimizer.etas: must be two values"):
        build_optimizer(tiny_model, "rprop", etas=[1.5, 0.4])
    with pytest.raises(ConfigError, match=r"^optimizer.weight_decay: Rprop has no weight decay"):
        build_optimizer(tiny_model, "rprop", weight_decay=0.1)


def test_adafactor_steps_like_torch():
    torch.manual_seed(0)
    ours, ref = nn.Linear(4, 3), nn.Linear(4, 3)
    ref.load_state_dict(ours.state_dict())
    opt = build_optimizer(ours, "adafactor", lr=0.05, no_weight_decay_1d=False)
    ref_opt = torch.optim.Adafactor(ref.parameters(), lr=0.05)
    x = torch.randn(8, 4)
    for o, m in ((opt, ours), (ref_opt, ref)):
        for _ in range(3):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    torch.testing.assert_close(ours.weight, ref.weight)


def test_lbfgs_instantiates_for_a_closure_loop(compose_cfg):
    """The engine refuses lbfgs (test_validation); a user's own closure loop gets torch's LBFGS."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    ours, ref = nn.Linear(3, 1), nn.Linear(3, 1)
    ref.load_state_dict(ours.state_dict())
    opt = instantiate(compose_cfg("+optimizer=lbfgs").optimizer, params=ours)
    ref_opt = torch.optim.LBFGS(ref.parameters())
    assert type(opt) is torch.optim.LBFGS and len(opt.param_groups) == 1
    for o, m in ((opt, ours), (ref_opt, ref)):
        def closure(o=o, m=m):
            o.zero_grad()
            loss = (m(x) - y).pow(2).mean()
            loss.backward()
            return loss
        o.step(closure)
    torch.testing.assert_close(ours.weight, ref.weight)


def test_custom_class_with_checked_kwargs(compose_cfg, tiny_model):
    cfg = compose_cfg("+optimizer=custom", "optimizer.cls=torch.optim.Adamax", "+optimizer.kwargs.betas=[0.8,0.9]",
                      "optimizer.weight_decay=0.1")
    opt = instantiate(cfg.optimizer, params=tiny_model)
    assert type(opt) is torch.optim.Adamax and opt.defaults["betas"] == (0.8, 0.9)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.1]  # the same decay split
    with pytest.raises(ConfigError, match=r"^optimizer.kwargs.betaz: not a keyword of Adamax \(did you mean 'betas'\?\); "
                                          r"allowed: lr, betas, eps"):
        build_optimizer(tiny_model, "custom", cls="torch.optim.Adamax", kwargs={"betaz": [0.8, 0.9]})
    with pytest.raises(ConfigError, match=r"^optimizer.cls: 'collections.OrderedDict' is not a torch.optim.Optimizer"):
        build_optimizer(tiny_model, "custom", cls="collections.OrderedDict")


def test_target_override_builds_that_class_with_the_options_settings(tiny_model):
    opt = build_optimizer(tiny_model, "adamw", _target_="torch.optim.Adamax", lr=0.02)
    assert type(opt) is torch.optim.Adamax and opt.defaults["lr"] == 0.02
    with pytest.raises(ConfigError, match=r"^optimizer._target_: 'os.system' is not a torch.optim.Optimizer subclass"):
        build_optimizer(tiny_model, "adamw", _target_="os.system")


# ------------------------------------------------------------------ param-group policy
class _ViTLike(nn.Module):
    """timm's layout: embedding, numbered blocks, final norm and head; no_weight_decay() names."""

    def __init__(self, depth: int = 3) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.patch = nn.Linear(8, 8)
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(depth))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)

    def no_weight_decay(self):
        return {"pos_embed"}


def test_model_no_weight_decay_names_are_honoured():
    model = _ViTLike()
    opt = build_optimizer(model, "adamw", weight_decay=0.05)
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model.pos_embed) in no_decay and id(model.patch.weight) not in no_decay


def test_layer_decay_follows_timm():
    """timm: layer 0 = embeddings, 1..N = blocks, N+1 = head; scale = decay ** (N + 1 - layer)."""
    model, decay, lr = _ViTLike(depth=3), 0.75, 1e-3
    opt = build_optimizer(model, "adamw", lr=lr, layer_decay=decay)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    expect = {"pos_embed": 0, "patch.weight": 0, "blocks.0.weight": 1, "blocks.2.bias": 3, "norm.weight": 4, "head.weight": 4}
    params = dict(model.named_parameters())
    for name, layer in expect.items():
        assert lr_of[id(params[name])] == pytest.approx(lr * decay ** (4 - layer)), name
    by_pattern = build_optimizer(model, "adamw", lr=lr, layer_decay=0.5, layers=["patch.*", "pos_embed", "blocks.*", "*"])
    lr_of = {id(p): g["lr"] for g in by_pattern.param_groups for p in g["params"]}
    assert lr_of[id(model.patch.weight)] == pytest.approx(lr * 0.5 ** 3)
    assert lr_of[id(model.blocks[1].weight)] == pytest.approx(lr * 0.5)
    assert lr_of[id(model.head.weight)] == pytest.approx(lr)
    with pytest.raises(ConfigError, match=r"^optimizer.layer_decay: must be in \(0, 1\]"):
        build_optimizer(model, "adamw", layer_decay=1.5)


def test_pattern_matching_no_parameter_is_refused_with_real_names():
    with pytest.raises(ConfigError, match=r"^optimizer.lr_mult.backbone.\*: pattern 'backbone.\*' matches no "
                                          r"parameter; parameter names look like: pos_embed, patch.weight"):
        build_optimizer(_ViTLike(), "adamw", lr_mult={"backbone.*": 0.1})


def test_user_param_group_dicts_still_get_the_decay_split(tiny_model):
    groups = [{"params": list(tiny_model[0].parameters()), "lr": 0.5}, {"params": list(tiny_model[3].parameters())}]
    opt = build_optimizer(groups, "sgd", lr=0.1, weight_decay=0.01)
    got = [(g["name"], g["lr"], g["weight_decay"], [tuple(p.shape) for p in g["params"]]) for g in opt.param_groups]
    assert got == [("group0", 0.5, 0.01, [(8, 4)]), ("group0/no_decay", 0.5, 0.0, [(8,)]),
                   ("group1", 0.1, 0.01, [(1, 8)]), ("group1/no_decay", 0.1, 0.0, [(1,)])]
    kept = build_optimizer(groups, "sgd", lr=0.1, weight_decay=0.01, no_weight_decay_1d=False)
    assert [g["name"] for g in kept.param_groups] == ["group0", "group1"]


def test_muon_recipe_equals_torch_muon_plus_adamw(compose_cfg):
    """Hidden matrices step exactly as torch.optim.Muon, embeddings/head/biases/norms as AdamW."""
    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Embedding(10, 8), nn.Flatten(), nn.Linear(16, 16), nn.LayerNorm(16),
                             nn.Linear(16, 16), nn.Linear(16, 2))

    ours, ref = net(), net()
    opt = instantiate(compose_cfg("+optimizer=muon", "optimizer.lr=0.02").optimizer, params=ours)
    hidden = [ref[2].weight, ref[4].weight]
    rest = [p for p in ref.parameters() if all(p is not h for h in hidden)]
    matrices = [ref[0].weight, ref[5].weight]
    flat = [p for p in rest if all(p is not m for m in matrices)]
    ref_muon = torch.optim.Muon(hidden, lr=0.02)  # torch's defaults: weight decay 0.1
    ref_adamw = torch.optim.AdamW([{"params": matrices}, {"params": flat, "weight_decay": 0.0}],
                                  lr=0.02, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, 10, (4, 2))
    for _ in range(3):
        for model, steppers in ((ours, [opt]), (ref, [ref_muon, ref_adamw])):
            for s in steppers:
                s.zero_grad()
            model(x).pow(2).mean().backward()
            for s in steppers:
                s.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    restored = build_optimizer(ours, "muon", lr=0.02)
    restored.load_state_dict(opt.state_dict())
    assert restored.muon.state is restored.state and len(restored.state) == len(opt.state) == 9


class _WithNoDecay(nn.Module):
    """A ViT-like model naming a 3-D pos_embed (AdamW's half) and a hidden matrix (Muon's) in no_weight_decay()."""

    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 2, 8))
        self.blocks = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
        self.head = nn.Linear(8, 1)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "blocks.1.weight"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x + self.pos_embed).mean(1))


def test_muon_honours_the_whole_param_group_policy_on_both_halves():
    """Issue 26 item 5: no_weight_decay() names get no decay in Muon's half and in AdamW's, and lr_mult /
    layer_decay scale both halves (AdamW's from aux_lr)."""
    model = _WithNoDecay()
    opt = build_optimizer(model, "muon", lr=0.02, weight_decay=0.05, aux_lr=0.001, lr_mult={"blocks.0.*": 0.5})
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(model.pos_embed)] == 0.0 and wd[id(model.blocks[1].weight)] == 0.0
    assert wd[id(model.blocks[0].weight)] == 0.05 and wd[id(model.head.weight)] == 0.05
    muon = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    assert muon == {id(model.blocks[0].weight), id(model.blocks[1].weight)}
    assert lr[id(model.blocks[0].weight)] == pytest.approx(0.01)  # Muon's lr x the pattern's 0.5
    assert lr[id(model.blocks[0].bias)] == pytest.approx(0.0005)  # AdamW's aux_lr x 0.5
    assert lr[id(model.head.weight)] == pytest.approx(0.001)


def test_optional_pattern_may_match_nothing(tiny_model):
    """The finetune preset's "?backbone.*" applies where there is a backbone and is silent elsewhere."""
    opt = build_optimizer(tiny_model, "adamw", lr=1e-3, lr_mult={"?backbone.*": 0.1})
    assert [g["name"] for g in opt.param_groups] == ["default", "default/no_decay"]
    vit = build_optimizer(_ViTLike(), "adamw", lr=1e-3, lr_mult={"?blocks.*": 0.1})
    assert {g["name"]: g["lr"] for g in vit.param_groups}["blocks.*"] == pytest.approx(1e-4)


def test_app_path_honours_an_optimizer_target():
    """The app builds through DistributedSettings.build_optimizer: `optimizer._target_=torch.optim.Adamax` is an
    Adamax (it used to be silently an AdamW)."""
    from survopt_hydra.distributed import DistributedSettings

    settings = DistributedSettings()
    node = {"_target_": "torch.optim.Adamax", "name": "adamw", "lr": 0.003, "weight_decay": 0.0}
    opt = settings.build_optimizer(node, nn.Linear(3, 1), settings.setup())
    assert type(opt) is torch.optim.Adamax and opt.defaults["lr"] == 0.003


@pytest.mark.parametrize("name", sorted(OPTIM_INFO))
def test_schema_defaults_are_torchs_own_unless_the_record_says(name):
    """One source of truth: a bare option behaves like the torch class (sgd's momentum 0.9 is the record's)."""
    import dataclasses
    import inspect

    info = OPTIM_INFO[name]
    schema = info.schema()
    torch_defaults = {k: p.default for k, p in inspect.signature(info.torch_class().__init__).parameters.items()
                      if p.default is not p.empty}
    for kw in info.keywords:
        want = info.defaults.get(kw, torch_defaults[kw])
        got = getattr(schema, kw)
        assert got == (list(want) if isinstance(want, tuple) else want), kw
    assert {f.name for f in dataclasses.fields(schema)} >= set(info.keywords)


def test_plan_then_construct_with_a_factory_is_the_one_builder(tiny_model):
    """What ZeRO needs: the plan (class, groups, keywords) and the implementation choice, with its own factory."""
    import functools

    from survopt_hydra.optim.optimizer import construct, plan_optimizer

    plan = plan_optimizer(tiny_model, "adamw", lr=0.02, weight_decay=0.1)
    seen = {}

    def factory(groups, **kw):
        seen.update(kw)
        return plan.cls(groups, **kw)

    opt = construct(plan, functools.partial(factory))
    ref = build_optimizer(tiny_model, "adamw", lr=0.02, weight_decay=0.1)
    assert type(opt) is type(ref) and seen["fused"] is True and seen["betas"] == (0.9, 0.999)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in opt.param_groups] == \
        [(g["name"], g["lr"], g["weight_decay"]) for g in ref.param_groups]
    with pytest.raises(ConfigError, match="^optimizer.name: muon is two torch optimizers"):
        plan_optimizer(tiny_model, "muon")


def test_an_optimizer_missing_from_the_installed_torch_is_one_line(tiny_model, monkeypatch):
    """The records follow a newer torch than the oldest supported (2.4 has no Adafactor): a clear
    ConfigError naming the option and the installed version, not an AttributeError."""
    monkeypatch.delattr(torch.optim, "Adafactor")
    with pytest.raises(ConfigError, match=r"optimizer.name: 'adafactor' needs torch.optim.Adafactor, which torch .* "
                                          r"does not have"):
        build_optimizer(tiny_model, "adafactor", lr=1e-3)


def test_config_errors_cross_a_process_boundary_intact() -> None:
    """A ConfigError raised in a worker process (parallel sweep or tuning job) is pickled back to the
    parent: it must arrive with the same key and one-line message, subclasses included."""
    import pickle

    from survopt_hydra.errors import ConfigError
    from survopt_hydra.engine.monitors import SinkUnavailableError

    for err in (ConfigError("optimizer.lr", "must be > 0, got -1"), SinkUnavailableError("monitor.tb", "no tb")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and back.key == err.key and str(back) == str(err)
