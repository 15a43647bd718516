"""The ways `foveal bench` runs one model: eager PyTorch, torch.compile, ONNX Runtime fp32 and INT8.

Every backend computes what Foveal computes: logits over the preprocessing's test-time views, from
normalised images float32 (B, 3, S, S). One that cannot be made (compilation fails, onnxruntime is
not installed) is kept with its error, so that the others are still measured and the record says why
a row is empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from foveal.data.preprocess import TestTimeViews
from foveal.errors import FovealError
from foveal.exporting.graph import output_names, require
from foveal.exporting.quantize import quantize_int8
from foveal.exporting.to_onnx import write_onnx
from foveal.predictor.classifier import Classifier
from foveal.predictor.inference import view_logits
from foveal.predictor.onnx_network import INPUT, cpu_session

BackendName = Literal["eager", "compile", "onnx-fp32", "onnx-int8"]
NOT_INSTALLED = "not installed: pip install 'foveal[export]'"
ONNX_FILES = {"onnx-fp32": "model.onnx", "onnx-int8": "model.int8.onnx"}  # in a bundle


@dataclass
class Backend:
    """One way to run the model: `logits` maps normalised images (B, 3, S, S) to logits float32 (B, K)."""

    name: BackendName
    logits: Callable[[torch.Tensor], torch.Tensor] | None  # None: the backend could not be made
    source: str  # what it runs, in words (e.g. "model.onnx of the bundle")
    setup_seconds: float = 0.0  # making it ready: compiling, exporting, quantising, loading (not timed)
    error: str | None = None
    # The layout its inputs come in, for the model-only timings: PyTorch takes channels-last batches
    # (what Preprocessing.normalize gives), onnxruntime a C-contiguous array (NCHW).
    memory_format: torch.memory_format = torch.channels_last


class ViewLogits(nn.Module):
    """Foveal's computation as one module, for torch.compile: logits over the test-time views."""

    def __init__(self, model: nn.Module, views: TestTimeViews) -> None:
        super().__init__()
        self.model = model
        self.views = views

    def forward(self, normalized: torch.Tensor) -> torch.Tensor:
        return view_logits(self.model, normalized, self.views)


def eager_backend(classifier: Classifier) -> Backend:
    """The PyTorch model in eval mode under inference_mode, through Foveal's one inference path."""
    model, views = classifier.model.eval(), classifier.preprocessing.test_time_views

    def logits_of(normalized: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return view_logits(model, normalized, views)

    return Backend("eager", logits_of, "PyTorch eager, eval mode, inference_mode")


def compiled_backend(classifier: Classifier, examples: list[torch.Tensor]) -> Backend:
    """torch.compile of the eager computation, compiled (and so timed as setup) on each of `examples`
    (the batch shapes it will see); its error in one line when compilation fails."""
    compiled = torch.compile(ViewLogits(classifier.model, classifier.preprocessing.test_time_views).eval())

    def logits_of(normalized: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(normalized)

    started = time.perf_counter()
    try:
        for example in examples:  # the first call of each shape compiles
            logits_of(example)
    except Exception as error:  # noqa: BLE001  (the compiler raises many kinds; the record needs one line)
        return Backend("compile", None, "torch.compile (inductor)", error=_one_line(error))
    return Backend("compile", logits_of, "torch.compile (inductor)", time.perf_counter() - started)


def onnx_backends(classifier: Classifier, model: Path, scratch: Path, threads: int) -> list[Backend]:
    """onnxruntime (CPUExecutionProvider, `threads` intra-op threads) on the fp32 model and its INT8
    copy: the bundle's own files when `model` is a bundle that has them, else exported (and
    quantised) into `scratch`."""
    try:
        runtime = require("onnxruntime")
        require("onnx")
    except FovealError:
        return [Backend(name, None, "onnxruntime", error=NOT_INSTALLED) for name in ONNX_FILES]
    fp32, fp32_source, fp32_seconds = _onnx_file(
        model, "onnx-fp32", scratch, lambda path: write_onnx(classifier, path, output_names(classifier))
    )
    if fp32 is None:  # no fp32 model: the INT8 one can still come from the bundle, but not be made
        made = [Backend("onnx-fp32", None, "exported to a temporary file", error=fp32_source)]
        int8, int8_source, int8_seconds = _onnx_file(model, "onnx-int8", scratch, None)
    else:
        made = [_session_backend(runtime, "onnx-fp32", fp32, fp32_source, fp32_seconds, threads)]
        int8, int8_source, int8_seconds = _onnx_file(
            model, "onnx-int8", scratch, lambda path: quantize_int8(fp32, path)
        )
    if int8 is None:
        return [*made, Backend("onnx-int8", None, "quantised to a temporary file", error=int8_source)]
    return [*made, _session_backend(runtime, "onnx-int8", int8, int8_source, int8_seconds, threads)]


def _onnx_file(
    model: Path, name: BackendName, scratch: Path, make: Callable[[Path], Path] | None
) -> tuple[Path | None, str, float]:
    """(file, where it came from, seconds to make it), or (None, why there is none, 0)."""
    own = model / ONNX_FILES[name] if model.is_dir() else None
    if own is not None and own.is_file():
        return own, f"{own.name} of the bundle", 0.0
    if make is None:
        return None, "no fp32 ONNX model to quantise", 0.0
    started = time.perf_counter()
    try:
        path = make(scratch / ONNX_FILES[name])
    except FovealError as error:
        return None, str(error), 0.0
    verb = "exported" if name == "onnx-fp32" else "quantised (dynamic, MatMul/Gemm weights)"
    return path, f"{verb} to a temporary file", time.perf_counter() - started


def _session_backend(
    runtime, name: BackendName, path: Path, source: str, seconds: float, threads: int
) -> Backend:
    started = time.perf_counter()
    try:
        session = cpu_session(runtime, path, threads)
    except Exception as error:  # noqa: BLE001  (onnxruntime raises its own kinds; the record needs one line)
        return Backend(name, None, source, error=_one_line(error))

    def logits_of(normalized: torch.Tensor) -> torch.Tensor:
        pixels = normalized.contiguous().numpy()  # a copy only for a channels-last batch (end to end)
        return torch.from_numpy(session.run(["logits"], {INPUT: pixels})[0])

    seconds += time.perf_counter() - started
    return Backend(name, logits_of, source, seconds, memory_format=torch.contiguous_format)


def _one_line(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}"[:300]
