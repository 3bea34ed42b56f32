"""A flow's models (docs/configuration.md): `Flow`, its form fields, approvers and `reconcile:` block.

Beside what pydantic checks by itself, these models hold the checks it cannot express (a hooks file
exists, enough approvers for approvals_required, a reconcile needs a strategy that can list holders);
their plumbing (context, located problems, the strategy registry) is core.config_checks.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails

from core.config_checks import StrategyEntry, _context, _defines, _problem, _raise
from core.config_lines import Loc
from core.policy_config import MAX_APPROVALS_REQUIRED, People, Reminders
from core.schema import Duration, Name, StrictModel, TargetConfig, format_duration, parse_duration
from core.secrets import SecretRegistry
from core.strategy import SupportsHolders

RESERVED_FIELD_NAMES = frozenset({"target"})  # the target picker's input in the request modal
RESERVED_FLOW_NAMES = frozenset({"help", "list"})  # `/sym help` and `/sym list` are commands
DEFAULT_WARN_BEFORE = timedelta(minutes=10)


def _to_warn_before(value: Any) -> Any:
    # `0` (or `0s`, `0m`…) turns the warning off; anything else is an ordinary duration.
    if value == 0 or (isinstance(value, str) and re.fullmatch(r"\s*0+\s*[smhd]?\s*", value)):
        return timedelta(0)
    return value


WarnBefore = Annotated[Duration, BeforeValidator(_to_warn_before)]
"""`warn_before`: a duration, or 0 for no warning."""

FieldType = Literal["string", "text", "int", "bool", "list", "duration"]


def _choice_to_str(value: Any) -> Any:
    # YAML reads `[1, 2, 3]` as numbers; a select's options are strings either way.
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


NonEmpty = Annotated[str, Field(min_length=1)]
Choice = Annotated[str, BeforeValidator(_choice_to_str), Field(min_length=1, max_length=75)]


class Approvers(StrictModel):
    """Who may decide a flow's requests: Slack user IDs and user group IDs."""

    users: list[NonEmpty] = []
    usergroups: list[NonEmpty] = []

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.users and not self.usergroups:
            raise ValueError(
                "lists no users or usergroups: add some, or remove approvers to let anyone but the requester decide"
            )
        return self


MIN_RECONCILE_EVERY = timedelta(minutes=5)


class Reconcile(StrictModel):
    """A flow's `reconcile:` block: how often to compare who holds each target with the live grants,
    what to do about someone holding it without one, and who may (service accounts, break-glass)."""

    every: Duration
    action: Literal["alert", "revoke"] = "alert"
    exempt: list[NonEmpty] = []

    @field_validator("every")
    @classmethod
    def _not_too_often(cls, every: timedelta) -> timedelta:
        # Each run lists every target in its system: more often than this only spends API quota.
        if every < MIN_RECONCILE_EVERY:
            raise ValueError(f"must be at least {format_duration(MIN_RECONCILE_EVERY)}")
        return every


class FieldSpec(StrictModel):
    """One input of a flow's request form (the target picker comes first and is implicit)."""

    name: Name
    label: Annotated[str, Field(min_length=1, max_length=2000)]
    type: FieldType
    required: bool = False
    allowed_values: Annotated[list[Choice], Field(min_length=1)] | None = None
    max: Duration | None = None
    default: str | int | bool | None = None
    hint: Annotated[str, Field(max_length=2000)] | None = None
    placeholder: Annotated[str, Field(max_length=150)] | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_FIELD_NAMES:
            raise ValueError(f"field name '{name}' is reserved for the target picker")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        problems: list[InitErrorDetails] = []
        if self.allowed_values is not None and self.type not in ("list", "duration"):
            problems.append(_problem(("allowed_values",), "only list and duration fields take allowed_values"))
        if self.max is not None and self.type != "duration":
            problems.append(_problem(("max",), "only duration fields take max"))
        if self.type == "list" and self.allowed_values is None:
            problems.append(_problem(("allowed_values",), "a list field needs allowed_values"))
        if self.type == "duration" and self.allowed_values is None and self.max is None:
            problems.append(_problem(("allowed_values",), "a duration field needs allowed_values or max"))
        allowed = self.allowed_values or []
        for index, value in enumerate(allowed):
            if value in allowed[:index]:
                problems.append(_problem(("allowed_values", index), f"duplicate value '{value}'", value))
            elif self.type == "duration":
                problems += self._duration_problems(("allowed_values", index), value)
        if self.default is not None:
            problems += self._default_problems()
        if problems:
            _raise(problems, "FieldSpec")
        return self

    def _duration_problems(self, loc: Loc, value: Any) -> list[InitErrorDetails]:
        try:
            length = parse_duration(value)
        except ValueError as exc:
            return [_problem(loc, str(exc), value)]
        if self.max is not None and length > self.max:
            return [_problem(loc, f"'{value}' is longer than max ({format_duration(self.max)})", value)]
        return []

    def _default_problems(self) -> list[InitErrorDetails]:
        value, loc = self.default, ("default",)
        if self.type in ("string", "text") and not isinstance(value, str):
            return [_problem(loc, "must be a string for a string field", value)]
        if self.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return [_problem(loc, "must be a whole number for an int field", value)]
        if self.type == "bool" and not isinstance(value, bool):
            return [_problem(loc, "must be true or false for a bool field", value)]
        if self.type == "list" and self.allowed_values is not None and _choice_to_str(value) not in self.allowed_values:
            return [_problem(loc, "must be one of allowed_values", value)]
        if self.type == "duration":
            problems = self._duration_problems(loc, value)
            if not problems and self.allowed_values and parse_duration(str(value)) not in self.duration_values:
                problems.append(_problem(loc, "must be one of allowed_values", value))
            return problems
        return []

    @property
    def duration_values(self) -> list[timedelta]:
        """The allowed durations of a duration field, parsed (empty when only `max` limits it)."""
        return [parse_duration(v) for v in self.allowed_values or []] if self.type == "duration" else []


class Flow(StrictModel):
    """One kind of access a person can ask for: its form, approvers, strategy and policy hooks."""

    name: Name
    label: Annotated[str, Field(min_length=1, max_length=75)]
    approval_channel: NonEmpty
    approvers: Approvers | None = None
    allow_self_approval: bool = False
    allow_guests: bool = False  # guests and Slack Connect users may neither ask nor decide unless true
    approvals_required: Annotated[int, Field(ge=1, le=MAX_APPROVALS_REQUIRED)] = 1
    requesters: People | None = None  # absent: everyone who is not a guest may ask
    reminders: Reminders | None = None
    strategy: StrategyEntry | None = None  # absent: an approval-only flow (a deploy gate, a consent)
    fields: Annotated[list[FieldSpec], Field(min_length=1)]
    request_timeout: Duration | None = None
    hooks: NonEmpty | None = None
    hook_timeout: Duration = timedelta(seconds=5)
    reconcile: Reconcile | None = None
    warn_before: WarnBefore = DEFAULT_WARN_BEFORE
    max_total_duration: Duration | None = None

    _hooks_path: Path | None = PrivateAttr(default=None)
    _written_strategy: dict[str, Any] | None = PrivateAttr(default=None)
    # The registry the loader validated with: grant_spec redacts the literal secrets it holds.
    _secrets: SecretRegistry = PrivateAttr(default_factory=SecretRegistry)

    @field_validator("name")
    @classmethod
    def _not_a_command(cls, name: str) -> str:
        if name in RESERVED_FLOW_NAMES:
            raise ValueError(f"flow name '{name}' is reserved: `/sym {name}` is a command")
        return name

    @field_validator("approvers", mode="before")
    @classmethod
    def _approvers_not_blank(cls, value: Any) -> Any:
        # `approvers:` with nothing under it is a forgotten list, not "anyone may approve".
        if value is None:
            raise ValueError(
                "is empty: list users and/or usergroups, or remove the key to let anyone but the requester decide"
            )
        return value

    @field_validator("fields")
    @classmethod
    def _one_duration_field(cls, fields: list[FieldSpec]) -> list[FieldSpec]:
        durations = [(index, f) for index, f in enumerate(fields) if f.type == "duration"]
        if len(durations) != 1:
            found = ", ".join(f.name for _, f in durations) or "none"
            _raise([_problem((), f"needs exactly one field of type duration (the request's length); found {found}")])
        index, duration = durations[0]
        if not duration.required and duration.default is None:
            _raise([_problem((index, "required"), "the duration field must be required: true or have a default")])
        return fields

    @field_validator("hooks")
    @classmethod
    def _hooks_file_usable(cls, hooks: str | None, info: ValidationInfo) -> str | None:
        if hooks is None:
            return hooks
        path = (_context(info).base_dir / hooks).resolve()
        if not path.is_file():
            _raise([_problem((), f"hooks file '{hooks}' does not exist (looked for {path})", hooks)])
        # Its contents (syntax, misspelt hooks) are linted by core.config with the hooks file's own lines.
        return hooks

    @field_validator("requesters", "reminders", mode="before")
    @classmethod
    def _block_not_blank(cls, value: Any) -> Any:
        # `requesters:` with nothing under it is a forgotten list, not "everyone may ask".
        if value is None:
            raise ValueError("is empty: fill it in, or remove the key")
        return value

    @model_validator(mode="after")
    def _enough_approvers(self, info: ValidationInfo) -> Flow:
        """More approvals required than static approvers could ever give is a config error."""
        approvers = self.approvers
        if self.approvals_required == 1 or approvers is None or approvers.usergroups:
            return self  # anyone may decide, or group members are only known from Slack (checked at start)
        if self.hooks is not None and _defines(_context(info).base_dir / self.hooks, "get_approvers"):
            return self  # the hook's answer replaces the list; too short an answer fails closed at submit
        possible = len(set(approvers.users))
        if self.approvals_required > possible:
            _raise(
                [
                    _problem(
                        ("approvals_required",),
                        f"needs {self.approvals_required} distinct approvers, but approvers lists only {possible} "
                        "user(s) (and the requester never counts): lower it, or add users or a usergroup",
                        self.approvals_required,
                    )
                ],
                "Flow",
            )
        return self

    @model_validator(mode="after")
    def _cap_fits_the_durations(self) -> Flow:
        # A cap shorter than a duration the form offers would refuse that request every time.
        cap, spec = self.max_total_duration, self.duration_field
        longest = max(spec.duration_values, default=None) or spec.max
        if cap is not None and longest is not None and cap < longest:
            _raise(
                [
                    _problem(
                        ("max_total_duration",),
                        f"is shorter than the longest duration the form offers ({format_duration(longest)}): "
                        "such requests could never be granted",
                        format_duration(cap),
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _reconcile_needs_a_listing(self, info: ValidationInfo) -> Flow:
        if self.reconcile is None:
            return self
        if self.strategy is None:
            message = (
                "an approval-only flow (no strategy) grants nothing in any system, so there is nothing to reconcile"
            )
            _raise([_problem(("reconcile",), message)], "Flow")
        kind = getattr(self.strategy, "type", None)
        registered = _context(info).strategy_types.get(kind) if isinstance(kind, str) else None
        if registered is not None and not issubclass(registered, SupportsHolders):
            listable = sorted(n for n, c in _context(info).strategy_types.items() if issubclass(c, SupportsHolders))
            _raise(
                [
                    _problem(
                        ("reconcile",),
                        f"strategy type '{kind}' cannot list who holds a target, so it cannot be reconciled "
                        f"(types that can: {', '.join(listable) or 'none'})",
                    )
                ],
                "Flow",
            )
        return self

    @model_validator(mode="after")
    def _remember_hooks_path(self, info: ValidationInfo) -> Flow:
        context = _context(info)
        self._secrets = context.secrets
        if self.hooks is not None:
            self._hooks_path = (context.base_dir / self.hooks).resolve()
        return self

    @property
    def hooks_path(self) -> Path | None:
        """Absolute path of the flow's hooks file, or None when it has none."""
        return self._hooks_path

    def grant_spec(self, target_name: str) -> dict[str, Any]:
        """What a grant of `target_name` must remember to be revoked after this flow changes or goes:
        the `strategy:` block and the target as written (references unresolved, so no secret is
        stored), and the hooks file. Empty when the flow was not loaded from a file; for an approval-only
        flow, a marker that its grants call no system."""
        if self.strategy is None:  # approval-only: a window that ends, nothing to take back anywhere
            return {"approval_only": True, "target": {"name": self.name, "label": self.label}}
        written = self._written_strategy
        if not written:
            return {}
        target = next(
            (t for t in written.get("targets") or [] if isinstance(t, dict) and t.get("name") == target_name), None
        )
        spec: dict[str, Any] = {"strategy": {k: v for k, v in written.items() if k != "targets"}, "target": target}
        if self._hooks_path is not None:
            spec["hooks"] = str(self._hooks_path)
            spec["hook_timeout"] = self.hook_timeout.total_seconds()
        # A secret written literally (not as a ${…} reference) must not reach the database: it is
        # redacted, and the grant is marked so that rebuilding it later is refused, loudly.
        text = json.dumps(spec, sort_keys=True, ensure_ascii=False)
        redacted = self._secrets.scrub(text)
        if redacted != text:
            spec = {**json.loads(redacted), "literal_secrets": True}
        return spec

    @property
    def approval_only(self) -> bool:
        """Whether the flow has no strategy: an approval is recorded, nothing is granted anywhere."""
        return self.strategy is None

    @property
    def targets(self) -> list[TargetConfig]:
        """The strategy's targets, in file order; an approval-only flow has one, the flow itself."""
        if self.strategy is None:
            return [TargetConfig(name=self.name, label=self.label)]
        return list(self.strategy.targets)

    def target(self, name: str) -> TargetConfig:
        """The target called `name`; KeyError if the flow has none."""
        for candidate in self.targets:
            if candidate.name == name:
                return candidate
        raise KeyError(f"flow {self.name} has no target {name!r}")

    def field(self, name: str) -> FieldSpec:
        """The form field called `name`; KeyError if the flow has none."""
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(f"flow {self.name} has no field {name!r}")

    @property
    def duration_field(self) -> FieldSpec:
        """The one field of type duration: the request's length comes from it."""
        return next(f for f in self.fields if f.type == "duration")
