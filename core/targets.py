"""Turn a flow's configured target into the domain Target that strategies and hooks see."""

from __future__ import annotations

from core.models import Target

_COMMON_KEYS = {"name", "label"}


def flow_target(flow, target_name: str) -> Target | None:
    """The flow's target of that name, with its strategy-specific keys as `settings`, or None."""
    for config in flow.strategy.targets:
        if config.name == target_name:
            return Target(config.name, config.label, target_settings(config))
    return None


def target_settings(config) -> dict:
    """A target's strategy-specific keys: free-form `settings:` merged with typed keys (group_id, …)."""
    data = {key: getattr(config, key) for key in type(config).model_fields if key not in _COMMON_KEYS}
    free_form = data.pop("settings", None) or {}
    return {**free_form, **data}
