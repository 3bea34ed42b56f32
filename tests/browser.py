"""A real headless Chromium (Debian's `chromium` + `chromium-driver` packages) driven by Selenium.

Use the `chromium_driver` fixture (registered in tests/conftest.py): each test gets a fresh browser
with its own profile directory, no network side traffic (no updates, sync or background fetches),
quit after the test. `.ci/run` installs the packages when they are missing; a developer machine
without them skips the browser tests with the reason (in CI, where they must be there, it fails).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_PATHS = ("/usr/bin/chromedriver",)
WINDOW = (1280, 900)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if Path(p).is_file()), None) or shutil.which(name)


def chromium_options(profile: Path) -> object:
    """The flags every browser test runs with: headless, sandbox off (root in CI), no background traffic."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    binary = _first(CHROMIUM_PATHS, "chromium")
    if binary:
        options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(flag)
    return options


@pytest.fixture
def chromium_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A fresh headless Chromium WebDriver (its own --user-data-dir), quit after the test."""
    pytest.importorskip("selenium", reason="selenium is pinned in requirements.lock: run make install")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = _first(DRIVER_PATHS, "chromedriver")
    if _first(CHROMIUM_PATHS, "chromium") is None or driver_path is None:
        missing = "Chromium is not installed: apt-get install -y chromium chromium-driver (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs it: a browser test must never pass there by skipping
        pytest.skip(missing)
    profile = tmp_path_factory.mktemp("chromium-profile")
    # An explicit driver path: Selenium Manager would otherwise try to download a browser.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=chromium_options(profile))
    try:
        yield driver
    finally:
        driver.quit()
