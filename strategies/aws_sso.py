"""The `aws_sso` strategy: access is an IAM Identity Center account assignment of a permission set.

Assignments are asynchronous: Create/DeleteAccountAssignment return a request id whose status is
polled until SUCCEEDED or FAILED. The requester is found in the Identity Store by email, falling
back to user name (`bot.py identities set` stores an override). The principal id found at grant
time is saved in the grant state, so revoke never depends on a later lookup.

A creation can outlast `poll_timeout` (or its polling can fail) and still land later. The grant
then fails for good (never retried: a second creation would race the first) and the error's
`grant_state` names the creation. A revoke first makes sure no creation of the assignment is still
in flight, the one its state names or, without a state from a finished grant, any it can find: while
one is, it fails retryably, so the engine's retries delete the assignment once it has landed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

import structlog
from pydantic import BeforeValidator, Field

from core.errors import StartupError, StrategyError, StrategyUnavailable, SubjectNotFound, TargetNotFound
from core.models import Target
from core.retry import STATUS_POLL, Backoff, Retry, call
from core.schema import Duration, Name, StrategyConfig, TargetConfig
from core.strategy import GrantContext, GrantResult, Holder, ValidationIssue
from strategies.aws import AwsStrategyBase

log = structlog.get_logger(__name__)

SYSTEM = "AWS IAM Identity Center"
_NOT_FOUND = "ResourceNotFoundException"
_INSTANCE = r"(sso)?ins-[a-zA-Z0-9.-]{16}"
# AWS writes `permissionSet/ssoins-…/ps-…`; moto (our test double) writes `instance/ssoins-…/ps-…`.
_PERMISSION_SET_ARN = rf"^arn:aws[a-z-]*:sso:::(permissionSet|instance)/{_INSTANCE}/ps-[a-zA-Z0-9./-]{{16}}$"


def _quoted_account_id(value: Any) -> Any:
    # YAML reads an unquoted 12-digit id as an int (dropping leading zeros, or even as octal).
    if not isinstance(value, str):
        raise ValueError("write the AWS account id in quotes, e.g. '012345678901'")
    return value


class AwsSsoTarget(TargetConfig):
    """A target of an `aws_sso` flow: a permission set in one AWS account."""

    permission_set_arn: Annotated[str, Field(pattern=_PERMISSION_SET_ARN)]
    account_id: Annotated[str, BeforeValidator(_quoted_account_id), Field(pattern=r"^\d{12}$")]


class AwsSsoStrategyConfig(StrategyConfig):
    """The `strategy:` block of an `aws_sso` flow."""

    type: Literal["aws_sso"]
    integration: Name
    instance_arn: Annotated[str, Field(pattern=rf"^arn:aws[a-z-]*:sso:::instance/{_INSTANCE}$")]
    identity_store_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")] | None = None
    poll_timeout: Duration = timedelta(seconds=120)
    targets: Annotated[list[AwsSsoTarget], Field(min_length=1)]


class AwsSsoStrategy(AwsStrategyBase):
    """Grants a target by assigning its permission set in its account to the requester's user."""

    system = SYSTEM
    identity_noun = f"a user in {SYSTEM}"
    config_model = AwsSsoStrategyConfig
    config: AwsSsoStrategyConfig

    def __init__(
        self,
        config: AwsSsoStrategyConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        poll: Backoff = STATUS_POLL,
        **options: Any,
    ) -> None:
        """`options` are AwsStrategyBase's (integrations, hooks, sleep, backoff); `poll` paces status polls."""
        super().__init__(config, **options)
        self._monotonic = monotonic
        self._poll = poll
        self._identity_store: str | None = config.identity_store_id
        self._store_lock = asyncio.Lock()

    async def open(self) -> None:
        """Read the Identity Store id from the instance when the config does not give it."""
        try:
            await self._identity_store_id()
        except StrategyError as exc:
            if not exc.retryable:
                raise StartupError(f"aws_sso: {exc}") from exc
            # A passing outage must not stop the bot; the id is read again on first use.
            log.warning("aws_sso.open.identity_store_deferred", error=str(exc))

    def instructions(self, ctx: GrantContext) -> str | None:
        """How to use the access (core.strategy.SupportsInstructions): the integration's access portal."""
        portal = self.integration.config.access_portal_url
        if not portal:
            return None
        account = ctx.target.settings.get("account_id", "")
        return f"Sign in through the AWS access portal, {portal}, and choose account {account}."

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """Check that the requester is an Identity Center user and the permission set exists."""
        issues: list[ValidationIssue] = []
        identity = ctx.subject.identity
        if not identity:
            issues.append(self._no_identity_issue(ctx))
        elif await self._principal_id(identity) is None:
            issues.append(
                ValidationIssue(
                    f"No user with the email or user name '{identity}' was found in {SYSTEM}. Ask an "
                    "admin to add you, or to map your Slack account to your user name with "
                    "`bot.py identities set`.",
                    detail=f"identitystore:GetUserId(emails.value|userName={identity!r}) -> {_NOT_FOUND}",
                )
            )
        permission_set = self._setting(ctx, "permission_set_arn")
        found = await self._call(
            "sso-admin",
            "describe_permission_set",
            missing=_NOT_FOUND,
            InstanceArn=self.config.instance_arn,
            PermissionSetArn=permission_set,
        )
        if found is None:
            issues.append(
                ValidationIssue(
                    f"The {SYSTEM} permission set behind '{ctx.target.label}' does not exist; "
                    "ask an admin to fix this flow.",
                    detail=f"TargetNotFound: sso:DescribePermissionSet({permission_set}) -> {_NOT_FOUND}",
                )
            )
        return issues

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Create the account assignment (unless it already exists) and wait until it has succeeded."""
        identity = self._require_identity(ctx)
        principal_id = await self._principal_id(identity)
        if principal_id is None:
            raise SubjectNotFound(
                f"{SYSTEM}: no user matches {identity!r}",
                user_message=f"No user '{identity}' was found in {SYSTEM}.",
            )
        state = {
            "principal_id": principal_id,
            "instance_arn": self.config.instance_arn,
            "account_id": self._setting(ctx, "account_id"),
            "permission_set_arn": self._setting(ctx, "permission_set_arn"),
        }
        # Check first: moto stores a second identical assignment, and AWS may answer ConflictException.
        if await self._assigned(state):
            return GrantResult(state=state)
        response = await self._call("sso-admin", "create_account_assignment", missing=_NOT_FOUND, **_assignment(state))
        if response is None:
            raise TargetNotFound(
                f"{SYSTEM}: permission set {state['permission_set_arn']} or instance not found",
                user_message=f"The {SYSTEM} permission set behind '{ctx.target.label}' does not exist.",
            )
        creation = response["AccountAssignmentCreationStatus"]
        try:
            status = await self._wait(creation, "creation")
        except StrategyError as exc:
            raise self._creation_in_doubt(ctx, state, creation, exc) from exc
        if status["Status"] == "FAILED":
            reason = status.get("FailureReason") or "no reason given"
            raise StrategyUnavailable(
                f"{SYSTEM}: assigning {state['permission_set_arn']} in account {state['account_id']} "
                f"to {principal_id} failed: {reason}",
                retryable=False,
                user_message=f"{SYSTEM} could not grant '{ctx.target.label}': {reason}",
            )
        return GrantResult(state=state)

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Delete the account assignment and wait for it; an assignment already gone counts as done."""
        principal_id = state.get("principal_id")
        if not principal_id and ctx.subject.identity:
            principal_id = await self._principal_id(ctx.subject.identity)
        if not principal_id:
            # Deleting an Identity Center user also deletes its assignments.
            log.info("aws_sso.revoke.no_principal", slack_id=ctx.subject.slack_id)
            return
        full = {
            "principal_id": principal_id,
            "instance_arn": state.get("instance_arn") or self.config.instance_arn,
            "account_id": state.get("account_id") or self._setting(ctx, "account_id"),
            "permission_set_arn": state.get("permission_set_arn") or self._setting(ctx, "permission_set_arn"),
        }
        await self._no_creation_in_flight(full, state)
        if not await self._assigned(full):
            return
        response = await self._call("sso-admin", "delete_account_assignment", missing=_NOT_FOUND, **_assignment(full))
        if response is None:
            return
        status = await self._wait(response["AccountAssignmentDeletionStatus"], "deletion")
        if status["Status"] == "FAILED" and await self._assigned(full):
            # Unlike a failed grant, a failed revoke must be tried again until access is gone.
            raise StrategyUnavailable(
                f"{SYSTEM}: deleting the assignment of {full['permission_set_arn']} in account "
                f"{full['account_id']} from {principal_id} failed: {status.get('FailureReason') or 'no reason given'}",
                retryable=True,
            )

    async def is_active(self, ctx: GrantContext) -> bool:
        """Ask Identity Center whether the requester holds the target's assignment right now."""
        identity = ctx.subject.identity
        principal_id = await self._principal_id(identity) if identity else None
        if principal_id is None:
            return False
        return await self._assigned(
            {
                "principal_id": principal_id,
                "instance_arn": self.config.instance_arn,
                "account_id": self._setting(ctx, "account_id"),
                "permission_set_arn": self._setting(ctx, "permission_set_arn"),
            }
        )

    def access_key(self, target: Target) -> str:
        """The permission set in the account, on this instance."""
        return (
            f"aws_sso:{self.config.integration}:{self.config.instance_arn}:"
            f"{target.settings.get('account_id', '')}:{target.settings.get('permission_set_arn', '')}"
        )

    async def holders(self, target: Target) -> list[Holder]:
        """Every principal assigned the target's permission set in its account (all pages), users named
        by their Identity Store user name and emails, groups by display name as `group:<name>`."""
        pages = await self._paginate(
            "sso-admin",
            "list_account_assignments",
            InstanceArn=self.config.instance_arn,
            AccountId=str(target.settings.get("account_id") or ""),
            PermissionSetArn=str(target.settings.get("permission_set_arn") or ""),
        )
        store = await self._identity_store_id()
        holders: dict[str, Holder] = {}
        for assignment in (a for page in pages for a in page.get("AccountAssignments", [])):
            principal, kind = assignment["PrincipalId"], assignment.get("PrincipalType", "USER")
            if principal not in holders:
                holders[principal] = await self._describe_principal(store, principal, kind)
        return list(holders.values())

    async def _describe_principal(self, store: str, principal: str, kind: str) -> Holder:
        """A principal's names from the Identity Store; its id alone when the store no longer has it."""
        if kind == "GROUP":
            group = await self._call(
                "identitystore", "describe_group", missing=_NOT_FOUND, IdentityStoreId=store, GroupId=principal
            )
            name = (group or {}).get("DisplayName") or principal
            return Holder(id=principal, name=f"group:{name}", kind="group")
        user = await self._call(
            "identitystore", "describe_user", missing=_NOT_FOUND, IdentityStoreId=store, UserId=principal
        )
        if user is None:
            return Holder(id=principal, name=principal)
        emails = frozenset(e["Value"] for e in user.get("Emails", []) if e.get("Value"))
        return Holder(id=principal, name=user.get("UserName") or principal, aliases=emails)

    async def remove_holder(self, target: Target, holder: Holder) -> None:
        """Delete the principal's assignment of the target's permission set and wait for it; gone is done."""
        kind = "GROUP" if holder.kind == "group" else "USER"
        assignment = {
            "InstanceArn": self.config.instance_arn,
            "TargetId": str(target.settings.get("account_id") or ""),
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": str(target.settings.get("permission_set_arn") or ""),
            "PrincipalType": kind,
            "PrincipalId": holder.id,
        }
        response = await self._call("sso-admin", "delete_account_assignment", missing=_NOT_FOUND, **assignment)
        if response is None:
            return
        status = await self._wait(response["AccountAssignmentDeletionStatus"], "deletion")
        if status["Status"] == "FAILED":
            raise StrategyUnavailable(
                f"{SYSTEM}: deleting the assignment of {assignment['PermissionSetArn']} in account "
                f"{assignment['TargetId']} from {holder.name} failed: {status.get('FailureReason') or 'no reason'}",
                retryable=True,
            )

    def _creation_in_doubt(
        self, ctx: GrantContext, state: Mapping[str, str], creation: Mapping[str, Any], error: StrategyError
    ) -> StrategyUnavailable:
        """The final error of a grant whose creation may still land; its grant_state lets the revoke find it."""
        exc = StrategyUnavailable(
            f"{error}; the grant is not retried, and the clean-up revoke deletes the assignment once "
            "the creation has landed",
            retryable=False,
            user_message=f"{SYSTEM} did not confirm the grant of '{ctx.target.label}' in time; "
            "jitbot is taking it back.",
        )
        exc.grant_state = {**state, "creation_request_id": str(creation.get("RequestId", ""))}
        return exc

    async def _no_creation_in_flight(self, full: Mapping[str, str], state: Mapping[str, str]) -> None:
        """Raise a retryable error while a creation of this assignment is IN_PROGRESS (it would land after us)."""
        request_id = state.get("creation_request_id")
        if request_id:
            found = await self._creation_status(full["instance_arn"], request_id)
            if found is not None:
                if found.get("Status") == "IN_PROGRESS":
                    raise self._still_creating(full, request_id)
                return
            # Unknown to AWS (its history is not kept for ever): look for any creation instead.
        elif state.get("principal_id"):
            return  # the state of a grant that finished: none of its creations is in flight
        pages = await self._paginate(
            "sso-admin",
            "list_account_assignment_creation_status",
            InstanceArn=full["instance_arn"],
            Filter={"Status": "IN_PROGRESS"},
        )
        for operation in (o for page in pages for o in page.get("AccountAssignmentsCreationStatus", [])):
            # The list names requests only; which assignment each creates is in its description.
            found = await self._creation_status(full["instance_arn"], operation["RequestId"])
            if found is not None and found.get("Status") == "IN_PROGRESS" and _same_assignment(found, full):
                raise self._still_creating(full, operation["RequestId"])

    async def _creation_status(self, instance_arn: str, request_id: str) -> Mapping[str, Any] | None:
        response = await self._call(
            "sso-admin",
            "describe_account_assignment_creation_status",
            missing=_NOT_FOUND,
            InstanceArn=instance_arn,
            AccountAssignmentCreationRequestId=request_id,
        )
        return None if response is None else response["AccountAssignmentCreationStatus"]

    @staticmethod
    def _still_creating(full: Mapping[str, str], request_id: str) -> StrategyUnavailable:
        return StrategyUnavailable(
            f"{SYSTEM}: the assignment of {full['permission_set_arn']} in account {full['account_id']} to "
            f"{full['principal_id']} is still being created (request {request_id}); it will be deleted once it lands",
            retryable=True,
            user_message=f"{SYSTEM} is still creating the assignment; jitbot will delete it once it lands.",
        )

    async def _wait(self, status: Mapping[str, Any], kind: Literal["creation", "deletion"]) -> Mapping[str, Any]:
        """Poll the request's status with growing pauses until SUCCEEDED/FAILED or `poll_timeout`."""
        method = f"describe_account_assignment_{kind}_status"
        request_key = f"AccountAssignment{kind.capitalize()}RequestId"
        result_key = f"AccountAssignment{kind.capitalize()}Status"
        timeout = self.config.poll_timeout.total_seconds()
        latest, polls = status, 0  # the status the create/delete call answered, then each poll's

        async def poll() -> Mapping[str, Any]:
            nonlocal latest, polls
            if polls:  # the first look is at the answer already in hand
                response = await self._call(
                    "sso-admin", method, InstanceArn=self.config.instance_arn, **{request_key: status["RequestId"]}
                )
                latest = response[result_key]
            polls += 1
            if latest.get("Status") in ("SUCCEEDED", "FAILED"):
                return latest
            raise Retry(
                StrategyUnavailable(
                    f"{SYSTEM}: assignment {kind} {latest.get('RequestId')} still {latest.get('Status')} "
                    f"after {timeout:g}s",
                    user_message=f"{SYSTEM} is taking longer than expected; the bot will check again.",
                )
            )

        return await call(
            poll, self._poll, sleep=self._sleep, deadline=self._monotonic() + timeout, monotonic=self._monotonic
        )

    async def _assigned(self, state: Mapping[str, str]) -> bool:
        pages = await self._paginate(
            "sso-admin",
            "list_account_assignments",
            InstanceArn=state["instance_arn"],
            AccountId=state["account_id"],
            PermissionSetArn=state["permission_set_arn"],
        )
        return any(
            a.get("PrincipalType") == "USER" and a.get("PrincipalId") == state["principal_id"]
            for page in pages
            for a in page.get("AccountAssignments", [])
        )

    async def _principal_id(self, identity: str) -> str | None:
        """The Identity Store user id for an email (primary attempt) or a user name, or None."""
        store = await self._identity_store_id()
        for path in ("emails.value", "userName"):
            response = await self._call(
                "identitystore",
                "get_user_id",
                missing=_NOT_FOUND,
                IdentityStoreId=store,
                AlternateIdentifier={"UniqueAttribute": {"AttributePath": path, "AttributeValue": identity}},
            )
            if response is not None:
                user_id: str = response["UserId"]
                return user_id
        return None

    async def _identity_store_id(self) -> str:
        async with self._store_lock:
            if self._identity_store is None:
                pages = await self._paginate("sso-admin", "list_instances")
                for instance in (i for page in pages for i in page.get("Instances", [])):
                    if instance.get("InstanceArn") == self.config.instance_arn:
                        self._identity_store = instance["IdentityStoreId"]
                        break
                else:
                    raise StrategyUnavailable(
                        f"{SYSTEM}: instance {self.config.instance_arn} is not among this account's "
                        "instances (sso:ListInstances); check instance_arn and the integration's region",
                        retryable=False,
                    )
            return self._identity_store


def _same_assignment(status: Mapping[str, Any], full: Mapping[str, str]) -> bool:
    """Whether an assignment operation's status is about the assignment `full` describes."""
    return (
        status.get("TargetId") == full["account_id"]
        and status.get("PermissionSetArn") == full["permission_set_arn"]
        and status.get("PrincipalType") == "USER"
        and status.get("PrincipalId") == full["principal_id"]
    )


def _assignment(state: Mapping[str, str]) -> dict[str, str]:
    return {
        "InstanceArn": state["instance_arn"],
        "TargetId": state["account_id"],
        "TargetType": "AWS_ACCOUNT",
        "PermissionSetArn": state["permission_set_arn"],
        "PrincipalType": "USER",
        "PrincipalId": state["principal_id"],
    }
