"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core.hooks import HookModule, load_hooks
from storage.db import Store


@pytest.fixture
async def load() -> AsyncIterator[Callable[..., HookModule]]:
    """load_hooks, with every module's hook processes stopped after the test."""
    loaded: list[HookModule] = []

    def load_and_track(path: Path, **kwargs) -> HookModule:
        hooks = load_hooks(path, **kwargs)
        loaded.append(hooks)
        return hooks

    yield load_and_track
    for hooks in loaded:
        await hooks.aclose()


@pytest.fixture
async def store(databases) -> AsyncIterator[Store]:
    """The session's engine (SQLite or PostgreSQL), open for one test."""
    opened = await Store.open(databases.where())
    yield opened
    await opened.close()
