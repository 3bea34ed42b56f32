"""Read a submitted request form into typed values, or inline errors keyed by block id. Pure.

This module only reads Slack's view state into plain values; the rules every value must meet are
core's (`core.submission`), the same ones the HTTP API applies to its JSON. A payload can be
replayed or crafted: a value of the wrong shape or out of bounds is an inline error, never an
exception (an exception would leave the submission unanswered and the modal showing Slack's own error).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from core.config_models import FieldSpec, Flow
from core.submission import (
    CHOOSE_TARGET,
    MAX_INT_DIGITS,
    MAX_STRING_LENGTH,
    MAX_TEXT_LENGTH,
    FieldModels,
    duration_in,
    field_errors,
    fields_model,
)
from handlers.ids import ActionId, BlockId, field_block_id

__all__ = ["MAX_INT_DIGITS", "MAX_STRING_LENGTH", "MAX_TEXT_LENGTH", "ParsedForm", "parse_form", "submission_key"]


class _Shape(ValueError):
    """A Slack element whose value has a shape no input of its kind sends."""


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
        raise _Shape("Choose one of the listed values.")
    return value


_TYPED_SHAPE = {"int": "Enter a whole number.", "duration": "Enter a duration like 30m, 1h or 2d."}


def _typed(spec: FieldSpec, element: Mapping[str, Any]) -> str | None:
    # Slack sends every typed value as text, numbers included: anything else was crafted.
    value = element.get("value")
    if value is not None and not isinstance(value, str):
        raise _Shape(_TYPED_SHAPE.get(spec.type, "Enter text."))
    return value


def _raw(spec: FieldSpec, element: Mapping[str, Any]) -> Any:
    """What the person chose or typed, as the plain value the rules take."""
    if spec.type == "bool":
        chosen = element.get("selected_options") or []
        if not isinstance(chosen, list):
            raise _Shape("Tick the box or leave it empty.")
        return bool(chosen)
    if spec.type == "list" or (spec.type == "duration" and spec.allowed_values):
        return _selected(element)
    return _typed(spec, element)


def parse_form(flow: Flow, state_values: Mapping[str, Any], *, models: FieldModels | None = None) -> ParsedForm:
    """Turn `view.state.values` of a request form into a ParsedForm (errors keyed by block id); `models`
    keeps each flow's fields model between forms."""
    form = ParsedForm()
    target_names = {t.name for t in flow.targets}
    try:
        form.target = _selected(_element(state_values, BlockId.TARGET))
    except _Shape:
        form.target = None
    if form.target not in target_names:
        form.target = None
        form.errors[BlockId.TARGET] = CHOOSE_TARGET
    raw: dict[str, Any] = {}
    for spec in flow.fields:
        try:
            raw[spec.name] = _raw(spec, _element(state_values, field_block_id(spec.name)))
        except _Shape as exc:
            form.errors[field_block_id(spec.name)] = str(exc)
    model = models.of(flow) if models is not None else fields_model(flow)
    try:
        checked = model.model_validate(raw).model_dump()
    except ValidationError as error:
        for name, message in field_errors(error).items():
            form.errors.setdefault(field_block_id(name), message)
        # The values that passed are kept, as before: a person fixes only what is marked.
        checked = {}
    if not any(key.startswith(BlockId.FIELD_PREFIX) for key in form.errors):
        form.fields = {name: value for name, value in checked.items() if name in raw}
        form.duration = duration_in(flow, form.fields)
    return form


def submission_key(body: Mapping[str, Any], view: Mapping[str, Any]) -> str | None:
    """What makes a modal's submission one, so that Slack delivering it again is not a second request
    (core.resubmission): its workspace, view and trigger (a redelivery repeats the payload whole; each
    new submission gets a trigger of its own); None when the payload names no view."""
    view_id = view.get("id")
    if not isinstance(view_id, str) or not view_id:
        return None
    team = body.get("team")
    team_id = team.get("id") if isinstance(team, Mapping) else None
    trigger = body.get("trigger_id")
    return f"slack:{team_id or view.get('team_id') or ''}:{view_id}:{trigger if isinstance(trigger, str) else ''}"
