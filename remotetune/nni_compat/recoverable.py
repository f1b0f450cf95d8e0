"""``nni.recoverable``: the checkpoint hooks NNI's tuners and assessors inherit (no-ops here:
remotetune rebuilds a tuner from its store, not from checkpoints)."""

from __future__ import annotations

import os
from typing import Optional


class Recoverable:
    def load_checkpoint(self) -> None:
        return None

    def save_checkpoint(self) -> None:
        return None

    def get_checkpoint_path(self) -> Optional[str]:
        path = os.environ.get("NNI_CHECKPOINT_DIRECTORY")
        return path if path and os.path.isdir(path) else None
