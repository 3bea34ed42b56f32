"""The outbox across kill -9, and `audit verify` against tampering, with real `bot.py` subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.audit_schema_check import check_audit_trail
from tests.db_faults import lift_audit_triggers, run_sql
from tests.e2e.botprocess import BotProcess, clean_env, read_rows, run_cli
from tests.e2e.flows import db_access_flow, flows_file
from tests.fakes.audit_receivers import AuditReceiver
from tests.fakes.webhook_receiver import WebhookReceiver

AUDIT_SECRET = "audit-hmac-secret-kill-9"


def db_events(db: Path | str) -> list[tuple[int, str]]:
    return [(r["id"], r["event_id"]) for r in read_rows(db, "SELECT id, event_id FROM audit_events ORDER BY id")]


@pytest.fixture
async def webhook():
    async with WebhookReceiver(secret="unused-webhook-secret") as receiver:
        yield receiver


async def test_kill_9_during_delivery_loses_nothing_and_redelivers_with_the_same_event_ids(
    slack, webhook, tmp_path, databases
):
    async with AuditReceiver(secret=AUDIT_SECRET, holding=True) as destination:
        config = tmp_path / "flows.yaml"
        config.write_text(
            flows_file(db_access_flow(webhook.url, "1h", secret_env="JITBOT_TEST_WEBHOOK_SECRET"))
            + yaml.safe_dump(
                {"audit": {"destinations": [{"type": "http", "url": destination.url, "secret": AUDIT_SECRET}]}}
            )
        )
        bot = BotProcess(
            slack,
            config=config,
            db=databases.where(),
            logs=tmp_path / "logs",
            extra_env={"JITBOT_TEST_WEBHOOK_SECRET": "unused-webhook-secret"},
        )
        try:
            await bot.start()
            # The first batch (config.loaded) reaches the destination, which keeps it unanswered.
            await destination.wait_for(lambda: len(destination.events) >= 1)
            for n in range(3):  # more events while the batch is in flight: written beside the bot
                result = await bot.cli("identities", "set", f"U_{n}", f"user{n}@example.com")
                assert result.returncode == 0, result
            await bot.kill()  # mid-delivery: the destination has the batch, the cursor never moved
            destination.release()
            in_flight = {e["seq"]: e["event_id"] for e in destination.events}

            await bot.start()
            expected = db_events(bot.db)
            await destination.wait_for(
                lambda: {e["seq"] for e in destination.events} >= {seq for seq, _ in expected}, timeout=20
            )
            assert await bot.terminate() == 0
        finally:
            await bot.kill()

    received = [(e["seq"], e["event_id"]) for e in destination.events]
    stored = dict(db_events(bot.db))
    assert {seq for seq, _ in received} == set(stored)  # nothing lost
    assert all(stored[seq] == event_id for seq, event_id in received)  # a duplicate is the same event
    assert [seq for seq, _ in received].count(next(iter(in_flight))) == 2  # the batch in flight came again
    first_arrivals = list(dict.fromkeys(seq for seq, _ in received))
    assert first_arrivals == sorted(first_arrivals)  # in order
    assert destination.bad_requests == []
    check_audit_trail(bot.db)


# ── audit verify ────────────────────────────────────────────────────────────────────────────────


@pytest.fixture
async def trail(databases) -> dict[str, str]:
    """A database with a chained trail of 6 events (identity changes through the CLI), and its env."""
    env = clean_env(JITBOT_DB=str(databases.where()), USER="auditor")
    for n in range(6):
        result = await run_cli("identities", "set", f"U_{n}", f"user{n}@example.com", env=env)
        assert result.returncode == 0, result
    return env


def tamper(env: dict[str, str], *statements: str) -> None:
    """What someone with a database shell could do: lift the triggers, change rows."""
    lift_audit_triggers(env["JITBOT_DB"])
    run_sql(env["JITBOT_DB"], *statements)


async def test_verify_passes_an_untouched_chain(trail):
    result = await run_cli("audit", "verify", env=trail)
    assert result.returncode == 0, result
    assert "audit chain OK: 6 events, head seq 6" in result.stdout


async def test_verify_names_an_edited_row(trail):
    tamper(trail, "UPDATE audit_events SET detail = replace(detail, 'user3', 'mallory') WHERE id = 4")
    result = await run_cli("audit", "verify", env=trail)
    assert result.returncode == 1, result
    (event_id,) = [e for seq, e in db_events(trail["JITBOT_DB"]) if seq == 4]
    assert f"BROKEN at event {event_id} (seq 4)" in result.stderr and "edited" in result.stderr
    assert "Traceback" not in result.stderr


async def test_verify_names_the_event_after_a_deleted_row(trail):
    tamper(trail, "DELETE FROM audit_events WHERE id = 3")
    result = await run_cli("audit", "verify", env=trail)
    assert result.returncode == 1, result
    (event_id,) = [e for seq, e in db_events(trail["JITBOT_DB"]) if seq == 4]
    assert f"BROKEN at event {event_id} (seq 4)" in result.stderr and "removed" in result.stderr
    assert "Traceback" not in result.stderr


async def test_verify_catches_a_truncated_tail_from_a_file_destinations_copy(trail, tmp_path):
    copy = tmp_path / "copy.jsonl"
    export = await run_cli("audit", "export", "--since", "2000-01-01", "--until", "2100-01-01", env=trail)
    assert export.returncode == 0, export
    # What the file destination holds: every event with the chain head of its time.
    lines = export.json_lines()
    copy.write_text(
        "".join(
            json.dumps({**e, "chain_head": {"seq": e["seq"], "event_id": e["event_id"], "hash": e["hash"]}}) + "\n"
            for e in lines
        )
    )
    ok = await run_cli("audit", "verify", "--against", str(copy), env=trail)
    assert ok.returncode == 0, ok

    tamper(trail, "DELETE FROM audit_events WHERE id > 4")  # the newest rows removed: the chain itself still holds
    alone = await run_cli("audit", "verify", env=trail)
    assert alone.returncode == 0, alone
    result = await run_cli("audit", "verify", "--against", str(copy), env=trail)
    assert result.returncode == 1, result
    assert f"BROKEN at event {lines[5]['event_id']} (seq 6)" in result.stderr
    assert "removed from the database" in result.stderr and "Traceback" not in result.stderr


async def test_verify_of_an_unreadable_copy_is_a_sentence(trail, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    result = await run_cli("audit", "verify", "--against", str(bad), env=trail)
    assert result.returncode == 2 and "is not an audit event line" in result.stderr
    assert "Traceback" not in result.stderr


async def test_export_streams_csv_of_one_flow_between_dates(trail):
    result = await run_cli(
        "audit", "export", "--since", "2000-01-01", "--until", "2100-01-01", "--format", "csv", env=trail
    )
    assert result.returncode == 0, result
    rows = result.stdout.splitlines()
    assert rows[0].startswith("seq,event_id,at,type") and len(rows) == 7
    none = await run_cli(
        "audit", "export", "--since", "2000-01-01", "--until", "2100-01-01", "--flow", "db_access", env=trail
    )
    assert none.returncode == 0 and none.stdout == ""  # identity changes belong to no flow
    backwards = await run_cli("audit", "export", "--since", "2100-01-01", "--until", "2000-01-01", env=trail)
    assert backwards.returncode == 2 and "--until must be after --since" in backwards.stderr


async def test_audit_destinations_shows_each_backlog_and_last_error(tmp_path, databases):
    config = tmp_path / "flows.yaml"
    config.write_text(
        flows_file(db_access_flow("https://grants.example.com/", "1h", secret_env="JITBOT_TEST_WEBHOOK_SECRET"))
        + yaml.safe_dump({"audit": {"destinations": [{"type": "file", "path": "audit.jsonl", "name": "trail"}]}})
    )
    env = clean_env(JITBOT_DB=str(databases.where()), JITBOT_CONFIG=str(config))
    for n in range(3):
        assert (await run_cli("identities", "set", f"U_{n}", f"u{n}@example.com", env=env)).returncode == 0
    run_sql(  # as the bot leaves it after one delivery and a failure
        env["JITBOT_DB"],
        (
            "INSERT INTO audit_cursors (destination, position, first_seen_at, delivered_at, failures, last_error, "
            "last_error_at) VALUES ('trail', 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z', 2, "
            "'cannot write audit.jsonl: No space left on device', '2026-01-01T00:00:02.000000Z')"
        ),
    )
    result = await run_cli("audit", "destinations", env=env)
    assert result.returncode == 0, result
    assert result.stdout.startswith("trail\n  backlog: 2 events, oldest undelivered ")
    assert "delivered up to seq 1 of 3" in result.stdout
    assert "2 in a row): cannot write audit.jsonl: No space left on device" in result.stdout
