"""This process's memory (resident now, peak since a restart) and page faults, from /proc where it exists."""

from __future__ import annotations

import sys
from pathlib import Path


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux) in MB, e.g. VmRSS (now) or VmHWM (peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    return _status_mb("VmRSS") or 0.0


def peak_rss_mb() -> float:
    """Peak RSS since the last reset_peak_rss (Linux), else of the whole process."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def page_faults() -> int:
    """Minor page faults of this process so far (memory handed back to the OS and touched again)."""
    try:
        import resource
    except ImportError:  # not Unix
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count from now (Linux: /proc/self/clear_refs), so training is measured alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
