"""Every Slack callback, action and block id the bot uses, in one place (kebab-case values)."""

from enum import StrEnum


class CallbackId(StrEnum):
    """View callback ids."""

    FLOW_PICKER = "flow-picker"
    REQUEST_FORM = "request-form"
    DENY_REASON = "deny-reason"
    EXTEND_FORM = "extend-form"
    HOME = "home"


class ActionId(StrEnum):
    """Interactive element action ids."""

    PICK_FLOW = "flow-pick"
    APPROVE = "request-approve"
    DENY = "request-deny"
    REVOKE_NOW = "access-revoke-now"
    CANCEL = "request-cancel"
    EXTEND = "access-extend"
    VALUE = "value"  # the single element inside each form input block


class BlockId(StrEnum):
    """Block ids with meaning to the handlers."""

    TARGET = "target"
    FIELD_PREFIX = "field:"
    DECISION = "decision"
    STATUS = "status"
    DECIDERS = "deciders"
    DENY_REASON = "deny-reason"
    ACCESS = "access"  # Revoke now / Extend / Cancel request, on messages, DMs and the Home tab
    OUTCOME = "outcome"  # what a click on a DM's button did, added to that DM


def field_block_id(field_name: str) -> str:
    """The input block id of a flow field."""
    return f"{BlockId.FIELD_PREFIX}{field_name}"
