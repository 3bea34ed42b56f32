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


def fill_request(browser: WebDriver, *, target: str, duration: str, reason: str) -> None:
    """Fill the open request modal and press its submit button."""
    Select(browser.find_element(By.ID, "in-target")).select_by_visible_text(target)
    Select(browser.find_element(By.ID, "in-field:duration")).select_by_visible_text(duration)
    browser.find_element(By.ID, "in-field:reason").send_keys(reason)
    browser.find_element(By.ID, "modal-submit").click()
    wait(browser).until(seen.invisibility_of_element_located((By.ID, "modal")))


def ask_for_access(browser: WebDriver, *, target: str, duration: str, reason: str) -> None:
    """Riley types /sym, fills the form and requests."""
    be(browser, "U0REQUESTER")
    open_conversation(browser, "dm")
    type_command(browser, "/sym")
    modal = wait(browser).until(seen.visibility_of_element_located((By.ID, "modal")))
    assert "Request access" in modal.text
    fill_request(browser, target=target, duration=duration, reason=reason)
    wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "was sent to"))


def home_button(browser: WebDriver, label: str):
    """The App Home's first button called `label`."""
    buttons = [b for b in browser.find_elements(By.CSS_SELECTOR, "#messages .block-button") if b.text == label]
    return buttons[0] if buttons else None


def test_story_request_approve_grant_visible_fast_forward_ends_it(tmp_path: Path, screenshots):
    with SandboxProcess(["--port", "0"]) as box, headless_chromium(tmp_path) as browser:
        browser.get(box.url)
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "live"), "live"))

        # The outsider (a guest) may not ask: /sym db_access answers why, on the page, and opens nothing.
        be(browser, "U0OUTSIDER")
        open_conversation(browser, "dm")
        type_command(browser, "/sym db_access")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "Guests"))
        assert "only visible to you" in text_of(browser, "#messages")
        assert not browser.find_elements(By.ID, "modal")
        screenshots(browser, "01-guest-refused")

        # A required input left empty: the page refuses as Slack does, and nothing reaches the bot.
        be(browser, "U0REQUESTER")
        open_conversation(browser, "dm")
        type_command(browser, "/sym db_access")
        wait(browser).until(seen.visibility_of_element_located((By.ID, "modal")))
        browser.find_element(By.ID, "in-field:reason").send_keys("incident 42: read the orders table")
        browser.find_element(By.ID, "modal-submit").click()
        error = browser.find_element(By.CSS_SELECTOR, '[data-block-id="target"] .input-error')
        assert error.text == "Please complete this required field."
        screenshots(browser, "01-inline-error")
        Select(browser.find_element(By.ID, "in-target")).select_by_visible_text("Prod (read-only)")
        Select(browser.find_element(By.ID, "in-field:duration")).select_by_visible_text("15m")
        browser.find_element(By.ID, "modal-submit").click()
        wait(browser).until(seen.invisibility_of_element_located((By.ID, "modal")))
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "was sent to"))

        # The outsider's Approve is refused with the reason; the approver approves.
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


def test_help_list_and_the_app_home_with_extend_and_revoke_now(tmp_path: Path, screenshots):
    with SandboxProcess(["--port", "0"]) as box, headless_chromium(tmp_path) as browser:
        browser.get(box.url)
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "live"), "live"))
        ask_for_access(browser, target="Staging (admin)", duration="1h", reason="deploy")

        # /sym help and /sym list answer the caller alone, on the page.
        type_command(browser, "/sym help")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "/sym db_access"))
        type_command(browser, "/sym list")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "Your pending requests"))
        assert "only visible to you" in text_of(browser, "#messages")

        # The App Home: opening it sends app_home_opened, and the bot's published view is rendered.
        open_conversation(browser, "home")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "Your pending requests"))
        assert home_button(browser, "Cancel request") is not None

        be(browser, "U0ADMIN1")  # the approver's own Home lists what waits for their decision
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "Waiting for your decision"))
        click(browser, lambda b: home_button(b, "Approve"))
        wait(browser).until(lambda b: holdings(b))

        be(browser, "U0REQUESTER")
        wait(browser).until(lambda b: home_button(b, "Revoke now") is not None)
        screenshots(browser, "04-app-home")
        click(browser, lambda b: home_button(b, "Extend"))
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "modal"), "Extend access"))
        browser.find_element(By.ID, "modal-close").click()
        wait(browser).until(seen.invisibility_of_element_located((By.ID, "modal")))
        click(browser, lambda b: home_button(b, "Revoke now"))
        if browser.find_elements(By.ID, "confirm-yes"):
            click(browser, lambda b: b.find_element(By.ID, "confirm-yes"))
        wait(browser).until(lambda b: holdings(b) == [])
        open_conversation(browser, "dm")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "early"))
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
    approvers: {users: [U0ADMIN1, U0ADMIN2, U0ADMIN3]}
    approvals_required: 2
    strategy:
      type: webhook
      url: http://127.0.0.1:9000/grants
      secret: ${env:WEBHOOK_SECRET}
      targets: [{name: ci, label: CI pipeline}]
    fields:
      - {name: ticket, label: Ticket number, type: int, required: true}
      - {name: duration, label: How long, type: duration, allowed_values: [15m, 1h], required: true}
"""


def test_several_flows_two_approvals_deny_with_a_reason_and_cancel(tmp_path: Path):
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

        # Two approvals needed: the first shows "1 of 2 approvals"; the second approver's Deny opens a
        # modal for a reason, and the reason reaches the requester.
        be(browser, "U0ADMIN1")
        open_conversation(browser, "C0APPROVALS")
        click(browser, lambda b: message_button(b, "Approve"))
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "1 of 2 approvals"))
        be(browser, "U0ADMIN2")
        click(browser, lambda b: message_button(b, "Deny"))
        wait(browser).until(seen.visibility_of_element_located((By.ID, "modal")))
        browser.find_element(By.ID, "in-deny-reason").send_keys("no change window today")
        browser.find_element(By.ID, "modal-submit").click()
        wait(browser).until(seen.invisibility_of_element_located((By.ID, "modal")))
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "no change window today"))
        be(browser, "U0REQUESTER")
        open_conversation(browser, "dm")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "was denied"))

        # A pending request withdrawn with its DM's Cancel request: approvers see it cancelled.
        type_command(browser, "/sym db_access")
        wait(browser).until(seen.visibility_of_element_located((By.ID, "modal")))
        Select(browser.find_element(By.ID, "in-target")).select_by_visible_text("Prod")
        browser.find_element(By.ID, "in-field:reason").send_keys("look at a table")
        Select(browser.find_element(By.ID, "in-field:duration")).select_by_visible_text("15m")
        browser.find_element(By.ID, "modal-submit").click()
        wait(browser).until(seen.invisibility_of_element_located((By.ID, "modal")))
        click(browser, lambda b: message_button(b, "Cancel request"))
        if browser.find_elements(By.ID, "confirm-yes"):
            click(browser, lambda b: b.find_element(By.ID, "confirm-yes"))
        open_conversation(browser, "C0APPROVALS")
        wait(browser).until(seen.text_to_be_present_in_element((By.ID, "messages"), "Cancelled by the requester"))
