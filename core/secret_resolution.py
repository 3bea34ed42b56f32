"""Reading the values behind `${env:…}`, `${file:…}` and `${aws_secret:…}` references: SecretResolver.

`core.config` parses the references in the flows file (`core.secrets`) and hands each to one
`SecretResolver` per load, which reads it from the environment, a file beside the flows file, or
AWS Secrets Manager (each AWS secret fetched once per name, distinct ones side by side), registers
every value it returns with the runtime's SecretRegistry, and words every failure with the
reference alone, never a value. It is apart from `core.secrets` because it is the part that does
I/O (the environment, files, boto3) and runs once, at load; `core.secrets` is what every layer
imports to hold and scrub secrets, and needs none of it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from core.errors import SecretResolutionError
from core.secrets import SecretReference, SecretRegistry


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
