"""Settings from the environment: the Slack tokens are secrets from the moment they are read."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from core.errors import StartupError
from core.logging import configure_logging
from core.secrets import SecretRegistry
from runtime import Runtime, Settings

BOT = "xoxb-1111-2222-settingsBotToken"
APP = "xapp-1-A111-3333-settingsAppToken"


def env(**values: str) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP, **values}


def test_the_tokens_never_show_in_the_settings_repr_or_str():
    settings = Settings.from_env(env())
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}", format(settings)):
        assert BOT not in text and APP not in text, text
        assert "config_path=" in text  # the rest is still there to read
    direct = Settings(bot_token=BOT, app_token=APP, config_path="flows.yaml", db_path="x.db")
    assert BOT not in repr(direct) and APP not in repr(direct)


def test_a_postgresql_password_is_a_secret_and_never_in_the_settings_repr():
    registry = SecretRegistry()
    url = "postgresql://jitbot:pg-pass-4d2a9c@db.internal:5432/jitbot"
    settings = Settings.from_env({**env(), "JITBOT_DB": url}, secrets=registry)
    assert settings.db_path == url
    assert "pg-pass-4d2a9c" not in repr(settings)
    assert (
        registry.scrub(f"connection to {url} failed")
        == "connection to postgresql://jitbot:***@db.internal:5432/jitbot failed"
    )


@pytest.mark.parametrize("value", ["0", "301", "soon", "nan"])
def test_a_lease_lifetime_outside_one_to_300_seconds_is_refused(value):
    with pytest.raises(StartupError, match="JITBOT_LEASE_SECONDS"):
        Settings.from_env({**env(), "JITBOT_LEASE_SECONDS": value})


def test_the_tokens_are_still_the_plain_strings_the_slack_clients_take():
    settings = Settings.from_env(env())
    assert settings.bot_token == BOT and settings.app_token == APP
    assert isinstance(settings.bot_token, str) and isinstance(settings.app_token, str)


def test_the_tokens_are_registered_secrets_as_soon_as_they_are_read():
    secrets = SecretRegistry()
    Settings.from_env(env(), secrets=secrets)
    assert secrets.scrub(f"auth with {BOT} then {APP}") == "auth with *** then ***"


@pytest.mark.parametrize(
    "swapped", [{"SLACK_BOT_TOKEN": APP, "SLACK_APP_TOKEN": BOT}, {"SLACK_BOT_TOKEN": "xoxp-user-token-value"}]
)
def test_a_token_refused_at_start_is_registered_too_and_not_in_the_error(swapped):
    secrets = SecretRegistry()
    with pytest.raises(StartupError) as caught:
        Settings.from_env(env(**swapped), secrets=secrets)
    for value in swapped.values():
        assert value not in str(caught.value)
        assert secrets.scrub(f"[{value}]") == "[***]"


def test_settings_built_directly_have_their_tokens_registered_by_the_runtime():
    settings = Settings(
        bot_token="xoxb-direct-construction-token",
        app_token="xapp-direct-construction-token",
        config_path="flows.yaml",
        db_path="x.db",
    )
    runtime = Runtime(settings)  # builds nothing until start(); its own registry unless given one
    assert runtime.secrets.scrub("xoxb-direct-construction-token xapp-direct-construction-token") == "*** ***"
    given = SecretRegistry()
    assert Runtime(settings, secrets=given).secrets is given
    assert given.scrub("xoxb-direct-construction-token xapp-direct-construction-token") == "*** ***"


def test_a_settings_object_logged_by_mistake_shows_no_token():
    secrets = SecretRegistry()
    settings = Settings.from_env(env(), secrets=secrets)
    stream = io.StringIO()
    root = logging.getLogger()
    saved_root, saved = (root.handlers[:], root.level), structlog.get_config()
    configure_logging("json", stream=stream, secrets=secrets)
    structlog.configure(cache_logger_on_first_use=False)
    try:
        structlog.get_logger("jitbot.test").info("starting", settings=settings, tokens=[settings.bot_token])
    finally:
        structlog.configure(**saved)
        root.handlers[:], level = saved_root
        root.setLevel(level)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert BOT not in stream.getvalue() and APP not in stream.getvalue()
    assert line["tokens"] == ["***"]


def test_the_http_address_is_read_from_its_new_name_and_still_from_the_old_one():
    assert Settings.from_env(env(JITBOT_HTTP_ADDR="0.0.0.0:8080")).health_address == "0.0.0.0:8080"
    assert Settings.from_env(env(JITBOT_HEALTH_ADDR="127.0.0.1:9090")).health_address == "127.0.0.1:9090"
    both = env(JITBOT_HTTP_ADDR="0.0.0.0:8080", JITBOT_HEALTH_ADDR="127.0.0.1:9090")
    assert Settings.from_env(both).health_address == "0.0.0.0:8080"
    assert Settings.from_env(env()).health_address is None


def test_the_api_rate_limit_is_a_whole_number_of_at_least_one():
    assert Settings.from_env(env()).api_rate_limit == 120
    assert Settings.from_env(env(JITBOT_API_RATE_LIMIT="30")).api_rate_limit == 30
    for bad in ("0", "-5", "ten", "1.5"):
        with pytest.raises(StartupError, match="JITBOT_API_RATE_LIMIT"):
            Settings.from_env(env(JITBOT_API_RATE_LIMIT=bad))
