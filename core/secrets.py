"""Secret values: a type that never prints what it holds, and the registry logs are scrubbed with.

`${env:NAME}`, `${file:PATH}` and `${aws_secret:NAME}` / `${aws_secret:NAME#json_key}` references in
the flows file are resolved at start (see `core.config`). Every resolved value is registered here so
the logging pipeline and the audit writer can scrub it even if it escaped its `Secret` wrapper.
"""

from __future__ import annotations

import threading
from typing import Any

REDACTED = "***"

_known_values: set[str] = set()
_lock = threading.Lock()


class Secret:
    """A string that shows as '***' in str(), repr(), f-strings and JSON; call reveal() to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret_value(value)

    def reveal(self) -> str:
        """Return the real value, only where it is handed to the system that needs it."""
        return self._value

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # pickling would write the value somewhere we do not control
        raise TypeError("Secret values cannot be pickled")


def register_secret_value(value: str) -> None:
    """Remember a resolved secret so `scrub` can remove it from any text (short values skipped)."""
    # Very short strings ("1", "no") would redact half of every log line and protect nothing.
    if isinstance(value, str) and len(value) >= 4:
        with _lock:
            _known_values.add(value)


def scrub(text: str) -> str:
    """Replace every registered secret value in `text` with '***'."""
    if not _known_values or not isinstance(text, str):
        return text
    with _lock:
        values = sorted(_known_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def scrub_data(data: Any) -> Any:
    """Scrub secrets from every string inside nested dicts, lists and tuples (for audit rows)."""
    if isinstance(data, Secret):
        return REDACTED
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {scrub_data(k): scrub_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrub_data(v) for v in data]
    return data
