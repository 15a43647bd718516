"""INT8 by onnxruntime's dynamic quantisation, with its accuracy and speed cost measured on this machine.

What is quantised (QUANTIZED_OPS): the weights of the MatMul and Gemm nodes whose second input is a
constant, i.e. every linear layer (attention projections, MLPs, pooling scorer, head). Their
activations are quantised per batch at run time, and onnxruntime has int8 GEMM kernels for them
(VNNI where the CPU has it, plain AVX2 otherwise).

What stays fp32, and why:
- Conv (the tokenizer, a CNN's every layer): dynamic quantisation turns it into ConvInteger, for
  which onnxruntime's CPU kernel is an unoptimised reference loop; measured slower than fp32 Conv
  here (docs/benchmarks.md). A CNN therefore gains little from this INT8; the figures say so.
- The MatMuls between two activations (queries x keys, attention x values): MatMulConstBOnly,
  onnxruntime's default for dynamic mode; quantising them costs accuracy in softmax attention.
- Softmax, LayerNorm, GELU: no integer kernels; they run in fp32 between quantised matmuls.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from foveal.data.imageset import ImageSet
from foveal.data.preprocess import Preprocessing
from foveal.errors import FovealError
from foveal.exporting.graph import require
from foveal.exporting.settings import MAX_ACCURACY_DROP
from foveal.exporting.timing import time_interleaved
from foveal.predictor.onnx_network import INPUT, cpu_session

QUANTIZED_OPS = ("MatMul", "Gemm")
LATENCY_SAMPLES = 200  # batch-1 runs per model, interleaved, after a warm-up of 20


def quantize_int8(source: Path, destination: Path, ops: tuple[str, ...] = QUANTIZED_OPS) -> Path:
    """Write an INT8 copy of the fp32 ONNX model `source` to `destination`, quantising `ops`."""
    quantization = require("onnxruntime.quantization")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process is for static quantisation, not ours
    try:
        quantization.quantize_dynamic(
            Path(source),
            Path(destination),
            op_types_to_quantize=list(ops),
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,  # one scale per output feature: narrow and wide rows keep their detail
        )
    except Exception as error:  # noqa: BLE001  (the quantiser raises many kinds; the user needs one line)
        raise FovealError(
            f"onnxruntime could not quantise {source} ({type(error).__name__}: {str(error).splitlines()[0]})."
        ) from None
    finally:
        root.setLevel(level)
    return Path(destination)


@dataclass
class Int8Check:
    """What INT8 costs and gains against the fp32 ONNX model, on held-out images on this machine."""

    images: int
    data: str
    fp32_top1: float
    int8_top1: float
    accuracy_change_points: float  # int8 - fp32, in points of top-1 (negative: INT8 is worse)
    top1_agreement: float  # share of images whose top class is the same in both
    fp32_batch1_p50_ms: float
    int8_batch1_p50_ms: float
    speedup: float  # fp32 p50 / int8 p50: above 1, INT8 is faster on this CPU
    threads: int
    max_accuracy_drop: float
    forced: bool
    quantized_ops: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def summary(self) -> str:
        return (
            f"INT8 top-1 {self.int8_top1:.2%} vs fp32 {self.fp32_top1:.2%} "
            f"({self.accuracy_change_points:+.2f} points, {self.top1_agreement:.2%} agreement) on "
            f"{self.images} images; batch-1 p50 {self.int8_batch1_p50_ms:.2f} ms vs "
            f"{self.fp32_batch1_p50_ms:.2f} ms ({self.speedup:.2f}x)"
        )


def check_int8(
    fp32: Path,
    int8: Path,
    preprocessing: Preprocessing,
    held_out: ImageSet,
    data: str,
    *,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    force: bool = False,
) -> Int8Check:
    """Top-1 of both ONNX models on the held-out images (uint8 (N, 3, S, S) with labels), and their batch-1
    latency interleaved image by image. Raises FovealError with the figures when INT8 loses more
    than `max_accuracy_drop` points, unless `force`."""
    runtime = require("onnxruntime")
    threads = torch.get_num_threads()
    sessions = [cpu_session(runtime, path, threads) for path in (fp32, int8)]
    images = held_out.images
    predictions = [_top1(session, preprocessing, images) for session in sessions]
    truth = held_out.labels.numpy()
    fp32_top1, int8_top1 = (float((p == truth).mean()) for p in predictions)
    fp32_ms, int8_ms = _interleaved_latency(sessions, preprocessing, images)
    check = Int8Check(
        images=len(images),
        data=data,
        fp32_top1=fp32_top1,
        int8_top1=int8_top1,
        accuracy_change_points=round((int8_top1 - fp32_top1) * 100, 3),
        top1_agreement=float((predictions[0] == predictions[1]).mean()),
        fp32_batch1_p50_ms=round(fp32_ms, 4),
        int8_batch1_p50_ms=round(int8_ms, 4),
        speedup=round(fp32_ms / int8_ms, 3),
        threads=threads,
        max_accuracy_drop=max_accuracy_drop,
        forced=force,
        quantized_ops=list(QUANTIZED_OPS),
    )
    if -check.accuracy_change_points > max_accuracy_drop and not force:
        raise FovealError(
            f"INT8 loses {-check.accuracy_change_points:.2f} points of top-1 (more than "
            f"--max-accuracy-drop {max_accuracy_drop:g}): {check.summary}. Keep the fp32 model.onnx, "
            "or pass --force to keep model.int8.onnx anyway."
        )
    return check


def _top1(session, preprocessing: Preprocessing, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        batch = preprocessing.normalize(images[start : start + batch_size]).contiguous().numpy()
        out.append(session.run(["logits"], {INPUT: batch})[0].argmax(1))
    return np.concatenate(out)


def _interleaved_latency(sessions, preprocessing: Preprocessing, images: torch.Tensor) -> list[float]:
    """Batch-1 p50 (ms) of each session, one image at a time, interleaved (exporting/timing.py)."""
    ones = [
        {INPUT: preprocessing.normalize(images[n][None]).contiguous().numpy()}
        for n in range(min(len(images), LATENCY_SAMPLES))
    ]
    runs = {
        str(k): (lambda r, session=session: session.run(["logits"], ones[r % len(ones)]))
        for k, session in enumerate(sessions)
    }
    times = time_interleaved(runs, rounds=LATENCY_SAMPLES, warmup=20)
    return [statistics.median(t) for t in times.values()]
