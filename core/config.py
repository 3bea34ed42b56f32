"""Loading the flows file: `load_config(path)` returns a `JitConfig` or raises `ConfigError` with every issue.

One pass collects everything wrong with the file, each as `file:line: key.path: message`: an
unreadable or empty file, YAML syntax, duplicate keys, malformed `${…}` references, and every
model error (unknown keys and types, missing keys, name clashes, broken cross references).

`check_config(path)` returns the same issues as a list, without resolving references: it is what
`bot.py validate` needs, because a model cannot be built while a typed key (a URL, a duration, a
region) still holds `${…}` instead of its value; `load_config` says so when that happens.

Secret references are checked for syntax only unless `resolve_secrets=True` (what `run` does):
then, once the structure is valid, each reference is resolved, every value registered in the
caller's `SecretRegistry` (`secrets=`, the runtime's) for scrubbing, and the models are built again
from the resolved data so `SecretStr` keys hold `Secret` objects. No message ever contains a resolved
value. Resolution may call AWS (blocking); from async code call
`await asyncio.to_thread(load_config, path, resolve_secrets=True, secrets=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.config_lines import CUSTOM_ERROR, ConfigIssue, LineIndex, Loc, describe_error, format_path, parse_yaml
from core.config_models import Configurable, JitConfig, ValidationContext
from core.errors import ConfigError, SecretResolutionError
from core.hooks_lint import check_hooks
from core.plain import plain
from core.schema import CONTEXT_KEY
from core.secret_resolution import SecretResolver
from core.secrets import SecretRegistry, has_references, parse_references, substitute

_ABSENT = object()
# Errors that are about the key, not the value, stay even when the value is an unresolved reference.
_KEY_ERRORS = frozenset({"extra_forbidden", "missing"})
_UNION = "union"  # our name for the merged errors of a value that matched no member of a union type
# Messages of these kinds may quote the value (a validator's own text), so a resolved one is withheld.
_MAY_QUOTE_VALUE = frozenset({"value_error", "assertion_error", CUSTOM_ERROR, _UNION})


def load_config(
    path: str | Path,
    *,
    strategy_types: Mapping[str, type[Configurable]],
    integration_types: Mapping[str, type[Configurable]],
    resolve_secrets: bool = False,
    secrets: SecretRegistry | None = None,
    read_aws_secret: Callable[[str], str] | None = None,
) -> JitConfig:
    """Read and validate a flows file against the given registries; ConfigError lists every issue.

    The registries come from the composition root (`strategies.registry` in production): core never
    imports the adapters. Every secret value (resolved or written literally) is registered in
    `secrets`, the runtime's registry, which the returned config keeps (`JitConfig.secrets`).
    `read_aws_secret` reads an `${aws_secret:NAME}`'s text by NAME (default: AWS Secrets Manager).
    """
    registry = SecretRegistry() if secrets is None else secrets
    return _Loader(path, strategy_types, integration_types, registry, read_aws_secret).load(resolve_secrets)


def check_config(
    path: str | Path,
    *,
    strategy_types: Mapping[str, type[Configurable]],
    integration_types: Mapping[str, type[Configurable]],
) -> list[ConfigIssue]:
    """Every issue of a flows file without resolving references (for `bot.py validate`); [] when valid."""
    # A registry of its own: literal secrets met while validating are scrubbed from the issues.
    try:
        return _Loader(path, strategy_types, integration_types, SecretRegistry()).check()[2]
    except ConfigError as exc:
        return exc.issues


class _Loader:
    """One load of one file: keeps the data, its line index and the issues found so far."""

    def __init__(
        self,
        path: str | Path,
        strategy_types: Mapping[str, type[Configurable]],
        integration_types: Mapping[str, type[Configurable]],
        secrets: SecretRegistry,
        read_aws_secret: Callable[[str], str] | None = None,  # None: AWS Secrets Manager
    ) -> None:
        self.path, self.file = Path(path), str(path)
        self.secrets = secrets
        self.strategy_types, self.integration_types = strategy_types, integration_types
        self.base_dir = self.path.parent.resolve()
        self.lines = LineIndex()
        self.held_back: list[Loc] = []  # values holding a reference that only resolution can check
        self.read_aws_secret = read_aws_secret

    def check(self) -> tuple[Any, JitConfig | None, list[ConfigIssue]]:
        """Everything checkable without resolving references: (data, config or None, sorted issues)."""
        data, yaml_issues = self._read()
        config, model_issues = self._validate(data, raw=data, resolved=False)
        hook_issues = self._hooks_issues(data)
        return data, config, _sorted(yaml_issues + self._reference_syntax_issues(data) + model_issues + hook_issues)

    def _hooks_issues(self, data: Any) -> list[ConfigIssue]:
        """Lint each flow's hooks file without running it; issues carry the hooks file and its line."""
        flows = data.get("flows") if isinstance(data, Mapping) else None
        issues: list[ConfigIssue] = []
        for index, flow in enumerate(flows if isinstance(flows, list) else []):
            hooks = flow.get("hooks") if isinstance(flow, Mapping) else None
            if not isinstance(hooks, str) or has_references(hooks):
                continue
            path = (self.base_dir / hooks).resolve()
            if not path.is_file():
                continue  # the model reports a missing file at the `hooks` key's line
            strategy = flow.get("strategy")
            custom = isinstance(strategy, Mapping) and strategy.get("type") == "custom"
            for problem in check_hooks(path, required=("grant", "revoke") if custom else ()):
                issues.append(
                    ConfigIssue(
                        str(path),
                        problem.line,
                        format_path(("flows", index, "hooks")),
                        self.secrets.scrub(problem.message),
                    )
                )
        return issues

    def load(self, resolve_secrets: bool) -> JitConfig:
        data, config, issues = self.check()
        _raise_if(issues)
        if not resolve_secrets:
            if config is None:  # valid, but some typed key holds a reference: no model without its value
                raise ConfigError(
                    _sorted(
                        [
                            self._issue(
                                loc,
                                f"holds {_value_at(data, loc)}, so its value is only known once references "
                                "are resolved (load with resolve_secrets=True)",
                            )
                            for loc in self.held_back
                        ]
                    )
                )
            _remember_written_strategies(config, data)
            return config
        resolved, issues = self._resolve(data)
        _raise_if(issues)
        config, issues = self._validate(resolved, raw=data, resolved=True)
        if config is None:  # _validate returns the config, or None and its issues
            raise ConfigError(_sorted(issues))
        _remember_written_strategies(config, data)
        return config

    def recorded_strategy(self, spec: Mapping[str, Any], integration_kinds: Mapping[str, Any]) -> Any:
        """Build the strategy config a grant recorded (its `strategy:` block and target as written),
        resolving its references now; ConfigError when it no longer validates."""
        block = {**spec["strategy"], "targets": [spec["target"]]}
        resolved, issues = self._resolve(block)
        _raise_if(issues)
        kind = block.get("type")
        strategy_class = self.strategy_types.get(kind) if kind is not None else None
        if strategy_class is None:
            raise ConfigError([ConfigIssue(self.file, None, "strategy.type", f"unknown strategy type {kind!r}")])
        context = ValidationContext(
            self.strategy_types,
            self.integration_types,
            self.base_dir,
            integration_kinds=dict(integration_kinds),
            secrets=self.secrets,
        )
        try:
            return strategy_class.config_model.model_validate(resolved, context={CONTEXT_KEY: context})
        except ValidationError as exc:
            _raise_if(
                [
                    ConfigIssue(self.file, None, format_path(tuple(e["loc"])), self.secrets.scrub(e["msg"]))
                    for e in exc.errors()
                ]
            )

    def _read(self) -> tuple[Any, list[ConfigIssue]]:
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            _raise_if([ConfigIssue(self.file, None, "", f"cannot read the file: not UTF-8 text (byte {exc.start})")])
        except OSError as exc:
            _raise_if([ConfigIssue(self.file, None, "", f"cannot read the file: {exc.strerror or exc}")])
        parsed = parse_yaml(text, self.file)
        self.lines = parsed.lines
        if parsed.data is None:
            _raise_if(parsed.issues)
        return parsed.data, parsed.issues  # duplicate keys are reported together with the model's issues

    def _issue(self, loc: Loc, message: str) -> ConfigIssue:
        return ConfigIssue(self.file, self.lines.line_for(loc), format_path(loc), self.secrets.scrub(message))

    def _reference_syntax_issues(self, data: Any) -> list[ConfigIssue]:
        issues = []
        for loc, text in _strings_with_references(data):
            try:
                parse_references(text)
            except ValueError as exc:
                issues.append(self._issue(loc, str(exc)))
        return issues

    def _validate(self, data: Any, *, raw: Any, resolved: bool) -> tuple[JitConfig | None, list[ConfigIssue]]:
        if not isinstance(data, Mapping):
            return None, [self._issue((), "the file must be a mapping with slack, integrations and flows")]
        context = ValidationContext(self.strategy_types, self.integration_types, self.base_dir, secrets=self.secrets)
        try:
            config = JitConfig.model_validate(data, context={CONTEXT_KEY: context})
        except ValidationError as exc:
            found = _readable_errors(exc, raw) + [(loc, message, CUSTOM_ERROR) for loc, message in context.deferred]
            return None, [
                issue for loc, message, kind in found if (issue := self._model_issue(loc, message, kind, raw, resolved))
            ]
        config._path = self.path
        config._secrets = self.secrets
        return config, []

    def _model_issue(self, loc: Loc, message: str, kind: str, raw: Any, resolved: bool) -> ConfigIssue | None:
        written = _value_at(raw, loc)
        if has_references(written) and kind not in _KEY_ERRORS:
            if not resolved:
                self.held_back.append(loc)
                return None  # the value is only known at `run`; it is validated then
            # The message may quote the resolved value, so name the reference instead.
            safe = message if kind not in _MAY_QUOTE_VALUE else "not a valid value here"
            message = f"the value of {written} is invalid: {safe}"
        return self._issue(loc, message)

    def _resolve(self, data: Any) -> tuple[Any, list[ConfigIssue]]:
        resolver = SecretResolver(self.base_dir, secrets=self.secrets, read_aws_secret=self.read_aws_secret)
        found = list(_strings_with_references(data))
        resolver.prefetch(ref for _, text in found for ref in parse_references(text))
        replacements: dict[Loc, str] = {}
        issues = []
        for loc, text in found:
            values = {}
            for reference in dict.fromkeys(parse_references(text)):
                try:
                    values[reference] = resolver.resolve(reference)
                except SecretResolutionError as exc:
                    issues.append(self._issue(loc, str(exc)))
            if len(values) == len(set(parse_references(text))):
                replacements[loc] = substitute(text, values)
        return _replace_strings(data, lambda loc, text: replacements.get(loc, text)), issues


def recorded_strategy_config(
    spec: Mapping[str, Any],
    config: JitConfig,
    *,
    strategy_types: Mapping[str, type[Configurable]],
    integration_types: Mapping[str, type[Configurable]],
    secrets: SecretRegistry | None = None,
    read_aws_secret: Callable[[str], str] | None = None,
) -> Any:
    """The strategy config a grant recorded at grant time (see Flow.grant_spec), validated against
    today's integrations, with its references resolved now (may call AWS: run it off the loop); the
    values are registered in `secrets` (by default the registry `config` was loaded with).
    `read_aws_secret` is what `load_config` was given (default: AWS Secrets Manager)."""
    path = config.path or Path("flows.yaml")
    registry = config.secrets if secrets is None else secrets
    loader = _Loader(path, strategy_types, integration_types, registry, read_aws_secret)
    kinds = {name: integration.type for name, integration in config.integrations.items()}
    return loader.recorded_strategy(spec, kinds)


def _remember_written_strategies(config: JitConfig, data: Any) -> None:
    """Keep each flow's `strategy:` block as written (references unresolved) for Flow.grant_spec."""
    written = data.get("flows") if isinstance(data, Mapping) else None
    for flow, raw in zip(config.flows, written if isinstance(written, list) else [], strict=False):
        strategy = raw.get("strategy") if isinstance(raw, Mapping) else None
        if isinstance(strategy, Mapping):
            flow._written_strategy = plain(strategy, scalars_as_text=True)


def _readable_errors(exc: ValidationError, raw: Any) -> list[tuple[Loc, str, str]]:
    """(location in the file, message, kind) per pydantic error; a union's per-member errors become one."""
    found: list[tuple[Loc, str | None, str]] = []
    union_messages: dict[Loc, list[str]] = {}
    for error in exc.errors(include_url=False):
        loc, message = describe_error(error)
        loc, was_union = _file_loc(raw, loc, error["type"])
        if not was_union:
            found.append((loc, message, error["type"]))
            continue
        if loc not in union_messages:
            union_messages[loc] = []
            found.append((loc, None, _UNION))
        union_messages[loc].append(message)
    return [
        (loc, message if message is not None else _either(union_messages[loc]), kind) for loc, message, kind in found
    ]


def _file_loc(data: Any, loc: Loc, kind: str) -> tuple[Loc, bool]:
    """Drop what pydantic adds to a location between keys (union member tags like 'str'); say if it did."""
    kept: list[str | int] = []
    tagged = False
    for index, part in enumerate(loc):
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif index < len(loc) - 1 or kind not in _KEY_ERRORS | {CUSTOM_ERROR}:
            tagged = True  # not a key of the file: a union member's name
            continue
        kept.append(part)
    return tuple(kept), tagged


def _either(messages: list[str]) -> str:
    unique = list(dict.fromkeys(messages))
    if len(unique) > 1 and all(m.startswith("must be ") for m in unique):
        options = [m.removeprefix("must be ") for m in unique]
        return "must be " + ", ".join(options[:-1]) + " or " + options[-1]
    return "; or ".join(unique)


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(dict.fromkeys(issues), key=lambda issue: (issue.line or 0, issue.path))


def _raise_if(issues: list[ConfigIssue]) -> None:
    if issues:
        raise ConfigError(_sorted(issues))


def _strings_with_references(data: Any, loc: Loc = ()) -> Iterator[tuple[Loc, str]]:
    """Every string value (not key) under `data` that contains `${`, with its location."""
    if isinstance(data, str):
        if has_references(data):
            yield loc, data
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from _strings_with_references(value, loc + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings_with_references(value, loc + (index,))


def _replace_strings(data: Any, replace: Callable[[Loc, str], str], loc: Loc = ()) -> Any:
    if isinstance(data, str):
        return replace(loc, data)
    if isinstance(data, Mapping):
        return {key: _replace_strings(value, replace, loc + (key,)) for key, value in data.items()}
    if isinstance(data, list):
        return [_replace_strings(value, replace, loc + (index,)) for index, value in enumerate(data)]
    return data


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return _ABSENT
    return data
