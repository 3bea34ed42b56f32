"""The `audit:` block of the flows file: where audit events are delivered (docs/audit.md).

    audit:
      destinations:
        - {type: file, path: /var/log/jitbot/audit.jsonl}
        - {type: http, url: https://siem.example.com/jitbot, secret: ${env:AUDIT_SECRET}}
        - {type: kinesis, integration: aws_main, stream: jitbot-audit}     # or firehose: NAME
        - {type: datadog, site: datadoghq.eu, api_key: ${env:DD_API_KEY}, service: jitbot, tags: [env:prod]}

Each destination has a `name` (default: derived from its type and address), which keys its delivery
cursor: renaming a destination makes it a new one, which starts from the first event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from core.schema import CONTEXT_KEY, Duration, SecretStr, StrictModel
from core.secrets import SecretRegistry

DEFAULT_ALERT_AFTER = timedelta(minutes=15)
DATADOG_SITES = (
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "uk1.datadoghq.com",
    "datadoghq.eu",
    "ddog-gov.com",
    "us2.ddog-gov.com",
)
DestinationName = Annotated[str, Field(pattern=r"^[a-z0-9_]+$", max_length=64)]
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


class _Destination(StrictModel):
    """Keys every destination has."""

    name: DestinationName | None = None
    alert_after: Duration = DEFAULT_ALERT_AFTER
    batch_size: Annotated[int, Field(ge=1, le=500)] = 100

    @field_validator("alert_after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be positive")
        return value

    @property
    def key(self) -> str:
        """The name of its cursor: `name` when given, else derived from the type and address."""
        return self.name or self.default_name()

    def default_name(self) -> str:  # pragma: no cover - every destination overrides it
        """A stable name from the destination's type and address."""
        raise NotImplementedError


class FileDestination(_Destination):
    """JSON lines appended to `path` (relative to the flows file), rotated at `max_bytes`."""

    type: Literal["file"]
    path: Annotated[str, Field(min_length=1)]
    max_bytes: Annotated[int, Field(ge=4096)] = 100 * 1024 * 1024
    keep: Annotated[int, Field(ge=1, le=1000)] = 10

    def default_name(self) -> str:
        """'file:<path>'."""
        return f"file:{self.path}"


def public_url(url: str) -> str:
    """`url` without its user name, password, query and fragment: what may be shown and logged."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _register_url_secrets(url: str, info: ValidationInfo) -> None:
    """A token written into a URL (its user name, password, query values, fragment) is a secret: register
    each for scrubbing, so an error, an alert or a receiver's answer that echoes the URL never shows it."""
    context = info.context.get(CONTEXT_KEY) if isinstance(info.context, Mapping) else None
    secrets = getattr(context, "secrets", None)
    if not isinstance(secrets, SecretRegistry):
        return
    parts = urlsplit(url)
    values = [parts.username, parts.password, parts.query, parts.fragment]
    values += [value for _, value in parse_qsl(parts.query, keep_blank_values=False)]
    for value in values:
        if value:
            secrets.register(value)
            secrets.register(unquote(value))


def _no_credentials(url: str) -> None:
    # The HTTP client refuses a user:password@ URL next to its own headers, so such a destination
    # would fail forever; a token belongs in `headers` (or a query value, scrubbed like any secret).
    if "@" in urlsplit(url).netloc:
        raise ValueError("must not carry a user name or password (user:password@host): put a token in `headers`")


class HttpDestination(_Destination):
    """Batches POSTed to `url`, signed with `secret` like the webhook strategy."""

    type: Literal["http"]
    url: str
    secret: SecretStr
    timeout: Duration = timedelta(seconds=10)
    headers: dict[Annotated[str, Field(pattern=_HEADER_NAME)], SecretStr] = {}

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(("http://", "https://")) or len(value.split("/", 3)[2]) == 0:
            raise ValueError("must be an http:// or https:// URL")
        _register_url_secrets(value, info)
        _no_credentials(value)
        return value

    def default_name(self) -> str:
        """'http:<url without credentials, query or fragment>' (any of them may hold a token)."""
        return f"http:{public_url(self.url)}"


class KinesisDestination(_Destination):
    """Kinesis Data Streams (`stream`) or a Firehose delivery stream (`firehose`), through an `aws` integration."""

    type: Literal["kinesis"]
    integration: Annotated[str, Field(min_length=1)]
    stream: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    firehose: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    partition_key: Annotated[str, Field(min_length=1, max_length=256)] = "jitbot-audit"

    @model_validator(mode="after")
    def _one_stream(self, info: ValidationInfo) -> KinesisDestination:
        if (self.stream is None) == (self.firehose is None):
            raise ValueError("give exactly one of stream (Kinesis Data Streams) or firehose (a delivery stream)")
        context = info.context.get(CONTEXT_KEY) if isinstance(info.context, Mapping) else None
        kinds = getattr(context, "integration_kinds", None)
        if isinstance(kinds, Mapping):
            if self.integration not in kinds:
                defined = ", ".join(sorted(kinds)) or "none"
                raise ValueError(f"no integration named '{self.integration}' under integrations: (defined: {defined})")
            if isinstance(kinds[self.integration], str) and kinds[self.integration] != "aws":
                raise ValueError(
                    f"integration '{self.integration}' has type '{kinds[self.integration]}'; kinesis needs type 'aws'"
                )
        return self

    def default_name(self) -> str:
        """'kinesis:<stream>' or 'firehose:<delivery stream>'."""
        return f"kinesis:{self.stream}" if self.stream else f"firehose:{self.firehose}"


class DatadogDestination(_Destination):
    """Datadog's logs intake (API v2) on `site`, with `service` and `tags` on every log."""

    type: Literal["datadog"]
    api_key: SecretStr
    site: Literal[DATADOG_SITES] = "datadoghq.com"  # type: ignore[valid-type]
    service: Annotated[str, Field(min_length=1, max_length=100)] = "jitbot"
    source: Annotated[str, Field(min_length=1, max_length=100)] = "jitbot"
    tags: list[Annotated[str, Field(min_length=1, max_length=200)]] = []
    # Only for a proxy in front of Datadog (and the local fake in tests); the site decides otherwise.
    intake_url: str | None = None
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 100

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if isinstance(value, Mapping):  # {env: prod} is written as env:prod
            return [f"{k}:{v}" for k, v in value.items()]
        return value

    @field_validator("intake_url")
    @classmethod
    def _intake_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        if value is not None:
            _register_url_secrets(value, info)
            _no_credentials(value)
        return value

    @property
    def url(self) -> str:
        """The logs intake endpoint for the site."""
        return self.intake_url or f"https://http-intake.logs.{self.site}/api/v2/logs"

    def default_name(self) -> str:
        """'datadog:<site>/<service>'."""
        return f"datadog:{self.site}/{self.service}"


DESTINATION_TYPES = ("file", "http", "kinesis", "datadog")


def _destination_type(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None)
    return kind if kind in DESTINATION_TYPES else None


Destination = Annotated[
    Annotated[FileDestination, Tag("file")]
    | Annotated[HttpDestination, Tag("http")]
    | Annotated[KinesisDestination, Tag("kinesis")]
    | Annotated[DatadogDestination, Tag("datadog")],
    Discriminator(
        _destination_type,
        custom_error_type="unknown_destination_type",
        custom_error_message=f"unknown or missing destination type (known: {', '.join(DESTINATION_TYPES)})",
    ),
]


class AuditSettings(StrictModel):
    """The `audit:` block: the destinations every event is delivered to."""

    destinations: list[Destination] = []

    @field_validator("destinations", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @model_validator(mode="after")
    def _unique_names(self) -> AuditSettings:
        seen: set[str] = set()
        for destination in self.destinations:
            if destination.key in seen:
                raise ValueError(f"two destinations are named '{destination.key}': give each a distinct name")
            seen.add(destination.key)
        return self
