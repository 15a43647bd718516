"""`foveal compare`: train several models on the same data, split, augmentation and time budget,
then measure each the same way. Answers "would a CNN do better here?" with numbers.

Each model trains with `foveal.train` in a process of its own, so that its peak memory is its own
(read from the operating system at its end) and one model's failure cannot corrupt another's run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from foveal.api import train
from foveal.compare.measure import gflops_per_image, latency_ms, parameter_count
from foveal.config import TrainConfig
from foveal.data.sources import BUILTINS
from foveal.errors import ConfigError, DataError, FovealError, suggest
from foveal.io import atomic_write_json, atomic_write_text
from foveal.messages import say
from foveal.models import list_models
from foveal.predictor.classifier import load
from foveal.reporting import write_report
from foveal.reporting.comparison import markdown_table
from foveal.runs import RunRecord, next_run_dir
from foveal.runtime import process_start

DEFAULT_MODELS = ("foveal-nano", "cnn-resnet20")


def parse_models(text: str) -> list[str]:
    """["foveal-nano", "cnn-resnet20"] from "foveal-nano,cnn-resnet20"; unknown names are refused."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = list_models()
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown model {name!r}.{suggest(name, known)} See `foveal models`.")
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"--models needs two or more different models, got {text!r}.")
    return names


def compare(config: TrainConfig, models: Sequence[str] = DEFAULT_MODELS, *, quiet: bool = False) -> dict:
    """Train each of `models` with the same settings `config` (data, split, augmentation, budget or
    epochs, seed...), and compare them.

    Writes, in a new folder config.run.out/config.run.name: one run folder per model (each with its
    report.html, which includes the comparison), comparison.json and comparison.md. Returns the
    comparison. Each model trains in a process of its own (see the module's docstring).
    """
    source = config.data.source
    if source not in BUILTINS and not Path(source).exists():
        raise DataError(
            f"{source} does not exist; expected a built-in name, a folder of class folders or a table "
            "of labels."
        )
    folder = next_run_dir(config.run.out, config.run.name)
    budget = config.optim.time_budget
    rows, length = [], f"{budget / 60:g} min" if budget else f"{config.optim.epochs} epochs"
    for model in models:
        say(f"== {model}: training for {length}", quiet)
        settings = config.replace(model=model, out=str(folder), name=model, report=False)
        peak_mb = _train_in_child(settings, model, quiet)
        say(f"== {model}: measuring parameters, FLOPs and batch-1 latency", quiet)
        rows.append(_measure(folder / model, model, peak_mb, config.run.device))
    comparison = {
        "data": source,
        "budget_minutes": None if budget is None else budget / 60,
        "epochs": None if budget else config.optim.epochs,
        "seed": config.run.seed,
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "settings": config.to_dict(),
        "models": rows,
    }
    atomic_write_json(folder / "comparison.json", comparison)
    atomic_write_text(folder / "comparison.md", markdown_table(comparison) + "\n")
    _write_reports(folder, models, comparison, quiet)
    return {**comparison, "folder": str(folder)}


def _train_in_child(settings: TrainConfig, model: str, quiet: bool) -> float | None:
    """Train `settings` with `foveal.train` in a fresh process; its peak resident memory in MB
    (None where the OS does not say)."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no memory shared with this one
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_train_child, args=(settings.to_dict(), quiet, sender))
    process.start()
    sender.close()
    message = receiver.recv() if receiver.poll(None) else None  # None: the child died before answering
    process.join()
    if message is None or message[0] != "done":
        reason = message[1] if message else f"exit code {process.exitcode}"
        raise FovealError(f"training {model} failed: {reason}")
    return message[1]


def _train_child(settings: dict, quiet: bool, sender: Connection) -> None:
    """The child process: train, then send ("done", peak MB) or ("error", message)."""
    try:
        train(TrainConfig.from_dict(settings), quiet=quiet, started=process_start())
    except FovealError as error:
        sender.send(("error", str(error)))
        return
    except BaseException as error:  # noqa: BLE001  (the parent must hear why, then it raises)
        sender.send(("error", f"{type(error).__name__}: {error}"))
        raise
    sender.send(("done", _peak_memory_mb()))


def _peak_memory_mb() -> float | None:
    """This process's peak resident memory in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    try:
        import resource  # not on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _measure(run_dir: Path, model: str, peak_mb: float | None, device: str) -> dict:
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
        "top_k": metrics["top_k"],  # the k of top5: fewer than 5 when there are fewer classes
        "macro_f1": metrics["macro_f1"],
        "parameters": parameter_count(classifier.model),
        "gflops_per_image": gflops_per_image(classifier.model, size),
        "train_images_per_second": images / max(seconds, 1e-9),
        "passes": images / max(1, record.config["train_images"]),
        "train_seconds": seconds,
        "latency_ms": latency_ms(classifier.model, size, classifier.device),
        "peak_memory_mb": peak_mb,
    }


def _write_reports(folder: Path, models: Sequence[str], comparison: dict, quiet: bool) -> None:
    for model in models:
        say(f"== {model}: writing its report (with the comparison)", quiet)
        atomic_write_json(folder / model / "comparison.json", comparison)
        write_report(folder / model, quiet=quiet)
