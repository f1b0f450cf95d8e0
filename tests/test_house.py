"""The house limits of docs/architecture.md, checked on every run: no class over 400 lines,
no function over 60 (declarative tables named in scripts/sizes.py aside), no module over
500, across remotetune/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_house_sizes() -> None:
    result = subprocess.run([sys.executable, "scripts/sizes.py"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
