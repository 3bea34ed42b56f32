"""The flows file's top-level model (docs/configuration.md): `JitConfig`, its `slack:` block and its flows.

A flow's own models are in core.flow_models; the validation plumbing (context, registries, the
whole-file duplicate-name checks) in core.config_checks. The names the rest of the code uses
(Flow, FieldSpec, ValidationContext, …) are re-exported here, where it imports them from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.audit_config import AuditSettings
from core.config_checks import (
    Configurable,
    IntegrationEntry,
    ValidationContext,
    _context,
    _duplicate_names,
    _integration_kinds,
    _message,
    _problem,
    _raise,
)
from core.flow_models import (
    DEFAULT_WARN_BEFORE,
    RESERVED_FIELD_NAMES,
    RESERVED_FLOW_NAMES,
    Approvers,
    FieldSpec,
    FieldType,
    Flow,
    NonEmpty,
    Reconcile,
)
from core.schema import Name, StrictModel
from core.secrets import SecretRegistry

__all__ = [
    "DEFAULT_WARN_BEFORE",
    "RESERVED_FIELD_NAMES",
    "RESERVED_FLOW_NAMES",
    "Approvers",
    "Configurable",
    "FieldSpec",
    "FieldType",
    "Flow",
    "JitConfig",
    "Reconcile",
    "SlackSettings",
    "ValidationContext",
]


class SlackSettings(StrictModel):
    """The `slack:` block: the slash command this bot answers and where alerts go."""

    command: Annotated[str, Field(pattern=r"^/[a-z0-9_-]{1,31}$")] = "/sym"
    alerts_channel: NonEmpty | None = None


class JitConfig(StrictModel):
    """The whole flows file."""

    slack: SlackSettings = Field(default_factory=SlackSettings)
    integrations: dict[Name, IntegrationEntry] = {}
    flows: Annotated[list[Flow], Field(min_length=1)]
    audit: AuditSettings = Field(default_factory=AuditSettings)

    _path: Path | None = PrivateAttr(default=None)
    _secrets: SecretRegistry = PrivateAttr(default_factory=SecretRegistry)  # the loader's: see `secrets`

    @field_validator("integrations", mode="before")
    @classmethod
    def _no_integrations(cls, value: Any) -> Any:
        if value is None:
            return {}  # `integrations:` with every entry commented out
        if isinstance(value, dict) and "slack" in value:
            # Hooks reach the bot's own Slack directory as evt.integrations.slack.
            _raise(
                [_problem(("slack",), "the name 'slack' is reserved for the bot's own Slack directory", value["slack"])]
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _whole_file_checks(
        cls,
        data: Any,
        handler: ModelWrapValidatorHandler[JitConfig],
        info: ValidationInfo,
    ) -> JitConfig:
        ctx = _context(info)
        ctx.integration_kinds = _integration_kinds(data)
        duplicates = _duplicate_names(data)
        try:
            config = handler(data)
        except ValidationError:
            # Name clashes are found on the raw data, so they are reported even when another part
            # fails; pydantic cannot merge them into its own error, so load_config picks them up.
            ctx.deferred.extend((p["loc"], _message(p)) for p in duplicates)
            raise
        if duplicates:
            _raise(duplicates)
        return config

    @property
    def path(self) -> Path | None:
        """The flows file this configuration was loaded from."""
        return self._path

    @property
    def secrets(self) -> SecretRegistry:
        """The registry the loader registered this configuration's secrets in (the runtime's)."""
        return self._secrets

    def flow(self, name: str) -> Flow:
        """The flow called `name`; KeyError if there is none."""
        for candidate in self.flows:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no flow named {name!r}")
