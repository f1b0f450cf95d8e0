"""The CLI's start-up: rich (40-70 ms to import) is imported only when something is printed
with it, so `run` starts connecting its hosts first and piped commands skip it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from remotetune.cli_support import surely_not_terminal
from remotetune.store import Store


@pytest.mark.parametrize("tty_compatible", [None, "0", "1", "x"])
@pytest.mark.parametrize("force_color", [None, "", "1"])
@pytest.mark.parametrize("kind", ["pipe", "tty", "closed"])
def test_surely_not_terminal_never_contradicts_rich(
        tty_compatible: str | None, force_color: str | None, kind: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("TTY_COMPATIBLE", tty_compatible), ("FORCE_COLOR", force_color)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if kind == "tty":
        leader, follower = os.openpty()
        stream: io.IOBase = os.fdopen(follower, "w")
        os.close(leader)
    else:
        read, write = os.pipe()
        os.close(read)
        stream = os.fdopen(write, "w")
        if kind == "closed":
            stream.close()
    try:
        rich_says = Console(file=stream).is_terminal  # type: ignore[arg-type]
        if surely_not_terminal(stream):
            assert not rich_says
        if kind == "pipe" and tty_compatible != "1" and force_color is None:
            assert surely_not_terminal(stream)  # the common case needs no rich
    finally:
        if not stream.closed:
            stream.close()


def _imports_rich(args: list[str], cwd: Path) -> bool:
    code = ("import sys\n"
            f"sys.argv = ['remotetune', *{args!r}]\n"
            "try:\n    from remotetune.cli import main\n    main()\n"
            "finally:\n    print('RICH', any(m.startswith('rich') for m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["REMOTETUNE_HOME"] = str(cwd / "home")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=cwd, env=env).stdout
    return "RICH True" in out


def test_piped_commands_do_not_import_rich(tmp_path: Path) -> None:
    Store(tmp_path / "home" / "remotetune.db").close()
    assert not _imports_rich(["--help"], tmp_path)
    assert not _imports_rich(["ls", "--json"], tmp_path)
    assert _imports_rich(["ls"], tmp_path)  # a table: rich draws it
