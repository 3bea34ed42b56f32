"""Policy hooks: load a flow's hooks file and call its functions safely.

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
- Sync hooks (plain `def`) may block where no cancellation reaches, so they run in a hook process
  that is killed at the limit (`core.hook_process`: a small pool of warm workers per file). Call
  `aclose()` at stop; a HookModule garbage-collected unclosed kills its workers as a last resort.

What a sync hook gets and gives: a read-only copy of `evt` rebuilt from `evt.snapshot()`, whose
`evt.integrations` refuses to be used (make the hook `async def` for that); decisions it records
with evt.approve/deny/ignore, its return value and its exception (type, text and line in the file)
come back, and the checks, the scrubbing of secrets and the HookError text are the same for both
kinds. Module-level state in a hooks file lives per process: the file's top level runs in the bot
at load and again in every worker; a sync hook's globals persist between calls served by the same
worker and start over in a replaced one; async hooks see the bot's own copy of the module, which
sync hooks never touch. Use module state for caches, never for correctness.

The rest of hooks lives beside this module: `core.hooks_lint` checks a file without running it (at
validate time), `core.hook_loading` holds the hook errors and runs a file's source (for the bot and
its hook processes alike), `core.hook_results` says what each hook may return, and
`core.hook_process` runs sync hooks (in processes running `core.hook_worker`). This module ties
them together: `load_hooks` and `HookModule`.
"""

from __future__ import annotations

import asyncio
import pickle
import re
import types
import uuid
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.errors import HookError
from core.hook_events import HookEvent
from core.hook_loading import (
    DEFAULT_HOOK_TIMEOUT,
    HookLoadError,
    HookResultError,
    HookTimeout,
    describe_exception,
    execute_source,
    format_seconds,
    line_in_file,
)
from core.hook_process import HookProcesses, rebuilt_exception
from core.hook_results import RESULT_RULES, BadResult
from core.hook_worker import Unsendable
from core.hooks_lint import KNOWN_HOOKS
from core.secrets import SecretRegistry


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
    module = execute_source(source, shown, f"_jitbot_hooks_{slug}_{uuid.uuid4().hex[:12]}", secrets)
    return HookModule(shown, module, default_timeout=timeout, source=source, secrets=secrets)


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
        self._processes = HookProcesses(path, module.__name__, source, self.secrets)
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
                raise HookTimeout(self.path, name, f"timed out after {format_seconds(limit)}") from None
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
                self.path,
                name,
                self.secrets.scrub(f"the event cannot be sent to the hook process ({describe_exception(exc)})"),
            ) from exc
        frame = await self._processes.run(name, request, limit)
        try:
            answer = pickle.loads(frame)
        except Exception as exc:
            raise HookError(
                self.path,
                name,
                self.secrets.scrub(f"its answer could not be read in the bot ({describe_exception(exc)})"),
            ) from exc
        if answer[0] == "ok":
            return answer[1], answer[2]
        _, text, line, type_name, pickled = answer
        raise self._error(name, text, line) from rebuilt_exception(pickled, type_name, text)

    def _failure(self, name: str, exc: BaseException) -> HookError:
        return self._error(name, describe_exception(exc), line_in_file(exc, self.path))

    def _error(self, name: str, text: str, line: int | None) -> HookError:
        where = f" (at {Path(self.path).name}:{line})" if line else ""
        error = HookError(self.path, name, self.secrets.scrub(text) + where)
        error.line = line
        return error

    def _checked(self, name: str, result: Any, recorded: Any) -> Any:
        rule = RESULT_RULES.get(name)
        if rule is None:
            if isinstance(result, Unsendable):  # an extra hook name: anything goes, if it can be sent
                raise HookResultError(self.path, name, f"must return something the bot can receive, not {result}")
            return result  # an extra hook name the caller allowed: no contract to enforce
        expectation, check = rule
        try:
            return check(result, recorded)
        except BadResult as bad:
            got = bad.value
            if isinstance(got, Unsendable):
                shown = str(got)
            else:
                shown = type(got).__name__ if not isinstance(got, (str, int, float, bool, type(None))) else repr(got)
            raise HookResultError(self.path, name, f"must return {expectation}, not {shown[:80]}") from None
