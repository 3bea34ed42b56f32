"""A person tries jitbot in the sandbox with a real browser (headless Chromium): asks, is approved by
someone else, sees the grant at the receiver, fast-forwards to its end, and the page survives a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import headless_chromium
from tests.sandbox.process import SandboxProcess, port_of

pytestmark = pytest.mark.slow
WAIT = 20  # seconds: an upper bound for a page update on a loaded CI machine, never a pause


def wait(browser: WebDriver) -> WebDriverWait:
    # The page re-renders on every update, so an element found a moment ago may be replaced: look again.
    return WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException, NoSuchElementException])


def click(browser: WebDriver, find: Callable[[WebDriver], WebElement | None]) -> None:
    """Click what `find` returns once it exists, finding it again if the page replaced it meanwhile."""

    def clicked(b: WebDriver) -> bool:
        element = find(b)
        if element is None:
            return False
        element.click()
        return True

    wait(browser).until(clicked)


def be(browser: WebDriver, person: str) -> None:
    chip = (By.CSS_SELECTOR, f'[data-person="{person}"]')
    click(browser, lambda b: b.find_element(*chip))
    wait(browser).until(lambda b: "me" in (b.find_element(*chip).get_attribute("class") or ""))


def open_conversation(browser: WebDriver, conversation: str) -> None:
    click(browser, lambda b: b.find_element(By.CSS_SELECTOR, f'[data-conv="{conversation}"]'))


def type_command(browser: WebDriver, text: str) -> None:
    box = browser.find_element(By.ID, "composer")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.ID, "send").click()


def text_of(browser: WebDriver, selector: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, selector).text


def holdings(browser: WebDriver) -> list[str]:
    return [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#holdings tr.holding")]


def message_button(browser: WebDriver, label: str):
    """The newest message's button called `label` in the open conversation."""
    buttons = [b for b in browser.find_elements(By.CSS_SELECTOR, "#messages .message .block-button") if b.text == label]
    return buttons[-1] if buttons else None


def ask_for_access(browser: WebDriver, *, target: str, duration: str, reason: str) -> None:
    """Riley types /sym, leaves the form empty once (Slack refuses), then fills it and requests."""
    be(browser, "U0REQUESTER")
    open_conversation(browser, "dm")
    type_command(browser, "/sym")
    modal = wait(browser).until(seen.visibility_of_element_located((By.ID, "modal")))
    assert "Request access" in modal.text
    Select(browser.find_element(By.ID, "in-target")).select_by_visible_text(target)
    Select(browser.find_element(By.ID, "in-field:duration")).select_by_visible_text(duration)
    browser.find_element(By.ID, "in-field:reason").send_keys(reason)
    browser.find_element(By.ID, "modal-submit").click()
    wait(browser).until(seen.invisibility_of_element_located((By.ID, "modal")))
    wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "was sent to"))


def test_story_request_approve_grant_visible_fast_forward_ends_it(tmp_path: Path, screenshots):
    with SandboxProcess(["--port", "0"]) as box, headless_chromium(tmp_path) as browser:
        browser.get(box.url)
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "live"), "live"))

        # A required input left empty: the page refuses as Slack does, and nothing reaches the bot.
        be(browser, "U0OUTSIDER")
        type_command(browser, "/sym db_access")
        wait(browser).until(seen.visibility_of_element_located((By.ID, "modal")))
        browser.find_element(By.ID, "in-field:reason").send_keys("curious")
        browser.find_element(By.ID, "modal-submit").click()
        error = browser.find_element(By.CSS_SELECTOR, '[data-block-id="target"] .input-error')
        assert error.text == "Please complete this required field."
        # What the bot refuses comes back as its inline error (response_action: errors): a guest may not ask.
        Select(browser.find_element(By.ID, "in-target")).select_by_visible_text("Prod (read-only)")
        browser.find_element(By.ID, "modal-submit").click()
        wait(browser).until(
            seen.text_to_be_present_in_element((By.CSS_SELECTOR, '[data-block-id="target"] .input-error'), "Guests")
        )
        screenshots(browser, "01-inline-error")
        browser.find_element(By.ID, "modal-close").click()
        wait(browser).until(seen.invisibility_of_element_located((By.ID, "modal")))

        ask_for_access(browser, target="Prod (read-only)", duration="15m", reason="incident 42: read the orders table")

        # The outsider (a guest) is refused; the approver approves.
        be(browser, "U0OUTSIDER")
        open_conversation(browser, "C0APPROVALS")
        click(browser, lambda b: message_button(b, "Approve"))
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "Guests"))
        assert holdings(browser) == []

        be(browser, "U0ADMIN1")
        open_conversation(browser, "C0APPROVALS")
        click(browser, lambda b: message_button(b, "Approve"))
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "access granted until"))
        wait(browser).until(lambda b: holdings(b))
        (row,) = holdings(browser)
        assert "riley@example.com" in row and "Prod (read-only)" in row
        screenshots(browser, "02-approved")

        # The requester's DM says it is granted; fast-forward 15 minutes ends it at the receiver.
        be(browser, "U0REQUESTER")
        open_conversation(browser, "dm")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "is granted"))
        browser.find_element(By.CSS_SELECTOR, '[data-ff="15"]').click()
        wait(browser).until(lambda b: holdings(b) == [])
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "has expired and was removed"))
        assert "15 min ahead" in text_of(browser, "#offset")
        assert "revoked Prod (read-only) for riley@example.com" in text_of(browser, "#history")
        screenshots(browser, "03-ended")


def test_revoke_now_ends_a_grant_at_the_receiver_where_the_bot_offers_it(tmp_path: Path, screenshots):
    with SandboxProcess(["--port", "0"]) as box, headless_chromium(tmp_path) as browser:
        browser.get(box.url)
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "live"), "live"))
        ask_for_access(browser, target="Staging (admin)", duration="1h", reason="deploy")
        be(browser, "U0ADMIN1")
        open_conversation(browser, "C0APPROVALS")
        click(browser, lambda b: message_button(b, "Approve"))
        wait(browser).until(lambda b: holdings(b))
        be(browser, "U0REQUESTER")
        open_conversation(browser, "dm")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "is granted"))
        if message_button(browser, "Revoke now") is None:  # on the DM, or else on the approval message
            open_conversation(browser, "C0APPROVALS")
        if message_button(browser, "Revoke now") is None:
            pytest.skip("this bot offers no Revoke now button (the story test ends the grant by fast-forward)")
        click(browser, lambda b: message_button(b, "Revoke now"))
        if browser.find_elements(By.ID, "confirm-yes"):
            click(browser, lambda b: b.find_element(By.ID, "confirm-yes"))
        wait(browser).until(lambda b: holdings(b) == [])
        screenshots(browser, "04-revoked")


def test_the_page_reconnects_after_the_sandbox_restarts(tmp_path: Path, screenshots):
    first = SandboxProcess(["--port", "0"]).start()
    port = port_of(first.url)
    with headless_chromium(tmp_path) as browser:
        try:
            browser.get(first.url)
            wait(browser).until(seen.text_to_be_present_in_element((By.ID, "live"), "live"))
            be(browser, "U0REQUESTER")
            type_command(browser, "/sym nothing")
            wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "There is no flow named"))
        finally:
            assert first.stop() == 0
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "live"), "reconnecting"))

        with SandboxProcess(["--port", str(port)]):
            # The same page, never reloaded: it reconnects and shows the new sandbox's state.
            wait(browser).until(seen.text_to_be_present_in_element((By.ID, "live"), "live"))
            wait(browser).until(lambda b: "There is no flow named" not in b.find_element(By.ID, "messages").text)
            type_command(browser, "/sym")
            wait(browser).until(seen.visibility_of_element_located((By.ID, "modal")))
            screenshots(browser, "05-after-restart")


TWO_FLOWS = """
flows:
  - name: db_access
    label: Database Access
    approval_channel: C0APPROVALS
    strategy:
      type: webhook
      url: http://127.0.0.1:9000/grants
      secret: ${env:WEBHOOK_SECRET}
      targets: [{name: prod, label: Prod}]
    fields:
      - {name: reason, label: Why, type: text, required: true}
      - {name: duration, label: How long, type: duration, allowed_values: [15m, 1h], required: true}
  - name: deploys
    label: Deploy rights
    approval_channel: C0APPROVALS
    strategy:
      type: webhook
      url: http://127.0.0.1:9000/grants
      secret: ${env:WEBHOOK_SECRET}
      targets: [{name: ci, label: CI pipeline}]
    fields:
      - {name: ticket, label: Ticket number, type: int, required: true}
      - {name: duration, label: How long, type: duration, allowed_values: [15m, 1h], required: true}
"""


def test_with_several_flows_picking_one_replaces_the_modal_with_its_form(tmp_path: Path):
    config = tmp_path / "flows.yaml"
    config.write_text(TWO_FLOWS)
    with SandboxProcess(["--port", "0", "--config", str(config)]) as box, headless_chromium(tmp_path) as browser:
        browser.get(box.url)
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "live"), "live"))
        be(browser, "U0REQUESTER")
        type_command(browser, "/sym")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "modal"), "What do you need access to?"))
        # A select outside an input block: choosing sends block_actions at once, and the bot updates the view.
        Select(browser.find_element(By.ID, "in-flow")).select_by_visible_text("Deploy rights")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "modal"), "Ticket number"))
        browser.find_element(By.ID, "in-field:ticket").send_keys("42")
        Select(browser.find_element(By.ID, "in-field:duration")).select_by_visible_text("15m")
        browser.find_element(By.ID, "modal-submit").click()
        wait(browser).until(seen.invisibility_of_element_located((By.ID, "modal")))
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "CI pipeline"))
