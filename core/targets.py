"""Turn a flow's configured target into the domain Target that strategies and hooks see."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from core.config_models import Flow
from core.models import Target
from core.schema import TargetConfig
from core.secrets import Secret

_COMMON_KEYS = {"name", "label"}


def flow_target(flow: Flow, target_name: str) -> Target | None:
    """The flow's target of that name as a domain Target, or None."""
    try:
        return as_target(flow.target(target_name))
    except KeyError:
        return None


def as_target(config: TargetConfig) -> Target:
    """The domain Target for a target's config model."""
    return Target(name=config.name, label=config.label, settings=target_settings(config))


def target_settings(config: BaseModel) -> dict[str, Any]:
    """A target's strategy keys as one flat dict: typed keys (group_id, …) plus free-form `settings:`.

    Secret values stay `Secret` objects (model_dump would render them as '***').
    """
    data = _keep_secrets(config, config.model_dump(exclude=_COMMON_KEYS))
    free_form = data.pop("settings", None) or {}
    return {**free_form, **data}


def _keep_secrets(value: Any, dumped: Any) -> Any:
    if isinstance(value, Secret):
        return value
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        return {key: _keep_secrets(getattr(value, key, None), item) for key, item in dumped.items()}
    if isinstance(value, Mapping) and isinstance(dumped, dict):
        return {key: _keep_secrets(value.get(key), item) for key, item in dumped.items()}
    if isinstance(value, (list, tuple)) and isinstance(dumped, list) and len(value) == len(dumped):
        return [_keep_secrets(v, d) for v, d in zip(value, dumped, strict=True)]
    return dumped
