"""GPU discovery parsing, the slot table's scheduling rules, and the fake nvidia-smi."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotetune.backends.hostpool._slots import NVIDIA_SMI_ARGS, SlotTable, parse_nvidia_smi
from remotetune.model import GpuInfo, HostSpec, Placement

FAKE_BIN = Path(__file__).parent / "bin"


def gpu(index: int, memory_pct: float = 0.0, util: float = 0.0) -> GpuInfo:
    return GpuInfo(index, "Fake", 1000.0, memory_pct * 10.0, util)


def idle(count: int) -> tuple[GpuInfo, ...]:
    return tuple(gpu(i) for i in range(count))


def table(*hosts: HostSpec, gpus: dict[str, tuple[GpuInfo, ...]], number: int = 1) -> SlotTable:
    slots = SlotTable(hosts, number)
    for name, readings in gpus.items():
        slots.update_gpus(name, readings)
    return slots


# ---- parse_nvidia_smi -----------------------------------------------------------------------


def test_nvidia_smi_args_are_the_query_we_parse() -> None:
    assert NVIDIA_SMI_ARGS == (
        "nvidia-smi",
        "--query-gpu=index,name,memory.total,memory.used,utilization.gpu",
        "--format=csv,noheader,nounits",
    )


def test_parse_plain_output() -> None:
    text = "0, NVIDIA H100 80GB HBM3, 81559, 1024, 37\n1, NVIDIA H100 80GB HBM3, 81559, 0, 0\n"
    assert parse_nvidia_smi(text) == (
        GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559.0, 1024.0, 37.0),
        GpuInfo(1, "NVIDIA H100 80GB HBM3", 81559.0, 0.0, 0.0),
    )


def test_parse_tolerates_spaces_blank_lines_header_units_and_order() -> None:
    text = (
        "\n  index, name, memory.total [MiB], memory.used [MiB], utilization.gpu [%]\n\n"
        "   1 ,  Tesla T4 ,  15360 MiB ,  7680 MiB ,  50 %  \r\n"
        "\n0,Tesla T4,15360,0,0\n\n"
    )
    gpus = parse_nvidia_smi(text)
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[1] == GpuInfo(1, "Tesla T4", 15360.0, 7680.0, 50.0)
    assert gpus[1].memory_used_pct == 50.0


def test_parse_bracketed_values_read_as_zero_and_names_may_hold_commas() -> None:
    text = "0, NVIDIA A100, MIG 3g.40gb, 40960, [N/A], [Not Supported]\n"
    assert parse_nvidia_smi(text) == (GpuInfo(0, "NVIDIA A100, MIG 3g.40gb", 40960.0, 0.0, 0.0),)


@pytest.mark.parametrize("text", ["", "\n \n", "No devices were found\n"])
def test_parse_no_gpus(text: str) -> None:
    assert parse_nvidia_smi(text) == ()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0, Tesla T4, 15360", "expected 5 comma-separated fields"),
        ("Failed to initialize NVML: Driver/library version mismatch", "expected 5"),
        ("x, Tesla T4, 15360, 0, 0", "GPU index is not a number"),
        ("0, Tesla T4, lots, 0, 0", "memory.total is not a number"),
        ("0, Tesla T4, 15360, -5, 0", "memory.used must be a finite number"),
        ("0, Tesla T4, 15360, 0, nan", "utilization.gpu must be a finite number"),
    ],
)
def test_parse_bad_line_names_the_line(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_nvidia_smi(f"1, Tesla T4, 15360, 0, 0\n{line}\n")
    assert repr(line) in str(info.value)


def test_parse_duplicate_index() -> None:
    with pytest.raises(ValueError, match="GPU 0 listed twice"):
        parse_nvidia_smi("0, A, 1, 0, 0\n0, B, 1, 0, 0\n")


# ---- no GPU scheduling (None) and hidden GPUs (0) -------------------------------------------


def test_no_gpu_scheduling_uses_slots_and_spreads_over_hosts() -> None:
    slots = SlotTable([HostSpec("cpu-1", slots=2), HostSpec("cpu-2")], None, default_slots=1)
    placed = [slots.place(f"t{i}") for i in range(4)]
    assert placed == [Placement("cpu-1"), Placement("cpu-2"), Placement("cpu-1"), None]
    assert all(p is None or p.cuda_visible_devices is None for p in placed)
    assert slots.running_on("cpu-1") == ("t0", "t2")
    assert slots.capacity() == 3
    assert slots.why_not() == "cpu-1: all 2 slots taken; cpu-2: all 1 slot taken"
    slots.release("t0")
    assert slots.why_not() == "cpu-1: 1 of 2 slots free; cpu-2: all 1 slot taken"
    assert slots.place("t3") == Placement("cpu-1")


def test_no_gpu_scheduling_ignores_gpus_and_indices() -> None:
    spec = HostSpec("a", gpu_indices=(1,), slots=3)
    slots = SlotTable([spec], None)
    slots.update_gpus("a", (gpu(0, memory_pct=99), gpu(1, memory_pct=99)))
    assert [slots.place(t) for t in "xyz"] == [Placement("a")] * 3
    assert slots.holders("a") == {}


def test_trial_gpu_number_zero_hides_gpus() -> None:
    slots = SlotTable([HostSpec("a")], 0, default_slots=2)
    assert slots.place("t1") == Placement("a", (), "")
    assert slots.place("t2") == Placement("a", (), "")
    assert slots.place("t3") is None
    assert slots.impossible() is None


def test_least_loaded_host_first_with_host_order_tie_break() -> None:
    slots = SlotTable([HostSpec("big", slots=4), HostSpec("small", slots=1)], None)
    hosts = [p.host for p in (slots.place(f"t{i}") for i in range(5)) if p is not None]
    assert hosts == ["big", "small", "big", "big", "big"]


# ---- GPU scheduling -------------------------------------------------------------------------


def test_one_gpu_per_trial_spreads_over_hosts() -> None:
    slots = table(HostSpec("a"), HostSpec("b"), gpus={"a": idle(2), "b": idle(2)})
    placed = [slots.place(f"t{i}") for i in range(5)]
    assert placed == [
        Placement("a", (0,), "0"),
        Placement("b", (0,), "0"),
        Placement("a", (1,), "1"),
        Placement("b", (1,), "1"),
        None,
    ]
    assert slots.holders("a") == {0: ("t0",), 1: ("t2",)}
    assert slots.why_not() == (
        "a: GPUs 0,1 full (max 1 trial per GPU); b: GPUs 0,1 full (max 1 trial per GPU)"
    )
    assert slots.capacity() == 4


def test_max_trials_per_gpu_fills_emptiest_gpu_first() -> None:
    slots = table(HostSpec("a", max_trials_per_gpu=2), gpus={"a": idle(2)})
    placed = [slots.place(f"t{i}") for i in range(5)]
    assert [p.gpus if p else None for p in placed] == [(0,), (1,), (0,), (1,), None]
    assert slots.holders("a") == {0: ("t0", "t2"), 1: ("t1", "t3")}
    assert slots.capacity() == 4
    assert slots.why_not() == "a: GPUs 0,1 full (max 2 trials per GPU)"


def test_gpu_indices_limit_the_gpus_used() -> None:
    slots = table(HostSpec("a", gpu_indices=(3, 1)), gpus={"a": idle(4)})
    assert [slots.place(t) for t in ("x", "y", "z")] == [
        Placement("a", (1,), "1"),
        Placement("a", (3,), "3"),
        None,
    ]
    assert slots.why_not() == (
        "a: GPUs 1,3 full (max 1 trial per GPU), GPUs 0,2 excluded by gpuIndices"
    )


def test_busy_gpus_are_skipped_and_explained() -> None:
    gpus = (gpu(0, memory_pct=93), gpu(1, memory_pct=88), gpu(2), gpu(3, util=95))
    slots = SlotTable(
        [HostSpec("gpu-a", gpu_indices=(0, 1, 3)), HostSpec("gpu-b")], 1, default_slots=1
    )
    slots.update_gpus("gpu-a", gpus)
    slots.update_gpus("gpu-b", idle(1))
    slots.set_reachable("gpu-b", False)
    assert slots.place("t1") is None
    assert slots.why_not() == (
        "gpu-a: GPUs 0,1,3 busy (memory 93%, 88%, util 95%), GPU 2 excluded by gpuIndices; "
        "gpu-b: unreachable"
    )
    assert slots.capacity() == 0
    assert slots.impossible() is None


def test_thresholds_come_from_the_host_spec() -> None:
    spec = HostSpec("a", active_gpu_memory_pct=50.0, active_gpu_util_pct=90.0)
    slots = table(spec, gpus={"a": (gpu(0, memory_pct=40, util=85), gpu(1, memory_pct=60))})
    assert slots.place("t1") == Placement("a", (0,), "0")
    assert slots.place("t2") is None
    assert "GPU 1 busy (memory 60%)" in slots.why_not()


def test_use_active_gpu_takes_busy_gpus_idle_ones_first() -> None:
    spec = HostSpec("a", use_active_gpu=True)
    slots = table(spec, gpus={"a": (gpu(0, memory_pct=90), gpu(1))})
    assert slots.place("t1") == Placement("a", (1,), "1")
    assert slots.place("t2") == Placement("a", (0,), "0")


def test_our_own_trials_do_not_lock_us_out() -> None:
    slots = table(HostSpec("a", max_trials_per_gpu=2), gpus={"a": idle(1)})
    assert slots.place("t1") == Placement("a", (0,), "0")
    slots.update_gpus("a", (gpu(0, memory_pct=60, util=99),))  # t1 is working hard
    assert slots.place("t2") == Placement("a", (0,), "0")
    slots.release("t1")
    slots.release("t2")
    # The last reading still shows our finished trials: the GPU stays ours until a new one.
    assert slots.place("t3") == Placement("a", (0,), "0")
    slots.release("t3")
    slots.update_gpus("a", (gpu(0, memory_pct=60),))  # someone else took it meanwhile
    assert slots.place("t4") is None
    assert slots.why_not() == "a: GPU 0 busy (memory 60%)"


def test_two_gpus_per_trial_on_one_host() -> None:
    slots = table(HostSpec("a"), HostSpec("b"), gpus={"a": idle(3), "b": idle(1)}, number=2)
    assert slots.place("t1") == Placement("a", (0, 1), "0,1")
    assert slots.place("t2") is None
    assert slots.holders("a") == {0: ("t1",), 1: ("t1",)}
    assert slots.why_not() == (
        "a: GPUs 0,1 full (max 1 trial per GPU), only GPU 2 free, a trial needs 2; "
        "b: can never take a trial: a trial needs 2 GPUs, the host has 1 usable"
    )
    assert slots.capacity() == 1
    assert slots.impossible() is None
    slots.release("t1")
    assert slots.place("t3") == Placement("a", (0, 1), "0,1")


def test_two_gpus_per_trial_with_sharing() -> None:
    slots = table(HostSpec("a", max_trials_per_gpu=2), gpus={"a": idle(3)}, number=2)
    placed = [slots.place(f"t{i}") for i in range(4)]
    assert [p.gpus if p else None for p in placed] == [(0, 1), (2, 0), (1, 2), None]
    assert slots.capacity() == 3


def test_cuda_visible_devices_keeps_the_order_taken() -> None:
    slots = table(HostSpec("a", max_trials_per_gpu=2), gpus={"a": idle(2)}, number=2)
    slots.occupy("old", Placement("a", (1,), "1"))
    assert slots.place("new") == Placement("a", (0, 1), "0,1")
    slots.release("old")
    slots.occupy("old", Placement("a", (0,), "0"))
    slots.release("new")
    assert slots.place("newer") == Placement("a", (1, 0), "1,0")


# ---- GPUs unknown ---------------------------------------------------------------------------


def test_undiscovered_gpus_take_no_trials() -> None:
    slots = SlotTable([HostSpec("a"), HostSpec("b")], 1)
    slots.update_gpus("b", None, error="nvidia-smi: command not found")
    assert slots.place("t1") is None
    assert slots.why_not() == (
        "a: GPUs not discovered yet; b: GPUs unknown: nvidia-smi: command not found"
    )
    assert slots.impossible() is None  # a may still report GPUs
    assert slots.capacity() == 0
    slots.update_gpus("a", idle(1))
    assert slots.place("t1") == Placement("a", (0,), "0")


def test_undiscovered_gpus_trust_gpu_indices() -> None:
    slots = SlotTable([HostSpec("a", gpu_indices=(2, 5))], 1)
    assert slots.capacity() == 2
    assert slots.place("t1") == Placement("a", (2,), "2")
    assert slots.place("t2") == Placement("a", (5,), "5")
    assert slots.place("t3") is None
    slots.update_gpus("a", None, error="NVIDIA-SMI has failed")  # still trusted
    assert slots.why_not() == "a: GPUs 2,5 full (max 1 trial per GPU)"


def test_gpu_indices_not_on_the_host() -> None:
    slots = table(HostSpec("a", gpu_indices=(1, 7)), gpus={"a": idle(2)}, number=2)
    assert slots.place("t1") is None
    assert slots.why_not() == (
        "a: can never take a trial: a trial needs 2 GPUs, the host has 1 usable "
        "(GPU 0 excluded by gpuIndices, GPU 7 in gpuIndices not found on the host)"
    )


# ---- impossible() ---------------------------------------------------------------------------


def test_impossible_when_no_host_has_enough_gpus() -> None:
    slots = table(
        HostSpec("a", gpu_indices=(0,)),
        HostSpec("b"),
        gpus={"a": idle(4), "b": idle(1)},
        number=2,
    )
    slots.set_reachable("b", False)
    message = slots.impossible()
    assert message == (
        "no host can ever run a trial that needs 2 GPUs: "
        "a: a trial needs 2 GPUs, the host has 1 usable (GPUs 1,2,3 excluded by gpuIndices); "
        "b: a trial needs 2 GPUs, the host has 1 usable "
        "(lower trialGpuNumber, or fix gpuIndices / the hosts' NVIDIA drivers)"
    )


def test_impossible_when_discovery_failed_everywhere_until_it_works() -> None:
    slots = SlotTable([HostSpec("a"), HostSpec("b")], 1)
    slots.update_gpus("a", None, error="nvidia-smi: command not found")
    slots.update_gpus("b", ())
    assert slots.impossible() == (
        "no host can ever run a trial that needs 1 GPU: "
        "a: GPU discovery failed (nvidia-smi: command not found); "
        "b: a trial needs 1 GPU, the host has 0 usable "
        "(lower trialGpuNumber, or fix gpuIndices / the hosts' NVIDIA drivers)"
    )
    slots.update_gpus("a", idle(1))
    assert slots.impossible() is None


def test_impossible_without_gpus() -> None:
    assert SlotTable([], 1).impossible() == "no hosts are configured"
    slots = SlotTable([HostSpec("a", slots=0)], None)
    assert slots.impossible() == "no host has any trial slot: a: 0 slots (give a host slots >= 1)"
    assert slots.why_not() == "a: no trial slots (slots: 0)"
    assert SlotTable([HostSpec("a")], None).impossible() is None


# ---- reachability, occupy, release ----------------------------------------------------------


def test_unreachable_hosts_take_no_new_trials() -> None:
    slots = table(HostSpec("a"), HostSpec("b"), gpus={"a": idle(1), "b": idle(1)})
    slots.set_reachable("a", False)
    assert slots.capacity() == 1
    assert slots.place("t1") == Placement("b", (0,), "0")
    assert slots.place("t2") is None
    slots.set_reachable("a", True)
    assert slots.place("t2") == Placement("a", (0,), "0")


def test_occupy_records_even_when_over_subscribed() -> None:
    slots = table(HostSpec("a"), gpus={"a": idle(1)})
    slots.occupy("t1", Placement("a", (0,), "0"))
    slots.occupy("t2", Placement("a", (0,), "0"))
    assert slots.holders("a") == {0: ("t1", "t2")}
    assert slots.placement_of("t2") == Placement("a", (0,), "0")
    assert slots.place("t3") is None
    slots.release("t1")
    assert slots.place("t3") is None  # t2 still holds the only GPU
    slots.release("t2")
    assert slots.place("t3") == Placement("a", (0,), "0")


def test_occupy_moves_a_trial_and_rejects_unknown_hosts() -> None:
    slots = SlotTable([HostSpec("a", slots=2), HostSpec("b", slots=2)], None)
    slots.occupy("t1", Placement("a"))
    slots.occupy("t1", Placement("b"))
    assert slots.running_on("a") == ()
    assert slots.running_on("b") == ("t1",)
    with pytest.raises(ValueError, match=r"unknown host 'gone' \(known hosts: a, b\)"):
        slots.occupy("t2", Placement("gone"))
    assert slots.placement_of("t2") is None


def test_release_of_unknown_trial_is_harmless_and_place_twice_is_an_error() -> None:
    slots = SlotTable([HostSpec("a", slots=2)], None)
    slots.release("nobody")
    assert slots.place("t1") == Placement("a")
    with pytest.raises(ValueError, match="already placed on a"):
        slots.place("t1")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="used twice"):
        SlotTable([HostSpec("a"), HostSpec("a")], None)
    with pytest.raises(ValueError, match="trial_gpu_number"):
        SlotTable([HostSpec("a")], -1)
    with pytest.raises(ValueError, match="max_trials_per_gpu"):
        SlotTable([HostSpec("a", max_trials_per_gpu=0)], 1)
    with pytest.raises(ValueError, match="unknown host"):
        SlotTable([HostSpec("a")], 1).update_gpus("b", ())


# ---- property: never over a GPU's limit, never on excluded or foreign-busy GPUs ------------


Scenario = tuple[list[tuple[HostSpec, int]], int, list[tuple[str, int, int]]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    hosts = []
    for h in range(draw(st.integers(1, 3))):
        spec = HostSpec(
            f"h{h}",
            gpu_indices=draw(st.none() | st.sets(st.integers(0, 5), max_size=4).map(tuple)),
            max_trials_per_gpu=draw(st.integers(1, 3)),
            use_active_gpu=draw(st.booleans()),
        )
        hosts.append((spec, draw(st.integers(0, 4))))  # the host and how many GPUs it has
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["place", "release", "update"]),
                st.integers(0, 2),
                st.integers(0, 2**6 - 1),
            ),
            max_size=40,
        )
    )
    return hosts, draw(st.integers(1, 3)), ops


def busy_reading(count: int, mask: int) -> tuple[GpuInfo, ...]:
    return tuple(gpu(i, memory_pct=95 if mask >> i & 1 else 0) for i in range(count))


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_property_limits_exclusions_and_busy_gpus(scenario: Scenario) -> None:
    hosts, number, ops = scenario
    specs = [spec for spec, _ in hosts]
    counts = {spec.name: count for spec, count in hosts}
    by_name = {s.name: s for s in specs}
    slots = SlotTable(specs, number)
    readings = {s.name: busy_reading(counts[s.name], 0) for s in specs}
    recent: dict[str, set[int]] = {s.name: set() for s in specs}  # ours since last reading
    for s in specs:
        slots.update_gpus(s.name, readings[s.name])
    live: list[str] = []
    for step, (op, pick, mask) in enumerate(ops):
        host = specs[pick % len(specs)].name
        if op == "update":
            readings[host] = busy_reading(counts[host], mask)
            slots.update_gpus(host, readings[host])
            recent[host] = set(slots.holders(host))
        elif op == "release" and live:
            slots.release(live.pop(pick % len(live)))
        elif op == "place":
            placement = slots.place(f"t{step}")
            if placement is None:
                continue
            live.append(f"t{step}")
            spec = by_name[placement.host]
            assert len(placement.gpus) == len(set(placement.gpus)) == number
            assert placement.cuda_visible_devices == ",".join(map(str, placement.gpus))
            for index in placement.gpus:
                assert index < counts[spec.name]
                assert spec.gpu_indices is None or index in spec.gpu_indices
                busy = readings[spec.name][index].memory_used_pct > spec.active_gpu_memory_pct
                held = len(slots.holders(spec.name).get(index, ())) > 1
                assert not busy or spec.use_active_gpu or held or index in recent[spec.name]
            recent[spec.name].update(placement.gpus)
        for s in specs:
            for holders in slots.holders(s.name).values():
                assert len(holders) <= s.max_trials_per_gpu
        assert sorted(t for s in specs for t in slots.running_on(s.name)) == sorted(live)


# ---- the fake nvidia-smi, run as a real process ---------------------------------------------


def run_fake(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_NVIDIA_SMI")}
    environ.update(env, PATH=f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(
        list(args), capture_output=True, text=True, env=environ, timeout=30, check=False
    )


def test_fake_nvidia_smi_default_two_idle_gpus() -> None:
    result = run_fake(*NVIDIA_SMI_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    gpus = parse_nvidia_smi(result.stdout)
    assert [(g.index, g.memory_used_mib, g.utilization_pct) for g in gpus] == [
        (0, 0.0, 0.0),
        (1, 0.0, 0.0),
    ]
    slots = SlotTable([HostSpec("local", local=True)], 2)
    slots.update_gpus("local", gpus)
    assert slots.place("t1") == Placement("local", (0, 1), "0,1")


def test_fake_nvidia_smi_spec_from_env_and_file(tmp_path: Path) -> None:
    spec = [
        {"name": "NVIDIA A100-SXM4-40GB", "memory_total": 40960, "memory_used": 38000,
         "utilization": 97},
        {"name": "NVIDIA A100-SXM4-40GB", "memory_total": 40960, "memory_used": "[N/A]",
         "utilization": "[N/A]"},
    ]  # fmt: skip
    from_env = run_fake(*NVIDIA_SMI_ARGS, FAKE_NVIDIA_SMI_GPUS=json.dumps(spec))
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    from_file = run_fake(*NVIDIA_SMI_ARGS, FAKE_NVIDIA_SMI_FILE=str(path))
    assert from_env.stdout == from_file.stdout
    assert "[N/A]" in from_env.stdout
    assert parse_nvidia_smi(from_env.stdout) == (
        GpuInfo(0, "NVIDIA A100-SXM4-40GB", 40960.0, 38000.0, 97.0),
        GpuInfo(1, "NVIDIA A100-SXM4-40GB", 40960.0, 0.0, 0.0),
    )
    with_header = run_fake("nvidia-smi", NVIDIA_SMI_ARGS[1], "--format=csv")
    assert with_header.stdout.startswith("index, name, memory.total [MiB]")
    plain = run_fake(*NVIDIA_SMI_ARGS).stdout
    assert parse_nvidia_smi(with_header.stdout) == parse_nvidia_smi(plain)


def test_fake_nvidia_smi_list_and_errors() -> None:
    listing = run_fake("nvidia-smi", "-L")
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[1].startswith("GPU 1: NVIDIA Fake GPU (UUID: GPU-")
    bad = run_fake("nvidia-smi", "-L", NVIDIA_SMI_ARGS[1])
    assert (bad.returncode, bad.stdout.strip()) == (
        2,
        "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.",
    )
    field = run_fake("nvidia-smi", "--query-gpu=index,colour", "--format=csv")
    assert (field.returncode, field.stdout.strip()) == (
        2,
        'Field "colour" is not a valid field to query.',
    )
    failed = run_fake(*NVIDIA_SMI_ARGS, FAKE_NVIDIA_SMI_FAIL="1")
    assert failed.returncode == 9
    assert "couldn't communicate with the NVIDIA driver" in failed.stdout


def test_fake_nvidia_smi_without_gpus() -> None:
    result = run_fake(*NVIDIA_SMI_ARGS, FAKE_NVIDIA_SMI_GPUS="[]")
    assert (result.returncode, result.stdout.strip()) == (6, "No devices were found")
    assert parse_nvidia_smi(result.stdout) == ()
