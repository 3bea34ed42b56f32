"""The command line's side of the HTTP API: `JITBOT_API_URL` and `JITBOT_API_TOKEN`, calls over httpx.

Every failure becomes an `ApiFailure` with one sentence and the exit code to use: 2 for input the
API refused as malformed or invalid (400, 404, 413, 415, 422) or a missing setting, 1 for the rest.

The token goes in every call's Authorization header, so it is sent in clear text over `http://` to a
host other than this machine only when the person asked for that (`--insecure-http`); otherwise the
command stops before connecting (docs/api.md).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
_BAD_INPUT = frozenset({400, 404, 413, 415, 422})


_PASSING = frozenset({429, 502, 503, 504})  # worth asking again: a limit, a restart, a proxy in between


class ApiFailure(Exception):
    """A call that did not succeed; `message` is for the person, `code` the exit code; `passing` when
    asking again later may succeed (the API unreachable, rate limited or briefly unavailable)."""

    def __init__(
        self, message: str, code: int = EXIT_REFUSED, *, passing: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.code = message, code
        self.passing, self.retry_after = passing, retry_after


@dataclass
class ApiClient:
    """Calls to one jitbot API with one token."""

    url: str
    token: str
    timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, insecure_http: bool = False) -> ApiClient:
        """The client JITBOT_API_URL and JITBOT_API_TOKEN describe; ApiFailure naming whatever is missing, or
        refusing plain http:// to another machine unless `insecure_http`."""
        url, token = (env.get("JITBOT_API_URL") or "").strip(), (env.get("JITBOT_API_TOKEN") or "").strip()
        missing = [name for name, value in (("JITBOT_API_URL", url), ("JITBOT_API_TOKEN", token)) if not value]
        if missing:
            raise ApiFailure(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: set JITBOT_API_URL to the "
                "bot's HTTPS address (e.g. https://jitbot.internal.example.com) and JITBOT_API_TOKEN to a token from "
                "'bot.py tokens create'.",
                EXIT_BAD_INPUT,
            )
        if not url.startswith(("http://", "https://")):
            raise ApiFailure("JITBOT_API_URL must start with http:// or https://.", EXIT_BAD_INPUT)
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL:
            host = ""
        if not host:
            raise ApiFailure(f"JITBOT_API_URL names no host: {shown_url(url)!r}.", EXIT_BAD_INPUT)
        if url.startswith("http://") and not insecure_http and not is_loopback(host):
            raise ApiFailure(
                f"JITBOT_API_URL is plain http:// to {host}, which is not this machine: the API token would "
                "cross the network unencrypted. Use an https:// address, or pass --insecure-http to send it "
                "anyway (only on a network you trust).",
                EXIT_BAD_INPUT,
            )
        return cls(url.rstrip("/"), token)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of one call; ApiFailure with the API's own words when it refuses."""
        try:
            response = httpx.request(
                method,
                f"{self.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
                timeout=self.timeout,
                # Plain http:// to this machine is allowed because it stays here: a proxy from the
                # environment (HTTP_PROXY, ALL_PROXY) would carry the token in clear text to another host.
                trust_env=not _plain_http_here(self.url),
            )
        except httpx.HTTPError as exc:
            raise ApiFailure(
                f"could not reach the jitbot API at {shown_url(self.url)} ({type(exc).__name__}).", passing=True
            ) from None
        status = response.status_code
        if response.is_success:
            try:
                return response.json()
            except ValueError:  # e.g. a proxy's HTML page: not the jitbot API
                raise ApiFailure(f"{shown_url(self.url)} answered {status} with something that is not JSON.") from None
        raise ApiFailure(
            _explain(response),
            EXIT_BAD_INPUT if status in _BAD_INPUT else EXIT_REFUSED,
            passing=status in _PASSING,
            retry_after=_seconds(response.headers.get("Retry-After")),
        )


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine by its very name: `localhost`, or a loopback address (127.0.0.0/8, ::1).
    Other names are not resolved: what a name points at can change between this check and the call."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def shown_url(url: str) -> str:
    """`url` as a message may show it: without a user and password (basic auth for a proxy in front of
    the bot is a secret too), a query or a fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: nothing of it is shown
        return "(unreadable)"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _plain_http_here(url: str) -> bool:
    """Whether `url` is plain http:// to this machine by its very name (see `is_loopback`)."""
    try:
        return url.startswith("http://") and is_loopback(httpx.URL(url).host)
    except httpx.InvalidURL:
        return False


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _explain(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"the API answered {response.status_code} {response.reason_phrase}."
    if not isinstance(problem, dict):
        return f"the API answered {response.status_code} {response.reason_phrase}."
    text = f"{problem.get('detail') or response.reason_phrase} ({response.status_code})"
    if response.status_code == 429 and response.headers.get("Retry-After"):
        text += f"; retry after {response.headers['Retry-After']} s"
    errors = problem.get("errors")
    if isinstance(errors, list) and errors:
        text = "the request was refused:\n" + "\n".join(
            f"  {e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict)
        )
    return text
