from dataclasses import fields
from pathlib import Path

import pytest

from slurmcast.config import Settings, load_settings
from slurmcast.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings({}, {}, None)
    assert settings == Settings()
    assert (settings.ws_port, settings.http_port, settings.source) == (5011, 5012, "simulator")
    assert (settings.jobs_interval, settings.nodes_interval, settings.metrics_interval) == (
        5.0,
        5.0,
        15.0,
    )


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "slurmcast.toml"
    config.write_text('ws_port = 7000\nhttp_port = 7001\njobs_interval = 2.5\nhost = "127.0.0.1"\n')
    env = {"SLURMCAST_WS_PORT": "8000", "SLURMCAST_HTTP_PORT": "8001"}
    settings = load_settings({"ws_port": "9000"}, env, config)
    assert settings.ws_port == 9000  # flag
    assert settings.http_port == 8001  # environment
    assert settings.jobs_interval == 2.5  # file
    assert settings.host == "127.0.0.1"  # file
    assert settings.metrics_interval == 15.0  # default


def test_config_path_from_environment(tmp_path: Path) -> None:
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
def test_mock_mode_alias(env: dict[str, str], source: str) -> None:
    assert load_settings({}, env).source == source


def test_flag_beats_mock_mode() -> None:
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
def test_bad_values_name_their_origin(
    flags: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(flags, env)
    assert message in info.value.message


def test_log_level_is_case_insensitive() -> None:
    assert load_settings({"log_level": "debug"}, {}).log_level == "DEBUG"


def test_bad_config_files(tmp_path: Path) -> None:
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


FLOAT_OPTIONS = [spec.name for spec in fields(Settings) if type(spec.default) is float]
NUMERIC_OPTIONS = [spec.name for spec in fields(Settings) if type(spec.default) in (int, float)]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.mark.parametrize("name", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"])
def test_float_options_refuse_nan_and_infinity_from_flags_and_environment(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as from_flag:
        load_settings({name: value}, {})
    assert from_flag.value.message.startswith(f"{flag(name)}: ")
    env = "SLURMCAST_" + name.upper()
    with pytest.raises(ConfigError) as from_env:
        load_settings({}, {env: value})
    assert from_env.value.message.startswith(f"{env}: ")


@pytest.mark.parametrize("name", FLOAT_OPTIONS)
@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "+inf"])
def test_float_options_refuse_nan_and_infinity_from_the_file(
    tmp_path: Path, name: str, literal: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"{name} = {literal}\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, {}, config)
    assert info.value.message.startswith(f"{config}: {name}: ")


@pytest.mark.parametrize("name", FLOAT_OPTIONS)
def test_float_options_refuse_negative_values_and_values_past_their_maximum(name: str) -> None:
    spec = next(s for s in fields(Settings) if s.name == name)
    # Every float option is a duration, a rate, a count or a percentage: none may be negative.
    with pytest.raises(ConfigError, match=r"must be (greater than 0|at least 0)"):
        load_settings({name: "-1"}, {})
    maximum = spec.metadata["maximum"]
    assert maximum is not None, f"{name} has no upper bound"
    with pytest.raises(ConfigError, match="must be at most"):
        load_settings({name: str(maximum * 10)}, {})
    assert getattr(load_settings({name: str(maximum)}, {}), name) == maximum


def test_a_nan_leeway_cannot_switch_off_token_expiry() -> None:
    for value in ("nan", "inf", "1e18", "301"):
        with pytest.raises(ConfigError, match="SLURMCAST_JWT_LEEWAY"):
            load_settings({}, {"SLURMCAST_JWT_LEEWAY": value})
    assert load_settings({}, {"SLURMCAST_JWT_LEEWAY": "300"}).jwt_leeway == 300.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ws_port = [1]", "ws_port: expected int, got [1]"),
        ("ws_port = 2024-01-01", "ws_port: expected int, got datetime.date(2024, 1, 1)"),
        ("ws_port = 07:32:00", "ws_port: expected int, got datetime.time(7, 32)"),
        ("jobs_interval = {a = 1}", "jobs_interval: expected float, got {'a': 1}"),
        ("jobs_interval = 1979-05-27T07:32:00Z", "jobs_interval: expected float, got datetime"),
        ("jobs_interval = true", "jobs_interval: expected float, got True"),
        ("ws_port = 5011.5", "ws_port: expected int, got 5011.5"),
        ("ws_port = 1e300", "ws_port: must be at most 65535"),
        ("sim_seed = inf", "sim_seed: expected int, got inf"),
        ('host = ["0.0.0.0"]', "host: expected str, got ['0.0.0.0']"),
        ("host = 5", "host: expected str, got 5"),
        ('host = "a\\u0000b"', "host: must not contain NUL"),
        ('source = { kind = "slurm" }', "source: expected str"),
        ('history_size = "jobs=\\u00b2"', "history_size: expected entries like jobs=1000"),
        ('history_size = "jobs=99999999999999999999"', "history_size: jobs must be at most"),
    ],
)
def test_config_values_of_the_wrong_type_are_configuration_errors(
    tmp_path: Path, line: str, message: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, {}, config)
    assert info.value.message.startswith(f"{config}: ")
    assert message in info.value.message


def test_integral_floats_and_numeric_text_still_convert(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("ws_port = 6000.0\njobs_interval = 2\n")
    settings = load_settings({"http_port": "6001"}, {"SLURMCAST_NODES_INTERVAL": "2.5"}, config)
    assert (settings.ws_port, settings.http_port) == (6000, 6001)
    assert (settings.jobs_interval, settings.nodes_interval) == (2.0, 2.5)
    assert isinstance(settings.jobs_interval, float)


@pytest.mark.parametrize("name", NUMERIC_OPTIONS)
def test_every_numeric_option_refuses_a_list_from_the_file(tmp_path: Path, name: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"{name} = [1]\n")
    with pytest.raises(ConfigError, match=rf"{name}: expected (int|float), got \[1\]"):
        load_settings({}, {}, config)


INT_OPTIONS = [spec.name for spec in fields(Settings) if type(spec.default) is int]


@pytest.mark.parametrize("name", INT_OPTIONS)
def test_integer_options_refuse_non_integers_from_every_origin(tmp_path: Path, name: str) -> None:
    for value in ("nan", "inf", "1e400", "1.5", "0x10"):
        with pytest.raises(ConfigError, match=rf"^{flag(name)}: expected int"):
            load_settings({name: value}, {})
    for literal in ("nan", "inf", "1.5", "2024-01-01", '"x"'):
        config = tmp_path / "c.toml"
        config.write_text(f"{name} = {literal}\n")
        with pytest.raises(ConfigError, match=rf"{name}: expected int"):
            load_settings({}, {}, config)
