"""The standard-library package shipped to every host: the trial API and the agent.

It is laid out as ``<workdir>/lib/<digest>/`` on the host::

    remotetune/__init__.py  remotetune/trial.py  remotetune/_host/*.py
    nni/*.py  (remotetune/nni_compat: NNI's trial API, nni.utils, nni.trial...)

The digest names the content, so a host keeps one copy per remotetune version and a
second experiment finds it already there.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import zlib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[2]  # remotetune/
_HOST = Path(__file__).resolve().parent / "_host"  # shipped as remotetune/_host/
_NNI = _PACKAGE / "nni_compat"  # shipped as nni/


def _files() -> list[tuple[str, bytes]]:
    files = [
        ("remotetune/__init__.py", (_PACKAGE / "__init__.py").read_bytes()),
        ("remotetune/trial.py", (_PACKAGE / "trial.py").read_bytes()),
    ]
    files += [(f"nni/{path.name}", path.read_bytes()) for path in sorted(_NNI.glob("*.py"))]
    files += [(f"remotetune/_host/{path.name}", path.read_bytes())
              for path in sorted(_HOST.glob("*.py"))]
    return files


@functools.lru_cache(maxsize=1)
def bundle() -> tuple[str, bytes]:
    """(digest, tar bytes) of the host package."""
    files = _files()
    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode() + b"\0" + data + b"\0")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return digest.hexdigest()[:16], buf.getvalue()


@functools.lru_cache(maxsize=1)
def packed() -> tuple[str, bytes]:
    """(digest, zlib-compressed tar) as the connect bootstrap takes it (about 20 KB)."""
    digest, tar = bundle()
    return digest, zlib.compress(tar, 6)
