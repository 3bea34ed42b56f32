"""The hook process's side of `core.hook_process`: the program a sync hook runs in.

A hook process is a fresh `python -I` interpreter started by `core.hook_process.HookProcesses` with
`BOOTSTRAP`: `serve` takes the hooks file's source the bot sends first, runs it under the bot's
module name, then answers calls one at a time over its stdin/stdout (4-byte big-endian length, then
a pickle) until EOF, sending back each hook's result and recorded decision, or its failure. It
sends `Unsendable` for a result pickle cannot carry, never more than `MAX_FRAME` bytes at once, and
dies with the bot. It is apart from the bot's side (the pool, the killing, the async framing)
because it runs in another process and needs none of it: a worker imports only this module and
what a hook's call needs, and the bot side imports from here only the few names both ends share.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import os
import pickle
import signal
import sys
import threading
import time
import types
from dataclasses import dataclass
from typing import Any

from core.hook_events import HookEvent
from core.hook_loading import HookLoadError, describe_exception, execute_source, line_in_file
from core.hook_results import RESULT_RULES, ignored_result
from core.secrets import SecretRegistry

MAX_FRAME = 4 * 1024 * 1024  # bytes in one answer from a hook process; more is a broken process


@dataclass(frozen=True)
class Unsendable:
    """What a hook process sends instead of a result that pickle cannot carry."""

    type_name: str

    def __str__(self) -> str:
        return f"{self.type_name} (which cannot be sent back from the hook process)"


BOOTSTRAP = (
    f"import json, sys; sys.path[:] = json.loads(sys.argv[1]); from {__name__} import serve; serve(int(sys.argv[2]))"
)
"""The program a hook process runs (`python -I -c BOOTSTRAP <the bot's sys.path as JSON> <the bot's pid>`)."""


def serve(parent_pid: int) -> None:
    """The main of a hook process: load the hooks file the bot sends, then answer calls until EOF."""
    requests, answers = os.dup(0), os.dup(1)
    # The protocol owns the original stdin/stdout: a hook's print() goes to stderr, input() sees EOF.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    if isinstance(sys.stdout, io.TextIOWrapper):  # always, in a fresh interpreter (it is typed TextIO)
        sys.stdout.reconfigure(line_buffering=True)  # it started on a pipe, so it would hold lines back
    # Ctrl-C reaches the whole process group; the bot decides when its hook processes stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    loaded = _read_frame(requests)
    if loaded is None:
        return
    path, module_name, source = pickle.loads(loaded)
    try:
        # The hook process knows no secret: the bot scrubs the failure text it sends back.
        module = execute_source(source, path, module_name, SecretRegistry())
    except HookLoadError as exc:
        _write_frame(answers, pickle.dumps(("failed", str(exc))))
        return
    _write_frame(answers, pickle.dumps(("ready",)))
    while (frame := _read_frame(requests)) is not None:
        name, snapshot = pickle.loads(frame)
        _write_frame(answers, _answer(module, path, name, snapshot))


def _answer(module: types.ModuleType, path: str, name: str, snapshot: dict[str, Any]) -> bytes:
    """Run one hook call here and pickle what the bot needs: result and decision, or the failure."""
    try:
        evt = HookEvent.from_snapshot(snapshot)
        result = getattr(module, name)(evt)
        if inspect.iscoroutine(result):  # a plain def that hands back a coroutine (not a generator)
            result = asyncio.run(result)
        if RESULT_RULES.get(name, ("", None))[1] is ignored_result:
            result = None  # the bot ignores it, so it need not survive pickling
        decision = evt.decision
    except BaseException as exc:  # SystemExit too: a hook must not end its process without a word
        return _failure_answer(exc, path)
    try:
        answer = pickle.dumps(("ok", result, decision), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        answer = b""
    if not answer or len(answer) > MAX_FRAME:
        answer = pickle.dumps(("ok", Unsendable(type(result).__name__), decision), protocol=pickle.HIGHEST_PROTOCOL)
    return answer


def _failure_answer(exc: BaseException, path: str) -> bytes:
    try:
        pickled: bytes | None = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pickled = None
    if pickled is not None and len(pickled) > MAX_FRAME // 4:
        pickled = None  # the text and line below say what matters
    text = describe_exception(exc)[: MAX_FRAME // 4]
    return pickle.dumps(
        ("error", text, line_in_file(exc, path), type(exc).__name__, pickled), protocol=pickle.HIGHEST_PROTOCOL
    )


def _die_with_parent(parent_pid: int) -> None:
    """Make this process end when the bot does, even while a hook blocks it."""
    if sys.platform.startswith("linux"):
        # The kernel SIGKILLs us when the thread that started us ends: the event loop's thread, which
        # in the bot is its main thread. Were it another thread, calls would fail, never leak.
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the bot died before prctl took effect
        os._exit(1)

    def watch() -> None:  # where prctl is missing; it runs whenever a hook lets go of the GIL
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="jitbot-hook-watchdog", daemon=True).start()


def _read_frame(fd: int) -> bytes | None:
    header = _read_exactly(fd, 4)
    return None if header is None else _read_exactly(fd, int.from_bytes(header, "big"))


def _read_exactly(fd: int, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(len(payload).to_bytes(4, "big") + payload)
    while view:
        view = view[os.write(fd, view) :]
