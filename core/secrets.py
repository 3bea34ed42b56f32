"""Secret values: a type that never prints what it holds, and the registry logs are scrubbed with.

`${env:NAME}`, `${file:PATH}` and `${aws_secret:NAME}` / `${aws_secret:NAME#json_key}` references in
the flows file are resolved at start (see `core.config`). Every resolved value is registered in the runtime's
`SecretRegistry` so the logging pipeline and the audit writer can scrub it even if it escaped its
`Secret` wrapper.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from core.errors import SecretResolutionError

REDACTED = "***"

# Deeper than any value we log; a self-referencing structure stops here as its (cycle-safe) repr.
_MAX_DEPTH = 12


class Secret:
    """A string that shows as '***' in str(), repr(), f-strings and JSON; call reveal() to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the real value, only where it is handed to the system that needs it."""
        return self._value

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:  # pickling would write the value somewhere we do not control
        raise TypeError("Secret values cannot be pickled")


def escaped_forms(value: str) -> set[str]:
    """`value` as written raw and as JSON or a Python literal would escape it (the part between quotes).

    A secret with a quote, a backslash, a newline or a non-ASCII character is printed escaped by a
    JSON renderer, a repr() or a traceback; scrubbing only the raw form would miss it there.
    """
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    # repr() escapes character by character; which quote it escapes depends on the whole string the
    # secret sits in, so both are kept, each with non-ASCII kept (repr) and escaped (ascii).
    for quote in ("'", '"'):
        for literal in (repr, ascii):
            forms.add("".join("\\" + c if c == quote else c if c in "'\"" else literal(c)[1:-1] for c in value))
    return forms


class _Repr:
    """An object already turned into (scrubbed) text; renders exactly as the object's repr did."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


class SecretRegistry:
    """The secret values one bot knows, and the scrubbing of them from any text or value.

    One per runtime, owned by the composition root and handed to every part that writes text out
    (logs, audit rows, Slack messages, errors). Thread-safe: the store's writer thread scrubs too.
    An empty registry scrubs nothing.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        # Longest first (a secret that contains another is replaced whole); rebuilt on register, read
        # without the lock (one immutable tuple), since scrub runs dozens of times per request.
        self._ordered: tuple[str, ...] = ()
        self._lock = threading.Lock()

    # A registry is a service, not data: a deep copy of a config that holds it must share it.
    def __copy__(self) -> SecretRegistry:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretRegistry:
        return self

    def __repr__(self) -> str:
        return "SecretRegistry(***)"

    def register(self, value: str) -> None:
        """Remember a resolved secret so `scrub` can remove it from any text (short values skipped)."""
        # Very short strings ("1", "no") would redact half of every log line and protect nothing, and a
        # bare `${env:NAME}` (a SecretStr key validated before resolution) is configuration, not a secret.
        if isinstance(value, str) and len(value) >= 4 and not _is_reference_text(value):
            forms = escaped_forms(value)
            with self._lock:
                self._values.update(forms)
                self._ordered = tuple(sorted(self._values, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """Replace every registered secret value in `text` with '***', and any NUL character with U+FFFD."""
        if not isinstance(text, str):
            return text
        if "\x00" in text:
            # Text a target system or a hook sent (an error, a name) that ends up in the database:
            # PostgreSQL stores no NUL in text, and the write recording a failure must not fail.
            text = text.replace("\x00", "\ufffd")
        for value in self._ordered:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def scrub_data(self, data: Any) -> Any:
        """Scrub secrets from every string inside nested dicts, lists and tuples (for audit rows)."""
        if isinstance(data, Secret):
            return REDACTED
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, dict):
            return {self.scrub_data(k): self.scrub_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.scrub_data(v) for v in data]
        return data

    def scrub_value(self, value: Any, depth: int = 0) -> Any:
        """A copy of a log value with every registered secret replaced by '***', walking dicts, lists, tuples, sets."""
        if type(value) is dict and self._flat_and_clean(value):
            # What the walk below would return for it: the same keys and values, in a new dict.
            return dict(value)
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, Secret):
            return REDACTED
        if depth < _MAX_DEPTH:
            if isinstance(value, dict):
                return {self._scrub_key(k): self.scrub_value(v, depth + 1) for k, v in value.items()}
            if type(value) is tuple:  # kept a tuple: the console renderer shows positional args as one
                return tuple(self.scrub_value(v, depth + 1) for v in value)
            if isinstance(value, (list, tuple, set, frozenset)):
                return [self.scrub_value(v, depth + 1) for v in value]
        if isinstance(value, (bytes, bytearray)):
            return self.scrub(bytes(value).decode("utf-8", "backslashreplace"))
        # Anything else (an exception, a client, a dataclass) would be rendered through its repr, where
        # a secret appears escaped; the registry holds the escaped forms, so scrub that text here.
        return _Repr(self._scrubbed_repr(value))

    def _flat_and_clean(self, mapping: dict[Any, Any]) -> bool:
        """True when every key is text, every value text or a number, bool or None, and none holds a secret or NUL.

        Such a mapping (a log line's event, nearly always) comes out of the walk unchanged; testing all
        its text at once costs one search per registered form instead of one per form per string.
        """
        texts: list[str] = []
        for key, value in mapping.items():
            if not isinstance(key, str):
                return False
            texts.append(key)
            if isinstance(value, str):
                texts.append(value)
            elif not (value is None or isinstance(value, (bool, int, float))):
                return False
        # A form found across the separator is a false alarm that only sends the mapping to the walk.
        joined = "\n".join(texts)
        if "\x00" in joined:
            return False
        return not any(form in joined for form in self._ordered)

    def _scrubbed_repr(self, value: Any) -> str:
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not cost us the log line
            text = f"<{type(value).__name__} with a failing repr>"
        return self.scrub(text)

    def _scrub_key(self, key: Any) -> Any:
        # A key must stay something JSON can write: a primitive as it is, anything else as its text.
        if key is None or isinstance(key, (str, bool, int, float)):
            return self.scrub_value(key)
        return self._scrubbed_repr(key)


# --- Secret references in the flows file -------------------------------------------------------

SCHEMES = ("env", "file", "aws_secret")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SecretReference:
    """One `${scheme:name}` or `${aws_secret:name#json_key}` reference, as written in the file."""

    scheme: str
    name: str
    json_key: str | None = None

    def __str__(self) -> str:
        key = f"#{self.json_key}" if self.json_key is not None else ""
        return "${" + f"{self.scheme}:{self.name}{key}" + "}"


def _is_reference_text(value: str) -> bool:
    if not value.startswith("${"):
        return False
    try:
        references, pieces = _split(value)
    except ValueError:
        return False
    return bool(references) and not any(pieces)


def has_references(text: Any) -> bool:
    """True when `text` is a string that contains a `${…}` reference (well-formed or not)."""
    return isinstance(text, str) and "${" in text


def parse_references(text: str) -> list[SecretReference]:
    """Every reference in `text`, in order; ValueError (naming the reference, not a value) if one is malformed."""
    references, _ = _split(text)
    return references


def substitute(text: str, values: Mapping[SecretReference, str]) -> str:
    """Replace each reference in `text` with its resolved value from `values`."""
    references, pieces = _split(text)
    out = [pieces[0]]
    for reference, piece in zip(references, pieces[1:], strict=True):
        out.append(values[reference])
        out.append(piece)
    return "".join(out)


def _split(text: str) -> tuple[list[SecretReference], list[str]]:
    # Every '${' starts a reference: a stray one is an error rather than a literal, so a typo in a
    # reference can never silently become the secret's value.
    references: list[SecretReference] = []
    pieces: list[str] = []
    position = 0
    while (start := text.find("${", position)) != -1:
        end = text.find("}", start)
        if end == -1:
            raise ValueError(f"unterminated reference '{text[start : start + 40]}': it needs a closing }}")
        pieces.append(text[position:start])
        references.append(_parse_one(text[start + 2 : end]))
        position = end + 1
    pieces.append(text[position:])
    return references, pieces


def _parse_one(body: str) -> SecretReference:
    written = "${" + body + "}"
    scheme, colon, rest = body.partition(":")
    if not colon:
        raise ValueError(f"'{written}' is not a reference: write ${{env:NAME}}, ${{file:PATH}} or ${{aws_secret:NAME}}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown reference scheme '{scheme}' in '{written}' (known: {', '.join(SCHEMES)})")
    if scheme == "env":
        if not _ENV_NAME.match(rest):
            raise ValueError(f"'{written}': an environment variable name is letters, digits and _")
        return SecretReference("env", rest)
    if scheme == "file":
        if not rest.strip():
            raise ValueError(f"'{written}': the file path is empty")
        return SecretReference("file", rest)
    name, hash_sign, json_key = rest.partition("#")
    if not name.strip():
        raise ValueError(f"'{written}': the secret name is empty")
    if hash_sign and not json_key:
        raise ValueError(f"'{written}': the JSON key after '#' is empty")
    return SecretReference("aws_secret", name, json_key if hash_sign else None)


def secretsmanager_client() -> Any:
    """A Secrets Manager client from the standard AWS environment (AWS_REGION, AWS_ENDPOINT_URL, chain)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    # botocore reads AWS_DEFAULT_REGION by itself but not AWS_REGION, which most tooling sets.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    try:
        # Built per client (no shared module-level dict): bounded waits, a few standard retries.
        config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})
        return boto3.session.Session().client("secretsmanager", region_name=region, config=config)
    except NoRegionError:
        raise SecretResolutionError("no AWS region configured: set AWS_REGION") from None


def fetch_aws_secret(name: str, json_key: str | None = None, *, client: Any = None) -> str:
    """Read secret `name` from AWS Secrets Manager (blocking: call it in a thread), optionally one JSON key."""
    text = _read_aws_secret(client if client is not None else secretsmanager_client(), name)
    return text if json_key is None else _json_value(name, text, json_key)


def _read_aws_secret(client: Any, name: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    # Error text is built from codes and names only: botocore never echoes a secret, and we never do.
    try:
        response = client.get_secret_value(SecretId=name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        if code == "ResourceNotFoundException":
            raise SecretResolutionError(f"AWS secret '{name}' does not exist") from None
        if code == "AccessDeniedException":
            raise SecretResolutionError(f"access to AWS secret '{name}' is denied") from None
        raise SecretResolutionError(f"could not read AWS secret '{name}': {code}") from None
    except NoCredentialsError:
        raise SecretResolutionError(f"could not read AWS secret '{name}': no AWS credentials found") from None
    except BotoCoreError as exc:
        raise SecretResolutionError(f"could not read AWS secret '{name}': {exc}") from None
    text = response.get("SecretString")
    if not isinstance(text, str):
        raise SecretResolutionError(f"AWS secret '{name}' has no SecretString (binary secrets are not supported)")
    return text


def _json_value(name: str, text: str, json_key: str) -> str:
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SecretResolutionError(f"AWS secret '{name}' is not a JSON object, so key '{json_key}' cannot be read")
    if json_key not in document:
        raise SecretResolutionError(f"AWS secret '{name}' has no JSON key '{json_key}'")
    value = document[json_key]
    return value if isinstance(value, str) else json.dumps(value)


class SecretResolver:
    """Resolves references for one pass over the flows file; each AWS secret is fetched once per name."""

    def __init__(
        self,
        base_dir: Path,
        *,
        environ: Mapping[str, str] | None = None,
        read_aws_secret: Callable[[str], str] | None = None,
        secrets: SecretRegistry | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        # Every resolved value goes here; the loader passes the runtime's registry.
        self.secrets = SecretRegistry() if secrets is None else secrets
        self.environ = os.environ if environ is None else environ
        self._read_aws_secret = read_aws_secret
        self._aws_cache: dict[str, str | SecretResolutionError] = {}
        self._aws_lock = threading.Lock()
        self._client_lock = threading.Lock()

    def prefetch(self, references: Iterable[SecretReference]) -> None:
        """Fetch every distinct AWS secret among `references` concurrently, in worker threads."""
        names = sorted({r.name for r in references if r.scheme == "aws_secret"} - set(self._aws_cache))
        if names:
            with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="aws-secret") as pool:
                list(pool.map(self._cached_aws_secret, names))

    def resolve(self, reference: SecretReference) -> str:
        """The value of one reference, registered for scrubbing; SecretResolutionError names only the reference."""
        if reference.scheme == "env":
            value = self.environ.get(reference.name)
            if value is None:
                raise SecretResolutionError(f"environment variable {reference.name} is not set ({reference})")
        elif reference.scheme == "file":
            value = self._read_file(reference)
        elif reference.scheme == "aws_secret":
            text = self._aws_secret_text(reference.name)
            value = text if reference.json_key is None else _json_value(reference.name, text, reference.json_key)
        else:
            raise SecretResolutionError(f"unknown reference scheme in {reference}")
        if value == "":
            raise SecretResolutionError(f"{reference} resolved to an empty value")
        self.secrets.register(value)
        return value

    def _read_file(self, reference: SecretReference) -> str:
        path = self.base_dir / reference.name
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SecretResolutionError(f"secret file '{reference.name}' is not UTF-8 text") from None
        except OSError as exc:
            raise SecretResolutionError(f"cannot read secret file '{reference.name}': {exc.strerror or exc}") from None
        # Editors and `echo` add a final newline that is never part of a token.
        return text.rstrip("\r\n")

    def _aws_secret_text(self, name: str) -> str:
        cached = self._cached_aws_secret(name)
        if isinstance(cached, SecretResolutionError):
            raise SecretResolutionError(str(cached))
        return cached

    def _cached_aws_secret(self, name: str) -> str | SecretResolutionError:
        # A failure is cached too: one missing secret referenced ten times costs one call, ten issues.
        with self._aws_lock:
            cached = self._aws_cache.get(name)
        if cached is None:
            try:
                cached = self._fetch_aws(name)
            except SecretResolutionError as exc:
                cached = exc
            with self._aws_lock:
                self._aws_cache[name] = cached
        return cached

    def _fetch_aws(self, name: str) -> str:
        with self._client_lock:  # one client for the pass; boto3 clients are safe to share across threads
            if self._read_aws_secret is None:
                self._read_aws_secret = partial(_read_aws_secret, secretsmanager_client())
            read = self._read_aws_secret
        return read(name)
