"""Settings: precedence, types, unknown keys, secrets, and the CLI's exit status 2."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

import attrs
import pytest

from callsbot.config import Settings, Tier, env_name, load_settings
from callsbot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    s = load_settings(None, environ={}, env_file=None)
    assert s.store.url == "memory://"
    assert s.store.window_seconds == 3600
    assert s.consensus.tiers == (Tier(3, 2), Tier(2, 1), Tier(1, 0), Tier(0, -1))


def test_shipped_config_toml_loads_and_documents_every_key() -> None:
    s = load_settings(ROOT / "config.toml", environ={}, env_file=None)
    # The history's relative SQLite path is taken relative to the config file's directory.
    assert s.history.url == f"sqlite:///{ROOT / 'callsbot-history.sqlite3'}"
    s = attrs.evolve(s, history=attrs.evolve(s.history, url=Settings().history.url))
    assert s == Settings()  # the shipped file states the defaults
    text = (ROOT / "config.toml").read_text()
    for name, cls in typing.get_type_hints(Settings).items():
        assert f"[{name}]" in text
        for field in attrs.fields(cls):
            if field.metadata.get("secret"):
                assert env_name(name, field.name) in text, field.name
            else:
                assert re.search(rf"^#? ?{field.name} =", text, re.M), f"{name}.{field.name}"


def test_precedence_env_beats_dotenv_beats_file_beats_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[store]\nwindow_seconds = 100\nretries = 7\nconnect_timeout = 9\n")
    dotenv = tmp_path / ".env"
    dotenv.write_text("CALLSBOT_STORE_WINDOW_SECONDS=200\nCALLSBOT_STORE_RETRIES=8\n")
    s = load_settings(path, environ={"CALLSBOT_STORE_WINDOW_SECONDS": "300"}, env_file=dotenv)
    assert s.store.window_seconds == 300  # environment
    assert s.store.retries == 8  # .env
    assert s.store.connect_timeout == 9.0  # file (int accepted for a float)
    assert s.store.socket_timeout == 2.0  # default


def test_env_lists_and_optionals(tmp_path: Path) -> None:
    s = load_settings(
        None,
        environ={
            "CALLSBOT_TELEGRAM_GROUPS": "@a, @b,-100123",
            "CALLSBOT_CIELO_LIST_ID": "42",
            "CALLSBOT_TELEGRAM_SKIP_FORWARDS": "yes",
            "CALLSBOT_CONSENSUS_TIERS": '[{"min_groups": 0, "points": -3}]',
            "CALLSBOT_OUTCOMES_FOLLOWUPS": "3600, 86400",
        },
        env_file=None,
    )
    assert s.telegram.groups == ("@a", "@b", "-100123")
    assert s.cielo.list_id == 42
    assert s.telegram.skip_forwards is True
    assert s.consensus.tiers == (Tier(0, -3),)
    assert s.outcomes.followups == (3600, 86400)


@pytest.mark.parametrize(
    ("toml", "environ", "key", "problem"),
    [
        ("[store]\nwindow_seconds = 'x'\n", {}, "store.window_seconds", "expected an integer"),
        ("[store]\nwindow_seconds = 0\n", {}, "store.window_seconds", "must be > 0"),
        ("[store]\nwindw_seconds = 1\n", {}, "store.windw_seconds", "unknown key"),
        ("[stor]\n", {}, "stor", "unknown section"),
        ("[store]\nurl = 'mysql://x'\n", {}, "store.url", "known: memory://, redis://, rediss://"),
        ("[telegram]\napi_hash = 'abc'\n", {}, "telegram.api_hash", "CALLSBOT_TELEGRAM_API_HASH"),
        ("[cielo]\napi_key = 'abc'\n", {}, "cielo.api_key", "is a secret"),
        (
            "[consensus]\ntiers = [{points = 1}]\n",
            {},
            "consensus.tiers[0].min_groups",
            "missing required value",
        ),
        (
            "[consensus]\ntiers = [{min_groups = 2, points = 1}]\n",
            {},
            "consensus.tiers",
            "min_groups = 0",
        ),
        ("[web]\nenabled = 'yes'\n", {}, "web.enabled", "expected true or false"),
        ("[consensus]\nmode = 'votes'\n", {}, "consensus.mode", "one of count, weighted"),
        (
            "[consensus]\nlevel3_threshold = 1.5\n",
            {},
            "consensus.level3_threshold",
            "must be >= level2_threshold (2)",
        ),
        (
            "[consensus]\nweight_max = 3.0\n",
            {"CALLSBOT_CONSENSUS_WEIGHT_MIN": "4"},
            "consensus.weight_max",
            "must be >= weight_min (4)",
        ),
        ("[consensus]\nhalf_life_seconds = 0\n", {}, "consensus.half_life_seconds", "> 0"),
        ("[log]\nformat = 'xml'\n", {}, "log.format", "must be one of text, json"),
        (
            "[outcomes]\nfollowups = [3600, 7200]\n",
            {},
            "outcomes.followups",
            "checkpoints must be among 300, 900, 3600, 14400, 86400",
        ),
        ("", {"CALLSBOT_OUTCOMES_FOLLOWUPS": "3600,60"}, "CALLSBOT_OUTCOMES_FOLLOWUPS", "[60]"),
        ("", {"CALLSBOT_STORE_RETRIES": "many"}, "CALLSBOT_STORE_RETRIES", "expected an integer"),
        ("", {"CALLSBOT_STORE_URL": "mongodb://x"}, "CALLSBOT_STORE_URL", "unknown store scheme"),
        ("", {"CALLSBOT_STOREURL": "x"}, "CALLSBOT_STOREURL", "unknown setting"),
        ("[store\n", {}, "config", "not valid TOML"),
    ],
)
def test_errors_name_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml), environ=environ, env_file=None)
    assert info.value.key == key
    assert problem in str(info.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", environ={}, env_file=None)


def test_secrets_are_not_in_repr() -> None:
    s = load_settings(
        None,
        environ={
            "CALLSBOT_TELEGRAM_API_HASH": "0123456789abcdef0123",
            "CALLSBOT_CIELO_API_KEY": "cielo-secret-key-123",
            "CALLSBOT_TG_BOT_TOKEN": "123456:ABCdefGhIjkl",
        },
        env_file=None,
    )
    assert s.telegram.api_hash == "0123456789abcdef0123"
    text = repr(s)
    for secret in ("0123456789abcdef0123", "cielo-secret-key-123", "123456:ABCdefGhIjkl"):
        assert secret not in text


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "callsbot", *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        cwd=cwd,
        timeout=60,
    )


def test_cli_config_error_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[store]\nwindow_seconds = -5\n")
    result = run_cli("--config", str(path), "check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "callsbot: config error: store.window_seconds: must be > 0, got -5"
    ]


def test_cli_unknown_store_scheme_exits_2(tmp_path: Path) -> None:
    result = run_cli("check", env={"CALLSBOT_STORE_URL": "postgres://x"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "CALLSBOT_STORE_URL" in result.stderr
    assert "redis://" in result.stderr


def test_secrets_are_trimmed_and_blank_means_unset(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_bytes(b"CALLSBOT_TG_BOT_TOKEN=123456:ABCdef  \r\n")
    s = load_settings(
        None,
        environ={"CALLSBOT_CIELO_API_KEY": "  cielo-key-1\t\n", "CALLSBOT_TELEGRAM_API_HASH": " "},
        env_file=dotenv,
    )
    assert s.cielo.api_key == "cielo-key-1"
    assert s.tg_bot.token == "123456:ABCdef"
    assert s.telegram.api_hash is None


def test_cli_api_key_unusable_as_a_header_exits_2_without_echoing_it(tmp_path: Path) -> None:
    result = run_cli("check", env={"CALLSBOT_CIELO_API_KEY": "sekrit\x01key"}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("callsbot: config error: CALLSBOT_CIELO_API_KEY: ")
    assert "U+0001" in lines[0]
    assert "sekrit" not in result.stderr


def test_weighted_consensus_from_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[consensus]\nmode = 'weighted'\nlevel3_threshold = 4.0\n")
    s = load_settings(path, environ={"CALLSBOT_CONSENSUS_LEVEL2_THRESHOLD": "3.5"}, env_file=None)
    assert (s.consensus.mode, s.consensus.weighted) == ("weighted", True)
    assert (s.consensus.level2_threshold, s.consensus.level3_threshold) == (3.5, 4.0)
    assert load_settings(None, environ={}, env_file=None).consensus.weighted is False


# -- a new user's mistakes (issue 18) -------------------------------------------------------------

SECRET = "hunter2-s3cret"


def test_a_config_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory") as info:
        load_settings(tmp_path, environ={}, env_file=None)
    assert info.value.key == "config"


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[store]\nurl = "memory://"\n# caf\xe9\n')
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_settings(path, environ={}, env_file=None)
    assert info.value.key == "config"


def test_a_dotenv_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_bytes(b"CALLSBOT_TG_BOT_TOKEN=caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_settings(None, environ={}, env_file=dotenv)
    assert info.value.key == str(dotenv)


@pytest.mark.parametrize("value", ['["@a", "@b"', "[@a, @b]", '["@a",]', "[1"])
def test_bad_json_in_a_list_variable_names_it(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"CALLSBOT_TELEGRAM_GROUPS": value}, env_file=None)
    assert info.value.key == "CALLSBOT_TELEGRAM_GROUPS"
    assert "JSON list" in info.value.problem
    assert "comma-separated" in info.value.problem


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"redis://:{SECRET}@127.0.0.1:99999/0", "port"),
        (f"redis://:{SECRET}@127.0.0.1:0/0", "port"),
        (f"redis://:{SECRET}@127.0.0.1:63o9/0", "port"),
        (f"redis://:{SECRET}@loc@lhost:6379/0", "percent-encode"),
        (f"redis://:{SECRET}:x@localhost:6379/0", "percent-encode"),
        (f"redis://:{SECRET}/x@localhost:6379/0", "percent-encode"),
        (f"redis://:{SECRET}@localhost:6379/zero", "database"),
        (f"rediss://:{SECRET}@localhost:6379/0?ssl_ca_cert=/x.pem", "ssl_ca_cert"),
        (f"redis//:{SECRET}@localhost:6379/0", "scheme"),
        (f"{SECRET}", "scheme"),
    ],
)
def test_store_url_mistakes_are_named_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"CALLSBOT_STORE_URL": url}, env_file=None)
    assert info.value.key == "CALLSBOT_STORE_URL"
    assert problem in info.value.problem
    assert SECRET not in str(info.value)


def test_percent_encoded_passwords_and_a_ca_file_are_fine(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    url = f"rediss://callsbot:p%40ss%3Aw%2Frd@redis.internal:6380/2?ssl_ca_certs={ca}"
    s = load_settings(None, environ={"CALLSBOT_STORE_URL": url}, env_file=None)
    assert s.store.url == url
    with pytest.raises(ConfigError, match="ssl_ca_certs") as info:
        load_settings(
            None,
            environ={"CALLSBOT_STORE_URL": f"rediss://:{SECRET}@h:6380/0?ssl_ca_certs=/nope.pem"},
            env_file=None,
        )
    assert SECRET not in str(info.value)


def _numeric_fields() -> list[tuple[str, str, type]]:
    out = []
    for section, cls in typing.get_type_hints(Settings).items():
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            tp = hints[field.name]
            args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
            if args[0] in (int, float):
                out.append((section, field.name, args[0]))
    return out


NUMERIC = _numeric_fields()


def test_every_number_is_covered() -> None:
    assert len(NUMERIC) > 60
    assert ("telegram", "workers", int) in NUMERIC
    assert ("scoring", "cooldown_seconds", int) in NUMERIC


@pytest.mark.parametrize(
    ("section", "name", "tp"), NUMERIC, ids=[f"{s}.{n}" for s, n, _ in NUMERIC]
)
def test_every_number_has_an_upper_bound_and_refuses_nan_and_inf(
    tmp_path: Path, section: str, name: str, tp: type
) -> None:
    var = env_name(section, name)
    huge = ["1000000000000000000"] + (["nan", "inf", "-inf", "1e400"] if tp is float else [])
    for value in huge:
        with pytest.raises(ConfigError) as info:
            load_settings(None, environ={var: value}, env_file=None)
        assert info.value.key == var, value
    if tp is float:
        for literal in ("nan", "inf", "-inf"):
            path = write(tmp_path, f"[{section}]\n{name} = {literal}\n")
            with pytest.raises(ConfigError, match="finite") as file_info:
                load_settings(path, environ={}, env_file=None)
            assert file_info.value.key == f"{section}.{name}"


def test_tier_numbers_are_bounded_too(tmp_path: Path) -> None:
    for tiers in ("{min_groups = 0, points = 1000000}", "{min_groups = 99999999999, points = 1}"):
        path = write(tmp_path, f"[consensus]\ntiers = [{{min_groups = 0, points = -1}}, {tiers}]\n")
        with pytest.raises(ConfigError, match=r"consensus\.tiers"):
            load_settings(path, environ={}, env_file=None)


@pytest.mark.parametrize(
    ("toml", "environ"),
    [
        ("", {"CALLSBOT_TELEGRAM_API_ID": SECRET}),
        ("", {"CALLSBOT_TELEGRAM_API_ID": "9" * 21}),
        ("", {"CALLSBOT_TG_BOT_TOKEN": f"{SECRET} x"}),
        ("", {"CALLSBOT_TELEGRAM_API_HASH": f"{SECRET}\x00"}),
        (f'[tg_bot]\napi_url = ["https://u:{SECRET}@x"]\n', {}),
        (f'[store]\nurl = "redis://:{SECRET}@h:6379/0?socket_timeout=1"\n', {}),
    ],
    ids=["api-id-type", "api-id-bound", "bot-token", "api-hash", "url-type", "url-param"],
)
def test_config_errors_never_echo_what_could_be_a_secret(
    tmp_path: Path, toml: str, environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml), environ=environ, env_file=None)
    for value in (SECRET, "9" * 20):
        assert value not in str(info.value)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--config", "{tmp}"], {}, "is a directory"),
        (["check"], {"CALLSBOT_TELEGRAM_GROUPS": "[@a"}, "CALLSBOT_TELEGRAM_GROUPS"),
        (["check"], {"CALLSBOT_STORE_URL": f"redis://:{SECRET}@h:70000/0"}, "port"),
        (["check"], {"CALLSBOT_STORE_URL": f"redis://:p@{SECRET}@h:6379/0"}, "%40"),
        (["check"], {"CALLSBOT_SCORING_ALERT_THRESHOLD": "nan"}, "finite"),
        (["check"], {"CALLSBOT_TELEGRAM_WORKERS": "100000000"}, "CALLSBOT_TELEGRAM_WORKERS"),
    ],
    ids=["directory", "json", "port", "password", "nan", "bound"],
)
def test_cli_config_mistakes_exit_2_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if argv[0] == "--config":
        argv.append("check")
    result = run_cli(*argv, env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("callsbot: config error: ")
    assert needle in lines[0]
    assert SECRET not in result.stderr


def test_cli_run_with_no_groups_is_a_config_error(tmp_path: Path) -> None:
    env = {
        "CALLSBOT_TELEGRAM_API_ID": "12345",
        "CALLSBOT_TELEGRAM_API_HASH": "0123456789abcdef0123456789abcdef",
        "CALLSBOT_CIELO_API_KEY": "fake-cielo-key",
        "CALLSBOT_TELEGRAM_GROUPS": "",
    }
    for role in ("all", "aggregator"):
        result = run_cli("run", "--role", role, env=env, cwd=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "telegram.groups" in lines[0]
        assert "0123456789abcdef" not in result.stderr
