"""Building blocks for config models: strict base model, durations, secrets, targets.

Strategy and integration modules define their own pydantic models from these, so each type's keys
live beside the code that uses them, and `core.config` validates them through the registries.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from core.secrets import Secret

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse '<n>s|m|h|d' into a timedelta; raise ValueError with a readable message otherwise."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a duration like 30s, 10m, 1h or 2d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


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


def _to_secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return Secret(value)


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


class StrategyConfig(StrictModel):
    """Keys every `strategy:` block has; each strategy subclasses it with `type: Literal[...]`."""

    type: str
    targets: Annotated[list[TargetConfig], Field(min_length=1)]


class IntegrationConfig(StrictModel):
    """Keys every `integrations:` entry has; each integration subclasses it."""

    type: str
