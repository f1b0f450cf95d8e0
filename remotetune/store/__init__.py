"""The SQLite store: schema, migrations and the :class:`Store` the controller writes."""

from __future__ import annotations

from remotetune.store._codec import scrub_secrets
from remotetune.store._schema import MIGRATIONS, Migration
from remotetune.store._store import BUSY_TIMEOUT_S, DB_NAME, HOME_ENV, Store

__all__ = [
    "BUSY_TIMEOUT_S",
    "DB_NAME",
    "HOME_ENV",
    "MIGRATIONS",
    "Migration",
    "Store",
    "scrub_secrets",
]
