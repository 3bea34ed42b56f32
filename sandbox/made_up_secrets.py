"""`${aws_secret:…}` in the sandbox: a made-up value of its own, never a read of AWS Secrets Manager.

The bot resolves every reference in the flows file at start. For `${aws_secret:…}` that is a call to
AWS with whatever credentials the machine has (a developer's profile, an instance role): a sandbox
would read a production secret it never uses, since everything it would be used for is a stand-in
or the built-in receiver. So each AWS secret the flows file names gets a random value made up here
(a JSON object holding every `#key` the file asks of it), nothing connects to AWS, and `notes()` says
so in one line per reference. `${env:…}` and `${file:…}` are read from this machine, as in `run`.
"""

from __future__ import annotations

import json
import secrets as token_source
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from core.secrets import SecretReference, has_references, parse_references


class MadeUpSecrets:
    """The made-up text of each AWS secret a flows file refers to, by name."""

    def __init__(self, references: list[SecretReference]) -> None:
        self.references = list(dict.fromkeys(r for r in references if r.scheme == "aws_secret"))
        keys: dict[str, list[str]] = {}
        for reference in self.references:
            keys.setdefault(reference.name, [])
            if reference.json_key is not None:
                keys[reference.name].append(reference.json_key)
        self._texts = {name: _made_up(asked) for name, asked in keys.items()}

    @classmethod
    def of_file(cls, path: Path) -> MadeUpSecrets:
        """The references in the values of the flows file at `path` (comments are not values)."""
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls([r for text in _strings(document) if has_references(text) for r in parse_references(text)])

    def read(self, name: str) -> str:
        """The text of the AWS secret `name`: made up, never read from AWS."""
        text = self._texts.get(name)
        if text is None:  # a name the file did not show us: a value of its own, still nothing read
            text = self._texts[name] = _made_up([])
        return text

    def notes(self) -> list[str]:
        """One line per reference: what the sandbox does instead of reading it."""
        return [f"{r}: not read from AWS Secrets Manager; the sandbox uses a made-up value" for r in self.references]


def _made_up(keys: list[str]) -> str:
    def value() -> str:
        return f"sandbox-made-up-{token_source.token_hex(12)}"

    return json.dumps({key: value() for key in keys}) if keys else value()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
