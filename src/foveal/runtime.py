"""Where and how computation runs: device, precision, threads, seeds."""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager

import numpy as np
import torch

from foveal.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then CPU; a named device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} asked for, but MPS is not available; use --device cpu")
    return device


def autocast_for(device: torch.device, precision: str = "auto") -> AbstractContextManager | None:
    """bf16 autocast for `precision` "bf16", None (fp32) for "fp32"; "auto": bf16 where the hardware
    has bf16 arithmetic, else fp32.

    Native means a CUDA GPU with bf16, or a CPU with bf16 dot-product instructions: AVX-512 BF16
    (AMD Zen 4 and later, Intel Cooper Lake) or AMX bf16 tiles (Intel Sapphire Rapids and later).
    Measured (docs/benchmarks.md, "bf16 on the CPU"): hybrid-airbench-half trains 1.8x faster under
    bf16 autocast on an AMD EPYC with AVX-512 BF16, a conv block 2.5x on an Intel Xeon with AMX; a
    CPU with AVX2 alone runs bf16 15-80x slower than fp32, so it trains in fp32.
    """
    if resolve_precision(device, precision) == "fp32":
        return None
    return torch.autocast(device.type, dtype=torch.bfloat16)


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """ "bf16" or "fp32": `precision` itself, or for "auto" what `device` runs natively (autocast_for)."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names for bf16 dot-product instructions


def cpu_has_native_bf16() -> bool:
    """Whether this CPU reports bf16 instructions, BF16_CPU_FLAGS (Linux /proc/cpuinfo; False where it
    cannot tell)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in BF16_CPU_FLAGS)
    except OSError:
        pass
    return False


def matmul_gflops(
    device: torch.device, size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32
) -> float:
    """How fast this device multiplies `dtype` matrices now, GFLOP/s (median of `repeats` size^3 products).

    The machine's own best kernel is the honest yardstick for planning and for model FLOP
    utilisation: a model's matmuls cannot run faster than two large matrices multiply.
    """
    import statistics
    import time

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        started = time.perf_counter()
        (a @ b).sum().item()  # .item() waits for an asynchronous device
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times[1:]) / 1e9


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a container's cpuset), which
    os.cpu_count() ignores; os.cpu_count() where affinity is not reported (macOS, Windows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cores_each(processes: int) -> int:
    """Each of `processes` sharing this process's cores gets this many threads: at least 1."""
    return max(1, available_cores() // processes)


def default_threads() -> int:
    """OMP_NUM_THREADS when set to a count (a shared machine's share, torchrun's per rank, a test
    worker's), else every core this process may run on."""
    asked = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(asked) if asked.isdigit() and int(asked) > 0 else available_cores()


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads (default: `default_threads()`); returns the count in force."""
    count = threads or default_threads()
    torch.set_num_threads(count)
    return count


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def random_state_kept(device: torch.device) -> AbstractContextManager:
    """A context whose random draws leave the run's random streams as they were (the CPU's, and
    `device`'s when it is an accelerator): for what runs before training and must not change it, as
    a speed probe whose step count follows the clock, or a memory measurement."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = device.index if device.index is not None else 0
    return torch.random.fork_rng(devices=[index], device_type=device.type)


def process_start() -> float:
    """When this process started, on the `time.perf_counter()` clock (Linux; else: now).

    A command's time budget counts from here, so interpreter and library start-up are paid from it.
    """
    import time

    now = time.perf_counter()
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as uptime:
            since_boot = float(uptime.read().split()[0])
        age = since_boot - start_ticks / os.sysconf("SC_CLK_TCK")
        return now - max(0.0, age)
    except (OSError, ValueError, IndexError):
        return now


def to_fast_layout(model: torch.nn.Module) -> torch.nn.Module:
    """Channels-last weights: oneDNN (CPU) and cuDNN run convolutions and pooling faster in NHWC.

    Measured on the reference CPU: foveal-small trains 14% faster (177 -> 201 images/s at batch 128).
    Inputs follow via `Preprocessing.normalize`, which returns channels-last batches.
    """
    return model.to(memory_format=torch.channels_last)
