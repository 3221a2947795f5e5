from pathlib import Path

import pytest

from hvd_online.config import config_as_dict, load_config, load_config_text
from hvd_online.errors import ConfigError


def test_defaults_are_safe():
    config = load_config_text("")
    assert config.console.host == "127.0.0.1"  # nothing open to the network by default
    assert config.console.token == ""  # generated at start


def test_overrides_parse_toml_values_and_win_over_the_file():
    config = load_config_text(
        '[train]\nlearning_rate = 0.1\n',
        overrides=["train.learning_rate=0.5", "stream.topic=abc", "stream.partitions=8",
                   "console.enabled=false", 'model.params={hidden = 3}'],
    )
    assert config.train.learning_rate == 0.5
    assert config.stream.topic == "abc" and config.stream.partitions == 8
    assert config.console.enabled is False
    assert config.model.params == {"hidden": 3}


def test_int_is_accepted_where_float_is_expected():
    assert load_config_text("[train]\nlearning_rate = 1\n").train.learning_rate == 1.0


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("[nope]\n", [], "unknown section [nope]"),
        ("[train]\nmax_step = 3\n", [], "unknown key 'train.max_step'"),
        ('[train]\nmax_steps = "many"\n', [], "'train.max_steps' must be int, got str"),
        ("[console]\nenabled = 1\n", [], "'console.enabled' must be bool"),
        ("[train\n", [], "config is not valid TOML"),
        ("", ["train.max_steps"], "must look like section.key=value"),
    ],
)
def test_bad_config_is_a_clear_error(text, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config_text(text, overrides)
    assert message in str(info.value)


def test_paths_in_a_config_file_are_relative_to_it(tmp_path: Path):
    (tmp_path / "cfg.toml").write_text(
        '[model]\ntemplate = "model.py:M"\n[produce]\ngenerator = "gen.py:g"\n')
    config = load_config(tmp_path / "cfg.toml")
    assert config.model.template == f"{tmp_path}/model.py:M"
    assert config.produce.generator == f"{tmp_path}/gen.py:g"


def test_missing_file_and_token_masking(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    data = config_as_dict(load_config_text('[console]\ntoken = "secret"\n'))
    assert data["console"]["token"] == "***"
