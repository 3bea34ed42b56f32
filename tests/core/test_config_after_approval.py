"""The flows-file keys of the life of access after approval: warn_before, max_total_duration, reserved names."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.core.test_config import VALID, edit, load, located, write


def test_warn_before_defaults_to_ten_minutes_and_max_total_duration_to_none(tmp_path, monkeypatch):
    monkeypatch.setenv("JITBOT_TEST_TOKEN", "t")
    flow = load(write(tmp_path, VALID)).flows[0]
    assert flow.warn_before == timedelta(minutes=10)
    assert flow.max_total_duration is None


@pytest.mark.parametrize(
    ("written", "expected"),
    [("0", timedelta(0)), ("0s", timedelta(0)), ("'0'", timedelta(0)), ("5m", timedelta(minutes=5))],
)
def test_warn_before_takes_a_duration_or_zero_for_off(tmp_path, monkeypatch, written, expected):
    monkeypatch.setenv("JITBOT_TEST_TOKEN", "t")
    text = edit(
        "    request_timeout: 24h\n",
        f"    request_timeout: 24h\n    warn_before: {written}\n    max_total_duration: 4h\n",
    )
    flow = load(write(tmp_path, text)).flows[0]
    assert flow.warn_before == expected
    assert flow.max_total_duration == timedelta(hours=4)


def test_a_malformed_warn_before_is_an_error_with_its_line(tmp_path):
    text = edit("    request_timeout: 24h\n", "    request_timeout: 24h\n    warn_before: soon\n")
    ((line, path, message),) = located(write(tmp_path, text))
    assert (line, path) == (35, "flows[0].warn_before") and "not a duration" in message


@pytest.mark.parametrize("name", ["help", "list"])
def test_a_flow_may_not_be_named_like_a_command(tmp_path, name):
    path = write(tmp_path, edit("  - name: db_access\n", f"  - name: {name}\n"))
    assert located(path) == [(10, "flows[0].name", f"flow name '{name}' is reserved: `/sym {name}` is a command")]


def test_a_max_total_duration_shorter_than_a_duration_the_form_offers_is_an_error(tmp_path):
    text = edit("    request_timeout: 24h\n", "    request_timeout: 24h\n    max_total_duration: 30m\n")
    ((line, path, message),) = located(write(tmp_path, text))
    assert (
        line is not None
        and path == "flows[0].max_total_duration"
        and "longest duration the form offers (1h)" in message
    )
