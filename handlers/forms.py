"""Read a submitted request form into typed values, or inline errors keyed by block id. Pure.

Every value is checked and bounded here, whatever the modal let the person type: a payload can be
replayed or crafted, and what passes goes into the database, hooks, the target system and Slack
messages. A value out of bounds or of the wrong shape is an inline error, never an exception (an
exception would leave the submission unanswered and the modal showing Slack's own error).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from core.config_models import FieldSpec, Flow
from core.schema import MAX_DURATION, DurationTooLong, format_duration, parse_duration
from handlers.ids import ActionId, BlockId, field_block_id

MAX_STRING_LENGTH = 500
"""Characters of a `string` field: the max_length of its input in the modal."""
MAX_TEXT_LENGTH = 3000
"""Characters of a `text` field: the max_length of its input in the modal."""
MAX_INT_DIGITS = 15
"""Digits of an `int` field: every JSON consumer (JavaScript's safe integers end near 9.0e15) reads it exactly."""

# ASCII digits only: int() would also take '1_000' and '٤٢', which no number input sends.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


@dataclass
class ParsedForm:
    """A parsed submission: chosen target, fields by name, the duration, and any inline errors."""

    target: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    duration: timedelta | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _element(values: Mapping[str, Any], block_id: str) -> Mapping[str, Any]:
    block = values.get(block_id) if isinstance(values, Mapping) else None
    element = block.get(ActionId.VALUE) if isinstance(block, Mapping) else None
    return element if isinstance(element, Mapping) else {}


def _selected(element: Mapping[str, Any]) -> str | None:
    chosen = element.get("selected_option")
    if chosen is None:
        return None
    value = chosen.get("value") if isinstance(chosen, Mapping) else None
    if not isinstance(value, str):
        raise ValueError("Choose one of the listed values.")
    return value


def _typed(element: Mapping[str, Any]) -> str:
    value = element.get("value")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("Enter text.")
    return value.strip()


def parse_form(flow: Flow, state_values: Mapping[str, Any]) -> ParsedForm:
    """Turn `view.state.values` of a request form into a ParsedForm (errors keyed by block id)."""
    form = ParsedForm()
    target_names = {t.name for t in flow.targets}
    try:
        form.target = _selected(_element(state_values, BlockId.TARGET))
    except ValueError:
        form.target = None
    if form.target not in target_names:
        form.target = None
        form.errors[BlockId.TARGET] = "Choose one of the listed targets."
    for spec in flow.fields:
        block_id = field_block_id(spec.name)
        element = _element(state_values, block_id)
        try:
            value = _read(spec, element)
        except ValueError as exc:
            form.errors[block_id] = str(exc)
            continue
        if value in (None, "", []) and spec.required and spec.type != "bool":
            form.errors[block_id] = "This field is required."
            continue
        if spec.type == "duration" and value is not None:
            form.duration = value
            value = format_duration(value)
        form.fields[spec.name] = value
    if form.duration is None and not any(e.startswith(BlockId.FIELD_PREFIX) for e in form.errors):
        duration_spec = next((f for f in flow.fields if f.type == "duration"), None)
        if duration_spec is not None:
            form.errors[field_block_id(duration_spec.name)] = "Choose how long you need access."
    return form


def _read(spec: FieldSpec, element: Mapping[str, Any]) -> Any:
    kind = spec.type
    if kind in ("string", "text"):
        limit = MAX_TEXT_LENGTH if kind == "text" else MAX_STRING_LENGTH
        text = _typed(element)
        if len(text) > limit:
            raise ValueError(f"At most {limit} characters.")
        return text
    if kind == "int":
        raw = _typed(element)
        if not raw:
            return None
        if not _WHOLE_NUMBER.fullmatch(raw):
            raise ValueError("Enter a whole number.")
        if len(raw.lstrip("+-").lstrip("0")) > MAX_INT_DIGITS:
            raise ValueError(f"Enter a whole number of at most {MAX_INT_DIGITS} digits.")
        return int(raw)
    if kind == "bool":
        chosen = element.get("selected_options") or []
        if not isinstance(chosen, list):
            raise ValueError("Tick the box or leave it empty.")
        return bool(chosen)
    if kind == "list":
        chosen = _selected(element)
        if chosen is not None:
            assert spec.allowed_values is not None, "FieldSpec refuses a list field without allowed_values"
            if chosen not in [str(v) for v in spec.allowed_values]:
                raise ValueError("Choose one of the listed values.")
        return chosen
    if kind == "duration":
        return _read_duration(spec, element)
    raise ValueError(f"unsupported field type {kind}")


def _read_duration(spec: FieldSpec, element: Mapping[str, Any]) -> timedelta | None:
    if spec.allowed_values:
        raw = _selected(element)
        # Membership first: a value the select never offered is refused as such, however it parses.
        if raw is not None and raw not in [str(v) for v in spec.allowed_values]:
            raise ValueError("Choose one of the listed durations.")
    else:
        raw = _typed(element)
    if not raw:
        return None
    try:
        value = parse_duration(raw)
    except DurationTooLong:
        raise ValueError(f"At most {format_duration(spec.max or MAX_DURATION)}.") from None
    except ValueError:
        raise ValueError("Enter a duration like 30m, 1h or 2d.") from None
    if spec.max is not None and value > spec.max:
        raise ValueError(f"At most {format_duration(spec.max)}.")
    return value
