"""Linting a hooks file without running it: the hook names jitbot calls, and `check_hooks`.

    issues = check_hooks(path)     # at validate time: no code runs (ast only), so a broken file is reported, not run

Each issue is a HookIssue at the file's own line: a syntax error, a misspelt hook name, a hook that
does not take exactly one argument, a sync hook that reads `evt.integrations`, a required hook that
is missing. It is apart from `core.hooks` because validating a config must never execute a hooks
file, and needs none of the loading, calling or process machinery; it imports only `ast` and
`core.hook_events`.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from core.hook_events import INTEGRATIONS_NEED_ASYNC

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


# Names that read like an attempted hook even when difflib finds nothing close (on_submit, after_x).
_HOOKISH = re.compile(r"^(on|after|before)_")


class HookIssue(NamedTuple):
    """One problem `check_hooks` found: the 1-based line (None for the whole file) and what is wrong."""

    line: int | None
    message: str


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
