"""What a decision must find true at the moment it is made: pure checks and structured refusals."""

from __future__ import annotations

from datetime import timedelta

from core.errors import NotAllowed


class AlreadyDecided(NotAllowed):
    """A click on a request that is no longer pending; `status` and `by` let the handler say who decided."""

    def __init__(self, status: str, by: str | None) -> None:
        self.status, self.by = status, by
        super().__init__(f"request already {status}", user_message=f"This request is already {status}.")


def duration_allowed(flow, duration_seconds: int) -> bool:
    """Whether the flow's duration field still allows a request of this length."""
    spec = flow.duration_field
    length = timedelta(seconds=duration_seconds)
    if spec.allowed_values:
        return length in spec.duration_values
    return spec.max is None or length <= spec.max
