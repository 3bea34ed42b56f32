"""The one set of rules for a submitted request: what each form field accepts, from Slack or the API.

`submission_model(flow)` is a pydantic model of one flow's request (`target` and `fields`). The
Slack modal (handlers/forms.py) reads Slack's view state into plain values and validates them with
it; the HTTP API validates its JSON body with it and publishes its JSON schema in the OpenAPI
document. Every value is checked and bounded here, whatever the client let the person type: what
passes goes into the database, hooks, the target system and Slack messages.

Each field's check is `check_value`, which raises `ValueError` with a sentence a person can act on.
`field_errors` turns a pydantic error into those sentences, keyed by field name ('target' for the
target), so both adapters show the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError

from core.config_models import FieldSpec, Flow
from core.flow_cache import FlowCache
from core.schema import MAX_DURATION, DurationTooLong, format_duration, parse_duration

MAX_STRING_LENGTH = 500
"""Characters of a `string` field: the max_length of its input in the modal."""
MAX_TEXT_LENGTH = 3000
"""Characters of a `text` field: the max_length of its input in the modal."""
MAX_INT_DIGITS = 15
"""Digits of an `int` field: every JSON consumer (JavaScript's safe integers end near 9.0e15) reads it exactly."""
MAX_INT = 10**MAX_INT_DIGITS - 1

REQUIRED = "This field is required."
# PostgreSQL stores no U+0000 in text (SQLite would): refused on every engine, so both behave alike.
NUL_REFUSED = "Remove the NUL character (U+0000): it cannot be stored."
CHOOSE_TARGET = "Choose one of the listed targets."
CHOOSE_DURATION = "Choose how long you need access."
_ERROR_TYPE = "jitbot_field"
# What core.schema.parse_duration reads: 1 to 8 significant digits (not zero) and a unit. A field's
# max is checked by the rule, not the pattern (a regular expression cannot compare lengths of time).
DURATION_PATTERN = r"^\s*0*[1-9][0-9]{0,7}\s*[smhd]\s*$"
_NOT_BLANK = r"\S"  # a required text field: something besides spaces

# ASCII digits only: int() would also take '1_000' and '٤٢', which no number input sends.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def refuse_nul(text: str) -> str:
    """`text` unchanged, or ValueError(NUL_REFUSED) when it holds a NUL character."""
    if "\x00" in text:
        raise ValueError(NUL_REFUSED)
    return text


def check_value(spec: FieldSpec, value: Any) -> Any:
    """The typed value of one field (None when left empty), or ValueError saying what is wrong."""
    if spec.type == "bool":
        if not isinstance(value, bool):  # an unticked box is False, never null
            raise ValueError("Tick the box or leave it empty.")
        return value
    if _blank(value):
        if spec.required:
            raise ValueError(REQUIRED)
        if spec.type == "duration":
            raise ValueError(CHOOSE_DURATION)
        return None
    kind = spec.type
    if kind in ("string", "text"):
        if not isinstance(value, str):
            raise ValueError("Enter text.")
        limit = MAX_TEXT_LENGTH if kind == "text" else MAX_STRING_LENGTH
        text = refuse_nul(value.strip())
        if len(text) > limit:
            raise ValueError(f"At most {limit} characters.")
        return text
    if kind == "int":
        return _whole_number(value)
    if kind == "list":
        assert spec.allowed_values is not None, "FieldSpec refuses a list field without allowed_values"
        if not isinstance(value, str) or value not in spec.allowed_values:
            raise ValueError("Choose one of the listed values.")
        return value
    if kind == "duration":
        length = duration_of(spec, value)
        # A listed choice is kept as listed (the schema's enum); a typed one is written canonically.
        return value if spec.allowed_values else format_duration(length)
    raise ValueError(f"unsupported field type {kind}")


def _whole_number(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():  # JSON's 3.0 is the whole number 3
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_INT:
            raise ValueError(f"Enter a whole number of at most {MAX_INT_DIGITS} digits.")
        return value
    if not isinstance(value, str):
        raise ValueError("Enter a whole number.")
    raw = value.strip()
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise ValueError("Enter a whole number.")
    if len(raw.lstrip("+-").lstrip("0")) > MAX_INT_DIGITS:
        raise ValueError(f"Enter a whole number of at most {MAX_INT_DIGITS} digits.")
    return int(raw)


def duration_of(spec: FieldSpec, value: Any) -> timedelta:
    """The length a duration field's value asks for, within the field's choices or max; ValueError if not."""
    if not isinstance(value, str):
        raise ValueError("Enter a duration like 30m, 1h or 2d.")
    # Membership first: a value the select never offered is refused as such, however it parses.
    if spec.allowed_values and value not in spec.allowed_values:
        raise ValueError("Choose one of the listed durations.")
    try:
        length = parse_duration(value)
    except DurationTooLong:
        raise ValueError(f"At most {format_duration(spec.max or MAX_DURATION)}.") from None
    except ValueError:
        raise ValueError("Enter a duration like 30m, 1h or 2d.") from None
    if spec.max is not None and length > spec.max:
        raise ValueError(f"At most {format_duration(spec.max)}.")
    return length


# ── the pydantic models (and so the JSON schemas) of a flow's request ─────────────────────────────


def _checked(spec: FieldSpec) -> BeforeValidator:
    def check(value: Any) -> Any:
        try:
            return check_value(spec, value)
        except ValueError as exc:
            raise PydanticCustomError(_ERROR_TYPE, "{message}", {"message": str(exc)}) from None

    return BeforeValidator(check)


def _json_type(spec: FieldSpec) -> Any:
    """The field's type as JSON sees it, with the bounds the schema publishes."""
    title, description = spec.label, spec.hint or spec.label
    kind = spec.type
    if kind in ("string", "text"):
        limit = MAX_TEXT_LENGTH if kind == "text" else MAX_STRING_LENGTH
        if spec.required:
            return Annotated[
                str, Field(min_length=1, max_length=limit, pattern=_NOT_BLANK, title=title, description=description)
            ]
        return Annotated[str, Field(max_length=limit, title=title, description=description)]
    if kind == "int":
        return Annotated[int, Field(ge=-MAX_INT, le=MAX_INT, title=title, description=description)]
    if kind == "bool":
        return Annotated[bool, Field(title=title, description=description)]
    if kind == "list" or (kind == "duration" and spec.allowed_values):
        choices: Any = Literal[tuple(spec.allowed_values or ())]
        return Annotated[choices, Field(title=title, description=description)]
    return Annotated[str, Field(pattern=DURATION_PATTERN, max_length=40, title=title, description=description)]


def _model_name(flow: Flow, part: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", flow.name)
    return "".join(w[:1].upper() + w[1:] for w in words if w) + part


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def fields_model(flow: Flow) -> type[BaseModel]:
    """The model of a flow's `fields`: every form field with its type, bounds and check."""
    definitions: dict[str, Any] = {}
    for spec in flow.fields:
        # The check runs first and outside the union: it turns an empty value into None (or an error).
        if spec.required and spec.default is None:
            definitions[spec.name] = (Annotated[_json_type(spec), _checked(spec)], ...)
        elif spec.type in ("bool", "duration"):
            # Never None: an empty box is False, and the length of access must be known.
            default = bool(spec.default) if spec.type == "bool" else str(spec.default)
            definitions[spec.name] = (Annotated[_json_type(spec), _checked(spec)], default)
        else:
            definitions[spec.name] = (Annotated[_json_type(spec) | None, _checked(spec)], spec.default)
    model: type[BaseModel] = create_model(
        _model_name(flow, "Fields"),
        __base__=_Strict,
        __doc__=f"The form fields of the flow '{flow.name}'.",
        **definitions,
    )
    return model


class FieldModels:
    """Each flow's `fields_model`, built once per Flow object: building one takes ~0.7 ms of CPU, which
    every submitted form used to pay."""

    def __init__(self) -> None:
        self._built = FlowCache()

    def of(self, flow: Flow) -> type[BaseModel]:
        """The fields model of `flow` (built again if the flow of that name is another object now)."""
        return self._built.get(flow, "fields_model", lambda: fields_model(flow))


def submission_model(flow: Flow) -> type[BaseModel]:
    """The model of one request of `flow`: `flow`, `target` (one of its target names) and `fields`."""
    targets = tuple(t.name for t in flow.targets)

    def check_target(value: Any) -> Any:
        if not isinstance(value, str) or value not in targets:
            raise PydanticCustomError(_ERROR_TYPE, "{message}", {"message": CHOOSE_TARGET})
        return value

    flow_name: Any = Literal[flow.name]
    target_name: Any = Literal[targets]
    model: type[BaseModel] = create_model(
        _model_name(flow, "Request"),
        __base__=_Strict,
        __doc__=f"A request for access through the flow '{flow.name}' ({flow.label}).",
        flow=(flow_name, Field(description="The flow's name.")),
        target=(
            Annotated[target_name, BeforeValidator(check_target)],
            Field(description="The name of one of the flow's targets."),
        ),
        fields=(fields_model(flow), Field(description="The form's fields by name, the duration included.")),
    )
    return model


def duration_in(flow: Flow, fields: Mapping[str, Any]) -> timedelta:
    """The length of access a checked set of fields asks for."""
    spec = flow.duration_field
    return duration_of(spec, fields[spec.name])


def field_errors(error: ValidationError, *, prefix: tuple[str | int, ...] = ()) -> dict[str, str]:
    """One sentence per field ('target', a field's name, or a dotted path) from a model's errors."""
    errors: dict[str, str] = {}
    for problem in error.errors(include_url=False, include_input=False):
        loc = tuple(problem["loc"])
        if prefix and loc[: len(prefix)] == prefix:
            loc = loc[len(prefix) :]
        key = ".".join(str(part) for part in loc) or "body"
        if problem["type"] == _ERROR_TYPE:
            message = str((problem.get("ctx") or {}).get("message") or problem["msg"])
        elif problem["type"] == "missing":
            message = REQUIRED
        elif problem["type"] == "extra_forbidden":
            message = "Not a field of this form."
        else:
            message = problem["msg"]
        errors.setdefault(key, message)
    return errors
