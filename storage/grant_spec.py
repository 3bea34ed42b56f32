"""Reading a request row's `grant_spec` column: what a grant recorded at approval (`Flow.grant_spec`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def decode_grant_spec(text: str | None) -> dict[str, Any]:
    """The stored grant_spec as a dict; empty when the column is empty (a request never approved)."""
    return json.loads(text) if text and text != "{}" else {}


def recorded_identity(grant_spec: Mapping[str, Any]) -> str | None:
    """The identity the grant was made for (its revoke goes to the same one); None when none was recorded."""
    identity = grant_spec.get("identity")
    return identity if isinstance(identity, str) else None
