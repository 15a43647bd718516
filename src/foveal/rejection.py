"""Open-set rejection: a model says "unknown" for images that look like none of its classes.

A classifier's softmax always sums to one, so a digits model shown a cat still answers "8, 88%".
Each saved model therefore carries a familiarity score and a threshold calibrated on its own
held-out images: the threshold is the score below which the stated share of them (the false
rejection rate, 5% by default) falls. An image scoring below it is marked unknown.

Scores, higher meaning more like the training classes, all from the logits (B, K) the one inference
path gives, test-time views included, so PyTorch and ONNX models reject alike:

    msp     the largest softmax probability (Hendrycks & Gimpel 2017)
    energy  logsumexp of the logits, the negative free energy (Liu et al. 2020)

Which one a run calibrates (DEFAULT_SCORE) was chosen by measurement (docs/benchmarks.md, "Open-set
rejection"; AUROC, msp / energy): a digits model against CIFAR-10 images 0.945 / 0.925, a model of 6
CIFAR-10 classes against the other 4 0.694 / 0.700. A Mahalanobis distance on the pooled features
measured 0.997 and 0.693: far better against other kinds of image, but it needs the pooled features
through every inference path (the ONNX graph, the server), which is not built yet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from foveal.errors import FovealError

SCORES = ("msp", "energy")
DEFAULT_SCORE = "msp"
DEFAULT_FALSE_REJECTION_RATE = 0.05
UNKNOWN = "unknown"  # the label a rejected image gets in predictions


def familiarity(logits: torch.Tensor, score: str = DEFAULT_SCORE) -> torch.Tensor:
    """(N,) float32: how much each image of logits (N, K) looks like the training classes."""
    logits = logits.detach().float()
    if score == "msp":
        return logits.softmax(dim=1).amax(dim=1)
    if score == "energy":
        return logits.logsumexp(dim=1)
    raise FovealError(f"unknown familiarity score {score!r}; expected one of {SCORES}")


@dataclass(frozen=True)
class Rejection:
    """A calibrated threshold on a familiarity score, stored with the model it belongs to."""

    score: str  # one of SCORES
    threshold: float  # images scoring below it are unknown
    false_rejection_rate: float  # the share of held-out images below it, as calibrated
    calibration_images: int  # how many held-out images set it

    def familiarity(self, logits: torch.Tensor) -> torch.Tensor:
        return familiarity(logits, self.score)

    def unknown(self, logits: torch.Tensor) -> torch.Tensor:
        """(N,) bool: which images of logits (N, K) fall below the threshold."""
        return self.familiarity(logits) < self.threshold

    def describe(self) -> str:
        return (
            f"{self.score} familiarity below {self.threshold:.4g} (set so that "
            f"{self.false_rejection_rate:.0%} of {self.calibration_images:,} held-out images fall below it)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rejection:
        return cls(
            str(data["score"]),
            float(data["threshold"]),
            float(data["false_rejection_rate"]),
            int(data["calibration_images"]),
        )


def calibrate(
    held_out_logits: torch.Tensor,
    score: str = DEFAULT_SCORE,
    false_rejection_rate: float = DEFAULT_FALSE_REJECTION_RATE,
) -> Rejection | None:
    """The threshold below which `false_rejection_rate` of the held-out images' scores fall; None
    when there is nothing to calibrate on (no images, or non-finite logits from a diverged model)."""
    if not 0.0 <= false_rejection_rate < 1.0:
        raise FovealError(f"the false rejection rate must be in [0, 1), got {false_rejection_rate}")
    scores = familiarity(held_out_logits, score) if held_out_logits.numel() else torch.empty(0)
    if scores.numel() == 0 or not bool(torch.isfinite(scores).all()):
        return None
    return Rejection(score, threshold_at(scores, false_rejection_rate), false_rejection_rate, len(scores))


def threshold_at(scores: torch.Tensor, false_rejection_rate: float) -> float:
    """The k-th smallest of `scores` (N,), k = floor(rate * N): exactly k of them lie below it
    (without ties). The rule of every calibration, any score's."""
    ordered = scores.sort().values
    return float(ordered[int(false_rejection_rate * len(ordered))])


@dataclass(frozen=True)
class RejectionCount:
    """How many images of an evaluated set a model's threshold rejects."""

    rejection: Rejection
    rejected: int
    images: int

    @property
    def fraction(self) -> float:
        return self.rejected / self.images if self.images else 0.0

    @classmethod
    def of(cls, rejection: Rejection, logits: torch.Tensor) -> RejectionCount:
        return cls(rejection, int(rejection.unknown(logits).sum()), int(logits.shape[0]))

    def to_dict(self) -> dict[str, Any]:
        return {**self.rejection.to_dict(), "rejected": self.rejected, "rejected_fraction": self.fraction}

    def sentence(self) -> str:
        return (
            f"unknown: {self.rejected:,} of {self.images:,} images ({self.fraction:.1%}) rejected as "
            f"unlike the training classes ({self.rejection.describe()}); --no-reject turns it off"
        )
