"""Who holds what in the sandbox: the built-in receiver and the stand-ins write here, the page reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

HISTORY = 50  # the page shows the latest changes, not all of them


@dataclass(frozen=True)
class Holding:
    """One access that is held right now, as the system that grants it sees it."""

    request_id: str
    system: str  # "webhook receiver", or the stand-in's system ("Okta (stand-in)")
    target: str
    who: str
    until: str | None
    since: str


@dataclass(frozen=True)
class Change:
    """A grant or revoke the system accepted."""

    at: str
    action: str
    request_id: str
    system: str
    target: str
    who: str


class Ledger:
    """Held access keyed by request; a grant or revoke seen twice (jitbot retries) changes nothing twice."""

    def __init__(self, *, now: Callable[[], datetime], on_change: Callable[[], None] = lambda: None) -> None:
        self._now = now
        self._on_change = on_change
        self.holdings: dict[str, Holding] = {}
        self.history: list[Change] = []

    def dump(self) -> dict[str, Any]:
        """What the ledger holds, as JSON values."""
        return {"holdings": [asdict(h) for h in self.holdings.values()], "history": [asdict(c) for c in self.history]}

    def load(self, saved: dict[str, Any]) -> None:
        """Take back what `dump()` returned."""
        self.holdings = {h["request_id"]: Holding(**h) for h in saved.get("holdings", [])}
        self.history = [Change(**c) for c in saved.get("history", [])]

    def grant(self, request_id: str, *, system: str, target: str, who: str, until: str | None) -> None:
        """Record that `who` now holds `target` for this request."""
        at = self._now().isoformat()
        self.holdings.setdefault(request_id, Holding(request_id, system, target, who, until, at))
        self._record(Change(at, "grant", request_id, system, target, who))

    def revoke(self, request_id: str, *, system: str, target: str, who: str) -> None:
        """Record that this request's access is gone (whether or not it was held)."""
        self.holdings.pop(request_id, None)
        self._record(Change(self._now().isoformat(), "revoke", request_id, system, target, who))

    def webhook_delivery(self, body: dict[str, Any]) -> None:
        """Apply a grant or revoke the built-in receiver accepted (a verified jitbot webhook body)."""
        requester = body["requester"]
        who = requester.get("identity") or requester.get("email") or requester.get("slack_id") or "?"
        target = body["target"].get("label") or body["target"]["name"]
        if body["action"] == "grant":
            self.grant(body["request_id"], system="webhook receiver", target=target, who=who, until=body["expires_at"])
        else:
            self.revoke(body["request_id"], system="webhook receiver", target=target, who=who)

    def held_by(self, who: str) -> list[Holding]:
        """What one identity holds now."""
        return [h for h in self.holdings.values() if h.who == who]

    def _record(self, change: Change) -> None:
        self.history = [*self.history, change][-HISTORY:]
        self._on_change()
