"""Durations: one parser, one upper bound, for the flows file and the request form alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.config import check_config
from core.schema import MAX_DURATION, DurationTooLong, parse_duration
from tests.fakes.strategy import TEST_INTEGRATION_TYPES, TEST_STRATEGY_TYPES


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("10m", 600), (" 2h ", 7200), ("365d", 365 * 86400), ("8760h", 365 * 86400), ("0000000001d", 86400)],
)
def test_durations_up_to_a_year_parse(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["366d", "8761h", "31536001s", "99999999999d", "999999999999999999999999s", "9" * 5000 + "m"]
)
def test_a_duration_longer_than_a_year_is_refused_with_a_readable_error_not_an_overflow(text):
    with pytest.raises(DurationTooLong) as caught:
        parse_duration(text)
    assert isinstance(caught.value, ValueError)
    assert "at most 365d" in str(caught.value) and len(str(caught.value)) < 120


def test_the_maximum_is_a_year():
    assert MAX_DURATION == timedelta(days=365)


@pytest.mark.parametrize("text", ["", "0s", "-5m", "1w", "1.5h", "soon", "٣٠m"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(ValueError, match="is not a duration like"):
        parse_duration(text)


def test_a_flows_file_with_a_duration_over_a_year_is_a_located_config_error(tmp_path):
    path = tmp_path / "flows.yaml"
    path.write_text(
        "flows:\n"
        "  - name: db_access\n"
        "    label: Database Access\n"
        "    approval_channel: C1\n"
        "    request_timeout: 99999999999d\n"
        "    strategy:\n"
        "      type: fake\n"
        "      targets:\n"
        "        - {name: prod, label: Prod}\n"
        "    fields:\n"
        "      - {name: duration, label: Duration, type: duration, max: 400d, required: true}\n"
    )
    issues = check_config(path, strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES)
    assert [(issue.line, issue.path) for issue in issues] == [
        (5, "flows[0].request_timeout"),
        (11, "flows[0].fields[0].max"),
    ]
    assert all("at most 365d" in issue.message for issue in issues), issues
