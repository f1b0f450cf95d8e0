"""Text from users, trials and hosts is data, not markup: one place that makes it safe.

Every string that reaches a terminal (experiment names, parameter values, host names,
messages, stderr tails, log lines) goes through :func:`clean` first: escape sequences
(CSI, OSC such as terminal hyperlinks, DCS, ...) are removed whole and the remaining C0/C1
control characters dropped; newlines and tabs are kept only in a ``block`` of text (a log
tail), elsewhere they become spaces. Consoles that print such text never interpret rich
markup (``markup=False``), or the text goes through :func:`safe`, which also escapes it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
from collections.abc import Mapping
from typing import Any, TypeVar

# ESC followed by an OSC/DCS/SOS/PM/APC string (ended by BEL or ST), a CSI sequence, or
# one more character; and the 8-bit forms of the same introducers.
_SEQUENCE = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|$)"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]*[0-~]?",
    re.DOTALL,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile(r"[\t\n]")

T = TypeVar("T")


def clean(text: object, *, block: bool = False) -> str:
    """``text`` without escape sequences and control characters (see the module doc)."""
    value = str(text)
    value = _SEQUENCE.sub("", value)
    value = value.replace("\r\n", "\n")
    value = _CONTROL.sub("", value)
    return value if block else _LINE_BREAKS.sub(" ", value)


def safe(text: object, *, block: bool = False) -> str:
    """:func:`clean` text, escaped for rich markup: for strings printed with markup on."""
    from rich.markup import escape  # not at import: the CLI imports rich only when it prints

    return escape(clean(text, block=block))


def clean_data(value: Any) -> Any:
    """Strings inside dicts, lists and tuples cleaned (keys too); other values unchanged."""
    if isinstance(value, enum.Enum):
        return value
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {clean(k) if isinstance(k, str) else k: clean_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clean_data(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return clean_record(value)
    return value


_BLOCKS = frozenset({"stdout_tail", "stderr_tail", "details"})


def clean_record(record: T) -> T:
    """A frozen dataclass with every string field (and strings inside mappings) cleaned."""
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        return record
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if isinstance(value, enum.Enum):
            continue
        if isinstance(value, str):
            new: Any = clean(value, block=field.name in _BLOCKS)
        elif isinstance(value, (Mapping, list, tuple)):
            new = clean_data(value)
        else:
            continue
        if new != value:
            changes[field.name] = new
    return dataclasses.replace(record, **changes) if changes else record  # type: ignore[type-var]


class CleanLogFilter(logging.Filter):
    """Cleans each log record's text before a handler prints it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = clean(record.getMessage(), block=True)
        record.args = None
        return True
