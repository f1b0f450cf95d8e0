"""How the agent's interpreter starts (commands.connect_command), on the local machine.

- without ``site`` (``-S``): the agent needs the standard library and its own package only,
  so a host's ``.pth`` files, ``sitecustomize`` or ``usercustomize`` neither slow it down nor
  break it;
- the agent's modules travel with this interpreter's bytecode, which a host with the same
  Python version uses as it is;
- with ``PYTHONDONTWRITEBYTECODE`` set (many container images set it), the package is
  compiled once when it is unpacked, so later agents read ``.pyc`` files.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from remotetune.backends.hostpool import _bundle
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
    cache = lib / "nni" / "__pycache__"  # the trial API: shipped as source only
    assert list(cache.glob("utils.*.pyc")), sorted(p.name for p in lib.rglob("*"))
    # the compiled code names the installed files, not the temporary directory it was made in
    pyc = next(cache.glob("utils.*.pyc")).read_bytes()
    assert str(lib / "nni" / "utils.py").encode() in pyc
    assert b".tmp-" not in pyc


def test_a_host_with_this_python_uses_the_shipped_bytecode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # the controller may compile
    _bundle.bundle.cache_clear()
    _bundle._packed.cache_clear()
    session = _open(tmp_path / "work")
    session.close()
    (lib,) = (tmp_path / "work" / "lib").iterdir()
    source = lib / "remotetune" / "_host" / "agent.py"
    pyc = Path(importlib.util.cache_from_source(str(source)))
    # unpacked with its source's mtime, not written by a compile at the agent's start
    assert pyc.stat().st_mtime == source.stat().st_mtime
    assert pyc.read_bytes() == Path(importlib.util.cache_from_source(
        str(Path(_bundle.__file__).parent / "_host" / "agent.py"))).read_bytes()


def test_bytecode_is_shipped_only_when_current(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    source = tmp_path / "mod.py"
    source.write_text("X = 1\n")
    code = _bundle._compiled(source, source.stat())
    assert code is not None and code[:4] == importlib.util.MAGIC_NUMBER
    source.write_text("X = 22\n")  # another size: the cached file is stale
    fresh = _bundle._compiled(source, source.stat())
    assert fresh is not None and fresh != code
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    other = tmp_path / "other.py"
    other.write_text("Y = 1\n")
    assert _bundle._compiled(other, other.stat()) is None  # nothing written, nothing shipped
    assert not Path(importlib.util.cache_from_source(str(other))).exists()
