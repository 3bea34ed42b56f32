"""The page renders Block Kit in a real browser: every element the bot uses, Slack's text formats
escaped rather than run, and a visible placeholder for anything it does not know."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import headless_chromium
from tests.sandbox.process import SandboxProcess

pytestmark = pytest.mark.slow

RENDER = """
const holder = document.createElement('div');
holder.id = 'under-test';
document.body.prepend(holder);
holder.append(renderBlocks(arguments[0], arguments[1]));
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with SandboxProcess(["--port", "0"]) as box, headless_chromium(tmp_path_factory.mktemp("chromium")) as browser:
        browser.get(box.url)
        WebDriverWait(browser, 20).until(seen.text_to_be_present_in_element((By.ID, "live"), "live"))
        yield browser


def render(browser, blocks: list[dict], kind: str = "message"):
    browser.execute_script("const old = document.getElementById('under-test'); if (old) old.remove();")
    ctx = {"kind": kind, "message": {"channel": "C0APPROVALS", "ts": "1.000001"}, "view": {"id": "V1"}}
    browser.execute_script(RENDER, blocks, ctx)
    return browser.find_element(By.ID, "under-test")


def test_an_unknown_block_or_element_is_a_visible_placeholder_never_a_gap(page):
    box = render(
        page,
        [
            {"type": "video", "title": {"type": "plain_text", "text": "demo"}},
            {"type": "actions", "elements": [{"type": "overflow", "action_id": "more", "options": []}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": "still shown"}},
        ],
    )
    placeholders = [p.text for p in box.find_elements(By.CSS_SELECTOR, ".unsupported")]
    assert placeholders == ["unsupported block: video", "unsupported element: overflow"]
    assert "still shown" in box.text


def test_slack_text_is_formatted_and_never_run_as_html(page):
    text = (
        "*bold* _it_ `code` &lt;script&gt;alert(1)&lt;/script&gt; <@U0REQUESTER> <#C0APPROVALS> "
        "<!date^1796025354^{date_short_pretty}|fallback> <https://example.com|a link> :white_check_mark:"
    )
    box = render(page, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])
    assert box.find_element(By.TAG_NAME, "b").text == "bold"
    assert box.find_element(By.TAG_NAME, "i").text == "it"
    assert box.find_element(By.TAG_NAME, "code").text == "code"
    assert box.find_elements(By.TAG_NAME, "script") == []
    assert "<script>alert(1)</script>" in box.text
    assert "@Riley Requester" in box.text and "#approvals" in box.text
    assert "fallback" not in box.text  # the date is formatted from its timestamp
    link = box.find_element(By.TAG_NAME, "a")
    assert (link.text, link.get_attribute("href"), link.get_attribute("rel")) == (
        "a link",
        "https://example.com/",
        "noopener noreferrer",
    )
    assert "✅" in box.text


def option(value: str) -> dict:
    return {"text": {"type": "plain_text", "text": value.title()}, "value": value}


def test_every_input_the_bot_uses_is_filled_and_read_back_as_slack_would_send_it(page):
    inputs = [
        ("reason", {"type": "plain_text_input", "action_id": "value", "multiline": True}),
        ("count", {"type": "number_input", "action_id": "value", "is_decimal_allowed": False}),
        ("size", {"type": "static_select", "action_id": "value", "options": [option("small"), option("large")]}),
        ("env", {"type": "radio_buttons", "action_id": "value", "options": [option("prod"), option("staging")]}),
        ("ack", {"type": "checkboxes", "action_id": "value", "options": [option("yes"), option("also")]}),
    ]
    blocks = [
        {"type": "input", "block_id": name, "label": {"type": "plain_text", "text": name}, "element": element}
        for name, element in inputs
    ]
    box = render(page, blocks, kind="view")
    reason = box.find_element(By.ID, "in-reason")
    assert reason.tag_name == "textarea"
    reason.send_keys("line one\nline two")
    box.find_element(By.ID, "in-count").send_keys("3")
    Select(box.find_element(By.ID, "in-size")).select_by_visible_text("Large")
    box.find_element(By.CSS_SELECTOR, '#in-env input[value="staging"]').click()
    box.find_element(By.CSS_SELECTOR, '#in-ack input[value="yes"]').click()
    values = page.execute_script(
        "return arguments[0].map(([id, el]) => readControl(el, document.getElementById('in-' + id)));",
        [[name, element] for name, element in inputs],
    )
    assert values == ["line one\nline two", "3", "large", "staging", ["yes"]]
