"""`foveal compare`: train several models on the same data, split, augmentation and time budget,
then measure each the same way. Answers "would a CNN do better here?" with numbers.

Each model trains in its own `foveal train` process, so that its peak memory is its own (read from
the operating system when the process ends) and one model's failure cannot corrupt another's run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from foveal.compare.measure import gflops_per_image, latency_ms, parameter_count
from foveal.compare.table import markdown_table
from foveal.data.sources import BUILTINS
from foveal.errors import ConfigError, DataError, FovealError
from foveal.io import atomic_write_json, atomic_write_text
from foveal.models import list_models
from foveal.training.run_dir import next_run_dir

DEFAULT_MODELS = ("foveal-nano", "cnn-resnet20")


def parse_models(text: str) -> list[str]:
    """["foveal-nano", "cnn-resnet20"] from "foveal-nano,cnn-resnet20"; unknown names are refused."""
    from foveal.errors import suggest

    names = [n.strip() for n in text.split(",") if n.strip()]
    known = list_models()
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown model {name!r}.{suggest(name, known)} See `foveal models`.")
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"--models needs two or more different models, got {text!r}.")
    return names


def compare(
    data: str,
    models: list[str] | tuple[str, ...] = DEFAULT_MODELS,
    budget_minutes: float = 10.0,
    *,
    out: str | Path = "runs",
    name: str = "compare",
    seed: int = 0,
    device: str = "auto",
    epochs: int | None = None,
    quiet: bool = False,
) -> dict:
    """Train each of `models` on `data` for `budget_minutes` (or `epochs`), and compare them.

    Writes, in a new folder out/name: one run folder per model (each with its report.html, which
    includes the comparison), comparison.json and comparison.md. Returns the comparison.
    """
    if data not in BUILTINS and not Path(data).exists():
        raise DataError(f"{data} does not exist; expected a built-in name or a folder of class folders.")
    if budget_minutes <= 0:
        raise ConfigError(f"--budget must be > 0 minutes, got {budget_minutes}.")
    folder = next_run_dir(out, name)
    rows = []
    for model in models:
        run_dir = folder / model
        arguments = [data, "--model", model, "--out", str(folder), "--name", model, "--seed", str(seed)]
        arguments += ["--device", device, "--no-report", *(["--quiet"] if quiet else [])]
        arguments += ["--epochs", str(epochs)] if epochs else ["--time", f"{budget_minutes * 60:.0f}s"]
        if not quiet:
            print(f"== {model}: training for {f'{epochs} epochs' if epochs else f'{budget_minutes:g} min'}")
        peak_mb = _run_training(arguments, model)
        rows.append(_measure(run_dir, model, peak_mb, device))
    comparison = {
        "data": data,
        "budget_minutes": None if epochs else budget_minutes,
        "epochs": epochs,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "models": rows,
    }
    atomic_write_json(folder / "comparison.json", comparison)
    atomic_write_text(folder / "comparison.md", markdown_table(comparison) + "\n")
    _write_reports(folder, models, comparison)
    return {**comparison, "folder": str(folder)}


def _run_training(arguments: list[str], model: str) -> float | None:
    """Run `foveal train ARGUMENTS` in a child process; its peak resident memory in MB (None where
    the OS does not say)."""
    process = subprocess.Popen([sys.executable, "-m", "foveal", "train", *arguments])
    if hasattr(os, "wait4"):
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    else:
        process.wait()
        peak = None
    if process.returncode != 0:
        raise FovealError(f"training {model} failed (exit code {process.returncode}); its message is above.")
    return peak


def _measure(run_dir: Path, model: str, peak_mb: float | None, device: str) -> dict:
    from foveal.classifier import load
    from foveal.reporting.build import RunRecord

    metrics = json.loads((run_dir / "metrics.json").read_text())
    record = RunRecord.read(run_dir)
    images = sum(float(r["images_per_second"]) * float(r["seconds"]) for r in record.results)
    seconds = sum(float(r["seconds"]) for r in record.results)
    classifier = load(run_dir, device)
    size = classifier.info.preprocessing.img_size
    return {
        "model": model,
        "run": str(run_dir),
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "macro_f1": metrics["macro_f1"],
        "parameters": parameter_count(classifier.model),
        "gflops_per_image": gflops_per_image(classifier.model, size),
        "train_images_per_second": images / max(seconds, 1e-9),
        "passes": images / max(1, record.config["train_images"]),
        "train_seconds": seconds,
        "latency_ms": latency_ms(classifier.model, size, classifier.device),
        "peak_memory_mb": peak_mb,
    }


def _write_reports(folder: Path, models: list[str] | tuple[str, ...], comparison: dict) -> None:
    from foveal.reporting import write_report

    for model in models:
        atomic_write_json(folder / model / "comparison.json", comparison)
        write_report(folder / model)
