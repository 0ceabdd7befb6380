"""Typed configuration: profiles load, overrides apply, and every mistake is one line naming the field."""

from __future__ import annotations

import pytest
import yaml

from core.config import ConfigError, S3JediConfig, config_hash, load_config, save_config, to_yaml
from tests.conftest import REPO


@pytest.mark.parametrize("profile", ["tiny", "sd14", "sdxl", "toyworld"])
def test_every_shipped_profile_loads(profile):
    cfg = load_config(profile)
    assert cfg.profile == profile


def test_tiny_is_the_default_and_all_tiny():
    cfg = load_config()
    assert set(cfg.models.model_dump().values()) == {"tiny"}
    assert S3JediConfig() == cfg


def test_overrides_parse_yaml_values():
    cfg = load_config("tiny", ["seed=7", "ray.num_cpus=2", "models.sd=/tmp/x", "ray.address=null"])
    assert (cfg.seed, cfg.ray.num_cpus, cfg.models.sd, cfg.ray.address) == (7, 2, "/tmp/x", None)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seed=abc", "seed: Input should be a valid integer"),
        ("seed=-1", "seed: Input should be greater than or equal to 0"),
        ("ray.num_cpus=0", "ray.num_cpus: Input should be greater than or equal to 1"),
        ("ray.num_cpu=2", "ray.num_cpu: unknown field"),
        ("modelz.sd=x", "modelz: unknown field"),
        ("models.sd.x=1", "models.sd is a value, not a section"),
        ("seed", "expected dotted.key=value"),
        (
            "datagen.instances.max_detections=2",
            "datagen.instances: Value error, max_detections (2) must be >= max_per_image (4)",
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_field(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_bad_yaml_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  sd: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="built-in profiles: sd14, sdxl, tiny"):
        load_config("nope")


def test_config_round_trips_through_yaml_and_is_saved_with_its_hash(tmp_path):
    cfg = load_config("sd14", ["seed=3"])
    again = S3JediConfig.model_validate(yaml.safe_load(to_yaml(cfg)))
    assert again == cfg and config_hash(again) == config_hash(cfg)
    saved = save_config(cfg, tmp_path / "out")
    assert saved.read_text().startswith(f"# config hash {config_hash(cfg)}")
    assert load_config(saved) == cfg
    assert config_hash(load_config("sd14", ["seed=4"])) != config_hash(cfg)


def test_profiles_dir_is_the_repo_configs():
    assert (REPO / "configs" / "tiny.yaml").is_file()


def test_an_error_names_its_source_the_set_or_the_profile(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", ["seed=3", "datagen.foo=1"])
    assert str(err.value) == "--set datagen.foo=1: datagen.foo: unknown field"
    with pytest.raises(ConfigError) as err:
        load_config("tiny", ["train.jedi.data.sources=[{kind: nope, path: x}]"])
    assert str(err.value).startswith(
        "--set train.jedi.data.sources=[{kind: nope, path: x}]: train.jedi.data.sources.0.kind"
    )
    mine = tmp_path / "mine.yaml"
    mine.write_text("datagen:\n  foo: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(mine, ["seed=3"])
    assert str(err.value) == f"{mine}: datagen.foo: unknown field"


def test_a_config_made_where_a_plugin_method_is_registered_validates_where_it_is_not():
    """Ray workers and Serve replicas validate the config the driver sends them; a default that listed
    whatever this process had registered would name a method they do not know."""
    from core.methods import METHODS, Method
    from core.methods.dreambooth import plan

    METHODS["plugin-only"] = Method("plugin-only", "registered by a plugin", plan)
    try:
        sent = load_config("tiny").model_dump(mode="json")
    finally:
        del METHODS["plugin-only"]
    assert "plugin-only" not in sent["toyworld"]["eval"]["finetune_methods"]
    S3JediConfig.model_validate(sent)
