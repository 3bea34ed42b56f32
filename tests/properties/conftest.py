"""Hypothesis profiles for the property tests, and quiet logging while they run.

Profiles (pick one with JITBOT_HYPOTHESIS_PROFILE; the default is `jitbot-ci`):

    jitbot-ci     200 examples of up to 30 steps: the budget `make test` and CI spend, about 20 s when
                  nothing fails (derandomized when the environment variable CI is set, so CI explores
                  the same examples every run). 60 examples were too few: re-introducing known bugs
                  into the engine, 60 caught the rarer ones (a clean-up not retried, a grant left
                  `approved`) in 1-2 runs of 8, 200 in about half the runs and the common ones in 5 of 6.
    jitbot-deep   600 examples of up to 50 steps, for hunting locally after changing the engine
                  (about 2 minutes when nothing fails; run it with a few --hypothesis-seed values)

JITBOT_PROPERTY_EXAMPLES and JITBOT_PROPERTY_STEPS override the example and step counts of either.
Failing examples are kept in .pytest_cache/hypothesis (ignored by git) and replayed first next time,
except in CI, where no example database is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

IN_CI = bool(os.environ.get("CI"))
PROFILE = os.environ.get("JITBOT_HYPOTHESIS_PROFILE", "jitbot-ci")

_common = dict(
    deadline=None,
    derandomize=IN_CI,
    database=None
    if IN_CI
    else DirectoryBasedExampleDatabase(str(Path(__file__).resolve().parents[2] / ".pytest_cache" / "hypothesis")),
    # Each example builds a database and an event loop: slow by Hypothesis' standards, by design.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=False,
    # No explain phase: its "these lines only ran in failing cases" adds seconds and little here.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile("jitbot-ci", max_examples=200, stateful_step_count=30, **_common)
settings.register_profile("jitbot-deep", max_examples=600, stateful_step_count=50, **_common)


def property_settings() -> settings:
    """The selected profile, with the environment's example / step overrides applied."""
    chosen = settings.get_profile(PROFILE)
    overrides = {}
    if os.environ.get("JITBOT_PROPERTY_EXAMPLES"):
        overrides["max_examples"] = int(os.environ["JITBOT_PROPERTY_EXAMPLES"])
    if os.environ.get("JITBOT_PROPERTY_STEPS"):
        overrides["stateful_step_count"] = int(os.environ["JITBOT_PROPERTY_STEPS"])
    return settings(chosen, **overrides) if overrides else chosen


def _drop(_logger, _method, _event):
    raise structlog.DropEvent


@pytest.fixture(autouse=True)
def quiet_structlog() -> Iterator[None]:
    """Drop the engine's log lines (thousands per run, tracebacks included); restore the config after."""
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    structlog.configure(processors=[_drop], cache_logger_on_first_use=False)
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


def pytest_terminal_summary(terminalreporter) -> None:
    """One line of totals from the access-invariants machine: examples, steps, the longest sequence."""
    import sys

    module = sys.modules.get("tests.properties.test_access_invariants")
    stats = getattr(module, "STATS", None)
    if stats and stats["examples"]:
        terminalreporter.write_line(
            f"access invariants: {stats['examples']} state machines run (shrinking included), {stats['steps']} steps, "
            f"longest sequence {stats['longest']} steps, {stats['settles']} clean-up settles, {stats['seconds']:.1f}s"
        )
