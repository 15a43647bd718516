"""What `foveal serve` is told: where the model is, where to listen, and the limits it keeps."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from foveal.errors import ConfigError

ENV_VAR = "FOVEAL_SERVE_SETTINGS"  # how uvicorn's worker processes receive these settings (JSON)


@dataclass(frozen=True)
class ServeSettings:
    model: str  # a run folder, a model folder or bundle, a .safetensors file, or a model.onnx
    host: str = "127.0.0.1"  # loopback unless told otherwise: a model server is not public by default
    port: int = 8000
    runtime: Literal["torch", "onnx"] | None = None  # None: onnx for a .onnx file, else torch
    workers: int = 1  # uvicorn worker processes, each with its own copy of the model
    threads: int | None = None  # torch / onnxruntime threads, set once [default: all cores / workers]
    max_bytes: int = 10 * 1024 * 1024  # request bodies above this are refused (413) before being read
    max_pixels: int = 50_000_000  # larger images (width x height: a 48 MP photo passes) are refused (422)
    max_queue: int = 64  # requests waiting for the model beyond this are refused (503, Retry-After)
    max_batch: int = 32  # dynamic batching: up to this many waiting images run as one batch (1: off)
    max_wait_ms: float = 5.0  # ... gathered for at most this long after the first arrives
    timeout_s: float = 30.0  # decoding, waiting and the model: past this after the body arrived, 504
    read_timeout_s: float = 30.0  # a request's headers, then its whole body, each within this (408)
    max_uploads: int = 32  # bodies arriving at once beyond this get 503: at most 32 x max_bytes held
    top_k: int = 5  # labels per answer unless ?top_k= says otherwise

    def __post_init__(self) -> None:
        checks = (
            (1 <= self.port <= 65535, f"port must be 1-65535, got {self.port}"),
            (self.runtime in (None, "torch", "onnx"), f"runtime must be torch or onnx, got {self.runtime!r}"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (self.max_bytes >= 1, f"max_bytes must be >= 1, got {self.max_bytes}"),
            (self.max_pixels >= 1, f"max_pixels must be >= 1, got {self.max_pixels}"),
            (self.max_queue >= 1, f"max_queue must be >= 1, got {self.max_queue}"),
            (self.max_batch >= 1, f"max_batch must be >= 1, got {self.max_batch}"),
            (self.max_wait_ms >= 0, f"max_wait_ms must be >= 0, got {self.max_wait_ms}"),
            (self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}"),
            (self.read_timeout_s > 0, f"read_timeout_s must be > 0, got {self.read_timeout_s}"),
            (self.max_uploads >= 1, f"max_uploads must be >= 1, got {self.max_uploads}"),
            (self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))
