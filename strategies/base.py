"""The base adapters share; the strategy protocol itself and its values live in `core.strategy`.

Adapters import the protocol's values from here or from `core.strategy` (the same objects):
adapters depend on core, never the other way round.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from core.errors import StartupError
from core.strategy import (
    GrantContext,
    GrantResult,
    Integration,
    Strategy,
    SupportsInstructions,
    SupportsIsActive,
    ValidationIssue,
)

__all__ = [
    "GrantContext", "GrantResult", "Integration", "IntegrationStrategy", "Strategy", "SupportsInstructions",
    "SupportsIsActive", "ValidationIssue",
]


class IntegrationStrategy:
    """Base of strategies that act through one shared `integrations:` entry.

    A subclass sets `integration_class` and `integration_type`; its config has `integration:`.
    Identity overrides are stored per integration name. The runtime opens and closes the shared
    integration; a strategy only makes sure it is open.
    """

    integration_class: ClassVar[type]
    integration_type: ClassVar[str]
    shares_access: ClassVar[bool] = True  # a membership: two grants of it to one identity are one access

    def __init__(self, config: Any, *, integrations: Mapping[str, object], hooks: Any = None) -> None:
        integration = integrations.get(config.integration)
        if not isinstance(integration, self.integration_class):
            raise StartupError(
                f"the {config.type} strategy needs integration '{config.integration}' of type {self.integration_type}")
        self.config = config
        self.integration = integration

    @property
    def identity_key(self) -> str:
        """Identity overrides are stored per integration."""
        return self.config.integration

    async def open(self) -> None:
        """Make sure the shared integration is open (its owner closes it)."""
        await self.integration.open()

    async def aclose(self) -> None:
        """Nothing of its own to release: the integration is shared and closed by its owner."""
