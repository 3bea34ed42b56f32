"""Read a submitted request form into typed values, or inline errors keyed by block id. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping

from core.schema import format_duration, parse_duration
from handlers.ids import ActionId, BlockId, field_block_id


@dataclass
class ParsedForm:
    """A parsed submission: chosen target, fields by name, the duration, and any inline errors."""

    target: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    duration: timedelta | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _element(values: Mapping, block_id: str) -> Mapping:
    return (values.get(block_id) or {}).get(ActionId.VALUE) or {}


def _selected(element: Mapping) -> str | None:
    chosen = element.get("selected_option")
    return chosen.get("value") if chosen else None


def parse_form(flow, state_values: Mapping) -> ParsedForm:
    """Turn `view.state.values` of a request form into a ParsedForm (errors keyed by block id)."""
    form = ParsedForm()
    target_names = {t.name for t in flow.strategy.targets}
    form.target = _selected(_element(state_values, BlockId.TARGET))
    if form.target not in target_names:
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


def _read(spec, element: Mapping) -> Any:
    kind = spec.type
    if kind in ("string", "text"):
        return (element.get("value") or "").strip()
    if kind == "int":
        raw = (element.get("value") or "").strip()
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ValueError("Enter a whole number.") from None
    if kind == "bool":
        return bool(element.get("selected_options"))
    if kind == "list":
        chosen = _selected(element)
        if chosen is not None and chosen not in [str(v) for v in spec.allowed_values]:
            raise ValueError("Choose one of the listed values.")
        return chosen
    if kind == "duration":
        raw = _selected(element) if spec.allowed_values else (element.get("value") or "").strip()
        if not raw:
            return None
        try:
            value = parse_duration(raw)
        except ValueError:
            raise ValueError("Enter a duration like 30m, 1h or 2d.") from None
        if spec.allowed_values and raw not in [str(v) for v in spec.allowed_values]:
            raise ValueError("Choose one of the listed durations.")
        if spec.max is not None and value > spec.max:
            raise ValueError(f"At most {format_duration(spec.max)}.")
        return value
    raise ValueError(f"unsupported field type {kind}")
