"""Typed, located reads from one mapping of a config file.

Every error raised here names the file, the dotted key, its line and the fix.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from remotetune.config._yaml import KeyPath, dotted, line_of
from remotetune.errors import ConfigError, ConfigErrors

T = TypeVar("T")
D = TypeVar("D")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(
    value: str | int | float,
    *,
    file: str | None = None,
    key: str | None = None,
    line: int | None = None,
) -> float:
    """Seconds in an NNI duration: ``"30s"``, ``"10m"``, ``"1.5h"``, ``"2d"`` or a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise ConfigError(
                f"expected a duration, got {describe(value)}",
                file=file,
                key=key,
                line=line,
                hint='write a number of seconds or a number with a unit s, m, h or d: "30s", '
                '"10m", "1.5h", "2d"',
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(
            f"expected a duration of zero or more seconds, got {describe(value)}",
            file=file,
            key=key,
            line=line,
            hint='write e.g. "30s", "10m" or "2h"',
        )
    return seconds


def describe(value: Any) -> str:
    """A value as an error message shows it, with its YAML type."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"{shown!r} (a string)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def did_you_mean(key: str, known: Iterable[str]) -> str | None:
    """The closest known key, by difflib, ignoring case."""
    lowered = {name.lower(): name for name in known}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


@dataclass(frozen=True)
class Source:
    """Where a mapping came from: its file, the key lines, and the directory paths are in.

    ``renamed`` maps a key path of the data to the path the user wrote it at, for a file
    converted in memory (an NNI v1 file): errors name the key as written.
    ``problems`` collects the errors of one pass (see :meth:`collect`).
    """

    file: str | None
    base_dir: Path
    lines: Mapping[KeyPath, int] = field(default_factory=dict)
    renamed: tuple[tuple[KeyPath, KeyPath], ...] = ()
    problems: list[ConfigError] = field(default_factory=list, compare=False)

    def line(self, path: KeyPath) -> int | None:
        return line_of(self.lines, path) if self.lines else None

    def written(self, path: KeyPath) -> KeyPath:
        """``path`` as the user wrote it (its longest renamed prefix replaced)."""
        for data_path, as_written in self.renamed:
            if path[:len(data_path)] == data_path:
                return (*as_written, *path[len(data_path):])
        return path

    def error(self, path: KeyPath, message: str, *, hint: str | None = None) -> ConfigError:
        written = self.written(path)
        if written != path and path and written and written[-1] != path[-1]:
            old, new = f"`{path[-1]}:", f"`{written[-1]}:"
            message = message.replace(old, new)
            hint = None if hint is None else hint.replace(old, new)
        return ConfigError(
            message, file=self.file, key=dotted(written) or None, line=self.line(path),
            hint=hint,
        )

    def collect(self, read: Callable[[], T], default: D) -> T | D:
        """``read()``, or ``default`` after recording its ConfigError in ``problems``."""
        try:
            return read()
        except ConfigError as exc:
            self.problems.append(exc)
            return default

    def raise_problems(self) -> None:
        """Raise the problems collected so far: one as it is, several as ConfigErrors."""
        found: list[ConfigError] = []
        for exc in self.problems:
            found.extend(exc.errors if isinstance(exc, ConfigErrors) else (exc,))
        self.problems.clear()
        if len(found) == 1:
            raise found[0]
        if found:
            raise ConfigErrors(found)

    def resolve(self, value: str) -> Path:
        """A local path: ``~`` expanded, relative to ``base_dir``, made absolute."""
        path = Path(os.path.expanduser(value))
        if not path.is_absolute():
            path = self.base_dir / path
        return Path(os.path.normpath(path.absolute()))


class Section:
    """One mapping of a config file, read key by key with typed getters.

    ``origins`` maps a key to the path it was really written at (a ``defaults:`` entry);
    ``where`` prefixes every message (e.g. ``"host 0 'gpu1'"``).
    """

    def __init__(
        self,
        src: Source,
        path: KeyPath,
        data: Any,
        *,
        where: str = "",
        origins: Mapping[str, KeyPath] | None = None,
        what: str = "a mapping of keys to values",
    ) -> None:
        self.src = src
        self.path = path
        self.where = where
        self.origins = dict(origins or {})
        if not isinstance(data, Mapping):
            raise self._fail(path, f"expected {what}, got {describe(data)}",
                             hint="write `key: value` lines indented under it")
        for key in data:
            if not isinstance(key, str):
                raise self._fail(path, f"keys must be strings, got {describe(key)}",
                                 hint="quote the key")
        self.data: Mapping[str, Any] = data

    # -- plumbing --------------------------------------------------------------------
    def path_of(self, key: str) -> KeyPath:
        return self.origins.get(key, (*self.path, key))

    def _fail(self, path: KeyPath, message: str, hint: str | None = None) -> ConfigError:
        prefix = f"{self.where}: " if self.where else ""
        return self.src.error(path, prefix + message, hint=hint)

    def fail(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        """An error about ``key`` (its line, or the section's line when it is missing)."""
        if key in self.origins:
            message += " (set in defaults:)"
        return self._fail(self.path_of(key), message, hint)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def unknown(self, key: str, known: Iterable[str], hint: str | None = None) -> ConfigError:
        guess = did_you_mean(key, known)
        text = f"did you mean {guess}?" if guess else "check the spelling"
        if hint:
            text += f"; {hint}"
        return self.fail(key, "unknown key", hint=text)

    def _missing(self, key: str, example: str) -> ConfigError:
        written = self.src.written((*self.path, key))  # an NNI v1 file: as it names the key
        where = dotted(written[:-1]) or "the top level"
        return self._fail((*self.path, key), f"is required (missing under {where})",
                          hint=f"add `{key}: {example}`")

    # -- typed getters ---------------------------------------------------------------
    def text(
        self, key: str, *, default: str | None = None, required: bool = False,
        example: str = "...",
    ) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._missing(key, example)
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # `host: 10.0.0.5` is a string; `name: 7` reads as "7"
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {describe(value)}",
                            hint=f"write e.g. `{key}: {example}`")
        if not value.strip():
            raise self.fail(key, "must not be empty", hint=f"write e.g. `{key}: {example}`")
        return value

    def integer(
        self, key: str, *, default: int | None = None, required: bool = False,
        minimum: int | None = None, maximum: int | None = None, example: str = "1",
    ) -> int | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._missing(key, example)
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected {_range('an integer', minimum, maximum)}, "
                            f"got {describe(value)}", hint=f"write e.g. `{key}: {example}`")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self.fail(key, f"expected {_range('an integer', minimum, maximum)}, "
                            f"got {value}", hint=f"write e.g. `{key}: {example}`")
        return value

    def number(
        self, key: str, *, default: float | None = None, minimum: float | None = None,
        maximum: float | None = None, example: str = "1",
    ) -> float | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise self.fail(key, f"expected {_range('a number', minimum, maximum)}, "
                            f"got {describe(value)}", hint=f"write e.g. `{key}: {example}`")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self.fail(key, f"expected {_range('a number', minimum, maximum)}, "
                            f"got {value}", hint=f"write e.g. `{key}: {example}`")
        return float(value)

    def flag(self, key: str, *, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {describe(value)}",
                            hint=f"write `{key}: true` or `{key}: false` (no quotes)")
        return value

    def seconds(
        self, key: str, *, default: float | None = None, positive: bool = False,
        example: str = '"10m"',
    ) -> float | None:
        value = self.data.get(key)
        if value is None:
            return default
        path = self.path_of(key)
        if not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a duration, got {describe(value)}",
                            hint=f'write e.g. `{key}: {example}` (units s, m, h, d)')
        try:
            seconds = parse_duration(value, file=self.src.file, key=dotted(path),
                                     line=self.src.line(path))
        except ConfigError as exc:
            raise self.fail(key, exc.message, exc.hint) from None
        if positive and seconds <= 0:
            raise self.fail(key, "must be more than zero seconds",
                            hint=f"write e.g. `{key}: {example}`")
        return seconds

    def section(self, key: str, *, what: str = "a mapping of keys to values") -> Section | None:
        value = self.data.get(key)
        if value is None:
            return None
        return Section(self.src, self.path_of(key), value, where=self.where, what=what)

    def local_path(self, key: str, *, kind: str, required: bool = False,
                   default: str | None = None, example: str = ".") -> Path | None:
        """A local file or directory (``kind`` is "file" or "directory") that must exist."""
        value = self.text(key, default=default, required=required, example=example)
        if value is None:
            return None
        path = self.src.resolve(value)
        exists = path.is_dir() if kind == "directory" else path.is_file()
        if not exists:
            base = f" (relative paths start at {self.src.base_dir})" \
                if not os.path.isabs(os.path.expanduser(value)) else ""
            raise self.fail(key, f"{kind} {path} does not exist{base}",
                            hint=f"fix the path or create the {kind}")
        return path


def _range(noun: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{noun} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{noun} >= {minimum}"
    if maximum is not None:
        return f"{noun} <= {maximum}"
    return noun
