"""The `aws` integration: one boto3 session per integration, cached clients, calls off the event loop.

Credentials come from the standard AWS chain (env, shared files, SSO, container or instance role).
With `role_arn`, the bot assumes that role with STS (session name "jitbot") and botocore refreshes
the temporary credentials before they expire. `endpoint_url` is applied to every client it makes
(VPC endpoints; moto in tests).

Also here, shared by the AWS strategies: mapping botocore errors onto `core.errors`, retries of
throttling and conflicting concurrent operations (`core.retry`, the in-call policy), and
`AwsStrategyBase` (the integration lookup, retried and mapped calls, identity and target checks).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar, overload

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from pydantic import Field

from core.clock import Clock, SystemClock
from core.errors import JitError, StrategyError, StrategyUnavailable
from core.retry import IN_CALL, Backoff, Sleep, call
from core.schema import IntegrationConfig
from strategies.base import IntegrationStrategy, IntegrationStrategyConfig

ROLE_SESSION_NAME = "jitbot"

# The prefix IAM policies use for each boto3 client name, to name a missing permission exactly.
_POLICY_PREFIX = {"sso-admin": "sso", "identitystore": "identitystore", "iam": "iam", "sts": "sts"}

ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"}
)
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
# ConflictException (SSO Admin) and ConcurrentModification (IAM) mean another operation on the same
# resource is in flight; both succeed when tried again a little later.
RETRY_CODES = THROTTLING_CODES | {"ConflictException", "ConcurrentModification"}
_TRANSIENT_CODES = frozenset(
    {
        "ServiceFailure",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalFailure",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)


class AwsIntegrationConfig(IntegrationConfig):
    """Keys of an `integrations:` entry with `type: aws`."""

    type: Literal["aws"]
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")]
    role_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")] | None = None
    endpoint_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    # Where people sign in to use what aws_sso grants (shown in the approved DM), e.g. https://d-1234.awsapps.com/start
    access_portal_url: Annotated[str, Field(pattern=r"^https://\S+$", max_length=500)] | None = None


class _FixedCredentialProvider(CredentialProvider):  # type: ignore[misc]  # botocore has no type hints: its classes are Any
    """Puts our assumed-role credentials first in a botocore session's credential chain."""

    METHOD = "jitbot-assume-role"
    CANONICAL_NAME = "jitbot-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


class AwsIntegration:
    """A named AWS connection: region, optional assumed role and endpoint, one client per service."""

    config_model = AwsIntegrationConfig

    def __init__(
        self,
        name: str,
        config: AwsIntegrationConfig,
        *,
        botocore_config: Config | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.config = config
        # Standard mode retries throttling, 5xx and connection errors with jittered back-off.
        base = Config(
            retries={"mode": "standard", "total_max_attempts": 5},
            connect_timeout=5,
            read_timeout=30,
            user_agent_appid="jitbot",
        )
        self._client_config = base.merge(botocore_config) if botocore_config else base
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()  # boto3 sessions are not thread-safe; clients are
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}
        self._role_source: Any = None  # the STS client that assumes `role_arn`

    async def open(self) -> None:
        """Create the session (reading the credential chain's config) off the event loop."""
        await asyncio.to_thread(self._ensure_session)

    async def aclose(self) -> None:
        """Close every client's connection pool and forget the session."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            if self._role_source is not None:
                clients.append(self._role_source)
            self._session, self._role_source = None, None
        for client in clients:
            await asyncio.to_thread(client.close)

    def client(self, service: str) -> Any:
        """Return the cached boto3 client for `service` ('iam', 'sso-admin', …), creating it once."""
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                session = self._session or self._build_session()
                self._session = session
                client = session.client(service, endpoint_url=self.config.endpoint_url, config=self._client_config)
                self._clients[service] = client
            return client

    async def call(self, client_name: str, method: str, **kwargs: Any) -> dict[str, Any]:
        """Run one boto3 call (`method` in snake_case) in a worker thread and return its response."""
        return await asyncio.to_thread(lambda: getattr(self.client(client_name), method)(**kwargs))

    async def paginate(self, client_name: str, method: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Run a paginated boto3 call to the end in a worker thread and return every page."""

        def run() -> list[dict[str, Any]]:
            return list(self.client(client_name).get_paginator(method).paginate(**kwargs))

        return await asyncio.to_thread(run)

    def _ensure_session(self) -> None:
        with self._lock:
            if self._session is None:
                self._session = self._build_session()

    def _build_session(self) -> boto3.Session:
        base = boto3.Session(region_name=self.config.region)
        if not self.config.role_arn:
            return base
        # The STS client signs with the standard chain; everything else uses the assumed role.
        sts = base.client("sts", endpoint_url=self.config.endpoint_url, config=self._client_config)
        self._role_source = sts
        # Fetched on first use, then refreshed by botocore in the last minutes before expiry.
        credentials = DeferredRefreshableCredentials(
            refresh_using=lambda: self._assume_role(sts),
            method="sts-assume-role",
            time_fetcher=self._clock.now,
        )
        assumed = botocore.session.Session()
        assumed.get_component("credential_provider").insert_before("env", _FixedCredentialProvider(credentials))
        return boto3.Session(botocore_session=assumed, region_name=self.config.region)

    def _assume_role(self, sts: Any) -> dict[str, str]:
        try:
            response = sts.assume_role(RoleArn=self.config.role_arn, RoleSessionName=ROLE_SESSION_NAME)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, system="AWS STS", client_name="sts") from exc
        creds = response["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('NoSuchEntity', …), or '' for anything else."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def policy_action(client_name: str, operation: str) -> str:
    """The IAM policy action for a call, e.g. ('sso-admin', 'CreateAccountAssignment') -> 'sso:Create…'."""
    return f"{_POLICY_PREFIX.get(client_name, client_name)}:{operation}"


def aws_error(exc: BaseException, *, system: str, client_name: str) -> StrategyError:
    """Map a botocore exception onto the strategy error tree; `retryable` says if trying again may help."""
    if isinstance(exc, StrategyError):
        return exc
    if isinstance(exc, JitError):
        return StrategyUnavailable(str(exc), retryable=False)
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        action = policy_action(client_name, exc.operation_name)
        if code in ACCESS_DENIED_CODES:
            return StrategyUnavailable(
                f"{system}: access denied for {action}: the bot's AWS credentials need {action} "
                "(see docs/aws-permissions.md)",
                retryable=False,
                user_message=f"{system} refused the bot's request; an admin needs to allow {action}.",
            )
        retryable = code in THROTTLING_CODES or code in RETRY_CODES or code in _TRANSIENT_CODES or status >= 500
        return StrategyUnavailable(
            f"{system}: {exc.operation_name} failed: {code or status}: {message}".rstrip(": "),
            retryable=retryable,
            user_message=f"{system} is not answering as expected right now." if retryable else None,
        )
    if isinstance(exc, ParamValidationError):  # botocore refused our request before sending it
        return StrategyUnavailable(f"{system}: invalid request: {exc}", retryable=False)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StrategyUnavailable(f"{system}: no usable AWS credentials in the standard chain", retryable=False)
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)):
        return StrategyUnavailable(
            f"{system}: cannot reach AWS: {exc}",
            user_message=f"{system} cannot be reached right now.",
        )
    return StrategyUnavailable(f"{system}: {type(exc).__name__}: {exc}", retryable=isinstance(exc, BotoCoreError))


T = TypeVar("T")


async def with_retry(
    operation: Callable[[], Awaitable[T]],
    *,
    sleep: Sleep,
    backoff: Backoff = IN_CALL,
    retry_codes: frozenset[str] = RETRY_CODES,
) -> T:
    """Await `operation()`, trying again after `sleep` while it fails with a throttling/conflict code.

    botocore already retries throttling a few times; this outer loop adds ConflictException and
    longer pauses. It re-raises the last botocore error, so callers still map it with `aws_error`.
    """
    return await call(
        operation,
        backoff,
        sleep=sleep,
        retry_if=lambda exc: isinstance(exc, ClientError) and error_code(exc) in retry_codes,
    )


@overload
async def mapped_call(
    operation: Callable[[], Awaitable[T]], *, system: str, client_name: str, missing: None = None
) -> T: ...


@overload
async def mapped_call(
    operation: Callable[[], Awaitable[T]], *, system: str, client_name: str, missing: str
) -> T | None: ...


async def mapped_call(
    operation: Callable[[], Awaitable[T]], *, system: str, client_name: str, missing: str | None = None
) -> T | None:
    """Await `operation()`; None when AWS answers the error code `missing`, other botocore errors mapped."""
    try:
        return await operation()
    except ClientError as exc:
        if missing is not None and error_code(exc) == missing:
            return None
        raise aws_error(exc, system=system, client_name=client_name) from exc
    except BotoCoreError as exc:
        raise aws_error(exc, system=system, client_name=client_name) from exc


class AwsStrategyBase(IntegrationStrategy):
    """What the AWS strategies share; a subclass sets `system`, `identity_noun` and `config_model`.

    The strategy's config must have an `integration` of type aws; calls are retried and mapped.
    """

    integration_type = "aws"
    integration_class = AwsIntegration
    integration: AwsIntegration

    def __init__(
        self,
        config: IntegrationStrategyConfig,
        *,
        integrations: Mapping[str, object],
        hooks: Any = None,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff = IN_CALL,
    ) -> None:
        super().__init__(config, integrations=integrations, hooks=hooks)
        self._sleep = sleep
        self._backoff = backoff

    @overload
    async def _call(self, client_name: str, method: str, *, missing: None = None, **kwargs: Any) -> dict[str, Any]: ...

    @overload
    async def _call(self, client_name: str, method: str, *, missing: str, **kwargs: Any) -> dict[str, Any] | None: ...

    async def _call(
        self, client_name: str, method: str, *, missing: str | None = None, **kwargs: Any
    ) -> dict[str, Any] | None:
        """One call with retries; None when AWS answers the error code `missing`, other errors mapped."""
        return await mapped_call(
            lambda: with_retry(
                lambda: self.integration.call(client_name, method, **kwargs), sleep=self._sleep, backoff=self._backoff
            ),
            system=self.system,
            client_name=client_name,
            missing=missing,
        )

    async def _paginate(self, client_name: str, method: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a paginated call, with retries; errors mapped."""
        return await mapped_call(
            lambda: with_retry(
                lambda: self.integration.paginate(client_name, method, **kwargs),
                sleep=self._sleep,
                backoff=self._backoff,
            ),
            system=self.system,
            client_name=client_name,
        )
