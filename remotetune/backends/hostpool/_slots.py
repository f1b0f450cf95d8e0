"""GPU discovery output parsing and the slot table: which trial may run where, and why not.

Pure logic: no I/O and no SSH. Other modules run :data:`NVIDIA_SMI_ARGS` on a host and hand
the text to :func:`parse_nvidia_smi`, then feed the result to :meth:`SlotTable.update_gpus`.

Scheduling follows NNI's ``trialGpuNumber``:

* ``None``: no GPU scheduling. A host runs up to ``spec.slots`` (else ``default_slots``) trials
  and ``CUDA_VISIBLE_DEVICES`` is left alone.
* ``0``: the same capacity rule, with ``CUDA_VISIBLE_DEVICES=""`` (GPUs hidden).
* ``n > 0``: a trial takes ``n`` GPUs of one host. Each GPU holds up to
  ``spec.max_trials_per_gpu`` of our trials. Only ``spec.gpu_indices`` (when set) are used.
  A GPU that is active (memory or utilisation above the host's thresholds) is skipped unless
  ``spec.use_active_gpu``, except when the activity can be ours: a GPU that holds one of our
  trials, or held one since the last reading, is never locked out by that rule.

Not thread safe: the controller owns the table and calls it from its event loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from remotetune.model import GpuInfo, HostSpec, Placement

logger = logging.getLogger(__name__)

NVIDIA_SMI_ARGS: tuple[str, ...] = (
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,memory.used,utilization.gpu",
    "--format=csv,noheader,nounits",
)

_FIELDS = "index, name, memory.total, memory.used, utilization.gpu"
_UNITS = ("MiB", "%")


def _number(text: str, what: str, line: str) -> float:
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):  # [N/A], [Not Supported], [Unknown Error]
        return 0.0
    for unit in _UNITS:  # output taken without "nounits"
        if value.endswith(unit):
            value = value[: -len(unit)].strip()
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"nvidia-smi: {what} is not a number in line {line!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"nvidia-smi: {what} must be a finite number >= 0 in line {line!r}")
    return number


def parse_nvidia_smi(text: str) -> tuple[GpuInfo, ...]:
    """Parse the output of :data:`NVIDIA_SMI_ARGS` into GPUs sorted by index.

    Tolerates blank lines, extra spaces, a header line, units and bracketed values such as
    ``[N/A]`` (read as 0). A name may contain commas. "No devices were found" gives ``()``.
    Raises ``ValueError`` naming the offending line for anything else.
    """
    gpus: dict[int, GpuInfo] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.lower().startswith("no devices were found"):
            continue
        fields = [part.strip() for part in line.split(",")]
        if fields[0].lower() == "index" and len(fields) > 1 and fields[1].lower() == "name":
            continue  # header, when called without "noheader"
        if len(fields) < 5:
            raise ValueError(
                f"nvidia-smi: expected 5 comma-separated fields ({_FIELDS}), "
                f"got {len(fields)} in line {raw!r}"
            )
        index_text, *name_parts, total, used, util = fields
        if not index_text.isdigit():
            raise ValueError(f"nvidia-smi: GPU index is not a number in line {raw!r}")
        index = int(index_text)
        if index in gpus:
            raise ValueError(f"nvidia-smi: GPU {index} listed twice (line {raw!r})")
        gpus[index] = GpuInfo(
            index=index,
            name=", ".join(name_parts),
            memory_total_mib=_number(total, "memory.total", raw),
            memory_used_mib=_number(used, "memory.used", raw),
            utilization_pct=_number(util, "utilization.gpu", raw),
        )
    return tuple(gpus[i] for i in sorted(gpus))


def gpu_is_busy(spec: HostSpec, gpu: GpuInfo) -> bool:
    """The one GPU-busy rule (placement and `remotetune check`): memory or utilisation above
    the host's ``activeGpuMemoryPct`` / ``activeGpuUtilPct`` thresholds."""
    return (
        gpu.memory_used_pct > spec.active_gpu_memory_pct
        or gpu.utilization_pct > spec.active_gpu_util_pct
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _gpu_list(indices: Sequence[int]) -> str:
    """``GPU 3`` or ``GPUs 0,1``."""
    joined = ",".join(str(i) for i in indices)
    return f"GPU {joined}" if len(indices) == 1 else f"GPUs {joined}"


@dataclass
class _Host:
    """The table's mutable view of one host."""

    spec: HostSpec
    order: int
    reachable: bool = True
    gpus: tuple[GpuInfo, ...] | None = None  # the last reading; None: unknown
    error: str | None = None  # why the GPUs are unknown
    trials: dict[str, Placement] = field(default_factory=dict)  # in placement order
    ours_since_reading: set[int] = field(default_factory=set)  # GPUs our trials used lately
    # GPU -> (holders, who): reserved on the host by other experiments' trials, as a refused
    # launch said; forgotten at the next GPU reading (the next launch there asks again)
    foreign: dict[int, tuple[int, str]] = field(default_factory=dict)

    def counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for placement in self.trials.values():
            for gpu in placement.gpus:
                counts[gpu] = counts.get(gpu, 0) + 1
        return counts

    def known_gpus(self) -> tuple[GpuInfo, ...] | None:
        """The last reading, or the spec's ``gpu_indices`` trusted as idle GPUs."""
        if self.gpus is not None:
            return self.gpus
        if self.spec.gpu_indices is not None:
            return tuple(GpuInfo(index=i) for i in self.spec.gpu_indices)
        return None

    def eligible(self) -> tuple[GpuInfo, ...]:
        known = self.known_gpus() or ()
        wanted = self.spec.gpu_indices
        return tuple(g for g in known if wanted is None or g.index in wanted)

    def active(self, gpu: GpuInfo) -> bool:
        return gpu_is_busy(self.spec, gpu)

    def blocked_by_others(self, gpu: GpuInfo, counts: dict[int, int]) -> bool:
        """Active for a reason that is not (or may not be) our own trials."""
        ours = counts.get(gpu.index, 0) > 0 or gpu.index in self.ours_since_reading
        return not self.spec.use_active_gpu and not ours and self.active(gpu)

    def load(self, counts: dict[int, int]) -> dict[int, int]:
        """Trials on each GPU: ours plus those other experiments reserved."""
        load = dict(counts)
        for gpu, (holders, _) in self.foreign.items():
            load[gpu] = load.get(gpu, 0) + holders
        return load

    def free_gpus(self) -> list[GpuInfo]:
        """GPUs that can take one more trial now, best first (emptiest, idle, lowest index)."""
        counts = self.counts()
        load = self.load(counts)
        limit = self.spec.max_trials_per_gpu
        free = [
            g
            for g in self.eligible()
            if load.get(g.index, 0) < limit and not self.blocked_by_others(g, counts)
        ]
        return sorted(free, key=lambda g: (load.get(g.index, 0), self.active(g), g.index))


class SlotTable:
    """Which trial runs where; places new trials and explains why one cannot be placed."""

    def __init__(
        self, hosts: Sequence[HostSpec], trial_gpu_number: int | None, *, default_slots: int = 1
    ) -> None:
        if trial_gpu_number is not None and trial_gpu_number < 0:
            raise ValueError(f"trial_gpu_number must be None or >= 0, got {trial_gpu_number}")
        if default_slots < 0:
            raise ValueError(f"default_slots must be >= 0, got {default_slots}")
        self._gpu_number = trial_gpu_number
        self._default_slots = default_slots
        self._hosts: dict[str, _Host] = {}
        for order, spec in enumerate(hosts):
            if spec.name in self._hosts:
                raise ValueError(f"host name {spec.name!r} is used twice; names must be unique")
            if trial_gpu_number and spec.max_trials_per_gpu < 1:
                raise ValueError(
                    f"host {spec.name!r}: max_trials_per_gpu must be >= 1, "
                    f"got {spec.max_trials_per_gpu}"
                )
            self._hosts[spec.name] = _Host(spec, order)
        self._placements: dict[str, Placement] = {}
        # Bumped by every change: a placement refused at one version is refused again at
        # the same version, so callers may keep the answer until it moves.
        self.version = 0

    # ---- inputs -------------------------------------------------------------------------

    def _host(self, name: str) -> _Host:
        try:
            return self._hosts[name]
        except KeyError:
            known = ", ".join(self._hosts) or "none"
            raise ValueError(f"unknown host {name!r} (known hosts: {known})") from None

    def update_gpus(
        self, host: str, gpus: Sequence[GpuInfo] | None, *, error: str | None = None
    ) -> None:
        """Record a fresh GPU reading; ``None`` means unknown (``error`` says why)."""
        state = self._host(host)
        self.version += 1
        state.gpus = None if gpus is None else tuple(sorted(gpus, key=lambda g: g.index))
        state.error = error if gpus is None else None
        state.ours_since_reading = set(state.counts())
        state.foreign = {}

    def reserved_elsewhere(self, host: str, gpu: int, holders: int, who: str) -> None:
        """A launch on ``gpu`` was refused: other experiments' trials hold it (``holders``
        of them). It counts as that full until the next GPU reading."""
        self._host(host).foreign[gpu] = (max(1, holders), who)
        self.version += 1

    def set_reachable(self, host: str, reachable: bool) -> None:
        """Unreachable hosts keep their trials but take no new ones."""
        state = self._host(host)
        if state.reachable != reachable:
            state.reachable = reachable
            self.version += 1

    # ---- placement ----------------------------------------------------------------------

    def _gpu_mode(self) -> bool:
        return bool(self._gpu_number)

    def set_default_slots(self, slots: int) -> None:
        """The capacity of a host without ``slots:`` (``trialConcurrency``) changed."""
        if slots < 0:
            raise ValueError(f"default_slots must be >= 0, got {slots}")
        self._default_slots = slots
        self.version += 1

    def _slots(self, state: _Host) -> int:
        spec_slots = state.spec.slots
        return self._default_slots if spec_slots is None else spec_slots

    def _ever_capacity(self, state: _Host) -> int:
        """Trials the host could hold with every eligible GPU idle."""
        if not self._gpu_mode():
            return self._slots(state)
        needed = self._gpu_number or 0
        usable = len(state.eligible())
        return 0 if usable < needed else usable * state.spec.max_trials_per_gpu // needed

    def _candidate(self, state: _Host) -> Placement | None:
        if not self._gpu_mode():
            if len(state.trials) >= self._slots(state):
                return None
            hidden = "" if self._gpu_number == 0 else None
            return Placement(state.spec.name, (), hidden)
        needed = self._gpu_number or 0
        free = state.free_gpus()
        if len(free) < needed:
            return None
        taken = tuple(g.index for g in free[:needed])
        return Placement(state.spec.name, taken, ",".join(str(i) for i in taken))

    def place(self, trial_id: str) -> Placement | None:
        """Put a trial on the least-loaded host that can take it now; ``None`` if none can.

        Load is the share of the host's capacity in use, then the number of trials; ties go
        to the host listed first.
        """
        if trial_id in self._placements:
            where = self._placements[trial_id]
            raise ValueError(f"trial {trial_id!r} is already placed on {where.host}")
        best: tuple[Fraction, int, int] | None = None
        chosen: Placement | None = None
        for state in self._hosts.values():
            if not state.reachable:
                continue
            candidate = self._candidate(state)
            if candidate is None:
                continue
            running = len(state.trials)
            key = (Fraction(running, max(self._ever_capacity(state), 1)), running, state.order)
            if best is None or key < best:
                best, chosen = key, candidate
        if chosen is not None:
            self._record(trial_id, chosen)
            logger.debug("placed trial %s on %s", trial_id, chosen)
        return chosen

    def _record(self, trial_id: str, placement: Placement) -> None:
        state = self._host(placement.host)
        state.trials[trial_id] = placement
        state.ours_since_reading.update(placement.gpus)
        self._placements[trial_id] = placement
        self.version += 1

    def occupy(self, trial_id: str, placement: Placement) -> None:
        """Record a placement made earlier (controller restart), even if it over-subscribes."""
        self._host(placement.host)  # fail on an unknown host before changing anything
        if trial_id in self._placements:
            self.release(trial_id)
        self._record(trial_id, placement)

    def release(self, trial_id: str) -> None:
        """Free a trial's slot or GPUs. Releasing an unknown trial does nothing."""
        placement = self._placements.pop(trial_id, None)
        if placement is None:
            logger.debug("release of trial %s that holds nothing", trial_id)
            return
        del self._hosts[placement.host].trials[trial_id]
        self.version += 1

    # ---- queries ------------------------------------------------------------------------

    def busy_gpus(self, host: str | None = None) -> tuple[tuple[HostSpec, GpuInfo], ...]:
        """The GPUs a trial may not take because other people's work keeps them busy (above
        the host's thresholds, without ``useActiveGpu``), on reachable hosts (or ``host``),
        in host order."""
        if not self._gpu_mode():
            return ()
        found: list[tuple[HostSpec, GpuInfo]] = []
        for state in self._hosts.values() if host is None else (self._host(host),):
            if not state.reachable:
                continue
            counts = state.counts()
            found.extend((state.spec, g) for g in state.eligible()
                         if g.index not in state.foreign and state.blocked_by_others(g, counts))
        return tuple(found)

    def holders(self, host: str) -> dict[int, tuple[str, ...]]:
        """GPU index -> ids of our trials on it (only GPUs that hold any)."""
        result: dict[int, list[str]] = {}
        for trial_id, placement in self._host(host).trials.items():
            for gpu in placement.gpus:
                result.setdefault(gpu, []).append(trial_id)
        return {gpu: tuple(result[gpu]) for gpu in sorted(result)}

    def running_on(self, host: str) -> tuple[str, ...]:
        return tuple(self._host(host).trials)

    def placement_of(self, trial_id: str) -> Placement | None:
        return self._placements.get(trial_id)

    def slots(self, host: str) -> int:
        """How many trials the host could run at once now (ignoring reachability)."""
        state = self._host(host)
        if not self._gpu_mode():
            return self._slots(state)
        needed = self._gpu_number or 0
        counts = state.counts()
        usable = [g for g in state.eligible() if not state.blocked_by_others(g, counts)]
        return 0 if len(usable) < needed else len(usable) * state.spec.max_trials_per_gpu // needed

    @property
    def schedules_gpus(self) -> bool:
        """Whether trials take GPUs (``trialGpuNumber`` >= 1): placing needs GPU readings."""
        return bool(self._gpu_number)

    def capacity(self) -> int:
        """Trials that could run at once on the reachable hosts now (for progress and ETA)."""
        return sum(self.slots(name) for name, s in self._hosts.items() if s.reachable)

    def impossible(self) -> str | None:
        """Why no host could ever run a trial (fail fast), or ``None`` if one might.

        Unreachable hosts may come back, so they still count as possible. A host whose GPU
        discovery failed counts as impossible until a later reading succeeds.
        """
        if not self._hosts:
            return "no hosts are configured"
        reasons = [self._never(state) for state in self._hosts.values()]
        if any(reason is None for reason in reasons):
            return None
        clauses = "; ".join(f"{name}: {r}" for name, r in zip(self._hosts, reasons, strict=True))
        if self._gpu_mode():
            needed = _plural(self._gpu_number or 0, "GPU")
            head = f"no host can ever run a trial that needs {needed}"
            hint = "lower trialGpuNumber, or fix gpuIndices / the hosts' NVIDIA drivers"
        else:
            head = "no host has any trial slot"
            hint = "give a host slots >= 1"
        return f"{head}: {clauses} ({hint})"

    def _never(self, state: _Host) -> str | None:
        if not self._gpu_mode():
            return None if self._slots(state) > 0 else "0 slots"
        if state.known_gpus() is None:
            return f"GPU discovery failed ({state.error})" if state.error else None
        needed = self._gpu_number or 0
        usable = len(state.eligible())
        if usable >= needed:
            return None
        detail = self._excluded_clauses(state)
        extra = f" ({', '.join(detail)})" if detail else ""
        return f"a trial needs {_plural(needed, 'GPU')}, the host has {usable} usable{extra}"

    def why_not(self) -> str:
        """Why the next waiting trial cannot be placed now: one clause per host."""
        return "; ".join(f"{name}: {self._why(state)}" for name, state in self._hosts.items())

    def _why(self, state: _Host) -> str:
        if not state.reachable:
            return "unreachable"
        if not self._gpu_mode():
            slots, running = self._slots(state), len(state.trials)
            if slots <= 0:
                return "no trial slots (slots: 0)"
            if running >= slots:
                return f"all {_plural(slots, 'slot')} taken"
            return f"{slots - running} of {_plural(slots, 'slot')} free"
        if state.known_gpus() is None:
            return f"GPUs unknown: {state.error}" if state.error else "GPUs not discovered yet"
        never = self._never(state)
        if never is not None:
            return f"can never take a trial: {never}"
        return ", ".join(self._gpu_clauses(state))

    def _excluded_clauses(self, state: _Host) -> list[str]:
        wanted = state.spec.gpu_indices
        if wanted is None or state.gpus is None:
            return []
        present = {g.index for g in state.gpus}
        clauses = []
        excluded = [g.index for g in state.gpus if g.index not in wanted]
        if excluded:
            clauses.append(f"{_gpu_list(excluded)} excluded by gpuIndices")
        missing = [i for i in wanted if i not in present]
        if missing:
            clauses.append(f"{_gpu_list(missing)} in gpuIndices not found on the host")
        return clauses

    def _gpu_clauses(self, state: _Host) -> list[str]:
        counts = state.counts()
        limit = state.spec.max_trials_per_gpu
        busy: list[GpuInfo] = []
        full: list[int] = []
        clauses = [f"GPU {gpu} reserved by {who}" for gpu, (_, who) in
                   sorted(state.foreign.items())]
        load = state.load(counts)
        for gpu in state.eligible():
            if load.get(gpu.index, 0) >= limit:
                if gpu.index not in state.foreign:
                    full.append(gpu.index)
            elif state.blocked_by_others(gpu, counts):
                busy.append(gpu)
        if busy:
            readings = []
            last_label = ""
            for gpu in busy:
                over_memory = gpu.memory_used_pct > state.spec.active_gpu_memory_pct
                label = "memory" if over_memory else "util"
                pct = gpu.memory_used_pct if over_memory else gpu.utilization_pct
                readings.append(f"{pct:.0f}%" if label == last_label else f"{label} {pct:.0f}%")
                last_label = label
            clauses.append(f"{_gpu_list([g.index for g in busy])} busy ({', '.join(readings)})")
        if full:
            clauses.append(f"{_gpu_list(full)} full (max {_plural(limit, 'trial')} per GPU)")
        clauses.extend(self._excluded_clauses(state))
        free = [g.index for g in state.free_gpus()]
        needed = self._gpu_number or 0
        if len(free) >= needed:
            clauses.append(f"room for a trial ({_gpu_list(free)} free)")
        elif free:
            clauses.append(f"only {_gpu_list(free)} free, a trial needs {needed}")
        return clauses
