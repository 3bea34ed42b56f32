"""The explicit registries of strategy and integration types, keyed by the YAML `type`.

No self-registration on import: adding a type means adding a line here. Tests extend a *copy*
(`{**STRATEGY_TYPES, "fake": FakeStrategy}`) so `fake` never becomes a production type.
"""

from __future__ import annotations

from strategies.aptible import AptibleIntegration, AptibleStrategy
from strategies.aws import AwsIntegration
from strategies.aws_iam import AwsIamStrategy
from strategies.aws_sso import AwsSsoStrategy
from strategies.custom import CustomStrategy
from strategies.okta import OktaIntegration, OktaStrategy
from strategies.pagerduty import PagerDutyIntegration
from strategies.webhook import WebhookStrategy

STRATEGY_TYPES: dict[str, type] = {
    "aptible": AptibleStrategy,
    "aws_iam": AwsIamStrategy,
    "aws_sso": AwsSsoStrategy,
    "custom": CustomStrategy,
    "okta": OktaStrategy,
    "webhook": WebhookStrategy,
}

INTEGRATION_TYPES: dict[str, type] = {
    "aptible": AptibleIntegration,
    "aws": AwsIntegration,
    "okta": OktaIntegration,
    "pagerduty": PagerDutyIntegration,
}
