"""Where remotetune keeps its things: ``$REMOTETUNE_HOME``, else ``~/.remotetune``.

Standard library only, so that a command knows its home before it imports the store.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "REMOTETUNE_HOME"
DB_NAME = "remotetune.db"


def default_home() -> Path:
    """``$REMOTETUNE_HOME``, else ``~/.remotetune``: the store, the object cache, the locks."""
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() if home else Path.home() / ".remotetune"
