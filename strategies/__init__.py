"""Strategy adapters: small idempotent adapters that grant and revoke one target for one person."""

from strategies.base import GrantContext, GrantResult, Strategy, ValidationIssue

__all__ = ["GrantContext", "GrantResult", "Strategy", "ValidationIssue"]
