"""What every benchmark records beside its figures: the machine, its load, the command, FLOPs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

# The benchmarks import these from here; the package (`foveal bench`) records the same facts.
from foveal.machine import CPU_FLAGS, load_average, machine  # noqa: F401
from foveal.models.flops import forward_flops  # noqa: F401

RESULTS = Path(__file__).parent / "results"
# Environment variables that keep PyTorch's own kernels (ATen), oneDNN's (convolutions) and MKL's
# (matmuls) to an older instruction set than the CPU has, e.g. AVX2 on an AVX-512 CPU: the run then
# measures that instruction set's code on this CPU's cores, caches and clock, not a CPU of that kind.
# Recorded whenever set.
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
# Measured fp32 matmul peak of the 2-core reference machine (docs/benchmarks.md), GFLOP/s.
CPU_PEAK_GFLOPS = 150.0


def measured_matmul_gflops() -> float:
    """This CPU's fp32 matmul rate now (foveal.runtime.matmul_gflops), recorded beside
    CPU_PEAK_GFLOPS: a model cannot run its matmuls faster than two large matrices multiply."""
    from foveal.runtime import matmul_gflops

    return round(matmul_gflops(torch.device("cpu"), repeats=10), 1)


def save(name: str, record: dict[str, Any], out: Path | None = None) -> Path:
    """Write `record` (with the command and machine) to results/<name>.json and print it."""
    limits = {name: os.environ[name] for name in ISA_LIMITS if os.environ.get(name)}
    command = " ".join([*(f"{k}={v}" for k, v in limits.items()), Path(sys.executable).name, *sys.argv])
    facts = {**machine(), **({"isa_limits": limits} if limits else {})}
    record = {"command": command, "machine": facts, **record}
    folder = out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return path


def quick_digits_run(scratch: str, model: str) -> str:
    """A run folder of `model` trained one epoch on the built-in digits in `scratch`, no report: what a
    benchmark's --quick mode measures (CI)."""
    import foveal

    run = foveal.train(data="digits", model=model, epochs=1, out=scratch, quiet=True, report=False)
    return str(run.run_dir)
