"""What the sandbox runs instead of real systems, and the one line that says so for each.

Every webhook flow delivers to the built-in receiver, whatever its `url` (a sandbox never sends a
signed grant to a real service). Flows of other types (AWS, Okta, Aptible, custom) grant into a
stand-in that only records the access in the Ledger, and integrations are never contacted: the
registries here keep each type's own config model, so the flows file is validated as written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from core.config_models import JitConfig
from core.secrets import Secret
from core.strategy import GrantContext, GrantResult, ValidationIssue
from sandbox.ledger import Ledger
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES
from strategies.webhook import WebhookStrategy, WebhookStrategyConfig


class StandInStrategy:
    """Grants by writing to the sandbox's Ledger; a subclass per strategy type sets the class attributes."""

    config_model: ClassVar[Any]
    system: ClassVar[str]
    integration_type: ClassVar[str | None] = None
    ledger: ClassVar[Ledger]

    def __init__(self, config: Any, *, integrations: Mapping[str, object] | None = None, hooks: object = None) -> None:
        self.config = config

    @property
    def identity_key(self) -> str:
        """Identity overrides are kept under the integration name or the type, as the real strategy does."""
        return str(getattr(self.config, "integration", None) or self.config.type)

    async def open(self) -> None:
        """Nothing to connect to."""

    async def aclose(self) -> None:
        """Nothing to release."""

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """Anyone with an email or an identity override can be matched."""
        if ctx.subject.identity or ctx.subject.email:
            return []
        return [ValidationIssue(f"{self.system} cannot tell who you are: your Slack profile has no email.")]

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Record the access as held."""
        until = ctx.expires_at.isoformat() if ctx.expires_at else None
        self.ledger.grant(ctx.request_id, system=self.system, target=ctx.target.label, who=_who(ctx), until=until)
        return GrantResult(state={"stand_in": self.config.type})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Record the access as gone."""
        self.ledger.revoke(ctx.request_id, system=self.system, target=ctx.target.label, who=_who(ctx))


class StandInIntegration:
    """An integration that is never contacted; hooks that call it fail, and the sandbox says so."""

    config_model: ClassVar[Any]

    def __init__(self, name: str, config: Any) -> None:
        self.name, self.config = name, config

    async def open(self) -> None:
        """Nothing to connect to."""

    async def aclose(self) -> None:
        """Nothing to release."""


def _who(ctx: GrantContext) -> str:
    return ctx.subject.identity or ctx.subject.email or ctx.subject.slack_id


def strategy_types(ledger: Ledger, receiver_url: str, secret: str) -> dict[str, type]:
    """The sandbox's registry: webhook → the built-in receiver, every other type → a Ledger stand-in."""

    class SandboxWebhook(WebhookStrategy):
        """The real webhook strategy, delivering to the built-in receiver with the sandbox's secret."""

        def __init__(self, config: WebhookStrategyConfig, **kwargs: Any) -> None:
            super().__init__(config.model_copy(update={"url": receiver_url, "secret": Secret(secret)}), **kwargs)

    types: dict[str, type] = {}
    for kind, real in STRATEGY_TYPES.items():
        if kind == "webhook":
            types[kind] = SandboxWebhook
            continue
        name = getattr(real, "system", kind)
        types[kind] = type(
            f"StandIn{real.__name__}",
            (StandInStrategy,),
            {
                "config_model": getattr(real, "config_model"),  # noqa: B009  (the registry is typed as plain `type`)
                "system": f"{name} (stand-in)",
                "integration_type": getattr(real, "integration_type", None),
                "ledger": ledger,
            },
        )
    return types


def integration_types() -> dict[str, type]:
    """Every integration type, never contacted."""
    return {
        kind: type(f"StandIn{real.__name__}", (StandInIntegration,), {"config_model": getattr(real, "config_model")})  # noqa: B009
        for kind, real in INTEGRATION_TYPES.items()
    }


def notes(config: JitConfig) -> list[str]:
    """One line for each thing the sandbox does not run as it would in production."""
    lines = []
    for flow in config.flows:
        if flow.strategy is None:
            continue  # approval only: nothing is granted anywhere, in production either
        kind = flow.strategy.type
        if kind == "webhook":
            url = flow.strategy.url  # type: ignore[attr-defined]
            if not _is_loopback(url):
                lines.append(f"flow {flow.name}: delivers to the built-in receiver instead of {_shown(url)}")
        else:
            system = getattr(STRATEGY_TYPES.get(kind), "system", kind)
            lines.append(
                f"flow {flow.name} ({kind}): grants go to a stand-in that records them; {system} is not called"
            )
    for name, spec in config.integrations.items():
        lines.append(f"integration {name} ({spec.type}): not contacted; hooks that call it fail")
    return lines


def _shown(url: str) -> str:
    """The URL without credentials or query string (either may hold a token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
