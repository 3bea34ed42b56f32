"""Values derived from a loaded flow (its targets, duration rule, form model), built once per Flow object.

Building them costs tens of microseconds to a millisecond, and they only change with the config. A
reloaded config is new Flow objects, so a value kept for the old object is never served for the new.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from core.flow_models import Flow

T = TypeVar("T")

KEPT = 4096  # values kept at once; configs reloaded many times start the cache again


class FlowCache:
    """`build()`'s value per (Flow object, what), built on first use; see the module docstring."""

    def __init__(self, limit: int = KEPT) -> None:
        self._limit = limit
        self._kept: dict[tuple[int, str], tuple[Flow, Any]] = {}

    def get(self, flow: Flow, what: str, build: Callable[[], T]) -> T:
        """The value of `what` for this Flow object, built by `build()` the first time."""
        key = (id(flow), what)
        kept = self._kept.get(key)
        if kept is not None and kept[0] is flow:  # the id of a Flow since collected is not the same flow
            return cast(T, kept[1])
        if len(self._kept) >= self._limit:
            self._kept.clear()
        value = build()
        self._kept[key] = (flow, value)
        return value
