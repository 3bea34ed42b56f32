"""`bot.py sandbox` and `make run` as a person starts them: one line with the URL, clear one-line refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request

from tests.e2e.botprocess import clean_env
from tests.sandbox.process import REPO, SandboxProcess, run_sandbox


def test_the_sandbox_prints_one_line_with_the_url_and_the_page_and_bot_are_up():
    with SandboxProcess(["--port", "0"]) as box:
        assert box.lines == [
            f"jitbot sandbox: open {box.url} (a local Slack and the real bot, no workspace needed; Ctrl-C stops it)"
        ]
        with urllib.request.urlopen(box.url, timeout=10) as page:
            assert "jitbot sandbox" in page.read().decode()
        with urllib.request.urlopen(f"{box.url}/api/state", timeout=10) as answer:
            state = json.load(answer)
        assert state["ready"] is True
        assert [c["id"] for c in state["channels"]] == ["C0APPROVALS"]
        assert [p["role"] for p in state["people"]] == ["requester", "approver", "outsider"]
    assert box.process.returncode == 0


def test_a_port_in_use_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_sandbox(["--port", str(port)])
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"jitbot: port {port} on 127.0.0.1 is in use: stop what uses it, or pick another with --port."
    ]
    assert result.stdout == ""


def test_a_flows_file_with_errors_gets_validates_report_and_nothing_starts(tmp_path):
    bad = tmp_path / "flows.yaml"
    bad.write_text("flows:\n  - name: Bad Name\n    label: x\n")
    result = run_sandbox(["--config", str(bad), "--port", "0"])
    validate = subprocess.run(
        [".venv/bin/python", "bot.py", "validate", "--config", str(bad)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 == validate.returncode
    assert result.stderr == validate.stderr
    assert f"{bad}:2" in result.stderr and result.stdout == ""


def test_make_run_without_slack_tokens_says_so_and_starts_the_sandbox():
    env = clean_env(SANDBOX_ARGS="--port 0")
    process = subprocess.Popen(
        ["make", "-s", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # make and the sandbox it runs stop together
    )
    try:
        first = process.stdout.readline()
        second = process.stdout.readline()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    assert first.startswith("SLACK_BOT_TOKEN is not set: starting the sandbox")
    assert second.startswith("jitbot sandbox: open http://127.0.0.1:")


def test_bot_py_run_without_tokens_still_refuses():
    result = subprocess.run(
        [".venv/bin/python", "bot.py", "run"], cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "SLACK_BOT_TOKEN and SLACK_APP_TOKEN are not set" in result.stderr


def test_a_flows_file_that_ships_audit_events_out_is_refused_in_one_line(tmp_path):
    shipped = (REPO / "config" / "flows.yaml").read_text()
    config = tmp_path / "flows.yaml"
    config.write_text(
        shipped + "\naudit:\n  destinations:\n    - {type: http, url: 'https://siem.example.com/in', secret: s3cr3t}\n"
    )
    result = run_sandbox(["--config", str(config), "--port", "0"])
    assert result.returncode == 1, result
    (line,) = result.stderr.splitlines()
    assert "http:https://siem.example.com/in" in line and "sends nothing out" in line and "s3cr3t" not in line
    assert result.stdout == ""
