"""A model exported to ONNX, run by onnxruntime: a `Network` (predictor/network.py) in a graph.

`foveal.load("bundle/model.onnx")` gives a Classifier whose network is an `OnnxNetwork`, so predict,
evaluate and explain's labels go through the one inference path (predictor/inference.py). The
graph already averages the test-time views, so that classifier's preprocessing asks for none. Maps
come from the graph's own outputs: the pooling weights, and the rollout map when exported with
`--maps rollout`; methods that need gradients need the PyTorch model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from foveal.data.preprocess import Preprocessing
from foveal.errors import ConfigError, FovealError, ModelFileError
from foveal.models import config_from_dict
from foveal.models.contract import FovealModel
from foveal.models.maps import ExplainError, TokenMaps, to_grid
from foveal.predictor.saved import ModelInfo

INPUT = "pixel_values"  # float32 (B, 3, S, S), normalised as the preprocessing says
POOLED = "pooled"  # float32 (B, C): the features the head and the open-set familiarity read
MAP_OUTPUTS = {"pool": "pool_weights", "rollout": "rollout"}  # explanation method -> graph output (B, h*w)
METADATA_KEYS = ("preprocessing", "id2label", "architecture", "token_grid")


class OnnxNetwork(nn.Module):
    """An onnxruntime session as a `Network`: normalised images (B, 3, S, S) -> logits (B, K) over the
    test-time views the graph was exported with; no parameters, CPU only."""

    def __init__(self, session, grid: tuple[int, int]) -> None:
        super().__init__()
        self.session = session
        self.grid = grid
        outputs = [o.name for o in session.get_outputs()]
        self.methods = [method for method, name in MAP_OUTPUTS.items() if name in outputs]
        self.has_pooled = POOLED in outputs  # exports before Foveal 0.1's open-set scores lack it

    def forward(self, normalized: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(["logits"], {INPUT: _array(normalized)})
        return torch.from_numpy(logits)

    def forward_pooled(self, normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, K) over the graph's views and pooled features (B, C) of the image's own view."""
        if not self.has_pooled:
            return self(normalized), None
        logits, pooled = self.session.run(["logits", POOLED], {INPUT: _array(normalized)})
        return torch.from_numpy(logits), torch.from_numpy(pooled)

    @property
    def torch_model(self) -> FovealModel:
        raise ConfigError(
            "this is an ONNX model run by onnxruntime; what needs PyTorch (export, gradients, "
            "parameters) needs the bundle's model.safetensors."
        )

    def token_maps(
        self,
        normalized: torch.Tensor,
        method: str,
        targets: torch.Tensor,
        *,
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
    ) -> TokenMaps:
        """Maps (B, h, w) of `method` from the graph's outputs, for normalised images (B, 3, S, S)."""
        if method not in self.methods:
            has = ", ".join(self.methods) or "none"
            raise ExplainError(
                f"--method {method} is not in this ONNX model (its maps: {has}); explain with the "
                "bundle's model.safetensors for every method, or export again with --maps rollout."
            )
        if method == "rollout" and (head_fusion != "mean" or discard_ratio != 0.0):
            raise ConfigError(
                "the ONNX rollout map was exported with --head-fusion mean and --discard-ratio 0; "
                "explain with the bundle's model.safetensors for other settings."
            )
        (values,) = self.session.run([MAP_OUTPUTS[method]], {INPUT: _array(normalized)})
        return TokenMaps(to_grid(torch.from_numpy(values).float(), self.grid), targets)


def load_onnx(path: Path) -> tuple[OnnxNetwork, ModelInfo]:
    """An ONNX file Foveal exported, ready to run; anything else raises ModelFileError."""
    try:
        import onnxruntime
    except ImportError:
        raise FovealError(
            f"{path} needs onnxruntime to run, which is not installed: pip install 'foveal[export]'."
        ) from None
    try:
        # As many threads as PyTorch's (what `foveal serve --threads` and torch.set_num_threads set).
        session = cpu_session(onnxruntime, path, torch.get_num_threads())
    except Exception as error:  # noqa: BLE001  (onnxruntime raises its own kinds for bad files)
        raise ModelFileError(f"{path} is not a readable ONNX model ({str(error).splitlines()[0]}).") from None
    metadata = session.get_modelmeta().custom_metadata_map
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing or [i.name for i in session.get_inputs()] != [INPUT]:
        raise ModelFileError(
            f"{path} is an ONNX model that Foveal did not export (no {', '.join(missing) or INPUT}); "
            "export one with `foveal export MODEL --format onnx`."
        )
    try:
        labels = json.loads(metadata["id2label"])
        info = ModelInfo(
            config_from_dict(json.loads(metadata["architecture"])),
            [labels[str(i)] for i in range(len(labels))],
            # The graph averages the test-time views itself: the inference path must not add them.
            Preprocessing.from_dict(json.loads(metadata["preprocessing"])).with_views("none"),
            {
                "onnx": str(path),
                "views_in_graph": json.loads(metadata["preprocessing"])["test_time_views"],
                # the open-set threshold, on the graph's logits (absent from older exports)
                **({"rejection": json.loads(metadata["rejection"])} if "rejection" in metadata else {}),
            },
        )
        _ = info.rejection  # a damaged threshold is a damaged file
        grid = tuple(json.loads(metadata["token_grid"]))
    except (ValueError, KeyError, TypeError, FovealError) as error:
        raise ModelFileError(f"{path}: its Foveal metadata cannot be read ({error}).") from None
    return OnnxNetwork(session, grid).eval(), info


def _array(images: torch.Tensor) -> np.ndarray:
    return images.detach().to("cpu", torch.float32).contiguous().numpy()


def cpu_session(runtime, path: Path, threads: int):
    """An onnxruntime session on the CPU for the model file `path`, with `session_options`."""
    return runtime.InferenceSession(
        str(path), session_options(runtime, threads), providers=["CPUExecutionProvider"]
    )


def session_options(runtime, threads: int):
    """onnxruntime's options: as many intra-op threads as PyTorch uses, as `foveal bench` compares them."""
    options = runtime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph runs sequentially, as PyTorch's does
    # No spin-waiting after a call: spinning threads would take the cores from the backend timed
    # next (exporting/timing.SETTLE_SECONDS), and a server idles without burning a core. It costs
    # onnxruntime ~0.05 ms a call at batch 1 here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
