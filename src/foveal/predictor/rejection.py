"""Open-set rejection: a model says "unknown" for images that look like none of its classes.

A classifier's softmax always sums to one, so a digits model shown a cat still answers "8, 88%".
Each saved model therefore carries a familiarity score and a threshold calibrated on its own
held-out images: the threshold is the score below which the stated share of them (the false
rejection rate, 5% by default) falls. An image scoring below it is marked unknown.

Scores, higher meaning more like the training classes, from what the one inference path gives
(`foveal.predictor.inference.Outputs`: logits over the test-time views, pooled features of the image's own
view), so PyTorch and ONNX models reject alike:

    mahalanobis  minus the Mahalanobis distance of the pooled features to the nearest class mean,
                 one covariance shared by the classes (Lee et al. 2018, without input perturbation);
                 means and covariance fitted on training images, stored with the model
    msp          the largest softmax probability (Hendrycks & Gimpel 2017)
    energy       logsumexp of the logits, the negative free energy (Liu et al. 2020)

DEFAULT_SCORE was chosen by measurement (docs/benchmarks.md, "Open-set rejection"; AUROC,
mahalanobis / msp / energy, this code as shipped): a digits model against CIFAR-10 images
0.997 / 0.945 / 0.925, a model of 6 CIFAR-10 classes against the other 4 0.662 / 0.628 / 0.644: far
better against other kinds of image, no worse on unseen classes of the same kind. Without pooled
features (an ONNX file exported before Foveal exported them) msp is used.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from foveal.errors import FovealError

if TYPE_CHECKING:
    from foveal.predictor.inference import Outputs

SCORES = ("mahalanobis", "msp", "energy")
DEFAULT_SCORE = "mahalanobis"
LOGIT_SCORE = "msp"  # the score when there are no pooled features to measure a distance on
DEFAULT_FALSE_REJECTION_RATE = 0.05
FIT_IMAGES = 10_000  # training images (evenly spaced) the class means and covariance are fitted on
UNKNOWN = "unknown"  # the label a rejected image gets in predictions


@dataclass(frozen=True, eq=False)
class FeatureDistance:
    """Distances of pooled features to class means under one shared covariance, kept as a whitening
    matrix W (C, C), W.T @ W = inverse covariance, and the whitened means W @ mean_k (K, C): the
    distance is then a plain Euclidean one, ||W f - W mean_k||."""

    whitening: torch.Tensor  # float32 (C, C)
    centres: torch.Tensor  # float32 (K', C): one per class that had fitting images

    @classmethod
    def fit(cls, pooled: torch.Tensor, labels: torch.Tensor) -> FeatureDistance:
        """From pooled features (N, C) of labelled training images (N,). The covariance is shrunk
        towards its mean variance, a little (1e-4) when there are several images per feature and
        more (0.1) when there are not, so that it is invertible on small data sets."""
        features = pooled.double()
        present = labels.unique()
        means = torch.stack([features[labels == k].mean(0) for k in present.tolist()])  # (K', C)
        centred = features - means[torch.searchsorted(present, labels)]
        channels = features.shape[1]
        covariance = centred.T @ centred / len(features)
        shrink = 1e-4 if len(features) >= 4 * channels else 0.1
        scale = float(covariance.diagonal().mean()) or 1.0
        covariance = (1 - shrink) * covariance + shrink * scale * torch.eye(channels, dtype=torch.float64)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # covariance = V diag(e) V.T
        whitening = eigenvalues.clamp_min(1e-12 * scale).rsqrt()[:, None] * eigenvectors.T  # (C, C)
        return cls(whitening.float(), (means @ whitening.T).float())

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FeatureDistance)
            and torch.equal(self.whitening, other.whitening)
            and torch.equal(self.centres, other.centres)
        )

    __hash__ = None  # mutable tensors inside: not hashable

    def familiarity(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N,): minus each pooled vector's (N, C) distance to the nearest class mean."""
        whitened = pooled.float() @ self.whitening.T  # (N, C)
        return -torch.cdist(whitened, self.centres).amin(dim=1)

    def to_dict(self) -> dict[str, Any]:
        return {"whitening": _encode(self.whitening), "centres": _encode(self.centres)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureDistance:
        whitening, centres = _decode(data["whitening"]), _decode(data["centres"])
        if (
            whitening.ndim != 2
            or whitening.shape[0] != whitening.shape[1]
            or centres.shape[1:] != (whitening.shape[1],)
        ):
            raise ValueError(f"feature statistics of shapes {tuple(whitening.shape)}, {tuple(centres.shape)}")
        return cls(whitening, centres)


def _encode(tensor: torch.Tensor) -> dict[str, Any]:
    """A float32 tensor as JSON: its shape and little-endian bytes in base64 (the bundle's predict.py
    reads it with numpy alone)."""
    data = tensor.detach().cpu().float().numpy().astype("<f4")
    return {"shape": list(data.shape), "float32_base64": base64.b64encode(data.tobytes()).decode("ascii")}


def _decode(data: dict[str, Any]) -> torch.Tensor:
    shape = [int(n) for n in data["shape"]]
    array = np.frombuffer(base64.b64decode(data["float32_base64"]), dtype="<f4")
    return torch.from_numpy(array.reshape(shape).astype(np.float32))


def familiarity(
    outputs: Outputs, score: str = LOGIT_SCORE, distance: FeatureDistance | None = None
) -> torch.Tensor:
    """(N,) float32: how much each image of `outputs` looks like the training classes."""
    if score == "mahalanobis":
        if distance is None or outputs.pooled is None:
            raise FovealError("the mahalanobis familiarity needs pooled features and fitted class means")
        return distance.familiarity(outputs.pooled)
    logits = outputs.logits.detach().float()
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
    distance: FeatureDistance | None = None  # the fitted class means and covariance (mahalanobis)

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"familiarity score {self.score!r}, expected one of {SCORES}")
        if (self.score == "mahalanobis") != (self.distance is not None):
            raise ValueError("the mahalanobis score comes with its class means and covariance, no other")

    def familiarity(self, outputs: Outputs) -> torch.Tensor:
        """(N,) float32 scores of `outputs` (N images)."""
        return familiarity(outputs, self.score, self.distance)

    def unknown(self, outputs: Outputs) -> torch.Tensor:
        """(N,) bool: which images of `outputs` fall below the threshold."""
        return self.familiarity(outputs) < self.threshold

    def describe(self) -> str:
        what = {
            "mahalanobis": "minus the distance of the features to the nearest class mean",
            "msp": "the top softmax probability",
            "energy": "logsumexp of the logits",
        }[self.score]
        return (
            f"{self.score} familiarity below {self.threshold:.4g}, the familiarity being {what}, the "
            f"threshold set so that {self.false_rejection_rate:.0%} of {self.calibration_images:,} "
            "held-out images fall below it"
        )

    def summary(self) -> dict[str, Any]:
        """The threshold without the feature statistics (a bundle's config.json, metrics.json)."""
        return {
            "score": self.score,
            "threshold": self.threshold,
            "false_rejection_rate": self.false_rejection_rate,
            "calibration_images": self.calibration_images,
        }

    def to_dict(self) -> dict[str, Any]:
        """All of it, as stored with a model (the safetensors header, an ONNX file's metadata)."""
        stored = self.summary()
        if self.distance is not None:
            stored["distance"] = self.distance.to_dict()
        return stored

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rejection:
        distance = data.get("distance")
        return cls(
            str(data["score"]),
            float(data["threshold"]),
            float(data["false_rejection_rate"]),
            int(data["calibration_images"]),
            None if distance is None else FeatureDistance.from_dict(distance),
        )


def calibrate(
    held_out: Outputs,
    fit: tuple[Outputs, torch.Tensor] | None = None,
    score: str = DEFAULT_SCORE,
    false_rejection_rate: float = DEFAULT_FALSE_REJECTION_RATE,
) -> Rejection | None:
    """The threshold below which `false_rejection_rate` of the held-out images' scores fall; None
    when there is nothing to calibrate on (no images, or non-finite outputs from a diverged model).

    `fit`: outputs and labels (N,) of training images, which the mahalanobis score's class means and
    covariance are fitted on (not on the held-out images: the threshold would then be set on images
    the statistics had already seen). Without them, or without pooled features, msp is used."""
    if not 0.0 <= false_rejection_rate < 1.0:
        raise FovealError(f"the false rejection rate must be in [0, 1), got {false_rejection_rate}")
    if len(held_out) == 0 or not bool(torch.isfinite(held_out.logits).all()):
        return None
    distance = None
    if score == "mahalanobis":
        usable = fit is not None and fit[0].pooled is not None and held_out.pooled is not None
        if usable and len(fit[0]) and bool(torch.isfinite(fit[0].pooled).all()):
            distance = FeatureDistance.fit(fit[0].pooled, fit[1])
        else:
            score = LOGIT_SCORE
    scores = familiarity(held_out, score, distance)
    if not bool(torch.isfinite(scores).all()):
        return None
    return Rejection(
        score, threshold_at(scores, false_rejection_rate), false_rejection_rate, len(scores), distance
    )


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
    def of(cls, rejection: Rejection, outputs: Outputs) -> RejectionCount:
        return cls(rejection, int(rejection.unknown(outputs).sum()), len(outputs))

    def to_dict(self) -> dict[str, Any]:
        return {**self.rejection.summary(), "rejected": self.rejected, "rejected_fraction": self.fraction}

    def sentence(self) -> str:
        return (
            f"unknown: {self.rejected:,} of {self.images:,} images ({self.fraction:.1%}) rejected as "
            f"unlike the training classes ({self.rejection.describe()}); --no-reject turns it off"
        )
