"""The API fuzzed by Schemathesis (pinned in requirements-dev.txt) against a running `bot.py run`.

The bot is a real subprocess serving its HTTP API, with the Slack emulator and the webhook receiver
on the other side; Schemathesis reads `/v1/openapi.json` and sends generated and malformed input to
every operation, then follows the document's links (create, then read, approve, deny). It must
find no 500 and no answer that the document does not describe, within a bounded number of examples
and a fixed seed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.e2e.api_helpers import free_port
from tests.e2e.botprocess import BotProcess, clean_env, run_cli
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, standard_flow
from tests.e2e.flows import flow, flows_file, webhook_strategy

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("JITBOT_FUZZ_EXAMPLES", "100"))  # per operation; CI keeps the default (~20 s)
SEED = int(os.environ.get("JITBOT_FUZZ_SEED", "20261130"))  # fixed in CI; vary it locally to explore
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
SCHEMATHESIS = Path(sys.executable).with_name("st")


def every_field_type_flow(url: str) -> dict:
    """A flow whose form has every field type, so the fuzzer meets every rule of the form."""
    return flow(
        "every_field",
        "Every field",
        webhook_strategy(
            url, {"name": "one", "label": "One"}, {"name": "two", "label": "Two"}, secret=f"${{env:{SECRET_ENV}}}"
        ),
        [
            {"name": "reason", "label": "Why", "type": "text", "required": True},
            {"name": "ticket", "label": "Ticket", "type": "string"},
            {"name": "count", "label": "Count", "type": "int"},
            {"name": "urgent", "label": "Urgent", "type": "bool"},
            {"name": "env", "label": "Env", "type": "list", "allowed_values": ["dev", "prod"]},
            {"name": "duration", "label": "Duration", "type": "duration", "max": "4h", "default": "1h"},
        ],
    )


async def test_no_input_makes_the_api_answer_500_and_every_answer_matches_its_document(
    slack, receiver, tmp_path, databases
):
    config = tmp_path / "flows.yaml"
    config.write_text(flows_file(standard_flow(receiver.url, approvers=None), every_field_type_flow(receiver.url)))
    port = free_port()
    bot = BotProcess(
        slack,
        config=config,
        db=databases.where(),
        logs=tmp_path / "logs",
        extra_env={
            "JITBOT_HTTP_ADDR": f"127.0.0.1:{port}",
            "JITBOT_API_RATE_LIMIT": "1000000",
            SECRET_ENV: WEBHOOK_SECRET,
        },
    )
    made = await run_cli("tokens", "create", "--user", "U_BOB", "--scope", "request,decide,read", env=bot.env)
    assert made.returncode == 0, made
    token = made.stdout.strip()
    await bot.start()
    try:
        fuzz = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "run",
            f"http://127.0.0.1:{port}/v1/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--generation-database",
            "none",
            "--request-timeout",
            "20",
            "--no-color",
            cwd=tmp_path,
            env=clean_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(fuzz.communicate(), 540)
        report = out.decode(errors="replace")
        assert fuzz.returncode == 0, report
        assert "No issues found" in report or "passed" in report, report
    finally:
        await bot.terminate()
    crashes = [r for r in bot.log_records() if r.get("event") == "api.crashed"]
    assert crashes == [], crashes
    # Every request the fuzzer made is its own token user's: none may be approved by it, so nothing was granted.
    assert receiver.accepted("grant") == []
