"""Saying why trials wait for a busy GPU, once per change (pure logic, no I/O).

NNI refuses a GPU that other people's work keeps busy without a word; the host pool says
so, e.g. ``waiting: GPU 0 on gpu1 is busy (util 35%, 2,048 MiB = 12% memory used; busy above
10% util / 10% memory); set useActiveGpu: true to share it``. :class:`BusyNotice` decides
when: the first time a refused placement finds busy GPUs, and again only when that set of
GPUs changes, or when a GPU it named was seen idle since and is busy again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from remotetune.model import GpuInfo, HostSpec

SHOWN = 4  # GPUs named in one notice; the rest are counted

BusyGpu = tuple[HostSpec, GpuInfo]


def _busy_clause(spec: HostSpec, gpu: GpuInfo) -> str:
    used = f"{gpu.memory_used_mib:,.0f} MiB"
    if gpu.memory_total_mib > 0:
        used += f" = {gpu.memory_used_pct:.0f}% memory"
    return (f"GPU {gpu.index} on {spec.name} is busy (util {gpu.utilization_pct:.0f}%, {used} "
            f"used; busy above {spec.active_gpu_util_pct:g}% util / "
            f"{spec.active_gpu_memory_pct:g}% memory)")


def busy_message(busy: Sequence[BusyGpu]) -> str:
    """One line naming the busy GPUs (the first :data:`SHOWN`) and what to set."""
    clauses = [_busy_clause(spec, gpu) for spec, gpu in busy[:SHOWN]]
    if len(busy) > SHOWN:
        clauses.append(f"and {len(busy) - SHOWN} more busy GPUs")
    them = "it" if len(busy) == 1 else "them"
    return f"waiting: {'; '.join(clauses)}; set useActiveGpu: true to share {them}"


class BusyNotice:
    """Remembers which busy GPUs the user was told about."""

    def __init__(self) -> None:
        self.told: frozenset[tuple[str, int]] = frozenset()

    def refused(self, busy: Sequence[BusyGpu]) -> str | None:
        """A placement was refused while ``busy`` GPUs were busy: the line to show, or None
        when the user already knows (or no GPU is busy)."""
        now = frozenset((spec.name, gpu.index) for spec, gpu in busy)
        if now == self.told:
            return None
        self.told = now
        return busy_message(busy) if busy else None

    def reading(self, host: str, busy: Iterable[int]) -> None:
        """A fresh GPU reading of ``host``: a GPU told about and idle now is forgotten, so it
        is named again if it gets busy again while trials wait."""
        still = set(busy)
        self.told = frozenset((h, i) for h, i in self.told if h != host or i in still)
