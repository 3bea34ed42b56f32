"""The `webhook` strategy: POST a signed JSON body to your own service to grant and to revoke.

    strategy:
      type: webhook
      url: https://access.internal.example.com/jitbot
      secret: ${env:WEBHOOK_SECRET}          # optional: HMAC-SHA256 of the raw body
      timeout: 10s                           # optional, per delivery (the whole exchange)
      headers: {Authorization: ${env:ACCESS_API_KEY}}   # optional extra headers
      targets:
        - {name: prod_admin, label: Prod Admin, settings: {database: prod, role: admin}}

docs/webhook-contract.md is the receiver's side of this contract; in short, the body, serialised
once (compact JSON, UTF-8) and signed exactly as sent:

    {"action": "grant" | "revoke", "request_id", "flow", "target": {"name", "label", "settings"},
     "requester": {"slack_id", "email", "identity"}, "fields", "granted_at", "expires_at",
     "sent_at", "delivery_id"}

Times are ISO 8601 UTC with a `Z` suffix and whole seconds (`2026-01-02T03:04:05Z`). `granted_at`
is never null (the time of this delivery when the grant's own time is unknown); `expires_at` is
null only for a request without an end. `sent_at` and `delivery_id` (fresh for every attempt) are
inside the signed body so that a receiver can refuse a replayed delivery.
Headers: `X-Jitbot-Signature: sha256=<hex>` (with a secret), `X-Jitbot-Request-Id`, and
`X-Jitbot-Delivery: <request_id>:<action>` which is the same for every retry of one action, so a
receiver can de-duplicate. A revoke also carries `X-Jitbot-Grant-Id` when the grant's response gave a
`grant_id`; a `grant_id` that could not be sent back as a header (see `valid_grant_id`) fails the
grant, so that the engine takes it back at once. Any 2xx is success; 4xx is final except 408 and
429; 5xx, time-outs and connection errors are retryable; an answer over 1 MiB is refused.
Receivers must be idempotent: jitbot re-delivers after a crash or a failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeGuard

import httpx
import structlog
from pydantic import Field, field_validator

from core.clock import Clock, SystemClock
from core.errors import StrategyUnavailable
from core.plain import plain
from core.schema import Duration, SecretStr, StrategyConfig, TargetConfig
from core.secrets import Secret, SecretRegistry
from core.strategy import GrantContext, GrantResult
from strategies.base import MatchedElsewhere
from strategies.http import ResponseTooLarge, http_client, http_url

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Jitbot-Signature"
REQUEST_ID_HEADER = "X-Jitbot-Request-Id"
DELIVERY_HEADER = "X-Jitbot-Delivery"
GRANT_ID_HEADER = "X-Jitbot-Grant-Id"
_RESERVED_HEADERS = {h.lower() for h in (SIGNATURE_HEADER, REQUEST_ID_HEADER, DELIVERY_HEADER, GRANT_ID_HEADER)}
_RESERVED_HEADERS |= {"content-type", "content-length", "host"}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RETRYABLE_4XX = {408, 429}
_EXCERPT_CHARS = 200
_HEX_DIGEST = re.compile(r"(sha256=)?\b[0-9a-fA-F]{64}\b")
GRANT_ID_MAX_CHARS = 200
# Visible ASCII only: no space (trimmed by HTTP), no control character (CR/LF would split the header),
# nothing outside ASCII (header values are bytes; httpx refuses to encode them).
_GRANT_ID = re.compile(rf"[\x21-\x7e]{{1,{GRANT_ID_MAX_CHARS}}}")
_JSON_TYPE = {dict: "an object", list: "an array", float: "a number", bool: "a boolean"}


class WebhookTarget(TargetConfig):
    """A webhook target: `settings` is passed through to the receiver as written."""

    settings: dict[str, Any] = {}


class WebhookStrategyConfig(StrategyConfig):
    """Keys of a `type: webhook` strategy block."""

    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = None
    timeout: Duration = timedelta(seconds=10)
    headers: dict[str, SecretStr] = {}
    targets: Annotated[list[WebhookTarget], Field(min_length=1)]  # a flow with no target grants nothing

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Kept exactly as written (no trailing slash dropped): it is the address POSTed to.
        return http_url(value)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, Secret]) -> dict[str, Secret]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name} is set by jitbot and cannot be overridden")
        return value

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be positive")
        return value


class WebhookStrategy(MatchedElsewhere):
    """Grants and revokes by POSTing signed JSON to the flow's `url`."""

    system = "webhook"
    config_model = WebhookStrategyConfig
    unidentified_consequence = "the access service cannot tell who you are"

    def __init__(
        self,
        config: WebhookStrategyConfig,
        *,
        integrations: Mapping[str, object] | None = None,
        hooks: object = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        secrets: SecretRegistry | None = None,
    ) -> None:
        self.config = config
        # The runtime's registry, which the loader handed the config: failures quote upstream text.
        self.secrets = config.secret_registry if secrets is None else secrets
        self._transport = transport
        self._clock = clock or SystemClock()
        self._client: httpx.AsyncClient | None = None
        self._shown_url = _safe_url(config.url)
        self._url = httpx.URL(config.url)  # parsed once: httpx parses a string on every request

    @property
    def identity_key(self) -> str:
        """Identity overrides for webhooks are kept under the strategy type."""
        return "webhook"

    async def open(self) -> None:
        """Create the HTTP client (no request is made)."""
        if self._client is None:
            # Redirects are not followed: one would re-send a signed grant somewhere unreviewed.
            self._client = http_client(timeout=self.config.timeout.total_seconds(), transport=self._transport)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """POST action=grant; a usable `grant_id` in a JSON answer is kept for the revoke, any other fails the grant."""
        self._require_someone(ctx)
        response = await self._deliver("grant", ctx, {})
        grant_id = self._grant_id(response)
        return GrantResult(state={"grant_id": grant_id} if grant_id else {})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """POST action=revoke, with the grant's id in a header when there is a usable one."""
        grant_id = state.get("grant_id")
        extra: dict[str, str] = {}
        if valid_grant_id(grant_id):
            extra[GRANT_ID_HEADER] = grant_id
        elif grant_id:
            # Stored before grant ids were checked: the revoke goes out without it rather than not at all.
            log.warning(
                "webhook.revoke.grant_id_dropped",
                request_id=ctx.request_id,
                where=self._shown_url,
                reason=_grant_id_problem(grant_id),
            )
        await self._deliver("revoke", ctx, extra)

    # ── delivery ──────────────────────────────────────────────────────────────────────────────────

    def body(self, action: str, ctx: GrantContext, *, sent_at: datetime, delivery_id: str) -> bytes:
        """The exact bytes POSTed (and signed) for one delivery of `action`."""
        document = {
            "action": action,
            "request_id": ctx.request_id,
            "flow": ctx.flow,
            "target": {"name": ctx.target.name, "label": ctx.target.label, "settings": plain(ctx.target.settings)},
            "requester": {
                "slack_id": ctx.subject.slack_id,
                "email": ctx.subject.email,
                "identity": ctx.subject.identity or ctx.subject.email,
            },
            "fields": dict(ctx.fields),
            # Never null: a receiver may key on it. Unknown only when the engine did not record it
            # (a grant in doubt after a crash); then it is the time of this delivery.
            "granted_at": iso_utc(ctx.granted_at or sent_at),
            "expires_at": iso_utc(ctx.expires_at),
            "sent_at": iso_utc(sent_at),
            "delivery_id": delivery_id,
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str).encode()

    def headers(self, action: str, ctx: GrantContext, body: bytes) -> dict[str, str]:
        """Headers for one delivery: extras first, then jitbot's own (which cannot be overridden)."""
        headers = {name: value.reveal() for name, value in self.config.headers.items()}
        headers.update(
            {
                "Content-Type": "application/json",
                "User-Agent": "jitbot-webhook",
                REQUEST_ID_HEADER: ctx.request_id,
                DELIVERY_HEADER: f"{ctx.request_id}:{action}",
            }
        )
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = "sha256=" + sign(self.config.secret.reveal(), body)
        return headers

    async def _deliver(self, action: str, ctx: GrantContext, extra: Mapping[str, str]) -> httpx.Response:
        if self._client is None:
            raise RuntimeError("WebhookStrategy.open() was not called")
        # A new id and time for every attempt, inside the signature: a captured delivery cannot be
        # passed off as a fresh one.
        body = self.body(action, ctx, sent_at=self._clock.now(), delivery_id=uuid.uuid4().hex)
        headers = {**self.headers(action, ctx, body), **extra}
        try:
            # The client's transport bounds the whole exchange (time and size), not each read.
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException:
            limit = self.config.timeout.total_seconds()
            raise self._unavailable(action, f"no answer within {limit:g}s", retryable=True) from None
        except ResponseTooLarge as exc:
            raise self._unavailable(action, str(exc), retryable=_retryable_status(exc.status_code)) from None
        except httpx.DecodingError as exc:
            raise self._unavailable(action, str(exc), retryable=False) from None
        except httpx.HTTPError as exc:
            raise self._unavailable(action, f"{type(exc).__name__}: {_short(str(exc))}", retryable=True) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        excerpt = self._excerpt(response)
        raise self._unavailable(
            action,
            f"HTTP {status}" + (f": {excerpt}" if excerpt else ""),
            retryable=_retryable_status(status),
            status=status,
        )

    def _grant_id(self, response: httpx.Response) -> str | None:
        """The `grant_id` of a JSON grant answer; an unusable one is a final error (the grant is then undone)."""
        if "json" not in response.headers.get("content-type", ""):
            return None
        try:
            document = response.json()
        except ValueError:
            return None
        value = document.get("grant_id") if isinstance(document, dict) else None
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if valid_grant_id(value):
            return value
        # The value itself stays out of the message: it failed the check, so it may hold anything.
        raise StrategyUnavailable(
            f"webhook grant to {self._shown_url} answered a grant_id that cannot be sent back on revoke "
            f"({_grant_id_problem(value)}); the grant is treated as failed",
            retryable=False,
            user_message="The access service answered the grant with an unusable grant_id, so jitbot is taking "
            "the access back.",
        )

    def _unavailable(
        self, action: str, what: str, *, retryable: bool, status: int | None = None
    ) -> StrategyUnavailable:
        shown = f" (HTTP {status})" if status else ""
        return StrategyUnavailable(
            self.secrets.scrub(f"webhook {action} to {self._shown_url} failed: {what}"),
            retryable=retryable,
            user_message=f"The access service did not accept the {action}{shown}.",
        )

    def _excerpt(self, response: httpx.Response) -> str:
        # A receiver may echo our headers back: no signature (ours or any) goes into logs or alerts.
        # Redact before cutting, so a secret straddling the cut cannot leave half of itself behind.
        return _short(self.secrets.scrub(_HEX_DIGEST.sub("***", response.text[:4000])))

    def _where(self) -> str:
        return f"webhook {self._shown_url}"


def sign(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `body` with `secret` (what X-Jitbot-Signature carries after 'sha256=')."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z suffix and whole seconds; naive datetimes are taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def valid_grant_id(value: object) -> TypeGuard[str]:
    """Whether `value` may be sent as X-Jitbot-Grant-Id: 1 to 200 visible ASCII characters (no space or control)."""
    return isinstance(value, str) and _GRANT_ID.fullmatch(value) is not None


def _grant_id_problem(value: object) -> str:
    """Why `value` is not a usable grant id, without repeating it."""
    if not isinstance(value, str):
        return f"it is {_JSON_TYPE.get(type(value), type(value).__name__)}, not a string"
    if len(value) > GRANT_ID_MAX_CHARS:
        return f"{len(value)} characters, at most {GRANT_ID_MAX_CHARS} allowed"
    return "only visible ASCII characters are allowed: no spaces, control characters or non-ASCII"


def _retryable_status(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_4XX


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"


def _safe_url(url: str) -> str:
    """The URL without credentials or query string, for messages (either may hold a token)."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"
