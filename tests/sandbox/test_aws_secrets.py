"""The sandbox never reads `${aws_secret:…}` from AWS Secrets Manager with whatever credentials the
machine has: each reference gets a made-up value of the sandbox's own, said in one line at start,
and nothing connects to AWS. The AWS endpoint here is a local listener that counts connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sandbox.directory import DEFAULT_APPROVER_ID, REQUESTER_ID
from tests.fakes.moto_server import isolate_aws_env
from tests.sandbox.conftest import start_sandbox

FLOWS = """
integrations:
  aptible_main:
    type: aptible
    organization_id: 00000000-0000-0000-0000-000000000000
    username: jitbot@example.com
    password: ${aws_secret:jitbot/aptible#password}
flows:
  - name: vendor
    label: Vendor portal
    approval_channel: C0APPROVALS
    strategy:
      type: webhook
      url: http://127.0.0.1:9/grants
      secret: ${env:WEBHOOK_SECRET}
      headers: {X-Api-Key: "${aws_secret:jitbot/vendor-key}"}
      targets: [{name: portal, label: Portal}]
    fields:
      - {name: reason, label: Why, type: text, required: true}
      - {name: duration, label: How long, type: duration, allowed_values: [15m, 1h], required: true}
"""


class AwsEndpoint:
    """A TCP listener standing where AWS would be: it only counts who connects."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> AwsEndpoint:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(answer, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_aws_secret_references_get_made_up_values_and_aws_is_never_called(monkeypatch, tmp_path: Path):
    config = tmp_path / "flows.yaml"
    config.write_text(FLOWS)
    async with AwsEndpoint() as aws:
        isolate_aws_env(monkeypatch, tmp_path, endpoint_url=aws.url)
        box = await start_sandbox(monkeypatch, config)
        try:
            assert aws.connections == 0
            said = [n for n in box.notes if "aws_secret" in n]
            assert said == [
                "${aws_secret:jitbot/aptible#password}: not read from AWS Secrets Manager; "
                "the sandbox uses a made-up value",
                "${aws_secret:jitbot/vendor-key}: not read from AWS Secrets Manager; the sandbox uses a made-up value",
            ]
            # The flow still works end to end, at the built-in receiver, with the made-up header value.
            emu = box.emu
            await emu.slash_command(user=REQUESTER_ID, command="/sym", text="vendor")
            view = await emu.wait_for_view(REQUESTER_ID, contains="Request access")
            await emu.submit_view(view, {"target": "portal", "field:reason": "audit", "field:duration": "15m"})
            message = await emu.wait_for_message("C0APPROVALS", contains="Vendor portal")
            await emu.click(message, user=DEFAULT_APPROVER_ID, text="Approve")
            await emu.wait_for_message("C0APPROVALS", contains="access granted until")
            assert aws.connections == 0
            emu.verify()
        finally:
            await box.stop()


def test_each_key_asked_of_one_secret_is_in_its_made_up_json_and_the_values_differ(tmp_path: Path):
    import json

    from sandbox.made_up_secrets import MadeUpSecrets

    flows = tmp_path / "flows.yaml"
    flows.write_text(
        "# ${aws_secret:only/in/a/comment}\n"
        "a: ${aws_secret:db#user}\n"
        'b: ["${aws_secret:db#password}", "x ${aws_secret:plain} y"]\n'
    )
    made_up = MadeUpSecrets.of_file(flows)
    document = json.loads(made_up.read("db"))
    assert sorted(document) == ["password", "user"] and document["user"] != document["password"]
    assert made_up.read("plain").startswith("sandbox-made-up-") and made_up.read("plain") == made_up.read("plain")
    assert [str(r) for r in made_up.references] == [
        "${aws_secret:db#user}",
        "${aws_secret:db#password}",
        "${aws_secret:plain}",
    ]


async def test_a_sandbox_restarted_on_its_kept_database_after_a_flow_changed_never_reads_aws(
    monkeypatch, tmp_path: Path
):
    # A live grant whose flow was edited since gets its recorded strategy rebuilt at start (to revoke it
    # on time), its ${aws_secret:…} references resolved again: in the sandbox, made up too, never read.
    config = tmp_path / "flows.yaml"
    config.write_text(FLOWS)
    db = str(tmp_path / "kept.db")
    async with AwsEndpoint() as aws:
        isolate_aws_env(monkeypatch, tmp_path, endpoint_url=aws.url)
        box = await start_sandbox(monkeypatch, config, db_path=db)
        try:
            emu = box.emu
            await emu.slash_command(user=REQUESTER_ID, command="/sym", text="vendor")
            view = await emu.wait_for_view(REQUESTER_ID, contains="Request access")
            await emu.submit_view(view, {"target": "portal", "field:reason": "audit", "field:duration": "1h"})
            message = await emu.wait_for_message("C0APPROVALS", contains="Vendor portal")
            await emu.click(message, user=DEFAULT_APPROVER_ID, text="Approve")
            await emu.wait_for_message("C0APPROVALS", contains="access granted until")
            emu.verify()
        finally:
            await box.stop()
        # The vendor flow's strategy is edited while its grant is live: that grant keeps what it recorded.
        config.write_text(FLOWS.replace("X-Api-Key:", "X-Vendor-Key:"))
        again = await start_sandbox(monkeypatch, config, db_path=db)
        try:
            assert again.runtime is not None and again.runtime.retired is not None
            assert len(again.runtime.retired.by_request) == 1
            assert aws.connections == 0
        finally:
            await again.stop()
        assert aws.connections == 0
