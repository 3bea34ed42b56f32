"""Aptible: a person in an Aptible role for the length of a grant, managed as a bot user.

`client` holds the integration (config, password login, HAL calls); `strategy` the `aptible` strategy.
"""

from strategies.aptible.client import (
    AptibleIntegration,
    AptibleIntegrationConfig,
    AptibleMembership,
    AptibleRole,
    AptibleUser,
)
from strategies.aptible.strategy import AptibleStrategy, AptibleStrategyConfig, AptibleTarget

__all__ = [
    "AptibleIntegration",
    "AptibleIntegrationConfig",
    "AptibleMembership",
    "AptibleRole",
    "AptibleStrategy",
    "AptibleStrategyConfig",
    "AptibleTarget",
    "AptibleUser",
]
