"""The after-approval builders (buttons, DMs, the Extend modal, the Home tab), checked against the
emulator's copy of Slack's limits, and the Slack app manifest that must subscribe to what the bot handles."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from core.models import AccessRequest
from core.models import RequestStatus as S
from core.overview import Overview, Section
from handlers import access_blocks, home_blocks
from sandbox.slack.blocks_validator import validate_message_blocks, validate_view
from tests.handlers.test_blocks_and_forms import flow

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
HUGE = "<!channel> " + "x" * 5000


def request(status: S = S.GRANTED, **keys) -> AccessRequest:
    base = AccessRequest(
        id="r1",
        flow="big",
        target="t1",
        requester="U_ALICE",
        created_at=NOW,
        duration_seconds=3600,
        status=status,
        fields={"reason": HUGE, "duration": "1h"},
        approval_channel="C1",
        decided_by="U_BOB",
        decision_reason=HUGE,
        granted_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        ended_at=NOW,
    )
    return replace(base, **keys)


def texts(message_blocks) -> str:
    return str(message_blocks)


def test_every_stage_after_approval_is_a_message_slack_accepts_with_the_right_buttons(tmp_path):
    f = flow(tmp_path)
    cases = {
        "live": (request(), ["Revoke now"]),
        "ending": (request(revoked_by="U_CAROL", end_reason=HUGE), []),
        "ended early": (request(S.REVOKED, revoked_by="U_CAROL", end_reason=HUGE), []),
        "handed over": (request(S.REVOKED, end_reason="extended by request r2"), []),
        "cancelled": (request(S.CANCELLED, decided_by="U_ALICE"), []),
        "extension pending": (request(S.PENDING, extends="r0", granted_at=None, expires_at=None), ["Approve", "Deny"]),
    }
    for name, (r, buttons) in cases.items():
        text, message = access_blocks.message(r, f, "Target 1", extended_end=NOW + timedelta(minutes=5))
        assert validate_message_blocks(message) == [], name
        shown = [e["text"]["text"] for b in message if b["type"] == "actions" for e in b["elements"]]
        assert shown == buttons, name
    _, pending = access_blocks.message(cases["extension pending"][0], f, "Target 1", NOW + timedelta(minutes=5))
    assert "Extends request `r0`" in texts(pending) and "+1h" in texts(pending)
    _, cancelled = access_blocks.message(cases["cancelled"][0], f, "Target 1")
    assert "Cancelled by the requester <@U_ALICE>" in texts(cancelled)


def test_dms_carry_the_buttons_that_still_apply():
    def buttons(r, notice):
        text = access_blocks.dm_text(r, notice, "Target 1")
        built = access_blocks.dm_blocks(r, notice, text)
        if built is None:
            return None
        assert validate_message_blocks(built) == []
        return [e["text"]["text"] for b in built if b["type"] == "actions" for e in b["elements"]]

    assert buttons(request(S.PENDING), "submitted") == ["Cancel request"]
    assert buttons(request(S.CANCELLED), "submitted") is None
    assert buttons(request(), "granted") == ["Revoke now", "Extend"]
    assert buttons(request(), "warning") == ["Extend", "Revoke now"]
    assert buttons(request(S.REVOKED), "granted") is None
    assert buttons(request(revoked_by="U_ALICE"), "warning") is None
    assert buttons(request(S.REVOKED, revoked_by="U_BOB"), "ended_early") is None
    after = access_blocks.dm_outcome(
        access_blocks.dm_blocks(request(), "granted", "text") or [], ":lock: Access ended early by <@U_ALICE>."
    )
    assert validate_message_blocks(after) == [] and not [b for b in after if b["type"] == "actions"]


def test_the_extend_modal_is_a_view_slack_accepts_and_offers_only_the_given_durations(tmp_path):
    f = flow(tmp_path)
    view = access_blocks.extend_form(request(), f, "Target 1", [], timedelta(hours=2))
    assert validate_view(view) == []
    assert access_blocks.parse_extend_metadata(view["private_metadata"]) == "r1"
    reason = next(b for b in view["blocks"] if b.get("block_id") == "field:reason")
    assert len(reason["element"]["initial_value"]) <= reason["element"]["max_length"]


def test_a_home_tab_with_hundreds_of_requests_in_every_section_stays_within_slacks_limits(tmp_path):
    config = type(
        "Config", (), {"slack": type("Slack", (), {"command": "/sym"})(), "flow": lambda self, n: flow(tmp_path)}
    )()
    live, pending, awaiting = (
        Section([request(status, id=f"{kind}{i:03d}") for i in range(home_blocks.HOME_PER_SECTION)], 500)
        for kind, status in (("g", S.GRANTED), ("p", S.PENDING), ("a", S.PENDING))
    )
    view = home_blocks.home_view(config, Overview("U_ALICE", live, pending, awaiting))
    assert validate_view(view) == [] and len(view["blocks"]) <= 100
    assert str(view).count("Showing the 15 newest of 500.") == 3


def test_the_manifest_enables_the_home_tab_and_subscribes_to_app_home_opened():
    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "slack-manifest.yaml").read_text())
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]
