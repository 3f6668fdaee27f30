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
