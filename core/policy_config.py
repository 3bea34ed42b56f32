"""The flows file's approval-policy keys (docs/configuration.md): who may ask, reminders and escalation.

`approvals_required` is a plain integer on the flow; these are the nested blocks. The rules that
tie them to the rest of a flow (more approvals required than static approvers, escalation sooner
than the first reminder) are checked on the flow itself (`core.flow_models.Flow`), so each error
carries the key's line in the file.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, NoReturn

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_lines import CUSTOM_ERROR
from core.schema import Duration, StrictModel

MAX_APPROVALS_REQUIRED = 10  # the message names every approval so far; ten is beyond any review policy seen
MIN_REMINDER_EVERY = timedelta(minutes=1)  # a reminder thread must not become a flood

SlackId = Annotated[str, Field(min_length=1, max_length=64)]


class People(StrictModel):
    """Slack user IDs and user group IDs; at least one of the two lists is not empty."""

    users: list[SlackId] = []
    usergroups: list[SlackId] = []

    @model_validator(mode="after")
    def _someone(self) -> People:
        if not self.users and not self.usergroups:
            raise ValueError("lists no users or usergroups: add some, or remove the key")
        return self

    @property
    def mentions(self) -> list[str]:
        """Slack mentions of everyone named: `<@U…>` for users, `<!subteam^S…>` for groups."""
        return [f"<@{u}>" for u in self.users] + [f"<!subteam^{g}>" for g in self.usergroups]


class Reminders(StrictModel):
    """`reminders:` of a flow: remind the approvers every `every`; after `escalate_after` the
    `escalate_to` people may decide too and are mentioned."""

    every: Duration
    escalate_after: Duration | None = None
    escalate_to: People | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Reminders:
        if self.every < MIN_REMINDER_EVERY:
            _refuse("every", "must be at least 1m: approvers would be mentioned in a flood of replies")
        if self.escalate_after is None and self.escalate_to is not None:
            _refuse("escalate_after", "required with escalate_to: say after how long they may decide")
        if self.escalate_after is not None and self.escalate_to is None:
            _refuse("escalate_to", "required with escalate_after: name the users or usergroups to escalate to")
        if self.escalate_after is not None and self.escalate_after < self.every:
            _refuse(
                "escalate_after",
                "is shorter than every: escalate only after at least one reminder has gone unanswered",
            )
        return self


def _refuse(key: str, message: str) -> NoReturn:
    """A validation error located at `key` of this block, so `validate` reports that key's own line."""
    problem: InitErrorDetails = {
        "type": PydanticCustomError(CUSTOM_ERROR, "{message}", {"message": message}),
        "loc": (key,),
        "input": None,
    }
    raise ValidationError.from_exception_data("Reminders", [problem])
