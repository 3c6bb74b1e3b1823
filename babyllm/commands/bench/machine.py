"""What this machine is: Python, torch, threads, CPU model and its bf16 support, GPU."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from babyllm.model.runtime import cpu_bf16_text, cpu_flags, cpu_has_bf16


def machine_info() -> dict[str, Any]:
    """The machine, for the benchmark's header and its JSON. Its bf16 support in words is runtime's (one
    judgement: "none (AVX2, no AVX512-BF16 or AMX)"), never pieced together from flags here."""
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    info["cpu_cores"] = os.cpu_count()
    info["bf16_matmul"] = cpu_has_bf16()
    info["bf16"] = cpu_bf16_text()
    info["cpu_bf16_flags"] = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"})
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
