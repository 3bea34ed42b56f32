"""`python bot.py sandbox …` as a real subprocess: started, read until its one line with the URL, stopped.

with SandboxProcess(["--port", "0"]) as box:
    box.url          # http://127.0.0.1:PORT
"""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.botprocess import clean_env

REPO = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"^jitbot sandbox: open (http://127\.0\.0\.1:\d+) ")
START_TIMEOUT = 60.0


class SandboxProcess:
    """One `bot.py sandbox` process; `lines` is what it printed before its URL."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = env or clean_env()
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.lines: list[str] = []

    def start(self) -> SandboxProcess:
        """Start it and wait for the URL line; AssertionError with its output if it exits or stalls."""
        self.process = subprocess.Popen(
            [sys.executable, "bot.py", "sandbox", *self.args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            match = URL_LINE.match(line)
            if match:
                self.url = match.group(1)
                return self
        self.stop()
        raise AssertionError(f"bot.py sandbox printed no URL: {self.lines}; stderr: {self.stderr()}")

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C would; the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def stderr(self) -> str:
        """What it wrote to stderr (once stopped)."""
        if self.process is None or self.process.stderr is None or self.process.poll() is None:
            return ""
        return self.process.stderr.read()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sandbox(args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `bot.py sandbox` expecting it to exit by itself (bad input)."""
    return subprocess.run(
        [sys.executable, "bot.py", "sandbox", *args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def port_of(url: str) -> int:
    """The port of http://127.0.0.1:PORT."""
    return int(url.rsplit(":", 1)[1])
