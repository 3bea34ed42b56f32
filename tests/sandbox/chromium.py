"""Headless Chromium under Selenium for the sandbox's browser tests (Debian's chromium + chromium-driver).

    with sandbox_browser(tmp_path) as browser:
        browser.get(url)

Each browser gets a fresh profile directory and none of Chromium's background traffic (updates,
sync, first-run pages), so a test sees only the page it opens.
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
    "--no-sandbox",
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
    message = "needs Debian's chromium and chromium-driver packages (.ci/run installs them)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def sandbox_browser(profile_root: Path) -> Iterator[object]:
    """A headless Chromium driven by Selenium, with a fresh --user-data-dir under `profile_root`."""
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
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield browser
    finally:
        browser.quit()
