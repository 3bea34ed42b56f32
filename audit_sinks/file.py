"""The `file` destination: JSON lines appended to a file, rotated by size.

One line per event: the event document plus `chain_head` (the trail's newest seq and hash when the
line was written). Each batch is written and fsync'd before the cursor moves, so a crash re-appends
at most that batch (the same `event_id`s). When the next batch would take the file past
`max_bytes`, it is renamed `<path>.1` (older ones shift to `.2` … up to `keep`, the oldest dropped).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.audit_config import FileDestination
from core.audit_delivery import DeliveryFailed
from core.audit_events import ChainHead


def line(event: Mapping[str, Any], head: ChainHead) -> bytes:
    """One JSON line: the event and the chain head it travels with."""
    return (json.dumps({**event, "chain_head": head.document()}, ensure_ascii=False) + "\n").encode()


class FileSink:
    """Appends batches to `path` (relative paths are from the flows file's directory)."""

    def __init__(self, config: FileDestination, *, base_dir: Path) -> None:
        self.config = config
        self.name = config.key
        self.batch_size = config.batch_size
        self.alert_after: timedelta = config.alert_after
        path = Path(config.path).expanduser()
        self.path = path if path.is_absolute() else base_dir / path

    async def open(self) -> None:
        """Create the directory."""
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)

    async def aclose(self) -> None:
        """Nothing is kept open between batches."""

    async def deliver(self, events: Sequence[Mapping[str, Any]], head: ChainHead) -> int:
        """Append the batch and fsync it."""
        data = b"".join(line(event, head) for event in events)
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:  # a full disk, a lost mount, permissions: retried until it works
            raise DeliveryFailed(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        return len(events)

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.config.max_bytes:
            self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        keep = self.config.keep
        oldest = self.path.with_name(f"{self.path.name}.{keep}")
        if oldest.exists():
            oldest.unlink()
        for index in range(keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
