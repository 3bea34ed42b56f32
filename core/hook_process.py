"""Hook processes: where sync hooks run, so that their time limit can really stop them.

A sync hook (plain `def`) may block where no cancellation reaches (a socket read, time.sleep), and a
thread cannot be stopped, so `core.hooks.HookModule` runs it in a hook process that can be killed:
`HookProcesses.run` takes a worker, sends the call and reads the answer within the hook's limit. At
the limit the process gets SIGTERM (a hook's own handler may close connections), SIGKILL after
KILL_GRACE, and HookTimeout is raised only once the process has exited. A process that dies
without answering is a HookError ("the hook process exited with code N"); reading its answer is
bounded by the same limit, so it cannot hang the bot.

Hook processes are a small pool of warm workers per loaded file. Why a pool of our own: a fresh
interpreter per call costs ~60-100 ms; a fork of the bot would copy its threads' held locks and its
sockets; multiprocessing's forkserver is a process-wide singleton with a process-wide preload list,
and its Process.start() and Connection.recv() block, so every call would need a thread. So each
worker is a fresh interpreter (`python -I`, the bot's sys.path) started with subprocess.Popen that
imports the file once, then answers calls one at a time over its stdin/stdout, framed pickles read
with the event loop's add_reader (no thread per call); a hook's print() goes to stderr. Starting a
worker costs tens of milliseconds, once; a call on a warm one well under a millisecond. A call takes
an idle worker or starts one, so calls at once run side by side (up to 8 per file; one beyond that
waits, within its own limit); a finished worker is kept warm (up to 2), and a killed one is
replaced by the next call that needs a worker. Starting a worker counts against the call's limit,
so keep a hooks file's import-time work light. A worker runs exactly the source the bot loaded,
under the same module name, so instances of classes the file defines come back by pickle. Workers
die with the bot (PR_SET_PDEATHSIG on Linux, and a watchdog thread everywhere).

This is the bot's side (HookProcesses, _Worker, the async framing); the hook process's side, the
program each worker runs (`serve`, started by BOOTSTRAP), is `core.hook_worker`. It is apart from
`core.hooks` because a hook process needs none of HookModule, and HookModule needs only
`HookProcesses` and `rebuilt_exception` from here (and `Unsendable` from `core.hook_worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

from core.errors import HookError
from core.hook_loading import HookProcessException, HookTimeout, describe_exception, format_seconds
from core.hook_worker import BOOTSTRAP, MAX_FRAME
from core.secrets import SecretRegistry

KILL_GRACE = 0.1
"""Seconds a timed-out hook process gets between SIGTERM and SIGKILL."""

_REAP_LIMIT = 5.0  # how long to wait for a SIGKILLed process to be gone before reporting that it is not
_MAX_WORKERS = 8  # hook processes per hooks file at once; further calls wait (within their time limit)
_MAX_IDLE = 2  # warm hook processes kept per hooks file between calls


def rebuilt_exception(pickled: bytes | None, type_name: str, text: str) -> BaseException:
    """The hook's exception as raised in its process, or a HookProcessException with its type and text."""
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)
        except (Exception, SystemExit):  # e.g. a constructor needing keyword arguments pickle does not keep
            exc = None
        if isinstance(exc, BaseException):
            return exc
    return HookProcessException(type_name, text)


class _NoAnswer(Exception):
    """The hook process gave no usable answer: it died, or (with a reason) it misbehaved."""


class _Worker:
    """One hook process: it loaded the hooks file and answers one call at a time on stdin/stdout."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        if process.stdin is None or process.stdout is None:
            raise ValueError("a hook process needs pipes for stdin and stdout")
        self.process = process
        self.stdin, self.stdout = process.stdin, process.stdout
        self.busy = False  # a call is reading or writing our ends: only that call may close them
        # Non-blocking ends, driven by the event loop's add_reader/add_writer: no thread per call, and
        # nothing tied to a loop outlives the call (asyncio's process transports would be).
        os.set_blocking(self.stdin.fileno(), False)
        os.set_blocking(self.stdout.fileno(), False)

    @property
    def running(self) -> bool:
        """Whether the process has not exited (this also reaps it when it has)."""
        return self.process.poll() is None

    async def ask(self, payload: bytes) -> bytes:
        """Send one framed request and read the framed answer; _NoAnswer if the process is gone."""
        self.busy = True
        try:
            await _send_all(self.stdin.fileno(), len(payload).to_bytes(4, "big") + payload)
            stdout = self.stdout.fileno()
            size = int.from_bytes(await _receive_exactly(stdout, 4), "big")
            if size > MAX_FRAME:
                raise _NoAnswer(f"sent an answer of {size} bytes (at most {MAX_FRAME})")
            return await _receive_exactly(stdout, size)
        finally:
            self.busy = False

    def signal(self, signum: int) -> None:
        """Send `signum` unless the process is already gone (Popen checks, so a reused pid is safe)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def close_pipes(self) -> None:
        """Close our ends, unless a call is using them (it sees EOF once the process is gone)."""
        if self.busy:
            return  # closing an fd the loop is watching would leave that call waiting for its limit
        for pipe in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                pipe.close()


async def _receive_exactly(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        try:
            chunk = os.read(fd, size - len(data))
        except BlockingIOError:
            await _ready(fd, writing=False)
            continue
        except OSError as exc:
            raise _NoAnswer() from exc
        if not chunk:
            raise _NoAnswer()
        data += chunk
    return bytes(data)


async def _send_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(fd, writing=True)
        except OSError as exc:  # BrokenPipeError: the process is gone
            raise _NoAnswer() from exc


async def _ready(fd: int, *, writing: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    add, remove = (loop.add_writer, loop.remove_writer) if writing else (loop.add_reader, loop.remove_reader)
    add(fd, wake)
    try:
        await ready
    finally:
        remove(fd)


async def _exit_code(process: subprocess.Popen[bytes], within: float) -> int | None:
    """Wait (polling, the loop stays free) until the process has exited and is reaped; None if it has not."""
    loop = asyncio.get_running_loop()
    give_up, pause = loop.time() + within, 0.001
    while (code := process.poll()) is None:
        if loop.time() >= give_up:
            return None
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
    return code


class HookProcesses:
    """The warm hook processes of one hooks file: take one per call, kill it if the call fails."""

    def __init__(self, path: str, module_name: str, source: bytes | None, secrets: SecretRegistry) -> None:
        self.path = path
        self.secrets = secrets
        self.module_name = module_name
        self._source = source
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._retiring: set[asyncio.Task[int | None]] = set()
        self._slots = asyncio.Semaphore(_MAX_WORKERS)
        self._closed = False

    def pids(self) -> frozenset[int]:
        """Pids of the processes that have not exited."""
        return frozenset(worker.process.pid for worker in self._workers if worker.running)

    async def run(self, name: str, request: bytes, limit: float) -> bytes:
        """One call in a hook process within `limit` seconds: the answer frame, or HookError.

        On any failure (the limit, a dead process, a cancelled caller) the process is killed and
        reaped before the error is raised, so a failed call cannot take effect later.
        """
        self._bind_to_running_loop()
        deadline = asyncio.timeout(limit)
        worker: _Worker | None = None
        try:
            async with deadline:
                async with self._slots:  # waiting for a free slot counts against the limit too
                    worker = await self._take()
                    frame = await worker.ask(request)
                    self._put_back(worker)
                    worker = None
        except BaseException as exc:
            code = await self._stop(worker) if worker is not None else None
            if isinstance(exc, TimeoutError) and deadline.expired():
                unkillable = (
                    ""
                    if worker is None or code is not None
                    else (f"; its process {worker.process.pid} did not exit after SIGKILL")
                )
                raise HookTimeout(self.path, name, f"timed out after {format_seconds(limit)}{unkillable}") from None
            if isinstance(exc, _NoAnswer):
                raise HookError(self.path, name, self._why_no_answer(exc, code)) from None
            if isinstance(exc, Exception):  # e.g. fork failed (EAGAIN, EMFILE): still one HookError
                raise HookError(
                    self.path,
                    name,
                    self.secrets.scrub(f"the hook process could not run it ({describe_exception(exc)})"),
                ) from exc
            raise  # cancelled by the caller
        return frame

    def _why_no_answer(self, exc: _NoAnswer, code: int | None) -> str:
        if exc.args:
            return f"the hook process {exc.args[0]}"
        if self._closed:
            return "the hook process was stopped: the hooks file was closed (the bot is stopping)"
        return f"the hook process {_ended(code)}"

    async def aclose(self) -> None:
        """Stop every process (a call in flight gets HookError) and wait until they are gone."""
        self._closed = True
        if self._loop is not None and self._loop is not _running_loop():
            self.kill_now()  # the retiring tasks belong to another (finished) loop
            return
        self._idle.clear()
        await asyncio.gather(
            *(self._stop(worker) for worker in list(self._workers)), *self._retiring, return_exceptions=True
        )

    def kill_now(self) -> None:
        """SIGKILL and reap every process at once (the last resort: a finalizer, another loop)."""
        for worker in list(self._workers):
            worker.signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                worker.process.wait(timeout=1)
            worker.close_pipes()
        self._workers.clear()
        self._idle.clear()

    def _bind_to_running_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a semaphore belongs to one loop; the processes do not
            self._slots = asyncio.Semaphore(_MAX_WORKERS)
            self._retiring = set()
            self._loop = loop

    async def _take(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()  # the most recently used: its caches are the warmest
            if worker.running:
                return worker
            await self._stop(worker)
        return await self._start()

    def _put_back(self, worker: _Worker) -> None:
        if not self._closed and len(self._idle) < _MAX_IDLE:
            self._idle.append(worker)
            return
        task = asyncio.get_running_loop().create_task(self._stop(worker))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _start(self) -> _Worker:
        source = self._source if self._source is not None else Path(self.path).read_bytes()
        paths = [entry for entry in sys.path if isinstance(entry, str)]
        process = subprocess.Popen(
            # -I: no PYTHON* variables, no user site and no script directory; the bot's sys.path is
            # handed over instead, so the file imports exactly what it imports in the bot.
            [sys.executable, "-I", "-c", BOOTSTRAP, json.dumps(paths), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        worker = _Worker(process)
        self._workers.add(worker)
        try:
            # The source the bot loaded, not the file as it is now: a worker runs what was checked.
            load = pickle.dumps((self.path, self.module_name, source), protocol=pickle.HIGHEST_PROTOCOL)
            answer = pickle.loads(await worker.ask(load))
        except _NoAnswer as exc:
            code = await self._stop(worker)
            if exc.args:
                raise
            raise _NoAnswer(f"{_ended(code)} before it was ready (its output is on the bot's stderr)") from None
        except BaseException:
            await self._stop(worker)
            raise
        if answer[0] != "ready":
            await self._stop(worker)
            raise _NoAnswer(f"could not load the hooks file: {self.secrets.scrub(answer[1])}")
        return worker

    async def _stop(self, worker: _Worker) -> int | None:
        """End a process (EOF and SIGTERM, SIGKILL after KILL_GRACE); its exit code, None if it will not go."""
        self._workers.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        try:
            if worker.running:
                worker.close_pipes()  # EOF: an idle process would exit on its own
                worker.signal(signal.SIGTERM)
                await _exit_code(worker.process, KILL_GRACE)
        finally:
            worker.signal(signal.SIGKILL)  # even if this coroutine is cancelled during the grace
            worker.close_pipes()
        return await _exit_code(worker.process, _REAP_LIMIT)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _ended(code: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
