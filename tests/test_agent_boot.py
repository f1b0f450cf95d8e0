"""How the agent's interpreter starts (commands.connect_command), on the local machine.

- without ``site`` (``-S``): the agent needs the standard library and its own package only,
  so a host's ``.pth`` files, ``sitecustomize`` or ``usercustomize`` neither slow it down nor
  break it;
- with ``PYTHONDONTWRITEBYTECODE`` set (many container images set it), the package is
  compiled once when it is unpacked, so later agents read ``.pyc`` files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from remotetune.backends.hostpool._session import HostSession
from remotetune.model import HostSpec


def _open(workdir: Path, python: str = "python3") -> HostSession:
    session = HostSession(HostSpec(name="local", host="localhost", local=True, python=python),
                          workdir=str(workdir))
    session.open()
    return session


def test_the_agent_skips_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A usercustomize that would fail every Python started normally does not reach it.
    (The interpreter the venv was made from: a venv has no user site.)"""
    home = tmp_path / "home"
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    user_site = home / ".local" / "lib" / version / "site-packages"
    user_site.mkdir(parents=True)
    marker = tmp_path / "site-ran"
    (user_site / "usercustomize.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise SystemExit('broken usercustomize')\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PYTHONUSERBASE", str(home / ".local"))
    python = str(Path(sys.base_prefix) / "bin" / "python3")
    assert Path(python).exists(), python
    session = _open(tmp_path / "work", python)
    try:
        assert session.info is not None and session.info.home == str(home)
        assert session.gpus() is not None  # the agent serves its ops
    finally:
        session.close()
    assert not marker.exists()


def test_package_compiled_once_without_bytecode_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    for _ in ("new host", "package already there"):
        session = _open(tmp_path / "work")
        session.close()
    (lib,) = (tmp_path / "work" / "lib").iterdir()
    cache = lib / "remotetune" / "_host" / "__pycache__"
    assert list(cache.glob("agent.*.pyc")), sorted(p.name for p in (lib / "remotetune").rglob("*"))
    # the compiled code names the installed files, not the temporary directory it was made in
    pyc = next(cache.glob("agent.*.pyc")).read_bytes()
    assert str(lib / "remotetune" / "_host" / "agent.py").encode() in pyc
    assert b".tmp-" not in pyc
