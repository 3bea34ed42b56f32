"""Block Kit and view checks Slack applies server-side, including the ones slack_sdk skips.

Each problem is reported the way Slack words it in `response_metadata.messages`:
`[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]`.
"""

from __future__ import annotations

import json
import re
from typing import Any

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
VIEW_MAX_BYTES = 250_000
MESSAGE_TEXT_MAX = 40_000

_COMMON_ELEMENT_KEYS = {"type", "action_id", "confirm", "focus_on_load", "placeholder"}
ELEMENT_KEYS: dict[str, set[str]] = {
    "button": {"type", "text", "action_id", "url", "value", "style", "confirm", "accessibility_label"},
    "static_select": {"options", "option_groups", "initial_option"},
    "multi_static_select": {"options", "option_groups", "initial_options", "max_selected_items"},
    "external_select": {"initial_option", "min_query_length"},
    "multi_external_select": {"initial_options", "min_query_length", "max_selected_items"},
    "users_select": {"initial_user"},
    "multi_users_select": {"initial_users", "max_selected_items"},
    "conversations_select": {
        "initial_conversation",
        "default_to_current_conversation",
        "response_url_enabled",
        "filter",
    },
    "multi_conversations_select": {
        "initial_conversations",
        "default_to_current_conversation",
        "max_selected_items",
        "filter",
    },
    "channels_select": {"initial_channel", "response_url_enabled"},
    "multi_channels_select": {"initial_channels", "max_selected_items"},
    "overflow": {"options"},
    "checkboxes": {"options", "initial_options"},
    "radio_buttons": {"options", "initial_option"},
    "datepicker": {"initial_date"},
    "timepicker": {"initial_time", "timezone"},
    "datetimepicker": {"initial_date_time"},
    "plain_text_input": {"initial_value", "multiline", "min_length", "max_length", "dispatch_action_config"},
    "number_input": {"is_decimal_allowed", "initial_value", "min_value", "max_value", "dispatch_action_config"},
    "email_text_input": {"initial_value", "dispatch_action_config"},
    "url_text_input": {"initial_value", "dispatch_action_config"},
    "image": {"type", "image_url", "slack_file", "alt_text"},
    "file_input": {"filetypes", "max_files"},
    "rich_text_input": {"initial_value", "dispatch_action_config"},
    "workflow_button": {"text", "workflow", "style", "accessibility_label"},
}
INPUT_ELEMENTS = set(ELEMENT_KEYS) - {"button", "overflow", "image", "workflow_button"}
ACTION_ELEMENTS = set(ELEMENT_KEYS) - {
    "plain_text_input",
    "number_input",
    "email_text_input",
    "url_text_input",
    "image",
    "file_input",
    "rich_text_input",
}
ACCESSORY_ELEMENTS = ACTION_ELEMENTS | {"image"}
BLOCK_KEYS: dict[str, set[str]] = {
    "section": {"text", "fields", "accessory", "expand"},
    "actions": {"elements"},
    "context": {"elements"},
    "divider": set(),
    "header": {"text"},
    "image": {"image_url", "slack_file", "alt_text", "title"},
    "input": {"label", "element", "dispatch_action", "hint", "optional"},
    "rich_text": {"elements"},
    "markdown": {"text"},
    "file": {"external_id", "source"},
    "video": {
        "alt_text",
        "author_name",
        "description",
        "provider_icon_url",
        "provider_name",
        "title",
        "title_url",
        "thumbnail_url",
        "video_url",
    },
}


def validate_message_blocks(blocks: Any) -> list[str]:
    """Problems with a chat.* `blocks` array ([] when Slack would accept it)."""
    checker = _Checker()
    checker.blocks(blocks, "/blocks", max_blocks=MESSAGE_MAX_BLOCKS)
    return checker.problems


def validate_view(view: Any) -> list[str]:
    """Problems with a views.* `view` object ([] when Slack would accept it)."""
    checker = _Checker()
    checker.view(view, "/view")
    return checker.problems


def view_size(view: Any) -> int:
    """The encoded size Slack measures against its 250 kB view limit."""
    return len(json.dumps(view, ensure_ascii=False).encode())


class _Checker:
    """Walks a payload collecting Slack-style problem messages."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def err(self, message: str, pointer: str) -> None:
        self.problems.append(f"[ERROR] {message} [json-pointer:{pointer}]")

    # -- scalars ---------------------------------------------------------------------------

    def string(self, value: Any, pointer: str, max_len: int, *, required: bool = False) -> None:
        if value is None:
            if required:
                self.err("missing required field", pointer)
        elif not isinstance(value, str):
            self.err("must be a string", pointer)
        elif len(value) > max_len:
            self.err(f"must be less than {max_len + 1} characters", pointer)
        elif required and not value:
            self.err("must be more than 0 characters", pointer)

    def text(self, node: Any, pointer: str, max_len: int, *, plain: bool = False, required: bool = True) -> None:
        if node is None:
            if required:
                self.err("missing required field", pointer)
            return
        if not isinstance(node, dict):
            self.err("must be a text object", pointer)
            return
        kind = node.get("type")
        if kind not in ("plain_text", "mrkdwn"):
            self.err(f"unsupported type: {kind}", f"{pointer}/type")
        elif plain and kind != "plain_text":
            self.err("must be a plain_text object", f"{pointer}/type")
        self.string(node.get("text"), f"{pointer}/text", max_len, required=True)
        self.unknown_keys(node, {"type", "text", "emoji", "verbatim"}, pointer)

    def unknown_keys(self, node: dict, allowed: set[str], pointer: str) -> None:
        for key in sorted(set(node) - allowed):
            self.err(f"unsupported field: {key}", f"{pointer}/{key}")

    # -- surfaces ----------------------------------------------------------------------------

    def view(self, view: Any, pointer: str) -> None:
        if not isinstance(view, dict):
            self.err("must be an object", pointer)
            return
        kind = view.get("type")
        if kind not in ("modal", "home"):
            self.err(f"unsupported type: {kind}", f"{pointer}/type")
        if kind == "modal":
            self.text(view.get("title"), f"{pointer}/title", 24, plain=True)
        else:  # a Home tab has no title bar and no submit or close buttons
            for key in ("title", "submit", "close", "submit_disabled"):
                if key in view:
                    self.err(f"unsupported field for a home view: {key}", f"{pointer}/{key}")
        for key in ("submit", "close"):
            self.text(view.get(key), f"{pointer}/{key}", 24, plain=True, required=False)
        blocks = view.get("blocks")
        if blocks is None:
            self.err("missing required field", f"{pointer}/blocks")
            blocks = []
        self.blocks(blocks, f"{pointer}/blocks", max_blocks=VIEW_MAX_BLOCKS)
        has_input = isinstance(blocks, list) and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if kind == "modal" and has_input and view.get("submit") is None:
            self.err("a modal with input blocks must have a submit button", f"{pointer}/submit")
        self.string(view.get("private_metadata"), f"{pointer}/private_metadata", 3000)
        self.string(view.get("callback_id"), f"{pointer}/callback_id", 255)
        self.string(view.get("external_id"), f"{pointer}/external_id", 255)
        allowed = {
            "type",
            "title",
            "submit",
            "close",
            "blocks",
            "private_metadata",
            "callback_id",
            "external_id",
            "clear_on_close",
            "notify_on_close",
            "submit_disabled",
        }
        self.unknown_keys(view, allowed, pointer)

    def blocks(self, blocks: Any, pointer: str, *, max_blocks: int) -> None:
        if not isinstance(blocks, list):
            self.err("must be an array", pointer)
            return
        if len(blocks) > max_blocks:
            self.err(f"no more than {max_blocks} items allowed", pointer)
        seen: dict[str, int] = {}
        for index, block in enumerate(blocks):
            here = f"{pointer}/{index}"
            if not isinstance(block, dict):
                self.err("must be an object", here)
                continue
            block_id = block.get("block_id")
            self.string(block_id, f"{here}/block_id", 255)
            if isinstance(block_id, str):
                if block_id in seen:
                    self.err(f"duplicate block_id {block_id!r} (also block {seen[block_id]})", f"{here}/block_id")
                seen[block_id] = index
            self.block(block, here)

    def block(self, block: dict, pointer: str) -> None:
        kind = block.get("type")
        if kind not in BLOCK_KEYS:
            self.err(f"unsupported type: {kind}", f"{pointer}/type")
            return
        self.unknown_keys(block, BLOCK_KEYS[kind] | {"type", "block_id"}, pointer)
        getattr(self, f"block_{kind}", lambda b, p: None)(block, pointer)

    def block_section(self, block: dict, pointer: str) -> None:
        if block.get("text") is None and block.get("fields") is None:
            self.err("must define either `text` or `fields`", f"{pointer}/type")
        self.text(block.get("text"), f"{pointer}/text", 3000, required=False)
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or not fields:
                self.err("must be a non-empty array", f"{pointer}/fields")
            else:
                if len(fields) > 10:
                    self.err("no more than 10 items allowed", f"{pointer}/fields")
                for i, field in enumerate(fields):
                    self.text(field, f"{pointer}/fields/{i}", 2000)
        if block.get("accessory") is not None:
            self.elements([block["accessory"]], f"{pointer}/accessory", ACCESSORY_ELEMENTS, single=True)

    def block_actions(self, block: dict, pointer: str) -> None:
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            self.err("must be a non-empty array", f"{pointer}/elements")
            return
        if len(elements) > 25:
            self.err("no more than 25 items allowed", f"{pointer}/elements")
        self.elements(elements, f"{pointer}/elements", ACTION_ELEMENTS)

    def block_context(self, block: dict, pointer: str) -> None:
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            self.err("must be a non-empty array", f"{pointer}/elements")
            return
        if len(elements) > 10:
            self.err("no more than 10 items allowed", f"{pointer}/elements")
        for i, element in enumerate(elements):
            if isinstance(element, dict) and element.get("type") == "image":
                self.element(element, f"{pointer}/elements/{i}")
            else:
                self.text(element, f"{pointer}/elements/{i}", 3000)

    def block_header(self, block: dict, pointer: str) -> None:
        self.text(block.get("text"), f"{pointer}/text", 150, plain=True)

    def block_image(self, block: dict, pointer: str) -> None:
        if block.get("image_url") is None and block.get("slack_file") is None:
            self.err("must define either `image_url` or `slack_file`", pointer)
        self.string(block.get("image_url"), f"{pointer}/image_url", 3000)
        self.string(block.get("alt_text"), f"{pointer}/alt_text", 2000, required=True)
        self.text(block.get("title"), f"{pointer}/title", 2000, plain=True, required=False)

    def block_input(self, block: dict, pointer: str) -> None:
        self.text(block.get("label"), f"{pointer}/label", 2000, plain=True)
        self.text(block.get("hint"), f"{pointer}/hint", 2000, plain=True, required=False)
        if not isinstance(block.get("element"), dict):
            self.err("missing required field", f"{pointer}/element")
            return
        self.elements([block["element"]], f"{pointer}/element", INPUT_ELEMENTS, single=True)

    def block_markdown(self, block: dict, pointer: str) -> None:
        self.string(block.get("text"), f"{pointer}/text", 12000, required=True)

    # -- elements ----------------------------------------------------------------------------

    def elements(self, elements: list, pointer: str, allowed_types: set[str], *, single: bool = False) -> None:
        seen: set[str] = set()
        for index, element in enumerate(elements):
            here = pointer if single else f"{pointer}/{index}"
            if not isinstance(element, dict):
                self.err("must be an object", here)
                continue
            if element.get("type") in ELEMENT_KEYS and element.get("type") not in allowed_types:
                self.err(f"element type {element.get('type')} is not allowed here", f"{here}/type")
            action_id = element.get("action_id")
            if isinstance(action_id, str):
                if action_id in seen:
                    self.err(f"duplicate action_id {action_id!r} in this block", f"{here}/action_id")
                seen.add(action_id)
            self.element(element, here)

    def element(self, element: dict, pointer: str) -> None:
        kind = element.get("type")
        if kind not in ELEMENT_KEYS:
            self.err(f"unsupported type: {kind}", f"{pointer}/type")
            return
        allowed = ELEMENT_KEYS[kind] if kind in ("button", "image") else ELEMENT_KEYS[kind] | _COMMON_ELEMENT_KEYS
        self.unknown_keys(element, allowed, pointer)
        self.string(element.get("action_id"), f"{pointer}/action_id", 255)
        self.text(element.get("placeholder"), f"{pointer}/placeholder", 150, plain=True, required=False)
        if element.get("confirm") is not None:
            self.confirm(element["confirm"], f"{pointer}/confirm")
        if kind == "button":
            self.text(element.get("text"), f"{pointer}/text", 75, plain=True)
            self.string(element.get("value"), f"{pointer}/value", 2000)
            self.string(element.get("url"), f"{pointer}/url", 3000)
            if element.get("style") not in (None, "primary", "danger"):
                self.err("must be `primary` or `danger`", f"{pointer}/style")
        elif kind == "image":
            self.string(element.get("alt_text"), f"{pointer}/alt_text", 2000, required=True)
        elif kind in ("static_select", "multi_static_select"):
            self.select_options(element, pointer)
        elif kind == "overflow":
            self.options(element.get("options"), f"{pointer}/options", low=2, high=5, plain=True)
        elif kind in ("checkboxes", "radio_buttons"):
            self.options(element.get("options"), f"{pointer}/options", low=1, high=10, plain=False)
            self.initial_options(element, element.get("options") or [], pointer)
        elif kind == "number_input" and not isinstance(element.get("is_decimal_allowed"), bool):
            self.err("missing required field", f"{pointer}/is_decimal_allowed")
        elif kind == "plain_text_input":
            self.text_input_lengths(element, pointer)
        elif kind == "datepicker" and element.get("initial_date") is not None:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(element["initial_date"])):
                self.err("must be in the format YYYY-MM-DD", f"{pointer}/initial_date")
        elif kind == "timepicker" and element.get("initial_time") is not None:
            if not re.fullmatch(r"\d{2}:\d{2}", str(element["initial_time"])):
                self.err("must be in the format HH:mm", f"{pointer}/initial_time")

    def text_input_lengths(self, element: dict, pointer: str) -> None:
        for key in ("min_length", "max_length"):
            value = element.get(key)
            if value is not None and (not isinstance(value, int) or not 0 <= value <= 3000):
                self.err("must be an integer between 0 and 3000", f"{pointer}/{key}")
        low, high = element.get("min_length"), element.get("max_length")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            self.err("min_length must not exceed max_length", f"{pointer}/min_length")

    def select_options(self, element: dict, pointer: str) -> None:
        options, groups = element.get("options"), element.get("option_groups")
        if (options is None) == (groups is None):
            self.err("must provide exactly one of `options` or `option_groups`", pointer)
            return
        if options is not None:
            self.options(options, f"{pointer}/options", low=1, high=100, plain=True)
            every = options if isinstance(options, list) else []
        else:
            every = []
            if not isinstance(groups, list) or not 1 <= len(groups) <= 100:
                self.err("must have between 1 and 100 items", f"{pointer}/option_groups")
                return
            for i, group in enumerate(groups):
                here = f"{pointer}/option_groups/{i}"
                if not isinstance(group, dict):
                    self.err("must be an object", here)
                    continue
                self.text(group.get("label"), f"{here}/label", 75, plain=True)
                self.options(group.get("options"), f"{here}/options", low=1, high=100, plain=True)
                every.extend(group.get("options") or [])
        self.initial_options(element, every, pointer)

    def options(self, options: Any, pointer: str, *, low: int, high: int, plain: bool) -> None:
        if not isinstance(options, list) or not low <= len(options) <= high:
            self.err(f"must have between {low} and {high} items", pointer)
            return
        for i, option in enumerate(options):
            here = f"{pointer}/{i}"
            if not isinstance(option, dict):
                self.err("must be an object", here)
                continue
            self.unknown_keys(option, {"text", "value", "description", "url"}, here)
            self.text(option.get("text"), f"{here}/text", 75, plain=plain)
            self.string(option.get("value"), f"{here}/value", 150, required=True)
            self.text(option.get("description"), f"{here}/description", 75, plain=plain, required=False)

    def initial_options(self, element: dict, options: list, pointer: str) -> None:
        values = {o.get("value") for o in options if isinstance(o, dict)}
        single = element.get("initial_option")
        chosen = [single] if single is not None else list(element.get("initial_options") or [])
        key = "initial_option" if single is not None else "initial_options"
        for option in chosen:
            if not isinstance(option, dict) or option.get("value") not in values:
                self.err(f"{key} must match one of the element's options", f"{pointer}/{key}")

    def confirm(self, node: Any, pointer: str) -> None:
        if not isinstance(node, dict):
            self.err("must be an object", pointer)
            return
        self.text(node.get("title"), f"{pointer}/title", 100, plain=True)
        self.text(node.get("text"), f"{pointer}/text", 300)
        self.text(node.get("confirm"), f"{pointer}/confirm", 30, plain=True)
        self.text(node.get("deny"), f"{pointer}/deny", 30, plain=True)
        if node.get("style") not in (None, "primary", "danger"):
            self.err("must be `primary` or `danger`", f"{pointer}/style")
