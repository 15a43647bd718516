"""Where a model looks: attention maps, Grad-CAM, and how faithful each is."""

from foveal.explanation.result import Explanation
from foveal.explanation.workflow import (
    explain_images,
    explain_inputs,
    measure_faithfulness,
    save_explanations,
)
from foveal.models.maps import METHODS, ExplainError, TokenMaps, compute_maps, rollout

__all__ = [
    "METHODS",
    "ExplainError",
    "Explanation",
    "TokenMaps",
    "compute_maps",
    "explain_images",
    "explain_inputs",
    "measure_faithfulness",
    "rollout",
    "save_explanations",
]
