"""Building blocks for config models: strict base model, durations, secrets, targets.

Strategy and integration modules define their own pydantic models from these, so each type's keys
live beside the code that uses them, and `core.config` validates them through the registries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from core.secrets import Secret, SecretRegistry

CONTEXT_KEY = "jitbot_config"
"""Where `core.config` puts its ValidationContext in pydantic's validation context."""

# ASCII digits only: \d would also take '٣٠', which nobody means and int() would quietly accept.
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

MAX_DURATION = timedelta(days=365)
"""The longest duration jitbot accepts anywhere (a grant, a timeout, a field's max)."""


class DurationTooLong(ValueError):
    """A well-formed duration longer than MAX_DURATION."""


def parse_duration(text: str) -> timedelta:
    """Parse '<n>s|m|h|d' into a timedelta of at most MAX_DURATION (365d); ValueError with a readable message otherwise.

    The flows file and the request form share this bound: unbounded, a typed '99999999999d'
    overflows timedelta and the form's submission is never answered. `DurationTooLong` (a
    ValueError) tells a too-long duration from a malformed one.
    """
    written = str(text)
    match = _DURATION.match(written)
    digits = match.group(1).lstrip("0") if match else ""
    if match is None or not digits:
        raise ValueError(f"'{_shorten(written)}' is not a duration like 30s, 10m, 1h or 2d")
    # A year is 31536000 seconds: more than 8 digits is too long in any unit, and checking that
    # first spares int() a pasted megabyte of digits (it refuses more than 4300 anyway).
    if len(digits) > 8 or int(digits) * _UNITS[match.group(2)] > MAX_DURATION.total_seconds():
        raise DurationTooLong(
            f"'{_shorten(written)}' is too long: durations are at most {format_duration(MAX_DURATION)}"
        )
    return timedelta(seconds=int(digits) * _UNITS[match.group(2)])


def _shorten(text: str) -> str:
    # The text is echoed into errors and config issues; a pasted megabyte must not come with it.
    return text if len(text) <= 24 else text[:20] + "…"


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the largest unit that divides it exactly ('1h', '90m', '10s')."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


def _to_secret(value: Any, info: ValidationInfo) -> Secret:
    if isinstance(value, Secret):
        _register(value.reveal(), info)
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    _register(value, info)
    return Secret(value)


def _register(value: str, info: ValidationInfo) -> None:
    # A secret written literally in the flows file is scrubbed like a resolved one.
    secrets = _registry(info)
    if secrets is not None:
        secrets.register(value)


def _registry(info: ValidationInfo) -> SecretRegistry | None:
    """The registry of the loader's ValidationContext (the runtime's); None when validated without one."""
    context = info.context.get(CONTEXT_KEY) if isinstance(info.context, Mapping) else None
    secrets = getattr(context, "secrets", None)
    return secrets if isinstance(secrets, SecretRegistry) else None


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+[smhd]$"}),
]
"""A duration written '<n>s|m|h|d' in YAML."""

SecretStr = Annotated[
    Secret,
    BeforeValidator(_to_secret),
    PlainSerializer(lambda s: str(s), return_type=str),
    WithJsonSchema({"type": "string", "description": "usually ${env:NAME}, ${file:PATH} or ${aws_secret:NAME}"}),
]
"""A secret string: validated as a non-empty string, held as a redacting `Secret`."""

Name = Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
"""A flow, target or field name: [a-z0-9_]+."""


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class TargetConfig(StrictModel):
    """Keys every target has; strategies subclass it with their own target keys."""

    name: Name
    label: Annotated[str, Field(min_length=1, max_length=75)]


class _KnowsSecrets(StrictModel):
    """Remembers the registry it was validated with, so the part built from it scrubs with that one."""

    _secrets: SecretRegistry = PrivateAttr(default_factory=SecretRegistry)

    @model_validator(mode="after")
    def _remember_secrets(self, info: ValidationInfo) -> Self:
        secrets = _registry(info)
        if secrets is not None:
            self._secrets = secrets
        return self

    @property
    def secret_registry(self) -> SecretRegistry:
        """The registry the loader validated this block with (the runtime's; empty without a loader)."""
        return self._secrets


class StrategyConfig(_KnowsSecrets):
    """Keys every `strategy:` block has; each strategy subclasses it with `type: Literal[...]`."""

    type: str
    # A Sequence, so each strategy's config may narrow it to its own target type (a list is invariant).
    targets: Annotated[Sequence[TargetConfig], Field(min_length=1)]


class IntegrationConfig(_KnowsSecrets):
    """Keys every `integrations:` entry has; each integration subclasses it."""

    type: str
