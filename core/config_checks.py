"""The flows file's validation plumbing: the context, located problems, the registries, whole-file checks.

Validation needs a `ValidationContext` (registries, the flows file's directory); `core.config.load_config`
passes it and turns every error into a located issue. A strategy's and an integration's keys are
validated with the model its registered class declares (`config_model`), an `integration:` must name
an entry of the right type, and names are unique (checked on the raw data, so a clash is reported
even when another part of the file fails). The models themselves are in core.flow_models and
core.config_models.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, NoReturn, Protocol

from pydantic import BaseModel, BeforeValidator, SerializeAsAny, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_lines import CUSTOM_ERROR, Loc, format_path
from core.schema import CONTEXT_KEY, IntegrationConfig, StrategyConfig
from core.secrets import SecretRegistry


class Configurable(Protocol):
    """A registered strategy or integration class: `config_model` validates its block of the flows file."""

    config_model: ClassVar[type[BaseModel]]


@dataclass
class ValidationContext:
    """What validating a flows file needs beyond its data; `deferred` collects whole-file checks."""

    strategy_types: Mapping[str, type[Configurable]]
    integration_types: Mapping[str, type[Configurable]]
    base_dir: Path
    integration_kinds: dict[str, Any] = field(default_factory=dict)
    deferred: list[tuple[Loc, str]] = field(default_factory=list)
    # Every `SecretStr` value validated is registered here (the runtime's registry, via the loader).
    secrets: SecretRegistry = field(default_factory=SecretRegistry)


def _context(info: ValidationInfo) -> ValidationContext:
    ctx = (info.context or {}).get(CONTEXT_KEY) if isinstance(info.context, Mapping) else None
    if not isinstance(ctx, ValidationContext):
        # A programming error, not a config error: RuntimeError is not turned into a validation error.
        raise RuntimeError(
            f"validate config models with context={{'{CONTEXT_KEY}': ValidationContext(...)}}; use load_config"
        )
    return ctx


def _problem(loc: Loc, message: str, value: Any = None) -> InitErrorDetails:
    return {"type": PydanticCustomError(CUSTOM_ERROR, "{message}", {"message": message}), "loc": loc, "input": value}


def _message(problem: InitErrorDetails) -> str:
    kind = problem["type"]
    return kind.message() if isinstance(kind, PydanticCustomError) else kind


def _raise(problems: list[InitErrorDetails], title: str = "JitConfig") -> NoReturn:
    # Raised inside a validator, pydantic prefixes these locations with the validator's own location.
    raise ValidationError.from_exception_data(title, problems)


def _registered_class(value: Mapping[str, Any], registry: Mapping[str, type[Configurable]]) -> type[Configurable]:
    """The class registered for a block's `type`, or a located validation error."""
    if "type" not in value:
        _raise([_problem(("type",), "required key missing")])
    kind = value.get("type")
    registered = registry.get(kind) if isinstance(kind, str) else None
    if registered is None:
        _raise([_problem(("type",), _unknown_type(kind, registry), kind)])
    return registered


def _strategy_from_registry(value: Any, info: ValidationInfo) -> Any:
    """Validate a `strategy:` block with the model of the class registered for its `type`."""
    if not isinstance(value, Mapping):
        return value  # pydantic then reports that a mapping is needed
    ctx = _context(info)
    strategy_class = _registered_class(value, ctx.strategy_types)
    config = strategy_class.config_model.model_validate(value, context=info.context)
    problems = _integration_reference_problems(config, strategy_class, ctx)
    if problems:
        _raise(problems)
    return config


def _integration_from_registry(value: Any, info: ValidationInfo) -> Any:
    """Validate one `integrations:` entry with the model of the class registered for its `type`."""
    if not isinstance(value, Mapping):
        return value
    integration_class = _registered_class(value, _context(info).integration_types)
    return integration_class.config_model.model_validate(value, context=info.context)


def _unknown_type(kind: Any, registry: Mapping[str, type]) -> str:
    known = ", ".join(sorted(registry)) or "none registered"
    if not isinstance(kind, str):
        return f"must be a type name (known: {known})"
    return f"unknown type '{kind}' (known: {known})"


def _integration_reference_problems(
    config: Any,
    strategy_class: type,
    ctx: ValidationContext,
) -> list[InitErrorDetails]:
    name = getattr(config, "integration", None)
    if not isinstance(name, str):
        return []
    if name not in ctx.integration_kinds:
        defined = ", ".join(sorted(ctx.integration_kinds)) or "none"
        return [
            _problem(("integration",), f"no integration named '{name}' under integrations: (defined: {defined})", name)
        ]
    needed = getattr(strategy_class, "integration_type", None)
    actual = ctx.integration_kinds[name]
    if needed is not None and isinstance(actual, str) and actual != needed:
        return [
            _problem(
                ("integration",),
                f"integration '{name}' has type '{actual}'; this strategy needs type '{needed}'",
                name,
            )
        ]
    return []


StrategyEntry = Annotated[SerializeAsAny[StrategyConfig], BeforeValidator(_strategy_from_registry)]
IntegrationEntry = Annotated[SerializeAsAny[IntegrationConfig], BeforeValidator(_integration_from_registry)]


def _defines(path: Path, function: str) -> bool:
    """Whether a hooks file defines `function` at its top level (read with ast, never run)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False  # the hooks linter reports an unreadable file with its own line
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function for node in tree.body
    )


def _integration_kinds(data: Any) -> dict[str, Any]:
    integrations = data.get("integrations") if isinstance(data, Mapping) else None
    if not isinstance(integrations, Mapping):
        return {}
    return {
        str(name): (entry.get("type") if isinstance(entry, Mapping) else None) for name, entry in integrations.items()
    }


def _duplicate_names(data: Any) -> list[InitErrorDetails]:
    flows = data.get("flows") if isinstance(data, Mapping) else None
    if not isinstance(flows, list):
        return []
    problems = _duplicates_in(flows, ("flows",), "flow")
    for index, flow in enumerate(flows):
        if not isinstance(flow, Mapping):
            continue
        strategy = flow.get("strategy")
        if isinstance(strategy, Mapping) and isinstance(strategy.get("targets"), list):
            problems += _duplicates_in(strategy["targets"], ("flows", index, "strategy", "targets"), "target")
        if isinstance(flow.get("fields"), list):
            problems += _duplicates_in(flow["fields"], ("flows", index, "fields"), "field")
    return problems


def _duplicates_in(items: list[Any], loc: Loc, noun: str) -> list[InitErrorDetails]:
    first: dict[str, int] = {}
    problems = []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in first:
            where = format_path(loc + (first[name],))
            problems.append(_problem(loc + (index, "name"), f"duplicate {noun} name '{name}' (also {where})", name))
        else:
            first[name] = index
    return problems
