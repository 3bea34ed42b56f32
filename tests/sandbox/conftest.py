"""Fixtures of the sandbox tests: an in-process Sandbox, and where browser screenshots go."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.app import Sandbox
from tests.conftest import PROXY_VARIABLES

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "config" / "flows.yaml"
_SHOTS = pytest.StashKey[list[Path]]()


@pytest.fixture
async def sandbox(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sandbox]:
    """The sandbox with the shipped flows file, started in this test's event loop."""
    box = await start_sandbox(monkeypatch, SHIPPED_CONFIG)
    try:
        yield box
    finally:
        await box.stop()
    assert box.emu is not None
    box.emu.verify()


async def start_sandbox(monkeypatch: pytest.MonkeyPatch, config: Path, **kwargs: str) -> Sandbox:
    """A started Sandbox on `config`; the variables it sets are restored after the test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEBHOOK_SECRET", "restored-after-the-test")
    box = Sandbox(config, **kwargs)
    await box.start()
    return box


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path):
    """save(name) writes the browser's screenshot to $JITBOT_SCREENSHOTS (else the test's tmp dir)."""
    folder = Path(os.environ.get("JITBOT_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    taken = request.config.stash.setdefault(_SHOTS, [])

    def save(browser, name: str) -> Path:
        path = folder / f"{name}.png"
        assert browser.save_screenshot(str(path)), f"could not save {path}"
        taken.append(path)
        return path

    return save


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """List the screenshots the browser tests saved, so CI's output says where they are."""
    taken = config.stash.get(_SHOTS, [])
    if taken:
        terminalreporter.write_sep("-", f"sandbox screenshots ({len(taken)})")
        for path in taken:
            terminalreporter.write_line(str(path))
