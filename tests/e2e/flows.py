"""Flows files (docs/configuration.md) for end-to-end tests and the bench, built from small pieces and written as YAML.

    flows_file(
        flow("db_access", "Database Access", webhook_strategy(url, PROD_ADMIN), [*reason_and_duration("30m")],
             approvers={"usergroups": ["S_SECOPS"]}),
        integrations={"okta_main": okta_integration(okta.url, TOKEN)},
    )

Only what a test means to vary is an argument; the rest (the /sym command, the approval channel,
the reason and duration fields) is what every end-to-end flow shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

APPROVAL_CHANNEL = "C_APPROVALS"
ALERTS_CHANNEL = "C_ALERTS"
SECOPS = {"usergroups": ["S_SECOPS"]}  # approvers: the emulator's @secops (Bob, Carol)


class _Dumper(yaml.SafeDumper):
    """Writes a piece used twice (one fields list in two flows) out twice rather than as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def flows_file(
    *flows: dict[str, Any], integrations: dict[str, Any] | None = None, alerts_channel: str | None = ALERTS_CHANNEL
) -> str:
    """A whole flows file: `slack` (/sym, the alerts channel unless None), `integrations` if any, `flows`."""
    slack = {"command": "/sym", **({"alerts_channel": alerts_channel} if alerts_channel else {})}
    data: dict[str, Any] = {"slack": slack}
    if integrations:
        data["integrations"] = integrations
    data["flows"] = list(flows)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def flow(
    name: str,
    label: str,
    strategy: dict[str, Any],
    fields: list[dict[str, Any]],
    *,
    approval_channel: str = APPROVAL_CHANNEL,
    hooks: str | Path | None = None,
    **keys: Any,
) -> dict[str, Any]:
    """One flow; `keys` adds the flow's other settings (approvers, request_timeout, hook_timeout…)."""
    entry = {
        "name": name,
        "label": label,
        "approval_channel": approval_channel,
        **keys,
        "strategy": strategy,
        "fields": fields,
    }
    if hooks is not None:
        entry["hooks"] = str(hooks)
    return entry


def target(name: str, label: str, **keys: Any) -> dict[str, Any]:
    """A strategy target: name, label and the strategy's own keys (settings, group_id…)."""
    return {"name": name, "label": label, **keys}


PROD_ADMIN = target("prod_admin", "Prod Admin", settings={"database": "prod", "role": "admin"})
STAGING_RO = target("staging_ro", "Staging read-only", settings={"database": "staging", "role": "readonly"})


def webhook_strategy(url: str, *targets: dict[str, Any], **keys: Any) -> dict[str, Any]:
    """A webhook strategy posting to `url`; `keys` adds secret, timeout…"""
    return {"type": "webhook", "url": url, **keys, "targets": list(targets)}


def okta_strategy(integration: str, *targets: dict[str, Any]) -> dict[str, Any]:
    """An okta strategy (group targets) through the named integration."""
    return {"type": "okta", "integration": integration, "targets": list(targets)}


def okta_integration(base_url: str, api_token: str) -> dict[str, Any]:
    """An `okta` integration entry."""
    return {"type": "okta", "base_url": base_url, "api_token": api_token}


def reason_field(label: str = "Why?", type: str = "string") -> dict[str, Any]:
    """The required free-text reason."""
    return {"name": "reason", "label": label, "type": type, "required": True}


def duration_field(*allowed: str, label: str = "Duration", **keys: Any) -> dict[str, Any]:
    """The required duration, one of `allowed` (or bounded by `keys` such as max)."""
    choices = {"allowed_values": list(allowed)} if allowed else {}
    return {"name": "duration", "label": label, "type": "duration", **choices, **keys, "required": True}


def reason_and_duration(*allowed: str, reason_label: str = "Why?", reason_type: str = "string") -> list[dict[str, Any]]:
    """The two fields nearly every flow asks for."""
    return [reason_field(reason_label, reason_type), duration_field(*allowed)]


def db_access_flow(
    url: str,
    *durations: str,
    secret_env: str,
    targets: tuple[dict[str, Any], ...] = (PROD_ADMIN, STAGING_RO),
    ticket: bool = False,
    **keys: Any,
) -> dict[str, Any]:
    """The webhook flow of the request-lifecycle tests, the restart tests and the bench (secret from `secret_env`)."""
    fields = [
        reason_field("Why do you need access?", "text"),
        *([{"name": "ticket", "label": "Ticket", "type": "string"}] if ticket else []),
        duration_field(*durations),
    ]
    strategy = webhook_strategy(url, *targets, secret=f"${{env:{secret_env}}}", timeout="5s")
    return flow("db_access", "Database Access", strategy, fields, **keys)


def minimal_webhook_flows(url: str, duration: str, *, hooks: str | Path | None = None, **strategy_keys: Any) -> str:
    """A valid file with one bare webhook flow (`db_access`, one target, one duration, no alerts channel)."""
    strategy = webhook_strategy(url, target("prod_admin", "Prod Admin"), **strategy_keys)
    return flows_file(
        flow("db_access", "Database Access", strategy, [duration_field(duration)], hooks=hooks), alerts_channel=None
    )
