"""Typed encode/decode of what we hide in views (private_metadata) and buttons (value)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.errors import JitError


class BadMetadata(JitError):
    """A view or button carried metadata we did not write (or from an older version)."""


@dataclass(frozen=True)
class FormMetadata:
    """What the request form remembers between open and submit."""

    flow: str
    channel: str | None = None

    def encode(self) -> str:
        """Serialise for `private_metadata` (well under Slack's 3000 characters)."""
        return json.dumps({"v": 1, "flow": self.flow, "channel": self.channel}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> FormMetadata:
        """Parse `private_metadata`; raise BadMetadata when it is not ours."""
        try:
            data = json.loads(text or "")
            return cls(flow=str(data["flow"]), channel=data.get("channel"))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadMetadata("this form is out of date; run the command again") from exc


@dataclass(frozen=True)
class DenyMetadata:
    """What the deny modal remembers: the request, and the message whose Deny opened it."""

    request_id: str
    channel: str | None = None
    ts: str | None = None

    def encode(self) -> str:
        """Serialise for `private_metadata`."""
        return json.dumps({"v": 1, "r": self.request_id, "c": self.channel, "t": self.ts}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> DenyMetadata:
        """Parse `private_metadata`; raise BadMetadata when it is not ours."""
        try:
            data = json.loads(text or "")
            request_id = data["r"]
            if not isinstance(request_id, str) or not request_id or len(request_id) > 64:
                raise ValueError("bad request id")
            return cls(request_id=request_id, channel=data.get("c"), ts=data.get("t"))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadMetadata("this form is out of date; click Deny again") from exc


def decision_value(request_id: str) -> str:
    """The `value` of an Approve / Deny button."""
    return f"v1:{request_id}"


def parse_decision_value(value: str | None) -> str:
    """The request id inside an Approve / Deny button value."""
    if not value or not value.startswith("v1:") or len(value) > 64:
        raise BadMetadata("this button is out of date")
    return value[3:]
