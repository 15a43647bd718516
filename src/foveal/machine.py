"""What a measurement records about the machine it ran on: the CPU and its flags, the load, the libraries.

A latency or throughput figure means little without them: the same model runs several times faster
on a CPU with AVX-512 VNNI than on one with AVX2 alone, and twice as slow when another job shares
the cores (the load average says so).
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foveal import __version__

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")  # what decides fp32/bf16/int8 speed
OPTIONAL_LIBRARIES = ("onnxruntime", "onnx", "onnxscript")  # pip install 'foveal[export]'


def machine() -> dict[str, Any]:
    """The CPU's model name and CPU_FLAGS it has (Linux /proc/cpuinfo; "unknown" and [] elsewhere),
    its logical cores, and the torch and Python versions and GPU."""
    cpu, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in CPU_FLAGS if f in line.split()]
    except OSError:
        pass
    if cpu == "unknown":
        cpu = platform.processor() or "unknown"
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages ([] where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def library_versions() -> dict[str, str | None]:
    """Versions of Foveal, Python and the libraries that compute; None for an optional one not installed."""
    versions: dict[str, str | None] = {
        "foveal": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for name in OPTIONAL_LIBRARIES:
        try:
            versions[name] = metadata.version(name)  # read from the package record: nothing is imported
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
