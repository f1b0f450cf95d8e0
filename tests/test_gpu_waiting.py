"""Trials waiting for a GPU that other people's work keeps busy: said once per change, in
plain output and in the view (NNI's silent refusal was the lab's problem 3), and the reason
a trial waits is worded when someone asks, not on every loop turn."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sshd import SshServer

from remotetune.backends import PlaceResult
from remotetune.backends.hostpool._waiting import BusyNotice, busy_message
from remotetune.model import GpuInfo, HostSpec, TrialStatus
from remotetune.testing.backend import FakeBackend, FakeRun
from tests.test_controller import Rig
from tests.test_run_ssh import (  # noqa: F401 - _remove_workdirs: the workdirs' cleanup
    X,
    _remove_workdirs,
    host_entry,
    start_cli,
    the_experiment,
    write_files,
)

WAITING = "waiting: GPU 0 on gpu1 is busy"


def busy_gpu(util: int) -> dict[str, Any]:
    return {"name": "Fake A100", "memory_total": 16384, "memory_used": 2048,
            "utilization": util}


IDLE = {"name": "Fake A100", "memory_total": 16384, "memory_used": 0, "utilization": 0}


class Lines:
    """The CLI's stdout, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in {timeout} s:\n" + "\n".join(self.lines))

    def count(self, text: str) -> int:
        return sum(1 for line in self.lines if text in line)


@pytest.mark.ssh
@pytest.mark.timeout(120)
def test_a_busy_gpu_is_said_once_then_trials_run_when_it_frees(
        ssh_host: SshServer, tmp_path: Path) -> None:
    ssh_host.set_gpus([busy_gpu(35)])
    experiment, machines = write_files(
        tmp_path, [host_entry(ssh_host, "gpu1")], {**X, "sleep": {"_type": "choice",
                                                                 "_value": [0.1]}},
        trialGpuNumber=1, trialConcurrency=1, maxTrialNumber=2)
    proc = start_cli(tmp_path, "run", str(experiment), "--machines", str(machines), "--plain")
    out = Lines(proc)
    try:
        line = out.wait_for(WAITING, 30)
        assert line.endswith(
            "waiting: GPU 0 on gpu1 is busy (util 35%, 2,048 MiB = 12% memory used; busy "
            "above 10% util / 10% memory); set useActiveGpu: true to share it"), line
        assert " WARNING " in line
        # Busier at the next nvidia-smi reading (every 10 s): the same GPU, nothing new said.
        ssh_host.set_gpus([busy_gpu(60)])
        time.sleep(11)
        ssh_host.set_gpus([IDLE])
        assert proc.wait(timeout=60) == 0, "\n".join(out.lines) + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert out.count("waiting: GPU") == 1, "\n".join(out.lines)
    _, trials = the_experiment(tmp_path)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 2
    assert all(t.gpus == (0,) for t in trials)


@pytest.mark.ssh
@pytest.mark.timeout(120)
def test_use_active_gpu_shares_the_busy_gpu_without_waiting(
        ssh_host: SshServer, tmp_path: Path) -> None:
    ssh_host.set_gpus([busy_gpu(35)])
    experiment, machines = write_files(
        tmp_path, [host_entry(ssh_host, "gpu1", useActiveGpu=True)],
        {**X, "sleep": {"_type": "choice", "_value": [0.1]}},
        trialGpuNumber=1, trialConcurrency=1, maxTrialNumber=2)
    proc = start_cli(tmp_path, "run", str(experiment), "--machines", str(machines), "--plain")
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stdout + stderr
    assert "waiting:" not in stdout
    _, trials = the_experiment(tmp_path)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 2


# ---------------------------------------------------------------------------- pure logic


def _busy(host: str, index: int, util: float) -> tuple[HostSpec, GpuInfo]:
    return (HostSpec(name=host, host=host),
            GpuInfo(index=index, memory_total_mib=16384, memory_used_mib=2048,
                    utilization_pct=util))


def test_busy_notice_speaks_once_per_change() -> None:
    notice = BusyNotice()
    first = notice.refused([_busy("gpu1", 0, 35)])
    assert first is not None and first.startswith(WAITING)
    assert notice.refused([_busy("gpu1", 0, 80)]) is None  # other readings, same GPU
    notice.reading("gpu1", [0])  # still busy: nothing forgotten
    assert notice.refused([_busy("gpu1", 0, 80)]) is None
    two = notice.refused([_busy("gpu1", 0, 35), _busy("gpu2", 1, 50)])
    assert two is not None and "GPU 1 on gpu2 is busy" in two and two.endswith("share them")
    notice.reading("gpu1", [])  # GPU 0 freed...
    assert notice.refused([]) is None
    again = notice.refused([_busy("gpu1", 0, 35)])  # ...and busy again: said again
    assert again is not None and again.startswith(WAITING)


def test_busy_message_names_the_first_four_gpus() -> None:
    text = busy_message([_busy(f"h{i}", 0, 50) for i in range(6)])
    assert text.count("is busy") == 4 and "and 2 more busy GPUs" in text


class _Refusing(FakeBackend):
    """Refuses without a reason at hand: the reason is worded by why_not, when asked."""

    def __init__(self, *args: Any, ask: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = 0
        self.worded = 0
        self.ask = ask

    def place(self, trial_id: str) -> PlaceResult:
        result = super().place(trial_id)
        if result.placement is not None:
            return result
        self.refused += 1
        if self.refused == 3 and self.ask is not None:
            self.ask()
        notice = "waiting: something busy" if self.refused == 1 else None
        return PlaceResult(None, None, result.ever, notice)

    def why_not(self) -> str | None:
        self.worded += 1
        return "a: all 1 slot taken"


def test_the_waiting_reason_is_worded_only_when_the_view_asks(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 1}, trialConcurrency=2, maxTrialNumber=4)
    asked: list[Any] = []
    rig.backend = _Refusing({"a": 1}, lambda t: FakeRun(3.0), rig.clock,
                            ask=lambda: asked.append(controller.view_state()))
    controller = rig.controller()
    exp = controller.create()
    controller.run()
    backend = rig.backend
    assert backend.refused > 5  # the head waited over many turns
    assert backend.worded == 1  # once, for the one ask
    assert asked and asked[0].waiting_reason is None  # answered at the next turn
    events = [e.message for e in rig.store.events(exp.id) if "waiting:" in e.message]
    assert events == ["waiting: something busy"]
    assert controller.view_state().waiting_reason is None  # nothing waits at the end


# ---------------------------------------------------------------------------- the live view


def test_the_live_view_shows_why_trials_wait_on_a_busy_local_gpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real controller and host pool on this machine, the fake nvidia-smi on PATH."""
    import json
    import os
    import sys

    from remotetune.config import local_machine, parse_experiment
    from remotetune.controller import Controller, ControllerOptions
    from remotetune.store import Store
    from remotetune.view import Snapshot, render
    from tests.test_view import text_of

    gpus = tmp_path / "gpus.json"
    gpus.write_text(json.dumps([busy_gpu(35)]))
    monkeypatch.setenv("PATH", f"{Path(__file__).parent / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_NVIDIA_SMI_FILE", str(gpus))
    (tmp_path / "code").mkdir()
    config = parse_experiment({
        "searchSpace": X, "trialCommand": f"{sys.executable} -c 'import nni; "
        "nni.report_final_result(1.0)'", "trialCodeDirectory": "code", "trialGpuNumber": 1,
        "trialConcurrency": 1, "maxTrialNumber": 2, "tuner": {"name": "Random"},
    }, base_dir=tmp_path)
    store = Store(tmp_path / "home" / "remotetune.db")
    controller = Controller(config, (local_machine(None),), store,
                            ControllerOptions(home=tmp_path / "home", gpu_refresh=0.3))
    exp = controller.create()
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    state = controller.view_state()
    while state.waiting_reason is None and time.monotonic() < deadline:
        time.sleep(0.1)
        state = controller.view_state()
    snap = Snapshot(state.experiment, state.trials, state.hosts, state.events,
                    now=time.time(), waiting_reason=state.waiting_reason)
    out = text_of(render(snap), width=250)
    assert "Waiting: 1 trial not placed: local: GPU 0 busy (memory 12%)" in out, out
    assert "waiting: GPU 0 on local is busy (util 35%" in out, out
    gpus.write_text(json.dumps([IDLE]))
    thread.join(timeout=60)
    assert not thread.is_alive()
    trials = store.trials(exp.id)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 2
    assert controller.view_state().waiting_reason is None
    notices = [e for e in store.events(exp.id) if e.message.startswith("waiting: GPU")]
    assert len(notices) == 1
