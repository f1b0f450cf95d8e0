"""docker/cluster.py for the tests, loaded by path under one module name.

docker/ is not a package (it would shadow the Docker SDK), so the file is loaded by path;
every test module gets the same module object through ``dc``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_NAME = "remotetune_docker_cluster"
_PATH = Path(__file__).resolve().parent.parent / "docker" / "cluster.py"


def _load() -> ModuleType:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


dc = _load()
