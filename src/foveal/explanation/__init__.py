"""Where a model looks: attention maps, Grad-CAM, and how faithful each is."""

from foveal.explanation.maps import METHODS, ExplainError, TokenMaps, compute_maps, rollout
from foveal.explanation.result import Explanation
from foveal.explanation.run import explain_images, explain_inputs, measure_faithfulness, save_explanations

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
