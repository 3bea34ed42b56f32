"""Exceptions of the Slack emulator: test bugs, bot failures, and Web API errors."""

from __future__ import annotations

from typing import Any


class EmulatorUsageError(Exception):
    """A test asked the emulator for something a person could not do (a test bug, not a bot bug)."""


class AckTimeout(AssertionError):
    """The bot did not acknowledge an envelope within Slack's deadline."""


class DeliveryLost(AckTimeout):
    """The connection an envelope went to closed before acknowledging it (the bot process died)."""


class NotConnected(AssertionError):
    """No Socket Mode connection was open to deliver an envelope to."""


class WaitTimeout(AssertionError):
    """A `wait_for*` condition did not become true in time."""


class SlackError(Exception):
    """An `ok: false` answer from a Web API method (`rejection` marks payloads a correct bot never sends)."""

    def __init__(
        self,
        error: str,
        messages: list[str] | tuple[str, ...] = (),
        *,
        rejection: bool = False,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(error)
        self.error = error
        self.messages = list(messages)
        self.rejection = rejection
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON body Slack would send for this error."""
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.messages:
            body["errors"] = list(self.messages)
            body["response_metadata"] = {"messages": list(self.messages)}
        return body
