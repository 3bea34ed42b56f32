"""Every Slack callback, action and block id the bot uses, in one place (kebab-case values)."""

from enum import StrEnum


class CallbackId(StrEnum):
    """View callback ids."""

    FLOW_PICKER = "flow-picker"
    REQUEST_FORM = "request-form"
    DENY_REASON = "deny-reason"


class ActionId(StrEnum):
    """Interactive element action ids."""

    PICK_FLOW = "flow-pick"
    APPROVE = "request-approve"
    DENY = "request-deny"
    VALUE = "value"  # the single element inside each form input block


class BlockId(StrEnum):
    """Block ids with meaning to the handlers."""

    TARGET = "target"
    FIELD_PREFIX = "field:"
    DECISION = "decision"
    STATUS = "status"
    DECIDERS = "deciders"
    DENY_REASON = "deny-reason"


def field_block_id(field_name: str) -> str:
    """The input block id of a flow field."""
    return f"{BlockId.FIELD_PREFIX}{field_name}"
