"""sqlite_utils' ``Database``, imported without numpy and pandas.

sqlite_utils imports numpy and pandas when they are installed, only to map their scalar
types to column types when it creates a table from Python values. The store creates its
tables from its own schema and writes plain Python values, so it never needs that. numpy
alone took a third of `remotetune run`'s start-up before the first trial (about 0.1-0.4 s
on 2 busy cores), so for the length of sqlite_utils' import they are made to look absent.
The side effect: in this process sqlite_utils does not infer column types from numpy or
pandas values; nothing in remotetune asks it to. numpy imports normally afterwards (the
report uses it). When sqlite_utils is already imported, nothing is changed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any


def _import_database() -> Any:
    hidden = [] if "sqlite_utils" in sys.modules else [
        name for name in ("numpy", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        from sqlite_utils import Database as database
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return database


if TYPE_CHECKING:
    from sqlite_utils import Database
else:
    Database = _import_database()
