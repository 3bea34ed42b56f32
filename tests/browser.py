"""A real headless Chromium (Debian's `chromium` + `chromium-driver` packages) driven by Selenium.

Every browser test uses this one place: `headless_chromium(profile_root)` as a context manager
(the sandbox's tests, which start the browser beside a sandbox process), or the `chromium_driver`
fixture (registered in tests/conftest.py). Each browser gets a fresh profile directory and none of
Chromium's background traffic (updates, sync, first-run pages), so a test sees only the page it
opens, and is quit afterwards. `.ci/run` installs the packages when they are missing; a developer
machine without them skips the browser tests with the reason (in CI, where they must be there, it fails).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium refuses its own sandbox
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
)


def chromium_paths() -> tuple[str, str]:
    """The Chromium and chromedriver binaries; skipped where they are not installed (never in CI)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary and driver:
        return binary, driver
    missing = "Chromium is not installed: apt-get install -y chromium chromium-driver (.ci/run does it)"
    if os.environ.get("CI"):
        pytest.fail(missing)  # CI installs it: a browser test must never pass there by skipping
    pytest.skip(missing)


@contextmanager
def headless_chromium(profile_root: Path) -> Iterator[object]:
    """A headless Chromium WebDriver with a fresh --user-data-dir under `profile_root`, quit on exit."""
    pytest.importorskip("selenium", reason="selenium is pinned in requirements.lock: run make install")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = profile_root / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path: Selenium Manager would otherwise try to download a browser.
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def chromium_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A fresh headless Chromium WebDriver, quit after the test."""
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as browser:
        yield browser
