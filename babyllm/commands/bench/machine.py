"""What this machine is: Python, torch, threads, CPU model and its bf16 support, GPU."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    info["cpu_cores"] = os.cpu_count()
    info["bf16_matmul"] = bool(flags & {"avx512_bf16", "amx_bf16"})
    info["cpu_bf16_flags"] = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"})
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
