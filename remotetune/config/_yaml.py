"""Load YAML (or JSON) and keep the line of every mapping key and sequence item.

Config errors must name the line of the key at fault, so the loader composes the node
tree, builds plain Python values from it, and records ``path -> line`` for each key,
where a path is a tuple of mapping keys (``str``) and sequence indices (``int``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from remotetune.errors import ConfigError

PathPart = str | int
KeyPath = tuple[PathPart, ...]

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 200


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that keeps dates as strings: loaded values must stay JSON-able."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Loaded:
    """A loaded document and the 1-based line of each key path (``()`` is the document)."""

    data: Any
    lines: Mapping[KeyPath, int] = field(default_factory=dict)


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def load_yaml(text: str, *, file: str | None) -> Loaded:
    """Parse one YAML document; a syntax error is a :class:`ConfigError` with its line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        if node is not None:
            _record(node, (), lines, file, 0)
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(
            f"not valid YAML: {problem}",
            file=file,
            line=None if mark is None else mark.line + 1,
            hint="check the indentation and the quoting on this line and the one above",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=file, line=1) from exc
    finally:
        loader.dispose()
    return Loaded(data, lines)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _duplicate_line(text: str, file: str | None) -> int | None:
    try:
        load_yaml(text, file=file)
    except ConfigError as exc:
        return exc.line if "duplicate key" in exc.message else None
    return None


def load_json(text: str, *, file: str | None) -> Loaded:
    """Parse JSON with JSON's own rules, except that a key may appear only once in an
    object (JSON would keep the last silently); key lines come from a YAML pass."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ConfigError(
            f"duplicate key {exc.key!r}", file=file, key=exc.key,
            line=_duplicate_line(text, file),
            hint="write each key once: JSON would silently keep only the last one",
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} (column {exc.colno})",
            file=file,
            line=exc.lineno,
            hint="check for a trailing comma or a missing quote near this line",
        ) from exc
    try:
        lines = dict(load_yaml(text, file=file).lines)
    except ConfigError:  # valid JSON that YAML rejects (tabs, odd escapes): no lines
        lines = {(): 1}
    return Loaded(data, lines)


def _record(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str | None, depth: int
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if depth > _MAX_DEPTH:
        raise ConfigError("YAML nested too deeply (a recursive alias?)", file=file,
                          line=node.start_mark.line + 1)
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record(item, (*path, index), lines, file, depth + 1)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.append(value_node)
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"duplicate key (first written on line {seen[key]})",
                    file=file,
                    key=dotted((*path, key)),
                    line=line,
                    hint="YAML keeps only the last one: delete one of them",
                )
            seen[key] = line
            lines[path + (key,)] = line
            _record(value_node, (*path, key), lines, file, depth + 1)
        for source in merged:  # `<<: *anchor`: the mapping's own keys win
            sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
            for item in sources:
                if isinstance(item, yaml.MappingNode):
                    sub: dict[KeyPath, int] = {}
                    _record(item, path, sub, file, depth + 1)
                    for sub_path, line in sub.items():
                        lines.setdefault(sub_path, line)


def dotted(path: KeyPath) -> str:
    """``("a", 0, "b")`` -> ``"a[0].b"``: how errors name a key."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
