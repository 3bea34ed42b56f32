"""Okta: a person in an Okta group for the length of a grant, and a group check for hooks.

`client` holds the integration (config, HTTP calls, rate limits); `strategy` the `okta` strategy.
"""

from strategies.okta.client import (
    INACTIVE_USER_STATUSES,
    MANAGEABLE_GROUP_TYPE,
    OktaGroup,
    OktaIntegration,
    OktaIntegrationConfig,
    OktaUser,
)
from strategies.okta.strategy import OktaStrategy, OktaStrategyConfig, OktaTarget

__all__ = [
    "INACTIVE_USER_STATUSES",
    "MANAGEABLE_GROUP_TYPE",
    "OktaGroup",
    "OktaIntegration",
    "OktaIntegrationConfig",
    "OktaStrategy",
    "OktaStrategyConfig",
    "OktaTarget",
    "OktaUser",
]
