"""Symlinks in the trial code directory that point outside it (issue 8: secrets and files).

The code sync follows a symlink to a file and uploads its target's content to every host,
so a link to ``~/.ssh/id_ed25519`` would ship the key. Such links are refused, with their
paths, unless the experiment opts in with ``followSymlinks: true``.
"""

from __future__ import annotations

import os
from pathlib import Path

from remotetune.errors import ConfigError
from remotetune.sync import _walk  # the very walk the sync does: same ignore rules


def outside_symlinks(root: Path) -> list[tuple[str, str]]:
    """(path, target) of each synced file that is a symlink to a file outside ``root``."""
    root = Path(root).resolve()
    found = []
    for f in _walk(root):
        if os.path.islink(f.abspath):
            target = os.path.realpath(f.abspath)
            if os.path.commonpath([str(root), target]) != str(root):
                found.append((f.path, target))
    return found


def check_symlinks(root: Path, *, follow: bool, file: str | None = None) -> None:
    """Refuse symlinks to files outside ``root`` unless ``follow`` (``followSymlinks``)."""
    if follow or not Path(root).is_dir():
        return
    outside = outside_symlinks(root)
    if outside:
        listing = ", ".join(f"{path} -> {target}" for path, target in outside[:5])
        more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        raise ConfigError(
            f"symlinks in {root} point outside the trial code directory: {listing}{more}",
            file=file, key="trialCodeDirectory",
            hint="remove them, exclude them in .remotetuneignore, or set "
                 "`followSymlinks: true` in the experiment file to upload their targets")
