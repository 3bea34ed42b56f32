"""Who is calling: the bearer token, checked in constant time, limited per token, scoped.

Order matters. A token in the query string is refused before anything else (URLs end up in proxy
and access logs). A token is then found by its id and its digest compared in constant time; an
unknown, revoked or expired token is a 401 and a missing scope a 403 (audited). Calls are limited
per token, and calls with a token that does not check out are limited per caller address, so
guessing costs the guesser. The token's Slack user must still be an active member of the workspace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from aiohttp import web

from api.problems import Problem
from api.ratelimit import RateLimiter
from core.clock import Clock
from core.errors import NotAllowed
from core.models import AuditEvent
from core.origin import API, origin
from core.ports import AuditTrail, Directory
from core.tokens import TOKEN_PREFIX, ApiToken, Scope, TokenLookup, digest, matches, token_id

log = structlog.get_logger("jitbot.api")

_QUERY_TOKEN_NAMES = frozenset({"access_token", "token", "api_token", "auth", "authorization", "bearer", "key"})
_UNUSED_DIGEST = digest("jit_000000000000_" + "0" * 43)  # compared against when no token row is found
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jitbot"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="jitbot", error="invalid_token"'}


@dataclass(frozen=True)
class Caller:
    """An authenticated call: the token and the Slack user it acts as."""

    token: ApiToken

    @property
    def user(self) -> str:
        """The Slack user id the token acts as."""
        return self.token.user

    @property
    def name(self) -> str:
        """The token's name, as the audit trail records it."""
        return self.token.name


def refuse_query_tokens(request: web.Request) -> None:
    """400 when the query string carries what looks like a credential (it would be logged)."""
    for key, value in request.query.items():
        if key.lower() in _QUERY_TOKEN_NAMES or TOKEN_PREFIX in value or "bearer" in value.lower():
            log.warning("api.query_token_refused", path=request.path, parameter=key[:40])
            raise Problem(
                400,
                "Tokens are refused in query strings, which end up in logs: send the header "
                "'Authorization: Bearer <token>' instead, and revoke a token that was sent in a URL.",
            )


class Authenticator:
    """Turns a request's Authorization header into a Caller, or raises the Problem to answer."""

    def __init__(
        self,
        tokens: TokenLookup,
        *,
        clock: Clock,
        limiter: RateLimiter,
        audit: AuditTrail,
        directory: Directory,
    ) -> None:
        self.tokens = tokens
        self.clock = clock
        self.limiter = limiter
        self.audit = audit
        self.directory = directory

    async def caller(self, request: web.Request, scopes: Iterable[Scope]) -> Caller:
        """The caller, when the token is valid, within its rate and holds one of `scopes`."""
        header = request.headers.get("Authorization", "")
        scheme, _, text = header.strip().partition(" ")
        if not header:
            raise Problem(
                401, "Send the header 'Authorization: Bearer <token>' (bot.py tokens create makes one).", {}, _CHALLENGE
            )
        if scheme.lower() != "bearer" or not text.strip():
            raise Problem(401, "The Authorization header must be 'Bearer <token>'.", {}, _CHALLENGE)
        token = await self._check(request, text.strip())
        self._limit(f"token:{token.id}")
        wanted = frozenset(scopes)
        if wanted and not (wanted & token.scopes):
            needed = " or ".join(sorted(s.value for s in wanted))
            reason = (
                f"This token may not do this: it needs the scope {needed} (it has {', '.join(sorted(token.scopes))})."
            )
            await self.refused(token, request, reason)
            raise Problem(403, reason)
        await self._check_user(token)
        used = token.last_used_at
        now = self.clock.now()
        if used is None or (now - used).total_seconds() >= 60:
            await self.tokens.touch(token.id, now)
        return Caller(token)

    async def refused(self, token: ApiToken, request: web.Request, reason: str) -> None:
        """Audit a call the API refused before it reached the engine."""
        detail = {"method": request.method, "path": request.path[:200], "reason": reason, **origin(API, token.name)}
        request_id = request.match_info.get("id")
        await self.audit.append(
            AuditEvent(
                at=self.clock.now(),
                actor=token.user,
                action="api.refused",
                request_id=request_id[:64] if request_id else None,
                detail=detail,
            )
        )

    async def note(self, token: ApiToken, request_id: str, action: str, outcome: str) -> None:
        """Audit which token an engine action came through, where the engine's own row cannot say."""
        detail = {"action": action, "outcome": outcome, **origin(API, token.name)}
        await self.audit.append(
            AuditEvent(at=self.clock.now(), actor=token.user, action="api.call", request_id=request_id, detail=detail)
        )

    async def _check(self, request: web.Request, text: str) -> ApiToken:
        found = None
        key = token_id(text)
        if key is not None:
            found = await self.tokens.find(key)
        # Compared in constant time, and compared even when no row was found.
        if not matches(text, found[1] if found is not None else _UNUSED_DIGEST) or found is None:
            self._limit(f"peer:{request.remote}")
            log.info("api.token_refused", reason="unknown", path=request.path)
            raise Problem(401, "This token is not valid.", {}, _INVALID)
        token = found[0]
        state = token.state(self.clock.now())
        if state != "active":
            self._limit(f"token:{token.id}")
            log.info("api.token_refused", reason=state, token=token.name, path=request.path)
            when = token.revoked_at if state == "revoked" else token.expires_at
            assert when is not None
            raise Problem(
                401,
                f"This token was {'revoked' if state == 'revoked' else 'valid until'} {when.isoformat()}.",
                {},
                _INVALID,
            )
        return token

    def _limit(self, key: str) -> None:
        wait = self.limiter.take(key)
        if wait > 0:
            retry = self.limiter.retry_after(wait)
            raise Problem(429, f"Too many calls: try again in {retry} s.", {}, {"Retry-After": retry})

    async def _check_user(self, token: ApiToken) -> None:
        # The directory's cache serves this (decisions and submissions read the user fresh again).
        try:
            person = await self.directory.lookup_user(token.user)
        except NotAllowed as refusal:  # not found in the workspace
            raise Problem(401, f"The token's Slack user cannot act: {refusal.user_message}", {}, _INVALID) from None
        except Exception as exc:  # fail closed: a user Slack cannot vouch for does nothing
            log.warning("api.directory_unavailable", user=token.user, error=type(exc).__name__)
            raise Problem(
                503, "Could not check the token's Slack user just now; try again.", {}, {"Retry-After": "5"}
            ) from None
        if person.deleted or person.is_bot:
            raise Problem(401, "The token's Slack user is deactivated.", {}, _INVALID)
