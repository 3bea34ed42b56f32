"""Policy hooks: load a flow's hooks file, lint it, and call its functions safely.

    issues = check_hooks(path)                   # at validate time: no code runs (ast only)
    hooks = load_hooks(path, timeout=5)          # at start: imports the file, HookLoadError if it cannot
    if hooks.has("on_request"):
        decision = await hooks.call("on_request", evt)   # Approve | Deny | None, or HookError
    await hooks.aclose()                         # at stop: ends the file's hook processes (idempotent)

Every failure of a hook (an exception, a time-out, a return value it may not give) becomes one
`core.errors.HookError` naming the file and the hook, so the engine has a single thing to catch and
alert on; a failed hook never grants. This module must not import slack_bolt or handlers.

A hook's time limit really stops it: once HookTimeout is raised, nothing of that call can still
take effect. That matters most for `type: custom`, where a timed-out `grant` is cleaned up with
`revoke`; a grant that carried on afterwards would hand out access nothing ever revokes.

- Async hooks (`async def`) run in the bot's event loop, so they can use `evt.integrations` (async
  clients bound to that loop); at the limit `asyncio.timeout` cancels them.
- Sync hooks (plain `def`) may block where no cancellation reaches (a socket read, time.sleep), and
  a thread cannot be stopped, so they run in a hook process that can be killed. At the limit the
  process gets SIGTERM (a hook's own handler may close connections), SIGKILL after KILL_GRACE, and
  HookTimeout is raised only once the process has exited. A process that dies without answering is
  a HookError ("the hook process exited with code N"); reading its answer is bounded by the same
  limit, so it cannot hang the bot.

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
die with the bot (PR_SET_PDEATHSIG on Linux, and a watchdog thread everywhere); call `aclose()` at
stop, and a HookModule garbage-collected unclosed kills its workers as a last resort.

What a sync hook gets and gives: a read-only copy of `evt` rebuilt from `evt.snapshot()`, whose
`evt.integrations` refuses to be used (make the hook `async def` for that); decisions it records
with evt.approve/deny/ignore, its return value and its exception (type, text and line in the file)
come back, and the checks, the scrubbing of secrets and the HookError text are the same for both
kinds. Module-level state in a hooks file lives per process: the file's top level runs in the bot
at load and again in every worker; a sync hook's globals persist between calls served by the same
worker and start over in a replaced one; async hooks see the bot's own copy of the module, which
sync hooks never touch. Use module state for caches, never for correctness.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import difflib
import inspect
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from core.errors import HookError, JitError
from core.hook_events import INTEGRATIONS_NEED_ASYNC, Approve, Deny, HookEvent, Ignore
from core.secrets import SecretRegistry

KNOWN_HOOKS = frozenset(
    {
        "on_request",
        "get_approvers",
        "get_approval_channel",
        "on_approve",
        "on_deny",
        "after_grant",
        "after_revoke",
        "grant",
        "revoke",
    }
)
"""Every function name jitbot calls in a hooks file (grant/revoke only for `type: custom`)."""

DEFAULT_HOOK_TIMEOUT = 5.0
"""Seconds a hook may run when the flow sets no other limit."""

KILL_GRACE = 0.1
"""Seconds a timed-out hook process gets between SIGTERM and SIGKILL."""

_REAP_LIMIT = 5.0  # how long to wait for a SIGKILLed process to be gone before reporting that it is not
_MAX_WORKERS = 8  # hook processes per hooks file at once; further calls wait (within their time limit)
_MAX_IDLE = 2  # warm hook processes kept per hooks file between calls
_MAX_FRAME = 4 * 1024 * 1024  # bytes in one answer from a hook process; more is a broken process

# Names that read like an attempted hook even when difflib finds nothing close (on_submit, after_x).
_HOOKISH = re.compile(r"^(on|after|before)_")


class HookLoadError(HookError):
    """A hooks file could not be loaded: missing, a syntax error, or an exception at import time."""

    def __init__(self, path: str, message: str, *, line: int | None = None) -> None:
        self.path, self.hook, self.line = path, "", line
        where = f"{path}:{line}" if line else path
        JitError.__init__(self, f"{where}: {message}")


class HookTimeout(HookError):
    """A hook did not finish within its time limit."""


class HookResultError(HookError):
    """A hook returned a value it may not return (a bug in the hook: retrying will not help)."""


class HookProcessException(Exception):
    """Stands in for an exception from a hook process that cannot be rebuilt in the bot."""

    def __init__(self, type_name: str, text: str) -> None:
        super().__init__(text)
        self.type_name = type_name


class HookIssue(NamedTuple):
    """One problem `check_hooks` found: the 1-based line (None for the whole file) and what is wrong."""

    line: int | None
    message: str


# ── linting without executing ────────────────────────────────────────────────────────────────────


def check_hooks(
    path: str | Path, *, allowed: Iterable[str] = KNOWN_HOOKS, required: Iterable[str] = ()
) -> list[HookIssue]:
    """Lint a hooks file with `ast`: syntax errors, misspelt hook names, wrong arity, missing required hooks."""
    path = Path(path)
    try:
        source = path.read_bytes()
    except OSError as exc:
        return [HookIssue(None, f"cannot read hooks file: {exc.strerror or exc}")]
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        return [HookIssue(exc.lineno, f"syntax error: {exc.msg}")]

    allowed = frozenset(allowed)
    issues: list[HookIssue] = []
    first_seen: dict[str, int] = {}
    bound: set[str] = set()
    star_import = False
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            star_import |= any(alias.name == "*" for alias in node.names)
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound.update(t.id for t in targets if isinstance(t, ast.Name))
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        name = node.name
        bound.add(name)
        if name in allowed:
            if name in first_seen:
                issues.append(
                    HookIssue(
                        node.lineno, f"{name} is defined again (first on line {first_seen[name]}); the last one wins"
                    )
                )
            first_seen.setdefault(name, node.lineno)
            if not _takes_one_argument(node.args):
                issues.append(
                    HookIssue(
                        node.lineno,
                        f"{name} must take exactly one argument (evt), it takes {_describe_args(node.args)}",
                    )
                )
            elif isinstance(node, ast.FunctionDef):
                line = _integrations_use(node)
                if line is not None:
                    issues.append(
                        HookIssue(
                            line,
                            f"{name} is a plain def, so it runs in a hook process, where evt.{INTEGRATIONS_NEED_ASYNC}",
                        )
                    )
        elif not name.startswith("_"):
            issue = _misspelling(name, allowed)
            if issue:
                issues.append(HookIssue(node.lineno, issue))
    if not star_import:
        for name in required:
            if name not in bound:
                issues.append(HookIssue(None, f"{name}(evt) is required here but not defined"))
    return sorted(issues, key=lambda issue: (issue.line or 0, issue.message))


def _takes_one_argument(args: ast.arguments) -> bool:
    positional = [*args.posonlyargs, *args.args]
    required_positional = len(positional) - len(args.defaults)
    required_keyword = sum(1 for default in args.kw_defaults if default is None)
    can_take_one = len(positional) >= 1 or args.vararg is not None
    return can_take_one and required_positional <= 1 and required_keyword == 0


def _integrations_use(function: ast.FunctionDef) -> int | None:
    """The first line where a sync hook reads `<evt>.integrations` (it cannot work there), else None."""
    positional = [*function.args.posonlyargs, *function.args.args]
    if not positional:
        return None
    evt = positional[0].arg
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "integrations"
            and isinstance(node.value, ast.Name)
            and node.value.id == evt
        ):
            return node.lineno
    return None


def _describe_args(args: ast.arguments) -> str:
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    return f"({', '.join(names)})" if names else "no arguments"


def _misspelling(name: str, allowed: frozenset[str]) -> str | None:
    lowered = name.lower()
    if lowered in allowed:
        return f"{name} is not a hook (names are case-sensitive): did you mean {lowered}?"
    close = difflib.get_close_matches(lowered, sorted(allowed), n=1, cutoff=0.8)
    if close:
        return f"{name} is not a hook jitbot calls: did you mean {close[0]}?"
    if _HOOKISH.match(lowered):
        return f"{name} looks like a hook but jitbot never calls it (hooks: {', '.join(sorted(allowed))})"
    return None


# ── loading ───────────────────────────────────────────────────────────────────────────────────────


def load_hooks(
    path: str | Path, *, timeout: float = DEFAULT_HOOK_TIMEOUT, secrets: SecretRegistry | None = None
) -> HookModule:
    """Import a hooks file by path under a private module name; HookLoadError if it cannot be loaded.

    Error text (here and from every call) is scrubbed of the values in `secrets`, the runtime's registry.
    """
    secrets = SecretRegistry() if secrets is None else secrets
    path = Path(path).resolve()
    shown = str(path)
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise HookLoadError(shown, f"cannot read hooks file: {exc.strerror or exc}") from None
    # A unique, unguessable-by-users name: two flows may load the same file, and a hooks file called
    # json.py must never shadow the real json module.
    slug = re.sub(r"\W", "_", path.stem)
    module = _execute(source, shown, f"_jitbot_hooks_{slug}_{uuid.uuid4().hex[:12]}", secrets)
    return HookModule(shown, module, default_timeout=timeout, source=source, secrets=secrets)


def _execute(source: bytes, shown: str, module_name: str, secrets: SecretRegistry) -> types.ModuleType:
    """Compile and run a hooks file as module `module_name`; HookLoadError if it cannot."""
    try:
        code = compile(source, shown, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise HookLoadError(shown, f"syntax error: {exc.msg}", line=exc.lineno) from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise HookLoadError(shown, f"cannot compile: {exc}") from None
    module = types.ModuleType(module_name, f"jitbot hooks from {shown}")
    module.__file__ = shown
    # It sits in sys.modules while it lives, because dataclasses, pickle and typing look a class's
    # module up there (pickle is how a hook process sends back instances of the file's classes).
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if not isinstance(exc, (Exception, SystemExit)):
            raise
        line = _line_in_file(exc, shown)
        message = secrets.scrub(f"{type(exc).__name__} at import time: {exc}".rstrip(": "))
        raise HookLoadError(shown, message, line=line) from exc
    return module


def _line_in_file(exc: BaseException, filename: str) -> int | None:
    """The line of the deepest traceback frame that is inside `filename`."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == filename]
    return lines[-1] if lines else None


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _describe(exc: BaseException) -> str:
    """`Type: text`, or just `Type` when the exception has no text."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the failure it describes
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ── calling ───────────────────────────────────────────────────────────────────────────────────────


class HookModule:
    """A loaded hooks file: `has(name)` and `await call(name, evt)` with a time limit and checked results."""

    def __init__(
        self,
        path: str,
        module: types.ModuleType,
        *,
        default_timeout: float = DEFAULT_HOOK_TIMEOUT,
        source: bytes | None = None,
        secrets: SecretRegistry | None = None,
    ) -> None:
        self.path = path
        self.secrets = SecretRegistry() if secrets is None else secrets
        self.module = module
        self.default_timeout = default_timeout
        self._closed = False
        self._processes = _HookProcesses(path, module.__name__, source, self.secrets)
        # The last resort for a module nobody closed: kill its workers when it is collected (or at exit).
        self._finalizer = weakref.finalize(self, self._processes.kill_now)

    def __repr__(self) -> str:
        return f"HookModule({self.path!r})"

    def has(self, name: str) -> bool:
        """Whether the file defines a callable with this name."""
        return callable(getattr(self.module, name, None))

    @property
    def defined_hooks(self) -> frozenset[str]:
        """The known hooks this file defines."""
        return frozenset(name for name in KNOWN_HOOKS if self.has(name))

    def missing(self, names: Iterable[str]) -> list[str]:
        """Which of `names` the file does not define (e.g. grant/revoke for a custom strategy)."""
        return [name for name in names if not self.has(name)]

    @property
    def process_ids(self) -> frozenset[int]:
        """The pids of this file's live hook processes (for diagnostics)."""
        return self._processes.pids()

    async def aclose(self) -> None:
        """Stop every hook process of this file; later calls fail with HookError. Idempotent."""
        self._closed = True
        await self._processes.aclose()

    async def call(self, name: str, evt: HookEvent, *, timeout: float | None = None) -> Any:
        """Run hook `name` with `evt` under a time limit; return its checked result or raise HookError.

        Results per hook: on_request -> Approve | Deny | None; on_approve/on_deny -> Ignore | None;
        get_approvers -> list[str] | None (None keeps the flow's approvers); get_approval_channel ->
        str | None; grant -> dict[str, str]; after_grant/after_revoke/revoke -> None (ignored).
        For decisions, a returned value wins over one recorded with evt.approve/deny/ignore.
        Async hooks run in the event loop; sync hooks in a hook process killed at the limit.
        """
        function = getattr(self.module, name, None)
        if not callable(function):
            raise HookError(self.path, name, "is not defined in this file")
        if self._closed:
            raise HookError(self.path, name, "not run: the hooks file was closed (the bot is stopping)")
        limit = self.default_timeout if timeout is None else timeout
        if isinstance(evt, HookEvent):
            evt.clear_decision()
        if asyncio.iscoroutinefunction(function):
            result = await self._call_here(name, function, evt, limit)
            recorded = evt.decision if isinstance(evt, HookEvent) else None
        else:
            result, recorded = await self._call_in_process(name, evt, limit)
            if recorded is not None:
                evt._record(recorded)  # as if the hook had recorded it here
        return self._checked(name, result, recorded)

    async def _call_here(self, name: str, function: Callable[[Any], Any], evt: Any, limit: float) -> Any:
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await function(evt)
        except TimeoutError as exc:
            if deadline.expired():
                raise HookTimeout(self.path, name, f"timed out after {_seconds(limit)}") from None
            raise self._failure(name, exc) from exc  # the hook's own TimeoutError, not our limit
        except (Exception, SystemExit) as exc:
            raise self._failure(name, exc) from exc

    async def _call_in_process(self, name: str, evt: Any, limit: float) -> tuple[Any, Any]:
        if not isinstance(evt, HookEvent):
            raise HookError(
                self.path, name, f"a sync hook needs a HookEvent to send to its process, not {type(evt).__name__}"
            )
        try:
            request = pickle.dumps((name, evt.snapshot()), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise HookError(
                self.path, name, self.secrets.scrub(f"the event cannot be sent to the hook process ({_describe(exc)})")
            ) from exc
        frame = await self._processes.run(name, request, limit)
        try:
            answer = pickle.loads(frame)
        except Exception as exc:
            raise HookError(
                self.path, name, self.secrets.scrub(f"its answer could not be read in the bot ({_describe(exc)})")
            ) from exc
        if answer[0] == "ok":
            return answer[1], answer[2]
        _, text, line, type_name, pickled = answer
        raise self._error(name, text, line) from _rebuilt_exception(pickled, type_name, text)

    def _failure(self, name: str, exc: BaseException) -> HookError:
        return self._error(name, _describe(exc), _line_in_file(exc, self.path))

    def _error(self, name: str, text: str, line: int | None) -> HookError:
        where = f" (at {Path(self.path).name}:{line})" if line else ""
        error = HookError(self.path, name, self.secrets.scrub(text) + where)
        error.line = line
        return error

    def _checked(self, name: str, result: Any, recorded: Any) -> Any:
        rule = _RESULT_RULES.get(name)
        if rule is None:
            if isinstance(result, _Unsendable):  # an extra hook name: anything goes, if it can be sent
                raise HookResultError(self.path, name, f"must return something the bot can receive, not {result}")
            return result  # an extra hook name the caller allowed: no contract to enforce
        expectation, check = rule
        try:
            return check(result, recorded)
        except _BadResult as bad:
            got = bad.value
            if isinstance(got, _Unsendable):
                shown = str(got)
            else:
                shown = type(got).__name__ if not isinstance(got, (str, int, float, bool, type(None))) else repr(got)
            raise HookResultError(self.path, name, f"must return {expectation}, not {shown[:80]}") from None


class _BadResult(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass(frozen=True)
class _Unsendable:
    """What a hook process sends instead of a result that pickle cannot carry."""

    type_name: str

    def __str__(self) -> str:
        return f"{self.type_name} (which cannot be sent back from the hook process)"


def _rebuilt_exception(pickled: bytes | None, type_name: str, text: str) -> BaseException:
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
            if size > _MAX_FRAME:
                raise _NoAnswer(f"sent an answer of {size} bytes (at most {_MAX_FRAME})")
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


class _HookProcesses:
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
                raise HookTimeout(self.path, name, f"timed out after {_seconds(limit)}{unkillable}") from None
            if isinstance(exc, _NoAnswer):
                raise HookError(self.path, name, self._why_no_answer(exc, code)) from None
            if isinstance(exc, Exception):  # e.g. fork failed (EAGAIN, EMFILE): still one HookError
                raise HookError(
                    self.path, name, self.secrets.scrub(f"the hook process could not run it ({_describe(exc)})")
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
            [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(paths), str(os.getpid())],
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


# ── inside a hook process ────────────────────────────────────────────────────────────────────────

_BOOTSTRAP = (
    f"import json, sys; sys.path[:] = json.loads(sys.argv[1]); from {__name__} import _serve; _serve(int(sys.argv[2]))"
)


def _serve(parent_pid: int) -> None:
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
        module = _execute(source, path, module_name, SecretRegistry())
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
        if _RESULT_RULES.get(name, ("", None))[1] is _ignored:
            result = None  # the bot ignores it, so it need not survive pickling
        decision = evt.decision
    except BaseException as exc:  # SystemExit too: a hook must not end its process without a word
        return _failure_answer(exc, path)
    try:
        answer = pickle.dumps(("ok", result, decision), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        answer = b""
    if not answer or len(answer) > _MAX_FRAME:
        answer = pickle.dumps(("ok", _Unsendable(type(result).__name__), decision), protocol=pickle.HIGHEST_PROTOCOL)
    return answer


def _failure_answer(exc: BaseException, path: str) -> bytes:
    try:
        pickled: bytes | None = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pickled = None
    if pickled is not None and len(pickled) > _MAX_FRAME // 4:
        pickled = None  # the text and line below say what matters
    text = _describe(exc)[: _MAX_FRAME // 4]
    return pickle.dumps(
        ("error", text, _line_in_file(exc, path), type(exc).__name__, pickled), protocol=pickle.HIGHEST_PROTOCOL
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


def _decision(*kinds: type) -> Callable[[Any, Any], Any]:
    def check(result: Any, recorded: Any) -> Any:
        chosen = result if result is not None else recorded
        if chosen is None or isinstance(chosen, kinds):
            return chosen
        raise _BadResult(chosen)

    return check


def _approvers(result: Any, recorded: Any) -> list[str] | None:
    if result is None:
        return None
    if isinstance(result, (list, tuple, set, frozenset)) and result and all(isinstance(u, str) and u for u in result):
        return list(dict.fromkeys(result))  # de-duplicated, order kept
    raise _BadResult(result)


def _channel(result: Any, recorded: Any) -> str | None:
    if result is None or (isinstance(result, str) and result.strip()):
        return result.strip() if result else None
    raise _BadResult(result)


def _grant_state(result: Any, recorded: Any) -> dict[str, str]:
    if result is None:
        return {}
    if isinstance(result, dict) and all(isinstance(key, str) for key in result):
        return {key: "" if value is None else str(value) for key, value in result.items()}
    raise _BadResult(result)


def _ignored(result: Any, recorded: Any) -> None:
    return None


_RESULT_RULES: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "on_request": ("evt.approve(...), evt.deny(...) or None", _decision(Approve, Deny)),
    "on_approve": ("evt.ignore(...) or None", _decision(Ignore)),
    "on_deny": ("evt.ignore(...) or None", _decision(Ignore)),
    "get_approvers": ("a non-empty list of Slack user IDs (str) or None", _approvers),
    "get_approval_channel": ("a channel ID (str) or None", _channel),
    "grant": ("a dict of str keys (stored as the grant's state) or None", _grant_state),
    "revoke": ("anything (ignored)", _ignored),
    "after_grant": ("anything (ignored)", _ignored),
    "after_revoke": ("anything (ignored)", _ignored),
}
