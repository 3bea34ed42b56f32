"""`bot.py report access` as an operator meets it: clear refusals, CSV on stdout, a file only when complete."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.e2e.botprocess import clean_env, run_cli
from tests.reports.conftest import ReviewDb

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", "last tuesday"], "--since 'last tuesday' is not a date"),
        (["--since", "2026-11-08", "--until", "2026-11-01"], "--since must be before --until"),
        (["--since", "2026-11-01", "--until", "2026-13-01"], "--until '2026-13-01' is not a date"),
    ],
)
async def test_a_period_that_is_not_one_is_refused_with_exit_2(review_db: ReviewDb, args, words) -> None:
    result = await run_cli("report", "access", *args, env=clean_env(JITBOT_DB=str(review_db.path)))
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr


async def test_the_csv_goes_to_stdout_and_the_count_to_stderr(review_db: ReviewDb) -> None:
    result = await run_cli(
        "report",
        "access",
        "--since",
        "2026-11-01T00:00:00+01:00",  # an offset is honoured: 2026-10-31 23:00 UTC
        "--until",
        "2026-11-08",
        env=clean_env(JITBOT_DB=str(review_db.path)),
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["request_id"] for r in rows} == set(review_db.in_period)
    assert result.stderr.strip() == f"{len(rows)} grants from 2026-10-31 23:00 to 2026-11-08 00:00 UTC"


async def test_an_output_that_cannot_be_written_leaves_no_partial_file(review_db: ReviewDb, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "review.html"
    result = await run_cli(
        "report",
        "access",
        "--since",
        "2026-11-01",
        "--format",
        "html",
        "--output",
        str(target),
        env=clean_env(JITBOT_DB=str(review_db.path)),
    )
    assert result.returncode == 1
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
    assert not target.parent.exists()
