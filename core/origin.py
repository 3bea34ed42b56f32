"""How an action reached jitbot: through Slack (a click, the modal) or the HTTP API (with a named token).

Every audit row of a person's action says which (`via`), and an API action also names the token it
used, so the trail tells a click from a script.
"""

from __future__ import annotations

SLACK = "slack"
API = "api"


def origin(via: str, token: str | None = None, *, by_hook: bool = False) -> dict[str, str]:
    """The audit detail keys of an action's origin: {"via": …} plus {"token": name} for an API token.

    A hook's own decision (fast-track, auto-deny) is nobody's click: it records no origin.
    """
    if by_hook:
        return {}
    return {"via": via, "token": token} if token else {"via": via}
