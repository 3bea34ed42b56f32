"""Reading the flows file: YAML with a line for every key path, and issues as `file:line: path: message`.

PyYAML's node API keeps where each key starts; we compose the document, index every key path
(`flows[0].strategy.targets[2].label` -> 41, 1-based), then construct plain Python data with the
SafeLoader. Pydantic error locations are turned into the same key-path strings so that every
problem, whoever finds it, is reported against a line of the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Anchors and aliases may expand a small file into a huge tree (the "billion laughs"); a flows file
# has at most a few thousand values, so anything far beyond that is refused before it is validated.
MAX_NODES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the flows file: where it is (file, 1-based line, key path) and what is wrong."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def format_path(loc: Iterable[str | int]) -> str:
    """Render a location tuple as a key path: ('flows', 0, 'label') -> 'flows[0].label'."""
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass
class LineIndex:
    """Key path -> 1-based line of the key (or of the list item) in the file."""

    lines: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, path: str) -> int:
        return self.lines[path]

    def __contains__(self, path: object) -> bool:
        return path in self.lines

    def line_for(self, loc: Loc) -> int:
        """Line of the deepest existing node on `loc` (a missing key gets its parent mapping's line)."""
        for depth in range(len(loc), -1, -1):
            line = self.lines.get(format_path(loc[:depth]))
            if line is not None:
                return line
        return 1


@dataclass
class ParsedYaml:
    """The constructed document (None when it could not be built), its line index, and YAML issues."""

    data: Any
    lines: LineIndex
    issues: list[ConfigIssue]


def parse_yaml(text: str, file: str) -> ParsedYaml:
    """Compose and construct one YAML document with SafeLoader, indexing lines and duplicate keys."""
    lines = LineIndex()
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            return ParsedYaml(None, lines, [_syntax_issue(file, exc)])
        except yaml.YAMLError as exc:
            return ParsedYaml(None, lines, [ConfigIssue(file, None, "", f"invalid YAML: {exc}")])
        except RecursionError:
            return ParsedYaml(None, lines, [ConfigIssue(file, None, "", "invalid YAML: nested too deeply")])
        if root is None:
            return ParsedYaml(None, lines, [ConfigIssue(file, 1, "", "the file is empty")])
        walker = _Indexer(file, lines)
        walker.walk(root, ())
        if walker.fatal:
            return ParsedYaml(None, lines, walker.issues)
        try:
            data = loader.construct_document(root)
        except yaml.MarkedYAMLError as exc:
            return ParsedYaml(None, lines, walker.issues + [_syntax_issue(file, exc)])
        except RecursionError:  # a merge key (`<<`) that includes its own mapping
            return ParsedYaml(
                None, lines, walker.issues + [ConfigIssue(file, None, "", "invalid YAML: recursive merge key")]
            )
        return ParsedYaml(data, lines, walker.issues)
    finally:
        loader.dispose()


def _syntax_issue(file: str, exc: yaml.MarkedYAMLError) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    parts = [part for part in (exc.context, exc.problem) if part]
    message = "invalid YAML: " + (", ".join(parts) if parts else "cannot be parsed")
    return ConfigIssue(file, mark.line + 1 if mark else None, "", message)


class _Indexer:
    """Walks the composed node graph once: records key lines, reports duplicate keys and alias abuse."""

    def __init__(self, file: str, lines: LineIndex) -> None:
        self.file = file
        self.lines = lines.lines
        self.issues: list[ConfigIssue] = []
        self.fatal = False
        self._visited = 0
        self._open: set[int] = set()

    def walk(self, node: Node, loc: Loc) -> None:
        if self.fatal:
            return
        self._visited += 1
        if self._visited > MAX_NODES:
            self._fail(node, loc, f"the file expands to more than {MAX_NODES} values (check anchors and aliases)")
            return
        self.lines.setdefault(format_path(loc), node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return
        if id(node) in self._open:
            self._fail(node, loc, "an alias refers to a node that contains it (recursive structure)")
            return
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                for index, item in enumerate(node.value):
                    self.walk(item, loc + (index,))
            elif isinstance(node, MappingNode):
                self._walk_mapping(node, loc)
        finally:
            self._open.discard(id(node))

    def _walk_mapping(self, node: MappingNode, loc: Loc) -> None:
        seen: dict[tuple[str, str], int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                continue  # the constructor rejects unhashable keys with its own located error
            key_line = key_node.start_mark.line + 1
            identity = (key_node.tag, key_node.value)
            path = loc + (key_node.value,)
            if identity in seen:
                self.issues.append(
                    ConfigIssue(
                        self.file,
                        key_line,
                        format_path(path),
                        f"duplicate key '{key_node.value}' (first defined at line {seen[identity]})",
                    )
                )
            seen[identity] = key_line
            # The constructed mapping keeps the last duplicate, so its line is the one to report.
            self.lines[format_path(path)] = key_line
            self.walk(value_node, path)
        merged_keys = {value for _, value in seen}
        for source in merges:
            for mapping in source.value if isinstance(source, SequenceNode) else [source]:
                if isinstance(mapping, MappingNode):
                    self._walk_merged(mapping, loc, merged_keys)

    def _walk_merged(self, mapping: MappingNode, loc: Loc, taken: set[str]) -> None:
        # `<<: *base` keys count only where the mapping does not set them itself (YAML merge rules).
        for key_node, value_node in mapping.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG and key_node.value not in taken:
                taken.add(key_node.value)
                path = loc + (key_node.value,)
                self.lines[format_path(path)] = key_node.start_mark.line + 1
                self.walk(value_node, path)

    def _fail(self, node: Node, loc: Loc, message: str) -> None:
        self.fatal = True
        self.issues.append(ConfigIssue(self.file, node.start_mark.line + 1, format_path(loc), message))


CUSTOM_ERROR = "jitbot"
"""The pydantic error type of checks written in `core.config`; its message is already readable."""

_NAME_PATTERN = "^[a-z0-9_]+$"
_TYPE_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "url_type": "must be a URL",
    "url_parsing": "must be a URL like https://host/path",
    "url_scheme": "must be an http:// or https:// URL",
    "invalid_key": "keys must be strings",
}


def describe_error(error: ErrorDetails) -> tuple[Loc, str]:
    """Turn one pydantic error into (key-path location, readable message) without quoting its input."""
    kind, ctx = error["type"], error.get("ctx") or {}
    loc = tuple(error["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"  # pydantic marks errors in a mapping's keys this way
    if is_key:
        loc = loc[:-1]
    if kind == CUSTOM_ERROR:
        message = error["msg"]
    elif kind == "missing":
        message = "required key missing"
    elif kind == "extra_forbidden":
        message = f"unknown key '{loc[-1]}'" if loc else "unknown key"
    elif kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error") or error["msg"])
    elif kind == "literal_error":
        message = f"must be {ctx.get('expected', 'one of the allowed values')}"
    elif kind == "string_pattern_mismatch":
        if ctx.get("pattern") == _NAME_PATTERN:
            message = "must contain only lowercase letters, digits and _"
        else:
            message = f"must match the pattern {ctx.get('pattern')}"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "string_too_long":
        message = f"must be at most {ctx.get('max_length')} characters"
    elif kind == "too_short":
        minimum = ctx.get("min_length", 1)
        message = "must not be empty" if minimum == 1 else f"must have at least {minimum} items"
    elif kind == "too_long":
        message = f"must have at most {ctx.get('max_length')} items"
    elif kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
        if error.get("input") is None:
            message += " (the value is empty)"
    else:
        message = error["msg"].replace("Input should be", "must be").replace("Input", "value")
    if is_key:
        message = f"'{loc[-1]}' is not a valid name: {message}" if loc else f"invalid key: {message}"
    return loc, message
