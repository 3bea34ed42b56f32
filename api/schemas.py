"""The API's own bodies as pydantic models: what it answers, and the small bodies of decisions.

The body of `POST /v1/requests` is not here: it is each flow's `core.submission.submission_model`,
the same rules as the Slack form. The OpenAPI document is generated from these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.approvals import DENY_REASON_MAX
from core.config_models import FieldType, Flow
from core.models import AccessRequest, RequestStatus
from core.schema import format_duration
from core.submission import DURATION_PATTERN, refuse_nul


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecisionBody(_Body):
    """The optional body of approve and deny: a reason, shown on the message and in the audit trail."""

    reason: Annotated[str, AfterValidator(refuse_nul)] | None = Field(
        default=None, max_length=DENY_REASON_MAX, description="Why."
    )


class ExtendBody(_Body):
    """The body of extend: how much longer, and any answers to change (the grant's own are kept)."""

    duration: str = Field(max_length=40, pattern=DURATION_PATTERN, description="One of the flow's durations, like 1h.")
    fields: dict[str, Any] | None = Field(default=None, description="Answers to change for the extension.")


class RequestView(_Body):
    """A request as the API shows it."""

    id: str
    flow: str
    target: str
    requester: str = Field(description="The requester's Slack user id.")
    status: RequestStatus
    created_at: datetime
    duration_seconds: int
    fields: dict[str, Any] = Field(description="Every submitted field by name, the duration as written.")
    approval_channel: str | None
    approvers: list[str] | None = Field(description="Who may decide, when a hook chose them; else the flow's rule.")
    approvals: list[str] = Field(description="Who approved so far, for flows that need several approvals.")
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    timeout_at: datetime | None
    granted_at: datetime | None
    expires_at: datetime | None
    ended_at: datetime | None
    failure_reason: str | None
    extends: str | None = Field(description="The live grant this request extends, for an extension.")
    revoked_by: str | None = Field(description="Who ended the access early (Revoke now), if anyone.")
    end_reason: str | None = Field(description="Why the access ended before its time, if it did.")

    @classmethod
    def of(cls, request: AccessRequest) -> RequestView:
        """The view of a stored request (never its grant state or recorded strategy)."""
        return cls(
            id=request.id,
            flow=request.flow,
            target=request.target,
            requester=request.requester,
            status=request.status,
            created_at=request.created_at,
            duration_seconds=request.duration_seconds,
            fields=dict(request.fields),
            approval_channel=request.approval_channel,
            approvers=list(request.approvers) if request.approvers is not None else None,
            approvals=list(request.approvals),
            decided_by=request.decided_by,
            decided_at=request.decided_at,
            decision_reason=request.decision_reason,
            timeout_at=request.timeout_at,
            granted_at=request.granted_at,
            expires_at=request.expires_at,
            ended_at=request.ended_at,
            failure_reason=request.failure_reason,
            extends=request.extends,
            revoked_by=request.revoked_by,
            end_reason=request.end_reason,
        )


class RequestList(_Body):
    """Requests, newest first."""

    requests: list[RequestView]


class TargetView(_Body):
    """One target of a flow: its name (what a request names) and label."""

    name: str
    label: str


class FieldView(_Body):
    """One form field of a flow."""

    name: str
    label: str
    type: FieldType
    required: bool
    allowed_values: list[str] | None
    max: str | None = Field(description="The longest duration, for a duration field without choices.")
    default: str | int | bool | None


class FlowView(_Body):
    """A flow the token's user may ask for."""

    name: str
    label: str
    targets: list[TargetView]
    fields: list[FieldView]

    @classmethod
    def of(cls, flow: Flow) -> FlowView:
        """The view of a configured flow."""
        return cls(
            name=flow.name,
            label=flow.label,
            targets=[TargetView(name=t.name, label=t.label) for t in flow.targets],
            fields=[
                FieldView(
                    name=f.name,
                    label=f.label,
                    type=f.type,
                    required=f.required,
                    allowed_values=list(f.allowed_values) if f.allowed_values is not None else None,
                    max=format_duration(f.max) if f.max is not None else None,
                    default=f.default,
                )
                for f in flow.fields
            ],
        )


class FlowList(_Body):
    """The flows the token's user may ask for."""

    flows: list[FlowView]


class FieldError(_Body):
    """One invalid field and why."""

    field: str = Field(description="The field's path: 'target', 'fields.reason', 'flow', …")
    message: str


class ProblemBody(BaseModel):
    """An error (RFC 9457 problem details)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["about:blank"]
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldError] | None = Field(default=None, description="422 only: every invalid field.")
    request_status: str | None = Field(default=None, description="409 only: where the request stands now.")
