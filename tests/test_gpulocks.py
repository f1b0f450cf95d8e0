"""The agent's GPU reservation files (remotetune/backends/hostpool/_host/gpulocks.py):
real files, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remotetune.backends.hostpool._host import agent, gpulocks


def reserve(workdir: Path, indices: list[int], per_gpu: int = 1, exp: str = "E1") -> list[str]:
    request = {"indices": indices, "per_gpu": per_gpu, "experiment": exp, "trial": "T"}
    return gpulocks.reserve(str(workdir), request, agent._pid_alive, agent._same_process,
                            agent._start_ticks(os.getpid()))


def test_a_reserved_gpu_is_refused_until_released(tmp_path: Path) -> None:
    taken = reserve(tmp_path, [0, 1])
    assert sorted(os.path.basename(p) for p in taken) == ["0.0.lock", "1.0.lock"]
    with pytest.raises(gpulocks.GpuReserved, match="GPU 1 reserved by experiment E1") as err:
        reserve(tmp_path, [2, 1], exp="E2")
    assert err.value.details == {"gpu": 1, "holders": 1, "experiments": ["E1"]}
    assert not (tmp_path / "gpus" / "2.0.lock").exists()  # all or none
    gpulocks.release(taken)
    assert len(reserve(tmp_path, [1], exp="E2")) == 1


def test_max_trials_per_gpu_counts_holders(tmp_path: Path) -> None:
    first = reserve(tmp_path, [0], per_gpu=2)
    second = reserve(tmp_path, [0], per_gpu=2, exp="E2")
    assert first != second
    with pytest.raises(gpulocks.GpuReserved, match="E1, E2"):
        reserve(tmp_path, [0], per_gpu=2, exp="E3")


def test_a_dead_trials_reservation_is_reclaimed(tmp_path: Path) -> None:
    (path,) = reserve(tmp_path, [0])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gpulocks.bind([path], {"pid": dead.pid, "ticks": None, "launcher_pid": dead.pid,
                           "launcher_ticks": None})
    assert json.loads(Path(path).read_text())["pid"] == dead.pid
    (again,) = reserve(tmp_path, [0], exp="E2")  # the dead one's file is taken over
    assert json.loads(Path(again).read_text())["experiment"] == "E2"


def test_a_reused_pid_does_not_keep_a_reservation(tmp_path: Path) -> None:
    (path,) = reserve(tmp_path, [0])
    ticks = agent._start_ticks(os.getpid())
    assert ticks is not None
    gpulocks.bind([path], {"pid": os.getpid(), "ticks": ticks + 1,  # another process's
                           "launcher_pid": None, "launcher_ticks": None})
    assert len(reserve(tmp_path, [0], exp="E2")) == 1


def test_the_slot_table_counts_other_experiments_holders_until_the_next_reading() -> None:
    from remotetune.backends.hostpool._slots import SlotTable
    from remotetune.model import GpuInfo, HostSpec

    one = (GpuInfo(0, "Fake", 1000.0, 0.0, 0.0),)
    slots = SlotTable([HostSpec("box", gpu_indices=(0,))], 1)
    slots.update_gpus("box", one)
    slots.reserved_elsewhere("box", 0, 1, "experiment X")
    assert slots.place("t1") is None
    assert "GPU 0 reserved by experiment X" in slots.why_not()
    slots.update_gpus("box", one)  # a fresh reading: ask the host again
    assert slots.place("t1") is not None

    shared = SlotTable([HostSpec("box", gpu_indices=(0,), max_trials_per_gpu=2)], 1)
    shared.update_gpus("box", one)
    shared.reserved_elsewhere("box", 0, 1, "experiment X")
    assert shared.place("t1") is not None  # one holder of two: room for ours
    assert shared.place("t2") is None


def test_a_torn_reservation_file_is_reclaimed(tmp_path: Path) -> None:
    (tmp_path / "gpus").mkdir()
    (tmp_path / "gpus" / "0.0.lock").write_text('{"experiment": "E1", "pi')
    (path,) = reserve(tmp_path, [0], exp="E2")
    assert json.loads(Path(path).read_text())["experiment"] == "E2"
