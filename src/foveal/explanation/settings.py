"""What `foveal explain` is told; its options are these fields (cli/options.py). Light to import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from foveal.config import check, option
from foveal.predictor.settings import LoadSettings


@dataclass(frozen=True)
class ExplainSettings(LoadSettings):
    """Which maps `foveal explain` draws, of which class, and where; or their faithfulness."""

    method: str | None = option(
        None,
        "pool, rollout, grad-rollout or gradcam [default: rollout; gradcam for a CNN].",
        summary="pool, rollout, grad-rollout or gradcam.",
    )
    target: str | None = option(
        None,
        "Class to explain, by name or index [default: the predicted one].",
        summary="Class to explain [default: the predicted one].",
        flag="--class",
    )
    out: str | None = option(
        None,
        "Output folder for the PNGs and JSON [default: runs/explain, numbered].",
        summary="Output folder [default: runs/explain, numbered].",
    )
    top_k: int = option(5, "Labels shown per image.", short="-k")
    head_fusion: Literal["mean", "max", "min"] = option("mean", "Rollout: fuse heads by mean, max or min.")
    discard_ratio: float = option(
        0.0,
        "Rollout: share of weak links dropped: this share of each token's weakest links, from 0 to 0.99.",
        summary="Rollout: share of weak links dropped.",
    )
    faithfulness: bool = option(
        False,
        "Score every method's maps on a data set: deletion and insertion curves of every method, "
        "against random maps.",
        summary="Score every method's maps on a data set.",
        negatable=False,
    )
    limit: int = option(
        500,
        "Faithfulness: images measured on, evenly spaced over the data set.",
        summary="Faithfulness: images measured on.",
        flag="--images",
    )
    deletion_fill: Literal["mean", "blur"] = option(
        "mean",
        "Faithfulness: deleted pixels take the mean colour, or the image blurred.",
        summary="Faithfulness: deleted pixels' fill, mean or blur.",
    )

    def __post_init__(self) -> None:
        check(
            (self.top_k >= 1, f"--top-k must be >= 1, got {self.top_k}"),
            (
                self.head_fusion in ("mean", "max", "min"),
                f"--head-fusion must be mean, max or min, got {self.head_fusion!r}",
            ),
            (0 <= self.discard_ratio < 1, f"--discard-ratio must be in [0, 1), got {self.discard_ratio}"),
            (self.limit >= 2, f"--images must be >= 2, got {self.limit}"),
            (
                self.deletion_fill in ("mean", "blur"),
                f"--deletion-fill must be mean or blur, got {self.deletion_fill!r}",
            ),
        )
