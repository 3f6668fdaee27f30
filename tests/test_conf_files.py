"""The YAML option files are renderings of the schema dataclasses, and the dataclasses are real (issue 26).

* every ``conf/<group>/<option>.yaml`` (and the app's ``train_conf/``) is exactly what its schema
  renders to: edit the dataclass, then rerun the writer;
* composed through Hydra, every option's node holds the schema's defaults;
* the dataclasses import from their modules and a composed config pickles with the standard library;
* importing the conf package registers nothing in Hydra's ConfigStore.
"""
from __future__ import annotations

import dataclasses
import importlib
import pickle
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from survopt_hydra.schemas import GROUPS
from survopt_hydra.schemas.render import conf_dir, library_files

ROOT = Path(__file__).resolve().parents[1]
APP_CONF = ROOT / "survopt_hydra" / "app" / "train_conf"


def test_library_yaml_files_are_the_schemas_rendered():
    files = library_files()
    root = conf_dir()
    assert root.resolve() == (ROOT / "conf").resolve()
    for rel, text in files.items():
        assert (root / rel).read_text() == text, f"{rel} drifted: run python -m survopt_hydra.schemas.render"
    written = {str(p.relative_to(root)) for p in root.glob("*/*.yaml") if p.parent.name != "preset"}
    assert written == set(files), "a YAML file without a schema (or the reverse)"


def test_app_yaml_files_are_the_app_schemas_rendered():
    from survopt_hydra.app.schemas import conf_files

    for rel, text in conf_files().items():
        assert (APP_CONF / rel).read_text() == text, f"{rel} drifted: run python -m survopt_hydra.app.schemas"


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_composed_option_holds_its_schemas_defaults(group):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        for name, schema in GROUPS[group].items():
            node = compose(overrides=[f"+{group}={name}"])[group]
            want = OmegaConf.to_container(OmegaConf.structured(schema))
            assert OmegaConf.to_container(node) == want, f"{group}={name}"


def test_dataclasses_are_importable_and_a_composed_config_pickles():
    from survopt_hydra.schemas.clipping import NormClippingConfig
    from survopt_hydra.schemas.optimizers import AdamWConfig, SGDConfig
    from survopt_hydra.schemas.scheduler import WarmupCosineConfig

    for cls in (AdamWConfig, SGDConfig, WarmupCosineConfig, NormClippingConfig):
        assert dataclasses.is_dataclass(cls)
        assert getattr(importlib.import_module(cls.__module__), cls.__name__) is cls
        assert pickle.loads(pickle.dumps(cls(lr=0.5) if "lr" in cls.__dataclass_fields__ else cls())) is not None
    typed = OmegaConf.structured(AdamWConfig(lr=0.25))
    again = pickle.loads(pickle.dumps(typed))
    assert OmegaConf.get_type(again) is AdamWConfig and again.lr == 0.25
    from survopt_hydra.app.compose import compose_train

    cfg = compose_train(["optimizer=sgd", "+preset=large_model"])
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_the_conf_package_registers_nothing():
    from hydra.core.config_store import ConfigStore

    before = set(ConfigStore.instance().repo)
    importlib.reload(importlib.import_module("survopt_hydra.conf"))
    importlib.import_module("survopt_hydra.schemas")
    assert set(ConfigStore.instance().repo) == before
    assert not any(g in ConfigStore.instance().repo for g in GROUPS)


@pytest.fixture()
def clean_store():
    """Hydra's ConfigStore is process-wide: give the test one without the library's groups (Hydra's own entries
    stay) and put the old one back."""
    import copy

    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    saved = copy.deepcopy(store.repo)
    for group in [*GROUPS, "preset"]:
        store.repo.pop(group, None)
    yield store
    store.repo = saved


def test_store_options_keeps_the_apps_own_entries(clean_store):
    """The Python opt-in stores every library option and preset except where the app has one of that name; the
    app's entry composes unchanged, the library's typed options beside it, a preset with its defaults list."""
    from hydra import compose, initialize

    from survopt_hydra.schemas.optimizers import SGDConfig
    from survopt_hydra.schemas.store import store_options

    clean_store.store(group="optimizer", name="adamw", node={"_target_": "torch.optim.AdamW", "lr": 0.123})
    stored = store_options()
    assert "adamw" not in stored["optimizer"] and "sgd" in stored["optimizer"]
    assert set(stored["preset"]) == {"finetune", "large_model"} and "plateau" in stored["scheduler"]
    assert store_options() == {}  # idempotent: everything is taken now
    clean_store.store(group="scheduler", name="app_root", node={"defaults": ["_self_"]})
    with initialize(version_base=None):
        own = compose(overrides=["+optimizer=adamw"]).optimizer
        assert OmegaConf.to_container(own) == {"_target_": "torch.optim.AdamW", "lr": 0.123}
        sgd = compose(overrides=["+optimizer=sgd", "optimizer.lr=0.5"]).optimizer
        assert OmegaConf.get_type(sgd) is SGDConfig and sgd.lr == 0.5
        tuned = compose(overrides=["+optimizer=sgd", "+scheduler=cosine", "+preset=large_model"])
        # the preset's override picks optimizer/adamw - the app's own, which keeps winning - and sets its values
        assert tuned.optimizer._target_ == "torch.optim.AdamW" and tuned.optimizer.lr == 3e-3
        assert tuned.scheduler.name == "cosine" and tuned.scheduler.eta_min == 1e-6
    with pytest.raises(Exception, match="groups: unknown group"):
        store_options(["optimiser"])
