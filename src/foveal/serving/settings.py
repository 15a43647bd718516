"""What `foveal serve` is told: where the model is, where to listen, and the limits it keeps."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from foveal.config import check, option

ENV_VAR = "FOVEAL_SERVE_SETTINGS"  # how uvicorn's worker processes receive these settings (JSON)


@dataclass(frozen=True)
class ServeSettings:
    """Where `foveal serve` listens and the limits it keeps; its options are these fields (cli/options.py)."""

    model: str  # a run folder, a model folder or bundle, a .safetensors file, or a model.onnx
    host: str = option(
        "127.0.0.1",  # loopback unless told otherwise: a model server is not public by default
        "Address to listen on; 0.0.0.0 makes it public. The default, loopback, serves this machine only.",
        summary="Listen address; 0.0.0.0: public.",
    )
    port: int = option(8000, "Port to listen on.")
    runtime: Literal["torch", "onnx"] | None = option(
        None,
        "torch, or onnx (onnxruntime; a model.onnx, or the bundle `foveal export` made) [default: onnx "
        "for a .onnx file, else torch].",
        summary="torch, or onnx (a model.onnx or an exported bundle).",
    )
    workers: int = option(
        1,
        "Server processes (uvicorn workers), each with its own copy of the model.",
        summary="Server processes, each with its own model.",
    )
    threads: int | None = option(
        None,
        "Threads the model uses, torch's or onnxruntime's, set once [default: the cores shared by the "
        "workers].",
        summary="Threads the model uses [default: cores / workers].",
    )
    max_bytes: int = option(
        10 * 1024 * 1024,
        "Largest request body; larger ones get 413, unread.",
        summary="Largest request body (else 413).",
    )
    max_pixels: int = option(
        50_000_000,  # a 48 MP photo passes
        "Largest image (width x height) decoded; larger ones get 422.",
        summary="Largest image, in pixels (else 422).",
    )
    max_queue: int = option(
        64,
        "Requests waiting for the model beyond this get 503 with Retry-After.",
        summary="Requests waiting beyond this get 503.",
    )
    max_batch: int = option(
        32,
        "Dynamic batching: up to this many waiting images run as one batch (1: off).",
        summary="Most requests batched together (1: off).",
    )
    max_wait_ms: float = option(
        5.0,
        "How long a batch waits for more requests after the first arrives, in milliseconds.",
        summary="How long (ms) a batch waits for more.",
    )
    timeout_s: float = option(
        30.0,
        "Seconds from a body's arrival to its answer (decoding, waiting and the model) before 504.",
        summary="Seconds to answer a body (else 504).",
        flag="--timeout",
    )
    read_timeout_s: float = option(
        30.0,
        "Seconds a request's headers, then its whole body, may each take to arrive (else 408).",
        summary="Seconds to read a request (else 408).",
        flag="--read-timeout",
    )
    max_uploads: int = option(
        32,
        "Bodies arriving at once beyond this get 503 with Retry-After: at most this many times "
        "--max-bytes are held.",
        summary="Uploads at once beyond this get 503.",
    )
    top_k: int = 5  # labels per answer unless ?top_k= says otherwise

    def __post_init__(self) -> None:
        check(
            (1 <= self.port <= 65535, f"port must be 1-65535, got {self.port}."),
            (
                self.runtime in (None, "torch", "onnx"),
                f"runtime must be torch or onnx, got {self.runtime!r}.",
            ),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}."),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}."),
            (self.max_bytes >= 1, f"max_bytes must be >= 1, got {self.max_bytes}."),
            (self.max_pixels >= 1, f"max_pixels must be >= 1, got {self.max_pixels}."),
            (self.max_queue >= 1, f"max_queue must be >= 1, got {self.max_queue}."),
            (self.max_batch >= 1, f"max_batch must be >= 1, got {self.max_batch}."),
            (self.max_wait_ms >= 0, f"max_wait_ms must be >= 0, got {self.max_wait_ms}."),
            (self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}."),
            (self.read_timeout_s > 0, f"read_timeout_s must be > 0, got {self.read_timeout_s}."),
            (self.max_uploads >= 1, f"max_uploads must be >= 1, got {self.max_uploads}."),
            (self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}."),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))
