"""The training process's resources: CPU, memory and (on CUDA) the GPU, sampled cheaply and never raising.

READINGS is the one table of what a reading is (key, label, unit, format); the cockpit's system pane
and any text output derive from it. The Tutor (rank 0) puts a SystemSampler's readings in every
Snapshot's ``system`` dict, so a cockpit attached over the control socket shows the TRAINING machine.

The GPU's utilisation, temperature, power and memory come from torch.cuda's own queries, which map the
training device to the driver's (CUDA_VISIBLE_DEVICES by index or UUID, MIG instances included) and need
NVIDIA's management library (the nvidia-ml-py package: `pip install "babyllm-tui[gpu]"`). Without it, or when
it fails, the GPU lines come from torch's memory statistics (no utilisation, temperature or power).
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

GIB = float(1 << 30)
SAMPLE_EVERY = 1.0  # seconds: a reading is cached this long (the Tutor asks a few times a second)


@dataclass(frozen=True)
class Reading:
    """One kind of reading: its key in Snapshot.system, how a person reads it, and how it is written."""

    key: str
    label: str
    unit: str
    fmt: str  # a format spec for the value

    def number(self, value: float) -> str:
        """The value alone ("?" when not finite)."""
        return f"{value:{self.fmt}}" if math.isfinite(value) else "?"

    def text(self, value: float) -> str:
        """The value with its unit ("?" when not finite)."""
        if not math.isfinite(value):
            return "?"
        return f"{self.number(value)}{' ' if self.unit[:1].isalpha() else ''}{self.unit}"


READINGS: tuple[Reading, ...] = (
    Reading("cpu_percent", "CPU", "%", ".0f"),  # of one core: 200% is two cores busy
    Reading("cpu_cores", "cores", "", ".0f"),  # the cores this process may run on (its affinity)
    Reading("rss_gib", "RSS", "GiB", ".2f"),  # this process's resident memory
    Reading("mem_total_gib", "memory", "GiB", ".1f"),  # the machine's
    Reading("mem_available_gib", "available", "GiB", ".1f"),
    Reading("gpu_util", "GPU", "%", ".0f"),  # the management library's only
    Reading("gpu_mem_used_gib", "GPU mem", "GiB", ".1f"),  # the device's; without the library: what torch reserved
    Reading("gpu_mem_allocated_gib", "allocated", "GiB", ".1f"),  # torch only: tensors alive now
    Reading("gpu_mem_total_gib", "GPU total", "GiB", ".1f"),
    Reading("gpu_temp_c", "temp", "°C", ".0f"),  # the management library's only
    Reading("gpu_power_w", "power", "W", ".0f"),  # the management library's only
)
BY_KEY: dict[str, Reading] = {r.key: r for r in READINGS}
GPU_KEYS = tuple(r.key for r in READINGS if r.key.startswith("gpu_"))


def reading_text(key: str, value: float) -> str:
    """A reading's value as text, by its key (an unknown key: the bare number)."""
    r = BY_KEY.get(key)
    return r.text(value) if r is not None else f"{value:g}"


def system_line(readings: dict[str, float]) -> str:
    """The readings on one line, in READINGS order ("" when there are none)."""
    return "  ".join(f"{r.label} {r.text(readings[r.key])}" for r in READINGS if r.key in readings)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def rss_bytes(statm: Path = Path("/proc/self/statm")) -> float:
    """This process's resident memory (/proc/self/statm; elsewhere its peak, from getrusage)."""
    try:
        pages = int(statm.read_text().split()[1])
        return float(pages * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak if os.uname().sysname == "Darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


def machine_memory(meminfo: Path = Path("/proc/meminfo")) -> dict[str, float]:
    """The machine's total and available memory in GiB ({} where /proc/meminfo is not)."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        kib = {k: float(fields[k].split()[0]) for k in ("MemTotal", "MemAvailable")}
    except (OSError, ValueError, KeyError, IndexError):
        return {}
    return {"mem_total_gib": kib["MemTotal"] * 1024 / GIB, "mem_available_gib": kib["MemAvailable"] * 1024 / GIB}


class SystemSampler:
    """Readings of this process and its machine, at most one sample per `every` seconds (the last is cached).

    ``read()`` never raises: a part that fails (no /proc, the management library gone, a CUDA error) is left
    out of the dict.
    """

    def __init__(self, device: str = "cpu", every: float = SAMPLE_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        kind, _, index = device.partition(":")
        self.cuda_index = (int(index) if index.isdigit() else 0) if kind == "cuda" else None
        self.every = every
        self._clock = clock
        self._cpu = (_cpu_seconds(), time.monotonic())  # the CPU-time delta's starting point
        self._cached: dict[str, float] | None = None
        self._at = -math.inf
        self._smi = True  # the management library's readings, until they fail once (torch's from then on)

    def read(self) -> dict[str, float]:
        """The latest readings (a new dict at most once per `every` seconds; the cached one otherwise)."""
        now = self._clock()
        if self._cached is not None and now - self._at < self.every:
            return self._cached
        out: dict[str, float] = {}
        for part in (self._cpu_part, self._memory_part, self._gpu_part):
            try:
                out.update(part())
            except Exception:  # noqa: BLE001 - a reading is never worth a failed step
                continue
        self._cached, self._at = out, now
        return out

    def _cpu_part(self) -> dict[str, float]:
        cpu, wall = _cpu_seconds(), time.monotonic()
        last_cpu, last_wall = self._cpu
        self._cpu = (cpu, wall)
        out = {"cpu_cores": float(_cores())}
        if wall > last_wall:
            out["cpu_percent"] = max(0.0, (cpu - last_cpu) / (wall - last_wall) * 100.0)
        return out

    def _memory_part(self) -> dict[str, float]:
        return {"rss_gib": rss_bytes() / GIB, **machine_memory()}

    def _gpu_part(self) -> dict[str, float]:
        if self.cuda_index is None:
            return {}
        if self._smi:
            try:
                return self._smi_reading()
            except Exception:  # noqa: BLE001 - no management library (or it failed): torch's numbers from now on
                self._smi = False
        return self._torch_reading()

    def _smi_reading(self) -> dict[str, float]:
        """torch.cuda's management-library queries, for the training device (torch maps it to the driver's)."""
        import torch

        i = self.cuda_index or 0
        return {"gpu_util": float(torch.cuda.utilization(i)),
                "gpu_mem_used_gib": torch.cuda.device_memory_used(i) / GIB,
                "gpu_mem_total_gib": torch.cuda.get_device_properties(i).total_memory / GIB,
                "gpu_temp_c": float(torch.cuda.temperature(i)),
                "gpu_power_w": torch.cuda.power_draw(i) / 1000.0}  # milliwatts

    def _torch_reading(self) -> dict[str, float]:
        import torch  # here, not at the top: the cockpit imports this module for its table alone

        if not torch.cuda.is_available():
            return {}
        i = self.cuda_index or 0
        return {"gpu_mem_used_gib": torch.cuda.memory_reserved(i) / GIB,
                "gpu_mem_allocated_gib": torch.cuda.memory_allocated(i) / GIB,
                "gpu_mem_total_gib": torch.cuda.get_device_properties(i).total_memory / GIB}
