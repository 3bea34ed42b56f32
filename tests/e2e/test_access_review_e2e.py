"""The access review after the real thing: an extension approved in Slack and a Revoke now clicked in
Slack, then `bot.py report access` in a subprocess on the bot's own database tells each apart."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from core.models import RequestStatus
from tests.e2e.botprocess import clean_env, run_cli
from tests.e2e.test_after_approval import dm_with, extend_from_dm, granted


async def test_the_report_shows_the_grant_extended_the_extension_continuing_it_and_who_ended_it_early(bot):
    start = bot.clock.now()
    _, first_id = await granted(bot, duration="30m")
    first = await bot.engine.requests.get(first_id)
    bot.clock.advance(minutes=10)
    extension = await extend_from_dm(bot, "1h")
    await bot.running.approve(extension, "U_CAROL")
    ext = await bot.running.request_for(extension)
    assert (await bot.engine.requests.get(ext.id)).status is RequestStatus.GRANTED

    bot.clock.advance(minutes=5)
    dm = await dm_with(bot, "Revoke now")
    await bot.slack.click(dm, text="Revoke now", user="U_ALICE")
    await bot.running.idle()
    assert (await bot.engine.requests.get(ext.id)).revoked_by == "U_ALICE"

    withdrawn = await bot.request(reason="never mind")
    withdrawn_id = (await bot.running.request_for(withdrawn)).id
    await bot.engine.cancel(withdrawn_id, "U_ALICE")

    since = (start - timedelta(hours=1)).isoformat()
    until = (bot.clock.now() + timedelta(hours=1)).isoformat()
    result = await run_cli(
        "report", "access", "--since", since, "--until", until, env=clean_env(JITBOT_DB=str(bot.running.db_path))
    )
    assert result.returncode == 0, result.stderr
    rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert set(rows) == {first_id, ext.id}  # the cancelled request was never access

    old = rows[first_id]
    assert (old["outcome"], old["outcome_detail"]) == ("extended", f"extended by request {ext.id}")
    assert old["ended_at"] == rows[ext.id]["access_from"]  # handed over: no gap
    new = rows[ext.id]
    assert new["outcome"] == "early" and new["approved_by"] == "U_CAROL"
    held_since = first.granted_at.strftime("%Y-%m-%d %H:%M:%S") + "Z"
    old_end = first.expires_at.strftime("%Y-%m-%d %H:%M:%S") + "Z"
    new_end = (first.expires_at + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S") + "Z"
    assert new["outcome_detail"] == (
        f"continues the access of request {first_id} (held since {held_since}, end moved from {old_end} to "
        f"{new_end}); ended by U_ALICE"
    )
    assert new["scheduled_end"] == new_end  # the end it had before Revoke now, not the moved one
    assert new["ended_at"] == bot.clock.now().strftime("%Y-%m-%d %H:%M:%S") + "Z"
