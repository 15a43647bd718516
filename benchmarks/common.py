"""What every benchmark records beside its figures: the machine, its load, the command, FLOPs."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from foveal.models.flops import forward_flops  # noqa: F401  (the benchmarks import it from here)

RESULTS = Path(__file__).parent / "results"
# Measured fp32 matmul peak of the 2-core reference machine (docs/benchmarks.md), GFLOP/s.
CPU_PEAK_GFLOPS = 150.0
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")  # what decides fp32/bf16/int8 speed


def machine() -> dict[str, Any]:
    cpu, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in CPU_FLAGS if f in line.split()]
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def measured_matmul_gflops() -> float:
    """This CPU's fp32 matmul rate now (foveal.runtime.matmul_gflops), recorded beside
    CPU_PEAK_GFLOPS: a model cannot run its matmuls faster than two large matrices multiply."""
    from foveal.runtime import matmul_gflops

    return round(matmul_gflops(torch.device("cpu"), repeats=10), 1)


def save(name: str, record: dict[str, Any], out: Path | None = None) -> Path:
    """Write `record` (with the command and machine) to results/<name>.json and print it."""
    record = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), **record}
    folder = out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return path
