"""Plain data: read-only mappings, tuples and sets turned into the dicts and lists JSON writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plain(value: Any, *, scalars_as_text: bool = False) -> Any:
    """`value` with every Mapping as a dict (str keys) and every list, tuple or set as a list.

    With `scalars_as_text`, any scalar JSON cannot write (a date from YAML, say) becomes its text.
    """
    if isinstance(value, Mapping):
        return {str(key): plain(item, scalars_as_text=scalars_as_text) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item, scalars_as_text=scalars_as_text) for item in value]
    if scalars_as_text and not (value is None or isinstance(value, (str, int, float, bool))):
        return str(value)
    return value
