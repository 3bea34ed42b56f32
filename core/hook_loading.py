"""What the bot and its hook processes share: the hook errors, and running a hooks file's source.

`execute_source` compiles a hooks file's source and runs it as a module (HookLoadError if it
cannot); the bot does it once in `core.hooks.load_hooks`, and each hook process does it again with
the same source in `core.hook_worker`. The errors (all `core.errors.HookError`, the one thing the
engine catches) and the small helpers that word their text live here too, so that `core.hooks`
(loading and calling) and `core.hook_process` / `core.hook_worker` (the worker processes) use the
same ones without importing each other.
"""

from __future__ import annotations

import sys
import traceback
import types

from core.errors import HookError, JitError
from core.secrets import SecretRegistry

DEFAULT_HOOK_TIMEOUT = 5.0
"""Seconds a hook may run when the flow sets no other limit."""


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


def execute_source(source: bytes, shown: str, module_name: str, secrets: SecretRegistry) -> types.ModuleType:
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
        line = line_in_file(exc, shown)
        message = secrets.scrub(f"{type(exc).__name__} at import time: {exc}".rstrip(": "))
        raise HookLoadError(shown, message, line=line) from exc
    return module


def line_in_file(exc: BaseException, filename: str) -> int | None:
    """The line of the deepest traceback frame that is inside `filename`."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == filename]
    return lines[-1] if lines else None


def format_seconds(value: float) -> str:
    return f"{value:g}s"


def describe_exception(exc: BaseException) -> str:
    """`Type: text`, or just `Type` when the exception has no text."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the failure it describes
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
