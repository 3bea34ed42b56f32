"""The explicit registries of strategy and integration types, keyed by the YAML `type`.

No self-registration on import: adding a type means adding a line here. Tests extend a *copy*
(`{**STRATEGY_TYPES, "fake": FakeStrategy}`) so `fake` never becomes a production type.
"""

from __future__ import annotations

STRATEGY_TYPES: dict[str, type] = {}

INTEGRATION_TYPES: dict[str, type] = {}
