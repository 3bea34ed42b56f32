"""API tokens: what one is, how it is written, and how a presented one is checked. Pure, no storage.

A token reads `jit_<id>_<secret>`: `id` (12 hex digits) finds its row, `secret` is 32 random
bytes (URL-safe base64). Only the SHA-256 of the whole token is stored: a 256-bit random secret
needs no slow hash (there is nothing to brute-force), and the comparison is constant-time
(`hmac.compare_digest`). The token is shown once, by `bot.py tokens create`, and never again.

A token acts as its Slack user, limited by its scopes: `request` (ask for access, cancel or extend
one's own), `decide` (approve, deny), `read` (list and read requests and flows). Revoking access
needs `request` (one's own grant) or `decide` (as an approver).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

TOKEN_PREFIX = "jit_"
_TOKEN = re.compile(r"^jit_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Scope(StrEnum):
    """What a token may do."""

    REQUEST = "request"
    DECIDE = "decide"
    READ = "read"


DEFAULT_SCOPES = (Scope.REQUEST, Scope.READ)
"""A new token's scopes unless told otherwise: deciding is granted only on purpose."""


@dataclass(frozen=True)
class ApiToken:
    """One stored token (never its secret): whose it is, what it may do, and until when."""

    id: str
    name: str
    user: str
    scopes: frozenset[Scope]
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    last_used_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """'active', 'expired' or 'revoked' at `now`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class NewToken:
    """A freshly made token: the text shown once, and what is stored of it."""

    text: str
    id: str
    digest: str


def new_token() -> NewToken:
    """A new random token, its id and the digest to store."""
    token_id = secrets.token_hex(6)
    text = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(text, token_id, digest(text))


def digest(text: str) -> str:
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def token_id(text: str) -> str | None:
    """The id part of a well-formed token, else None (nothing else is read from it before the check)."""
    match = _TOKEN.fullmatch(text)
    return match.group(1) if match else None


def matches(text: str, stored_digest: str) -> bool:
    """Whether `text` is the token whose digest is `stored_digest`, compared in constant time."""
    return hmac.compare_digest(digest(text), stored_digest)


def check_name(name: str) -> str:
    """A token name as stored: 1-64 letters, digits, '.', '_' or '-'; ValueError otherwise."""
    if not _NAME.fullmatch(name):
        raise ValueError("a token name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def parse_scopes(text: str) -> frozenset[Scope]:
    """'request,decide,read' as scopes; ValueError naming what is unknown or if none is given."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in words if w not in {s.value for s in Scope}]
    if unknown:
        raise ValueError(f"unknown scope {', '.join(unknown)} (known: {', '.join(s.value for s in Scope)})")
    if not words:
        raise ValueError("give at least one scope: request, decide or read")
    return frozenset(Scope(w) for w in words)


class TokenLookup(Protocol):
    """Finds a presented token's record (storage.tokens implements it)."""

    async def find(self, token_id: str) -> tuple[ApiToken, str] | None:
        """The token with this id and its stored digest, or None."""
        ...

    async def touch(self, token_id: str, at: datetime) -> None:
        """Record that the token was used at `at` (coarsely: at most once a minute)."""
        ...
