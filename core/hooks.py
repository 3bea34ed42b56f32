"""Policy hooks (SPEC §6): load a flow's hooks file, lint it, and call its functions safely.

    issues = check_hooks(path)                   # at validate time: no code runs (ast only)
    hooks = load_hooks(path, timeout=5)          # at start: imports the file, HookLoadError if it cannot
    if hooks.has("on_request"):
        decision = await hooks.call("on_request", evt)   # Approve | Deny | None, or HookError

Every failure of a hook (an exception, a time-out, a return value it may not give) becomes one
`core.errors.HookError` naming the file and the hook, so the engine has a single thing to catch and
alert on; a failed hook never grants. Sync hooks run on their own daemon thread, so a hook that
blocks on I/O cannot freeze the event loop. This module must not import slack_bolt or handlers.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import difflib
import itertools
import re
import sys
import threading
import traceback
import types
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from core.errors import HookError, JitError
from core.hook_events import Approve, Deny, HookEvent, Ignore
from core.secrets import scrub

KNOWN_HOOKS = frozenset({
    "on_request", "get_approvers", "get_approval_channel", "on_approve", "on_deny",
    "after_grant", "after_revoke", "grant", "revoke",
})
"""Every function name jitbot calls in a hooks file (grant/revoke only for `type: custom`)."""

DEFAULT_HOOK_TIMEOUT = 5.0
"""Seconds a hook may run when the flow sets no other limit."""

# Names that read like an attempted hook even when difflib finds nothing close (on_submit, after_x).
_HOOKISH = re.compile(r"^(on|after|before)_")
_module_counter = itertools.count(1)


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
                issues.append(HookIssue(node.lineno, f"{name} is defined again (first on line {first_seen[name]}); the last one wins"))
            first_seen.setdefault(name, node.lineno)
            if not _takes_one_argument(node.args):
                issues.append(HookIssue(node.lineno, f"{name} must take exactly one argument (evt), it takes {_describe_args(node.args)}"))
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


def load_hooks(path: str | Path, *, timeout: float = DEFAULT_HOOK_TIMEOUT) -> HookModule:
    """Import a hooks file by path under a private module name; HookLoadError if it cannot be loaded."""
    path = Path(path).resolve()
    shown = str(path)
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise HookLoadError(shown, f"cannot read hooks file: {exc.strerror or exc}") from None
    try:
        code = compile(source, shown, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise HookLoadError(shown, f"syntax error: {exc.msg}", line=exc.lineno) from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise HookLoadError(shown, f"cannot compile: {exc}") from None

    # A unique, unguessable-by-users name: two flows may load the same file, and a hooks file called
    # json.py must never shadow the real json module. It sits in sys.modules while it lives, because
    # dataclasses, pickle and typing look a class's module up there.
    slug = re.sub(r"\W", "_", path.stem)
    module_name = f"_jitbot_hooks_{slug}_{next(_module_counter)}"
    module = types.ModuleType(module_name, f"jitbot hooks from {shown}")
    module.__file__ = shown
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if not isinstance(exc, (Exception, SystemExit)):
            raise
        line = _line_in_file(exc, shown)
        message = scrub(f"{type(exc).__name__} at import time: {exc}".rstrip(": "))
        raise HookLoadError(shown, message, line=line) from exc
    return HookModule(shown, module, default_timeout=timeout)


def _line_in_file(exc: BaseException, filename: str) -> int | None:
    """The line of the deepest traceback frame that is inside `filename`."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == filename]
    return lines[-1] if lines else None


def _seconds(value: float) -> str:
    return f"{value:g}s"


# ── calling ───────────────────────────────────────────────────────────────────────────────────────


class HookModule:
    """A loaded hooks file: `has(name)` and `await call(name, evt)` with a time limit and checked results."""

    def __init__(self, path: str, module: types.ModuleType, *, default_timeout: float = DEFAULT_HOOK_TIMEOUT) -> None:
        self.path = path
        self.module = module
        self.default_timeout = default_timeout

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

    async def call(self, name: str, evt: HookEvent, *, timeout: float | None = None) -> Any:
        """Run hook `name` with `evt` under a time limit; return its checked result or raise HookError.

        Results per hook: on_request -> Approve | Deny | None; on_approve/on_deny -> Ignore | None;
        get_approvers -> list[str] | None (None keeps the flow's approvers); get_approval_channel ->
        str | None; grant -> dict[str, str]; after_grant/after_revoke/revoke -> None (ignored).
        For decisions, a returned value wins over one recorded with evt.approve/deny/ignore.
        """
        function = getattr(self.module, name, None)
        if not callable(function):
            raise HookError(self.path, name, "is not defined in this file")
        limit = self.default_timeout if timeout is None else timeout
        if isinstance(evt, HookEvent):
            evt.clear_decision()
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                if asyncio.iscoroutinefunction(function):
                    result = await function(evt)
                else:
                    result = await _run_on_thread(function, evt, name)
                    if asyncio.iscoroutine(result):  # a plain def that hands back a coroutine
                        result = await result
        except TimeoutError as exc:
            if deadline.expired():
                raise HookTimeout(self.path, name, f"timed out after {_seconds(limit)}") from None
            raise self._failure(name, exc) from exc  # the hook's own TimeoutError, not our limit
        except (Exception, SystemExit) as exc:
            raise self._failure(name, exc) from exc
        recorded = evt.decision if isinstance(evt, HookEvent) else None
        return self._checked(name, result, recorded)

    def _failure(self, name: str, exc: BaseException) -> HookError:
        line = _line_in_file(exc, self.path)
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        where = f" (at {Path(self.path).name}:{line})" if line else ""
        error = HookError(self.path, name, scrub(text) + where)
        error.line = line
        return error

    def _checked(self, name: str, result: Any, recorded: Any) -> Any:
        rule = _RESULT_RULES.get(name)
        if rule is None:
            return result  # an extra hook name the caller allowed: no contract to enforce
        expectation, check = rule
        try:
            return check(result, recorded)
        except _BadResult as bad:
            got = bad.value
            shown = type(got).__name__ if not isinstance(got, (str, int, float, bool, type(None))) else repr(got)
            raise HookResultError(self.path, name, f"must return {expectation}, not {shown[:80]}") from None


class _BadResult(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def _run_on_thread(function: Callable[[Any], Any], evt: Any, name: str) -> asyncio.Future:
    """Run a sync hook on a daemon thread; the returned future resolves with its result.

    Not asyncio.to_thread: a hook stuck forever would hold a worker of the shared default executor
    (which boto3 calls use) and make interpreter shutdown wait for it. A daemon thread that outlives
    its time-out is simply abandoned.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # timed out and cancelled: nobody is waiting for this answer
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = context.run(function, evt)
        except BaseException as exc:  # handed to the loop, which turns it into a HookError
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop closed while the hook ran

    threading.Thread(target=work, name=f"jitbot-hook-{name}", daemon=True).start()
    return future


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
