"""`foveal bench`: how fast a model answers on this machine, in each way Foveal can run it.

Backends (backends.py): eager PyTorch, torch.compile, ONNX Runtime fp32 and INT8, all computing
Foveal's logits over the test-time views. For each, three figures, each measured interleaved
(timing.py: every round times every backend once, in rotated order) after an untimed warm-up:

- batch-1 latency, model only: p50/p90/p99 ms of one normalised image in, logits out;
- throughput: images/s at --batch-size, from the median of --batches timed batches;
- end to end, per image: decode the file, resize and crop, normalise, infer (p50/p90/p99 ms).

Beside them: each backend's agreement with eager on the same images, and what the figures depend
on: threads, the CPU and its flags, library versions, the load average before and after.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from foveal.data.preprocess import Preprocessing
from foveal.errors import ConfigError, FovealError
from foveal.exporting.backends import Backend, compiled_backend, eager_backend, onnx_backends
from foveal.exporting.bench_images import BenchImages, bench_images
from foveal.exporting.settings import BenchSettings
from foveal.exporting.timing import SETTLE_SECONDS, summarize, time_interleaved
from foveal.io import atomic_write_json
from foveal.machine import library_versions, load_average, machine
from foveal.predictor.classifier import Classifier, load
from foveal.predictor.saved import resolve_model_path
from foveal.runtime import set_threads

BENCH_FORMAT = "foveal.bench/1"


def bench_model(
    model: str | Path,
    settings: BenchSettings = BenchSettings(),
    *,
    images: str | Path | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Measure the saved model `model` (a run folder, a .safetensors file or a bundle) on the CPU.

    Args:
        images: a folder (searched recursively) or file to time end to end [default: the run's
            held-out files, else a few synthetic JPEGs; the record says which].
        command: the command line, for the record.

    Returns:
        The record (JSON-ready): format, command, model, settings, threads, images, machine,
        libraries, load averages, and per backend its figures or its error (`backends`), with the
        ratios to eager (`speedup_vs_eager`).
    """
    model = Path(model)
    _check_model(model)
    classifier = load(model, "cpu")
    threads = set_threads(settings.threads) if settings.threads else torch.get_num_threads()
    load_before, started = load_average(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="foveal-bench-") as scratch:
        pictures = bench_images(images, model, classifier.preprocessing, Path(scratch) / "images")
        backends = make_backends(classifier, model, Path(scratch), settings, pictures, threads)
        results = measure(classifier, backends, pictures, settings)
    return {
        "format": BENCH_FORMAT,
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_facts(classifier, model),
        "settings": {**asdict(settings), "threads": threads},
        "threads": {
            "torch_intra_op": threads,
            "torch_inter_op": torch.get_num_interop_threads(),
            "onnxruntime_intra_op": threads,
            "onnxruntime_inter_op": 1,
            "onnxruntime_spinning": False,  # see predictor.onnx_network.session_options
            "pause_between_calls_ms": SETTLE_SECONDS * 1e3,
        },
        "images": {
            "source": pictures.source,
            "files": len(pictures.files),
            "synthesized": pictures.synthesized,
            "skipped": pictures.skipped,
        },
        "machine": machine(),
        "libraries": library_versions(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "seconds": round(time.perf_counter() - started, 1),
        "backends": results,
        "speedup_vs_eager": speedups(results),
    }


def record_path(model: str | Path, out: str | Path | None) -> Path:
    """Where the record of `model` goes: `out`, else bench.json in MODEL's folder (a run or a bundle),
    else NAME.bench.json beside a model file. Checked before anything is measured.

    Raises:
        ModelFileError: `model` does not exist.
        FovealError: the path is a folder, cannot be written, or holds a file that is not a record
            of `foveal bench` (which is never overwritten).
    """
    model = Path(model)
    _check_model(model)
    if out is not None:
        path = Path(out)
    else:
        path = model / "bench.json" if model.is_dir() else model.with_name(f"{model.stem}.bench.json")
    if path.is_dir():
        raise FovealError(f"{path} is a folder; give --out a file name, e.g. {path / 'bench.json'}.")
    if path.exists() and not _is_bench_record(path):
        raise FovealError(f"{path} exists and is not a record of foveal bench; give another --out.")
    existing = path.parent
    while not existing.exists():  # the folders that writing will create
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise FovealError(f"cannot write {path}: {existing} is not a writable folder; give another --out.")
    return path


def write_record(record: dict[str, Any], path: Path) -> Path:
    """Write the record as indented JSON, atomically."""
    return atomic_write_json(path, record)


def make_backends(
    classifier: Classifier,
    model: Path,
    scratch: Path,
    settings: BenchSettings,
    pictures: BenchImages,
    threads: int,
) -> list[Backend]:
    """Eager, then (unless opted out) compile, then the ONNX Runtime backends."""
    backends = [eager_backend(classifier)]
    if settings.compile:
        normalized = classifier.preprocessing.normalize(pictures.pixels)
        shapes = [normalized[:1], _batch(normalized, settings.batch_size)]  # compiled now, not when timed
        backends.append(compiled_backend(classifier, shapes))
    return backends + onnx_backends(classifier, model, scratch, threads)


def measure(
    classifier: Classifier, backends: list[Backend], pictures: BenchImages, settings: BenchSettings
) -> dict[str, dict[str, Any]]:
    """Every working backend's figures, interleaved phase by phase; the others' errors."""
    pre, ready = classifier.preprocessing, [b for b in backends if b.logits is not None]
    normalized = pre.normalize(pictures.pixels)  # (N, 3, S, S), channels-last
    singles = {b.name: [_as(b, normalized[i : i + 1]) for i in range(len(normalized))] for b in ready}
    batches = {b.name: _as(b, _batch(normalized, settings.batch_size)) for b in ready}
    files = pictures.files

    latency = time_interleaved(
        {b.name: lambda r, b=b: b.logits(singles[b.name][r % len(files)]) for b in ready},
        settings.samples,
        settings.warmup,
    )
    throughput = time_interleaved(
        {b.name: lambda r, b=b: b.logits(batches[b.name]) for b in ready},
        settings.batches,
        min(settings.warmup, 2),
    )
    end_to_end = time_interleaved(
        {b.name: _from_file(b, files, pre) for b in ready}, settings.samples, settings.warmup
    )
    reference = torch.cat([ready[0].logits(x) for x in singles[ready[0].name]])  # eager: (N, K)
    results = {b.name: {"source": b.source, "error": b.error} for b in backends}
    for b in ready:
        median_batch_ms = statistics.median(throughput[b.name])
        results[b.name] |= {
            "setup_seconds": round(b.setup_seconds, 2),
            "batch1_ms": summarize(latency[b.name]),
            "batch_ms": summarize(throughput[b.name]),
            "throughput_images_per_second": round(settings.batch_size / median_batch_ms * 1e3, 1),
            "end_to_end_ms": summarize(end_to_end[b.name]),
            "vs_eager": agreement(torch.cat([b.logits(x) for x in singles[b.name]]), reference),
        }
    return results


def agreement(logits: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """How far logits (N, K) are from eager's (N, K) on the same images: an INT8 or compiled model's
    speed is only worth having with its answers."""
    return {
        "max_logit_difference": float((logits.float() - reference).abs().max()),
        "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).float().mean()),
    }


def speedups(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each backend against eager: above 1 it is faster (eager's time / its time, its rate / eager's)."""
    eager = results["eager"]
    out = {}
    for name, result in results.items():
        if name == "eager" or "batch1_ms" not in result:
            continue
        out[name] = {
            "batch1_p50": round(eager["batch1_ms"]["p50"] / result["batch1_ms"]["p50"], 2),
            "throughput": round(
                result["throughput_images_per_second"] / eager["throughput_images_per_second"], 2
            ),
            "end_to_end_p50": round(eager["end_to_end_ms"]["p50"] / result["end_to_end_ms"]["p50"], 2),
        }
    return out


def model_facts(classifier: Classifier, model: Path) -> dict[str, Any]:
    config = classifier.info.config
    return {
        "path": str(model),
        "file": str(classifier.source),
        "preset": config.name,
        "family": config.family,
        "parameters": sum(p.numel() for p in classifier.model.parameters()),
        "classes": len(classifier.classes),
        "img_size": classifier.preprocessing.img_size,
        "test_time_views": classifier.preprocessing.test_time_views,
    }


def _from_file(backend: Backend, files: list[Path], pre: Preprocessing) -> Callable[[int], torch.Tensor]:
    """Round r, end to end: decode the r-th file (resize, crop), normalise it, infer: (1, K)."""
    return lambda r: backend.logits(pre.normalize(pre.decode(files[r % len(files)])[None]))


def _check_model(model: Path) -> None:
    """A missing model is the first thing to say; an ONNX file is timed from its bundle."""
    if model.suffix == ".onnx":
        raise ConfigError(
            f"{model} is an ONNX file; give the bundle folder it is in (or the run folder): foveal bench "
            "times the PyTorch model and its ONNX exports side by side."
        )
    resolve_model_path(model)


def _is_bench_record(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == BENCH_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _batch(normalized: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(batch_size, 3, S, S): the images, repeated as often as needed."""
    return normalized[torch.arange(batch_size) % len(normalized)]


def _as(backend: Backend, images: torch.Tensor) -> torch.Tensor:
    """`images` in the layout `backend` takes, made once, outside the timings."""
    return images.contiguous(memory_format=backend.memory_format)
