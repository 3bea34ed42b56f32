"""The `webhook` strategy: POST a signed JSON body to your own service to grant and to revoke (SPEC §4).

    strategy:
      type: webhook
      url: https://access.internal.example.com/jitbot
      secret: ${env:WEBHOOK_SECRET}          # optional: HMAC-SHA256 of the raw body
      timeout: 10s                           # optional, per delivery
      headers: {Authorization: ${env:ACCESS_API_KEY}}   # optional extra headers
      targets:
        - {name: prod_admin, label: Prod Admin, settings: {database: prod, role: admin}}

The body, serialised once (compact JSON, UTF-8) and signed exactly as sent:

    {"action": "grant" | "revoke", "request_id", "flow", "target": {"name", "label", "settings"},
     "requester": {"slack_id", "email"}, "fields", "granted_at", "expires_at"}

Times are ISO 8601 UTC with a `Z` suffix and whole seconds (`2026-01-02T03:04:05Z`), or null.
Headers: `X-Jitbot-Signature: sha256=<hex>` (with a secret), `X-Jitbot-Request-Id`, and
`X-Jitbot-Delivery: <request_id>:<action>` which is the same for every retry of one action, so a
receiver can de-duplicate. A revoke also carries `X-Jitbot-Grant-Id` when the grant's response gave a
`grant_id`. Any 2xx is success; 4xx is final except 408 and 429; 5xx, time-outs and connection errors
are retryable. Receivers must be idempotent: jitbot re-delivers after a crash or a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Mapping

import httpx
from pydantic import field_validator

from core.errors import StrategyUnavailable, SubjectNotFound
from core.schema import Duration, SecretStr, StrategyConfig, TargetConfig
from core.secrets import scrub
from strategies.base import GrantContext, GrantResult, ValidationIssue
from strategies.aiohttp_transport import AiohttpTransport
from strategies.http import http_url

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
    targets: list[WebhookTarget]

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Kept exactly as written (no trailing slash dropped): it is the address POSTed to.
        return http_url(value)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict) -> dict:
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


class WebhookStrategy:
    """Grants and revokes by POSTing signed JSON to the flow's `url`."""

    system = "webhook"
    config_model = WebhookStrategyConfig

    def __init__(
        self,
        config: WebhookStrategyConfig,
        *,
        integrations: Mapping[str, object] | None = None,
        hooks: object = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._where = _safe_url(config.url)

    @property
    def identity_key(self) -> str:
        """Identity overrides for webhooks are kept under the strategy type."""
        return "webhook"

    async def open(self) -> None:
        """Create the HTTP client (no request is made)."""
        if self._client is None:
            seconds = self.config.timeout.total_seconds()
            # follow_redirects=False: a redirect would re-send a signed grant somewhere unreviewed.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(seconds), follow_redirects=False,
                transport=self._transport or AiohttpTransport(),
            )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """The receiver does its own matching; jitbot only needs something to identify the person by."""
        if ctx.subject.email or ctx.subject.identity:
            return []
        return [ValidationIssue(
            "Your Slack profile has no email address, so the access service cannot tell who you are.",
            detail=f"webhook {self._where}: subject {ctx.subject.slack_id} has no email and no identity override",
        )]

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """POST action=grant; a `grant_id` in a JSON response is kept for the revoke."""
        self._require_subject(ctx)
        response = await self._deliver("grant", ctx, {})
        grant_id = _grant_id(response)
        return GrantResult(state={"grant_id": grant_id} if grant_id else {})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """POST action=revoke, with the grant's id in a header when there is one."""
        extra = {GRANT_ID_HEADER: state["grant_id"]} if state.get("grant_id") else {}
        await self._deliver("revoke", ctx, extra)

    # ── delivery ──────────────────────────────────────────────────────────────────────────────────

    def body(self, action: str, ctx: GrantContext) -> bytes:
        """The exact bytes POSTed (and signed) for `action`."""
        document = {
            "action": action,
            "request_id": ctx.request_id,
            "flow": ctx.flow,
            "target": {"name": ctx.target.name, "label": ctx.target.label, "settings": plain_settings(ctx.target.settings)},
            "requester": {"slack_id": ctx.subject.slack_id, "email": ctx.subject.email},
            "fields": dict(ctx.fields),
            "granted_at": iso_utc(ctx.granted_at),
            "expires_at": iso_utc(ctx.expires_at),
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str).encode()

    def headers(self, action: str, ctx: GrantContext, body: bytes) -> dict[str, str]:
        """Headers for one delivery: extras first, then jitbot's own (which cannot be overridden)."""
        headers = {name: value.reveal() for name, value in self.config.headers.items()}
        headers.update({
            "Content-Type": "application/json",
            "User-Agent": "jitbot-webhook",
            REQUEST_ID_HEADER: ctx.request_id,
            DELIVERY_HEADER: f"{ctx.request_id}:{action}",
        })
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = "sha256=" + sign(self.config.secret.reveal(), body)
        return headers

    async def _deliver(self, action: str, ctx: GrantContext, extra: Mapping[str, str]) -> httpx.Response:
        if self._client is None:
            raise RuntimeError("WebhookStrategy.open() was not called")
        body = self.body(action, ctx)
        headers = {**self.headers(action, ctx, body), **extra}
        limit = self.config.timeout.total_seconds()
        try:
            # httpx applies the limit per phase (connect, write, read); this caps the whole delivery.
            async with asyncio.timeout(limit):
                response = await self._client.post(self.config.url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            raise self._unavailable(action, f"no answer within {limit:g}s", retryable=True) from None
        except httpx.HTTPError as exc:
            raise self._unavailable(action, f"{type(exc).__name__}: {_short(str(exc))}", retryable=True) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        excerpt = self._excerpt(response)
        retryable = status >= 500 or status in _RETRYABLE_4XX
        raise self._unavailable(action, f"HTTP {status}" + (f": {excerpt}" if excerpt else ""), retryable=retryable, status=status)

    def _unavailable(self, action: str, what: str, *, retryable: bool, status: int | None = None) -> StrategyUnavailable:
        shown = f" (HTTP {status})" if status else ""
        return StrategyUnavailable(
            scrub(f"webhook {action} to {self._where} failed: {what}"),
            retryable=retryable,
            user_message=f"The access service did not accept the {action}{shown}.",
        )

    def _excerpt(self, response: httpx.Response) -> str:
        # A receiver may echo our headers back: no signature (ours or any) goes into logs or alerts.
        # Redact before cutting, so a secret straddling the cut cannot leave half of itself behind.
        return _short(scrub(_HEX_DIGEST.sub("***", response.text[:4000])))

    @staticmethod
    def _require_subject(ctx: GrantContext) -> None:
        if not (ctx.subject.email or ctx.subject.identity):
            raise SubjectNotFound(
                f"subject {ctx.subject.slack_id} has no email and no identity override",
                user_message="Your Slack profile has no email address, so the access service cannot tell who you are.",
            )


def sign(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `body` with `secret` (what X-Jitbot-Signature carries after 'sha256=')."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z suffix and whole seconds; naive datetimes are taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def plain_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A target's free-form settings as plain JSON-ready dicts and lists (read-only views copied)."""
    return {str(key): _plain(value) for key, value in settings.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return value


def _grant_id(response: httpx.Response) -> str | None:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        document = response.json()
    except ValueError:
        return None
    value = document.get("grant_id") if isinstance(document, dict) else None
    return str(value)[:200] if value not in (None, "") else None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"


def _safe_url(url: str) -> str:
    """The URL without credentials or query string, for messages (either may hold a token)."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"
