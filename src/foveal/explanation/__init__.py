"""Where a model looks: attention maps, Grad-CAM, and how faithful each is."""

from foveal.explanation.maps import METHODS, ExplainError, TokenMaps, compute_maps, rollout
from foveal.explanation.run import (
    Explanation,
    explain,
    explain_images,
    measure_faithfulness,
    save_explanations,
)

__all__ = [
    "METHODS",
    "ExplainError",
    "Explanation",
    "TokenMaps",
    "compute_maps",
    "explain",
    "explain_images",
    "measure_faithfulness",
    "rollout",
    "save_explanations",
]
