"""Turning what a person picks (plain Python values) into Slack's element state and action payloads."""

from __future__ import annotations

import copy
from datetime import date, datetime, time
from typing import Any

from .errors import EmulatorUsageError
from .models import View, interactive_elements

_VALUE_KEY = {
    "plain_text_input": "value",
    "number_input": "value",
    "email_text_input": "value",
    "url_text_input": "value",
    "static_select": "selected_option",
    "external_select": "selected_option",
    "radio_buttons": "selected_option",
    "multi_static_select": "selected_options",
    "multi_external_select": "selected_options",
    "checkboxes": "selected_options",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "datetimepicker": "selected_date_time",
    "users_select": "selected_user",
    "multi_users_select": "selected_users",
    "conversations_select": "selected_conversation",
    "multi_conversations_select": "selected_conversations",
    "channels_select": "selected_channel",
    "multi_channels_select": "selected_channels",
    "rich_text_input": "rich_text_value",
}
_INITIAL_KEY = {
    "value": "initial_value",
    "selected_option": "initial_option",
    "selected_options": "initial_options",
    "selected_date": "initial_date",
    "selected_time": "initial_time",
    "selected_date_time": "initial_date_time",
    "selected_user": "initial_user",
    "selected_users": "initial_users",
    "selected_conversation": "initial_conversation",
    "selected_conversations": "initial_conversations",
    "selected_channel": "initial_channel",
    "selected_channels": "initial_channels",
    "rich_text_value": "initial_value",
}


def element_state(element: dict, value: Any, where: str) -> dict:
    """The `state.values` entry for `element` holding `value` (a plain Python value or Slack shape)."""
    kind = element.get("type")
    key = _VALUE_KEY.get(kind)
    if key is None:
        raise EmulatorUsageError(f"{where}: cannot enter a value into a {kind!r} element")
    return {"type": kind, key: _convert(element, kind, key, value, where)}


def initial_state(element: dict) -> dict:
    """The state a person sees before touching `element` (its initial value, else null)."""
    kind = element.get("type")
    key = _VALUE_KEY.get(kind, "value")
    initial = element.get(_INITIAL_KEY.get(key, "initial_value"))
    if kind == "number_input" and initial is not None:
        initial = str(initial)
    if initial is None and key.endswith("s") and key != "value":
        initial = []
    return {"type": kind, key: copy.deepcopy(initial)}


def state_is_empty(state: dict) -> bool:
    """True when a person left the input blank (what Slack's "required" check looks at)."""
    values = [v for k, v in state.items() if k != "type"]
    return all(v in (None, "", []) for v in values)


def _convert(element: dict, kind: str, key: str, value: Any, where: str) -> Any:
    if value is None:
        return [] if key.endswith("s") and key not in ("value", "rich_text_value") else None
    if key == "value":
        if kind == "number_input":
            return _number(element, value, where)
        return _text(element, str(value), where)
    if key == "selected_option":
        return find_option(element, value, where)
    if key == "selected_options":
        chosen = value if isinstance(value, (list, tuple, set)) else [value]
        return [find_option(element, v, where) for v in chosen]
    if key == "selected_date":
        return value.isoformat() if isinstance(value, date) else str(value)
    if key == "selected_time":
        return value.strftime("%H:%M") if isinstance(value, time) else str(value)
    if key == "selected_date_time":
        return int(value.timestamp()) if isinstance(value, datetime) else int(value)
    if key.endswith("s"):
        return list(value) if isinstance(value, (list, tuple, set)) else [value]
    return value


def _text(element: dict, text: str, where: str) -> str:
    low, high = element.get("min_length"), element.get("max_length")
    if isinstance(high, int) and len(text) > high:
        raise EmulatorUsageError(f"{where}: Slack stops typing at max_length={high} ({len(text)} given)")
    if isinstance(low, int) and text and len(text) < low:
        raise EmulatorUsageError(f"{where}: Slack won't submit fewer than min_length={low} characters")
    return text


def _number(element: dict, value: Any, where: str) -> str:
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        raise EmulatorUsageError(f"{where}: {value!r} is not a number") from None
    if not element.get("is_decimal_allowed") and not number.is_integer():
        raise EmulatorUsageError(f"{where}: this number_input does not allow decimals ({value!r})")
    for bound, too in (("min_value", number.__lt__), ("max_value", number.__gt__)):
        if element.get(bound) is not None and too(float(element[bound])):
            raise EmulatorUsageError(f"{where}: Slack won't submit {value!r} ({bound}={element[bound]})")
    return text


def all_options(element: dict) -> list[dict]:
    """Every option of a select/checkbox/radio element, including those inside option groups."""
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return options


def find_option(element: dict, wanted: Any, where: str) -> dict:
    """The element's option whose value or text is `wanted` (an option dict is matched by value)."""
    if isinstance(wanted, dict):
        wanted = wanted.get("value")
    options = all_options(element)
    if element.get("type") in ("external_select", "multi_external_select") and not options:
        return {"text": {"type": "plain_text", "text": str(wanted)}, "value": str(wanted)}
    for option in options:
        if option.get("value") == str(wanted):
            return copy.deepcopy(option)
    for option in options:
        if option.get("text", {}).get("text") == str(wanted):
            return copy.deepcopy(option)
    offered = [f"{o.get('value')!r} ({o.get('text', {}).get('text')!r})" for o in options]
    raise EmulatorUsageError(f"{where}: no option {wanted!r}; the element offers {', '.join(offered) or 'none'}")


def input_blocks(view: View) -> list[dict]:
    """The view's input blocks, in order."""
    return [b for b in view.blocks if b.get("type") == "input" and isinstance(b.get("element"), dict)]


def build_submission_state(view: View, values: dict[str, Any]) -> dict[str, dict[str, dict]]:
    """`state.values` for a view_submission: initial values, then what the person changed, then `values`."""
    blocks = input_blocks(view)
    given: dict[str, Any] = {}
    for key, value in values.items():
        block = _input_named(view, blocks, key)
        if block["block_id"] in given:
            raise EmulatorUsageError(f"view {view.id}: input {block['block_id']!r} given twice")
        given[block["block_id"]] = value
    state: dict[str, dict[str, dict]] = {}
    for block in blocks:
        element, block_id = block["element"], block["block_id"]
        where = f"view {view.id} input {block_id!r}"
        if block_id in given:
            entry = element_state(element, given[block_id], where)
        elif element.get("action_id") in view.state_values.get(block_id, {}):
            entry = copy.deepcopy(view.state_values[block_id][element["action_id"]])
        else:
            entry = initial_state(element)
        if not block.get("optional") and state_is_empty(entry):
            label = block.get("label", {}).get("text", block_id)
            raise EmulatorUsageError(f"{where} ({label!r}) is required; Slack would not let the user submit it empty")
        state[block_id] = {element["action_id"]: entry}
    return state


def _input_named(view: View, blocks: list[dict], key: str) -> dict:
    """The input block whose block_id (preferred) or element action_id is `key`."""
    for block in blocks:
        if block["block_id"] == key:
            return block
    matches = [b for b in blocks if b["element"].get("action_id") == key]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise EmulatorUsageError(f"view {view.id}: action_id {key!r} is in several inputs; name one by block_id")
    known = [f"{b['block_id']}/{b['element'].get('action_id')}" for b in blocks]
    raise EmulatorUsageError(f"view {view.id} has no input {key!r} (inputs, as block_id/action_id: {known})")


def find_element(
    blocks: list[dict],
    *,
    action_id: str | None = None,
    text: str | None = None,
    block_id: str | None = None,
    types: tuple[str, ...] | None = None,
    where: str,
) -> tuple[dict, dict]:
    """The one (block, element) matching `action_id`/`text`/`block_id`, or a clear EmulatorUsageError."""
    candidates = [
        (block, element)
        for block, element in interactive_elements(blocks)
        if (types is None or element.get("type") in types)
        and (action_id is None or element.get("action_id") == action_id)
        and (block_id is None or block.get("block_id") == block_id)
        and (text is None or element.get("text", {}).get("text") == text)
    ]
    if len(candidates) == 1:
        return candidates[0]
    available = [
        f"{e.get('type')} action_id={e.get('action_id')!r}"
        + (f" text={e['text'].get('text')!r}" if isinstance(e.get("text"), dict) else "")
        for _, e in interactive_elements(blocks)
    ]
    wanted = {k: v for k, v in (("action_id", action_id), ("text", text), ("block_id", block_id)) if v}
    problem = "no element" if not candidates else f"{len(candidates)} elements"
    raise EmulatorUsageError(f"{where}: {problem} matching {wanted}; available: {available or 'none'}")


def action_payload(block: dict, element: dict, value: Any, action_ts: str, where: str) -> dict:
    """The `actions[0]` entry of a block_actions payload for a person using `element`."""
    kind = element.get("type")
    action: dict[str, Any] = {
        "type": kind,
        "action_id": element.get("action_id"),
        "block_id": block.get("block_id"),
        "action_ts": action_ts,
    }
    if kind == "button":
        action["text"] = copy.deepcopy(element.get("text"))
        for key in ("value", "style", "url"):
            if key in element:
                action[key] = element[key]
    elif kind == "overflow":
        action["selected_option"] = find_option(element, value, where)
    else:
        action.update({k: v for k, v in element_state(element, value, where).items() if k != "type"})
        if isinstance(element.get("placeholder"), dict):
            action["placeholder"] = copy.deepcopy(element["placeholder"])
    return action
