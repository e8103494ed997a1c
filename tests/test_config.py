from pathlib import Path

import pytest

from slurmcast.config import Settings, load_settings
from slurmcast.errors import ConfigError


def test_defaults():
    settings = load_settings({}, {}, None)
    assert settings == Settings()
    assert (settings.ws_port, settings.http_port, settings.source) == (5011, 5012, "simulator")
    assert (settings.jobs_interval, settings.nodes_interval, settings.metrics_interval) == (
        5.0,
        5.0,
        15.0,
    )


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path):
    config = tmp_path / "slurmcast.toml"
    config.write_text('ws_port = 7000\nhttp_port = 7001\njobs_interval = 2.5\nhost = "127.0.0.1"\n')
    env = {"SLURMCAST_WS_PORT": "8000", "SLURMCAST_HTTP_PORT": "8001"}
    settings = load_settings({"ws_port": "9000"}, env, config)
    assert settings.ws_port == 9000  # flag
    assert settings.http_port == 8001  # environment
    assert settings.jobs_interval == 2.5  # file
    assert settings.host == "127.0.0.1"  # file
    assert settings.metrics_interval == 15.0  # default


def test_config_path_from_environment(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("sim_seed = 7\n")
    assert load_settings({}, {"SLURMCAST_CONFIG": str(config)}).sim_seed == 7


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({"MOCK_MODE": "true"}, "simulator"),
        ({"MOCK_MODE": "false"}, "slurm"),
        ({"MOCK_MODE": "false", "SLURMCAST_SOURCE": "simulator"}, "simulator"),
    ],
)
def test_mock_mode_alias(env, source):
    assert load_settings({}, env).source == source


def test_flag_beats_mock_mode():
    assert load_settings({"source": "simulator"}, {"MOCK_MODE": "false"}).source == "simulator"


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"ws_port": "abc"}, {}, "--ws-port: expected int"),
        ({}, {"SLURMCAST_WS_PORT": "70000"}, "SLURMCAST_WS_PORT: must be at most 65535"),
        ({"source": "pbs"}, {}, "is not one of simulator, slurm"),
        ({"jobs_interval": "0"}, {}, "must be greater than 0"),
        ({}, {"MOCK_MODE": "maybe"}, "MOCK_MODE: expected true or false"),
        ({"log_level": "loud"}, {}, "is not one of DEBUG"),
        ({"sim_nodes": "4"}, {}, "must be at least 8"),
    ],
)
def test_bad_values_name_their_origin(flags, env, message):
    with pytest.raises(ConfigError) as info:
        load_settings(flags, env)
    assert message in info.value.message


def test_log_level_is_case_insensitive():
    assert load_settings({"log_level": "debug"}, {}).log_level == "DEBUG"


def test_bad_config_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, {}, tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("ws_port = = 3")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings({}, {}, broken)
    typo = tmp_path / "typo.toml"
    typo.write_text("ws_prot = 3")
    with pytest.raises(ConfigError, match=r"unknown keys: ws_prot"):
        load_settings({}, {}, typo)
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('ws_port = "x"\njobs_interval = true')
    with pytest.raises(ConfigError, match=r"wrong\.toml: ws_port: expected int"):
        load_settings({}, {}, wrong_type)
