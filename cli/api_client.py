"""The command line's side of the HTTP API: `JITBOT_API_URL` and `JITBOT_API_TOKEN`, calls over httpx.

Every failure becomes an `ApiFailure` with one sentence and the exit code to use: 2 for input the
API refused as malformed or invalid (400, 404, 413, 415, 422) or a missing setting, 1 for the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
_BAD_INPUT = frozenset({400, 404, 413, 415, 422})


class ApiFailure(Exception):
    """A call that did not succeed; `message` is for the person, `code` the exit code."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class ApiClient:
    """Calls to one jitbot API with one token."""

    url: str
    token: str
    timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ApiClient:
        """The client JITBOT_API_URL and JITBOT_API_TOKEN describe; ApiFailure naming whatever is missing."""
        url, token = (env.get("JITBOT_API_URL") or "").strip(), (env.get("JITBOT_API_TOKEN") or "").strip()
        missing = [name for name, value in (("JITBOT_API_URL", url), ("JITBOT_API_TOKEN", token)) if not value]
        if missing:
            raise ApiFailure(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: set JITBOT_API_URL to the "
                "bot's HTTP address (e.g. http://jitbot.internal:8080) and JITBOT_API_TOKEN to a token from "
                "'bot.py tokens create'.",
                EXIT_BAD_INPUT,
            )
        if not url.startswith(("http://", "https://")):
            raise ApiFailure("JITBOT_API_URL must start with http:// or https://.", EXIT_BAD_INPUT)
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
            )
        except httpx.HTTPError as exc:
            raise ApiFailure(f"could not reach the jitbot API at {self.url} ({type(exc).__name__}).") from None
        if response.is_success:
            return response.json()
        raise ApiFailure(_explain(response), EXIT_BAD_INPUT if response.status_code in _BAD_INPUT else EXIT_REFUSED)


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
