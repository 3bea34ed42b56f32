"""Secret values: a type that never prints what it holds, and the registry logs are scrubbed with.

`${env:NAME}`, `${file:PATH}` and `${aws_secret:NAME}` / `${aws_secret:NAME#json_key}` references in
the flows file are parsed here (`parse_references`, `substitute`) and resolved at start by
`core.secret_resolution.SecretResolver` (see `core.config`). Every resolved value is registered in
the runtime's `SecretRegistry` so the logging pipeline and the audit writer can scrub it even if it
escaped its `Secret` wrapper.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

REDACTED = "***"

# Deeper than any value we log; a self-referencing structure stops here as its (cycle-safe) repr.
_MAX_DEPTH = 12


class Secret:
    """A string that shows as '***' in str(), repr(), f-strings and JSON; call reveal() to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

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

    def __reduce__(self) -> NoReturn:  # pickling would write the value somewhere we do not control
        raise TypeError("Secret values cannot be pickled")


def escaped_forms(value: str) -> set[str]:
    """`value` as written raw and as JSON or a Python literal would escape it (the part between quotes).

    A secret with a quote, a backslash, a newline or a non-ASCII character is printed escaped by a
    JSON renderer, a repr() or a traceback; scrubbing only the raw form would miss it there.
    """
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    # repr() escapes character by character; which quote it escapes depends on the whole string the
    # secret sits in, so both are kept, each with non-ASCII kept (repr) and escaped (ascii).
    for quote in ("'", '"'):
        for literal in (repr, ascii):
            forms.add("".join("\\" + c if c == quote else c if c in "'\"" else literal(c)[1:-1] for c in value))
    return forms


class _Repr:
    """An object already turned into (scrubbed) text; renders exactly as the object's repr did."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


class SecretRegistry:
    """The secret values one bot knows, and the scrubbing of them from any text or value.

    One per runtime, owned by the composition root and handed to every part that writes text out
    (logs, audit rows, Slack messages, errors). Thread-safe: the store's writer thread scrubs too.
    An empty registry scrubs nothing.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        # Longest first (a secret that contains another is replaced whole); rebuilt on register, read
        # without the lock (one immutable tuple), since scrub runs dozens of times per request.
        self._ordered: tuple[str, ...] = ()
        self._lock = threading.Lock()

    # A registry is a service, not data: a deep copy of a config that holds it must share it.
    def __copy__(self) -> SecretRegistry:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretRegistry:
        return self

    def __repr__(self) -> str:
        return "SecretRegistry(***)"

    def register(self, value: str) -> None:
        """Remember a resolved secret so `scrub` can remove it from any text (short values skipped)."""
        # Very short strings ("1", "no") would redact half of every log line and protect nothing, and a
        # bare `${env:NAME}` (a SecretStr key validated before resolution) is configuration, not a secret.
        if isinstance(value, str) and len(value) >= 4 and not _is_reference_text(value):
            forms = escaped_forms(value)
            with self._lock:
                self._values.update(forms)
                self._ordered = tuple(sorted(self._values, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """Replace every registered secret value in `text` with '***', and any NUL character with U+FFFD."""
        if not isinstance(text, str):
            return text
        if "\x00" in text:
            # Text a target system or a hook sent (an error, a name) that ends up in the database:
            # PostgreSQL stores no NUL in text, and the write recording a failure must not fail.
            text = text.replace("\x00", "\ufffd")
        for value in self._ordered:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def scrub_data(self, data: Any) -> Any:
        """Scrub secrets from every string inside nested dicts, lists and tuples (for audit rows)."""
        if isinstance(data, Secret):
            return REDACTED
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, dict):
            return {self.scrub_data(k): self.scrub_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.scrub_data(v) for v in data]
        return data

    def scrub_value(self, value: Any, depth: int = 0) -> Any:
        """A copy of a log value with every registered secret replaced by '***', walking dicts, lists, tuples, sets."""
        if type(value) is dict and self._flat_and_clean(value):
            # What the walk below would return for it: the same keys and values, in a new dict.
            return dict(value)
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, Secret):
            return REDACTED
        if depth < _MAX_DEPTH:
            if isinstance(value, dict):
                return {self._scrub_key(k): self.scrub_value(v, depth + 1) for k, v in value.items()}
            if type(value) is tuple:  # kept a tuple: the console renderer shows positional args as one
                return tuple(self.scrub_value(v, depth + 1) for v in value)
            if isinstance(value, (list, tuple, set, frozenset)):
                return [self.scrub_value(v, depth + 1) for v in value]
        if isinstance(value, (bytes, bytearray)):
            return self.scrub(bytes(value).decode("utf-8", "backslashreplace"))
        # Anything else (an exception, a client, a dataclass) would be rendered through its repr, where
        # a secret appears escaped; the registry holds the escaped forms, so scrub that text here.
        return _Repr(self._scrubbed_repr(value))

    def _flat_and_clean(self, mapping: dict[Any, Any]) -> bool:
        """True when every key is text, every value text or a number, bool or None, and none holds a secret or NUL.

        Such a mapping (a log line's event, nearly always) comes out of the walk unchanged; testing all
        its text at once costs one search per registered form instead of one per form per string.
        """
        texts: list[str] = []
        for key, value in mapping.items():
            if not isinstance(key, str):
                return False
            texts.append(key)
            if isinstance(value, str):
                texts.append(value)
            elif not (value is None or isinstance(value, (bool, int, float))):
                return False
        # A form found across the separator is a false alarm that only sends the mapping to the walk.
        joined = "\n".join(texts)
        if "\x00" in joined:
            return False
        return not any(form in joined for form in self._ordered)

    def _scrubbed_repr(self, value: Any) -> str:
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not cost us the log line
            text = f"<{type(value).__name__} with a failing repr>"
        return self.scrub(text)

    def _scrub_key(self, key: Any) -> Any:
        # A key must stay something JSON can write: a primitive as it is, anything else as its text.
        if key is None or isinstance(key, (str, bool, int, float)):
            return self.scrub_value(key)
        return self._scrubbed_repr(key)


# --- Secret references in the flows file -------------------------------------------------------

SCHEMES = ("env", "file", "aws_secret")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SecretReference:
    """One `${scheme:name}` or `${aws_secret:name#json_key}` reference, as written in the file."""

    scheme: str
    name: str
    json_key: str | None = None

    def __str__(self) -> str:
        key = f"#{self.json_key}" if self.json_key is not None else ""
        return "${" + f"{self.scheme}:{self.name}{key}" + "}"


def _is_reference_text(value: str) -> bool:
    if not value.startswith("${"):
        return False
    try:
        references, pieces = _split(value)
    except ValueError:
        return False
    return bool(references) and not any(pieces)


def has_references(text: Any) -> bool:
    """True when `text` is a string that contains a `${…}` reference (well-formed or not)."""
    return isinstance(text, str) and "${" in text


def parse_references(text: str) -> list[SecretReference]:
    """Every reference in `text`, in order; ValueError (naming the reference, not a value) if one is malformed."""
    references, _ = _split(text)
    return references


def substitute(text: str, values: Mapping[SecretReference, str]) -> str:
    """Replace each reference in `text` with its resolved value from `values`."""
    references, pieces = _split(text)
    out = [pieces[0]]
    for reference, piece in zip(references, pieces[1:], strict=True):
        out.append(values[reference])
        out.append(piece)
    return "".join(out)


def _split(text: str) -> tuple[list[SecretReference], list[str]]:
    # Every '${' starts a reference: a stray one is an error rather than a literal, so a typo in a
    # reference can never silently become the secret's value.
    references: list[SecretReference] = []
    pieces: list[str] = []
    position = 0
    while (start := text.find("${", position)) != -1:
        end = text.find("}", start)
        if end == -1:
            raise ValueError(f"unterminated reference '{text[start : start + 40]}': it needs a closing }}")
        pieces.append(text[position:start])
        references.append(_parse_one(text[start + 2 : end]))
        position = end + 1
    pieces.append(text[position:])
    return references, pieces


def _parse_one(body: str) -> SecretReference:
    written = "${" + body + "}"
    scheme, colon, rest = body.partition(":")
    if not colon:
        raise ValueError(f"'{written}' is not a reference: write ${{env:NAME}}, ${{file:PATH}} or ${{aws_secret:NAME}}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown reference scheme '{scheme}' in '{written}' (known: {', '.join(SCHEMES)})")
    if scheme == "env":
        if not _ENV_NAME.match(rest):
            raise ValueError(f"'{written}': an environment variable name is letters, digits and _")
        return SecretReference("env", rest)
    if scheme == "file":
        if not rest.strip():
            raise ValueError(f"'{written}': the file path is empty")
        return SecretReference("file", rest)
    name, hash_sign, json_key = rest.partition("#")
    if not name.strip():
        raise ValueError(f"'{written}': the secret name is empty")
    if hash_sign and not json_key:
        raise ValueError(f"'{written}': the JSON key after '#' is empty")
    return SecretReference("aws_secret", name, json_key if hash_sign else None)
