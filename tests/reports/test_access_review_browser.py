"""The HTML access review opened in a real headless Chromium, as an auditor opens the file."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By

from tests.e2e.botprocess import clean_env, run_cli
from tests.reports.conftest import ReviewDb


async def test_the_html_review_renders_offline_with_a_bar_per_grant_in_a_real_browser(
    review_db: ReviewDb, tmp_path: Path, chromium_driver
) -> None:
    page = tmp_path / "access-review.html"
    result = await run_cli(
        "report",
        "access",
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-08",
        "--format",
        "html",
        "--output",
        str(page),
        env=clean_env(JITBOT_DB=str(review_db.path)),
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(review_db.in_period)} grants" in result.stderr

    driver = chromium_driver
    driver.get(page.as_uri())
    assert driver.title.startswith("Access review 2026-11-01")
    heading = driver.find_element(By.TAG_NAME, "h1")
    assert heading.is_displayed() and "Access review" in heading.text

    bars = driver.find_elements(By.CSS_SELECTOR, "svg.timeline rect.grant")
    assert len(bars) == len(review_db.in_period)
    assert sorted(b.get_attribute("data-request") for b in bars) == sorted(review_db.in_period)
    for bar in bars:  # every bar is laid out: visible, with a width an eye can see
        assert bar.is_displayed()
        assert bar.size["width"] >= 2 and bar.size["height"] > 0
    early = next(b for b in bars if b.get_attribute("data-request") == "early")
    # The colour of how it ended comes from the inline stylesheet (no network was needed for it).
    assert early.value_of_css_property("fill") in ("rgb(21, 101, 192)", "#1565c0")

    sections = driver.find_elements(By.CSS_SELECTOR, "section.target")
    assert [s.find_element(By.TAG_NAME, "h2").text for s in sections] == [
        "db_access / prod_admin",
        "db_access / staging",
        "deploy_gate / deploy_gate",
    ]
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "ticket for on_time" in body and "ended by U_ALICE" in body and "Okta refused: E0000006" in body
    assert f"3 targets, {len(review_db.in_period)} grants." in body

    # The browser fetched nothing: the only resource of the page is the file itself.
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources == []

    shot = tmp_path / "access-review.png"
    driver.set_window_size(1280, 1600)
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
