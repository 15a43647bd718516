"""Classification metrics: top-1/top-5 accuracy, per-class precision/recall/F1 and a confusion matrix.

All numbers come from torchmetrics so they match what the rest of the PyTorch world reports. The
`MetricAccumulator` keeps only torchmetrics' running counts (per-class true/false positives/negatives, a
K x K confusion matrix and top-k hit counts), never the logits, so evaluating a large data set costs
O(K^2) memory however many images there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from foveal.errors import FovealError

MAX_TOP_K = 5


def top_k_for(num_classes: int) -> int:
    """The k of the "top-5" figure: 5, or one less than the number of classes when there are 5 or
    fewer, since top-k of k classes is always 100%. A 2-class model gets k = 1, which repeats top-1:
    `shows_top_k` is False and no top-k figure is printed, drawn or published for it."""
    return max(1, min(MAX_TOP_K, num_classes - 1))


def shows_top_k(top_k: int, num_classes: int) -> bool:
    """Whether a top-k figure says anything: k above 1 (else it repeats top-1) and below the number
    of classes (else it is always 100%, as in runs saved before `top_k_for` left one class out)."""
    return 1 < top_k < num_classes


_NAME_WIDTH_CAP = 32  # class-name column width in summary_table; longer names are shortened


@dataclass
class ClassificationMetrics:
    """The result of evaluating a classifier on a labelled set.

    Fractions are in 0..1. Per-class lists follow `class_names` order. A class that is never predicted
    gets precision 0.0 (torchmetrics ``zero_division=0``). Macro averages follow torchmetrics: classes
    with no true samples and no predictions are left out of the mean.
    """

    class_names: list[str]
    num_samples: int
    top1: float
    top5: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    confusion: list[list[int]]

    @classmethod
    def undefined(cls, class_names: Sequence[str], num_samples: int) -> ClassificationMetrics:
        """The metrics of a model whose logits are not finite (a diverged run): every score NaN, so
        that it is never taken for the best, and no prediction counted."""
        k, nan = len(class_names), float("nan")
        return cls(
            class_names=list(class_names),
            num_samples=num_samples,
            top1=nan,
            top5=nan,
            precision=[nan] * k,
            recall=[nan] * k,
            f1=[nan] * k,
            support=[0] * k,
            macro_precision=nan,
            macro_recall=nan,
            macro_f1=nan,
            confusion=[[0] * k for _ in range(k)],
        )

    @property
    def top_k(self) -> int:
        """The k used for `top5`: 5, or one less than the number of classes when there are fewer."""
        return top_k_for(len(self.class_names))

    @property
    def shows_top_k(self) -> bool:
        """Whether `top5` is worth showing beside top-1 (not for 2 classes: k = 1)."""
        return shows_top_k(self.top_k, len(self.class_names))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (plain floats, ints and lists).

        Returns:
            Every field, plus ``top_k`` and a ``per_class`` list of
            ``{name, precision, recall, f1, support}`` dicts.
        """
        data = asdict(self)
        data["top_k"] = self.top_k
        data["per_class"] = [
            {"name": name, "precision": p, "recall": r, "f1": f, "support": s}
            for name, p, r, f, s in zip(
                self.class_names, self.precision, self.recall, self.f1, self.support, strict=True
            )
        ]
        return data

    def summary_table(self) -> str:
        """Return a plain-text table for a terminal.

        Returns:
            One row per class (precision, recall, F1, support), a macro-average row, then top-1 and
            top-k accuracy lines.
        """
        width = max(len("macro avg"), *(len(_shorten(n, _NAME_WIDTH_CAP)) for n in self.class_names))
        header = f"{'class':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>9}"
        rule = "-" * len(header)
        lines = [header, rule]
        for name, p, r, f, s in zip(
            self.class_names, self.precision, self.recall, self.f1, self.support, strict=True
        ):
            lines.append(_table_row(_shorten(name, _NAME_WIDTH_CAP), width, p, r, f, s))
        lines.append(rule)
        lines.append(
            _table_row(
                "macro avg", width, self.macro_precision, self.macro_recall, self.macro_f1, self.num_samples
            )
        )
        lines.append("")
        lines.append(f"top-1 accuracy: {self.top1 * 100:6.2f}%  ({self.num_samples} samples)")
        if self.shows_top_k:
            lines.append(f"top-{self.top_k} accuracy: {self.top5 * 100:6.2f}%")
        return "\n".join(lines)


def _table_row(name: str, width: int, p: float, r: float, f: float, support: int) -> str:
    """Format one summary-table row."""
    return f"{name:<{width}}  {p:>9.4f}  {r:>9.4f}  {f:>9.4f}  {support:>9d}"


def _shorten(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, marking the cut with '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MetricAccumulator:
    """Streaming metrics: call `update` once per batch, then `compute`.

    Holds torchmetrics stateful metrics only (running counts), so memory does not grow with the number
    of samples. Batched and one-shot evaluation give identical numbers because the counts are integers.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        """Create an empty accumulator.

        Args:
            class_names: one name per class, in logit-column order (at least 2).
        """
        names = [str(n) for n in class_names]
        if len(names) < 2:
            raise FovealError(f"expected at least 2 class names, got {len(names)}")
        self.class_names = names
        self._metrics = _build_metrics(len(names))
        self._num_samples = 0

    @property
    def num_samples(self) -> int:
        """How many samples have been added so far."""
        return self._num_samples

    def reset(self) -> None:
        """Forget every sample added so far."""
        self._metrics.reset()
        self._num_samples = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch.

        Args:
            logits: (N, K) scores or probabilities; only their ranking per row matters.
            labels: (N,) integer class indices in [0, K).
        """
        logits, labels = _check_inputs(logits, labels, len(self.class_names))
        if labels.numel() == 0:
            return  # an empty final batch is harmless; compute() still guards against no data at all
        # Counting happens on the CPU: the per-batch copy is small and it keeps the metric states off
        # the accelerator, so the accumulator works whatever device the model ran on.
        self._metrics.update(logits, labels)
        self._num_samples += int(labels.numel())

    def compute(self) -> ClassificationMetrics:
        """Return the metrics over every sample added so far.

        Returns:
            A `ClassificationMetrics`.
        """
        if self._num_samples == 0:
            raise FovealError("expected at least one labelled sample to evaluate, got 0")
        values = self._metrics.compute()
        confusion = values["confusion"].to(torch.int64)
        return ClassificationMetrics(
            class_names=list(self.class_names),
            num_samples=self._num_samples,
            top1=_scalar(values["top1"]),
            top5=_scalar(values["topk"]),
            precision=_floats(values["precision"]),
            recall=_floats(values["recall"]),
            f1=_floats(values["f1"]),
            support=[int(v) for v in confusion.sum(dim=1).tolist()],
            macro_precision=_scalar(values["macro_precision"]),
            macro_recall=_scalar(values["macro_recall"]),
            macro_f1=_scalar(values["macro_f1"]),
            confusion=[[int(v) for v in row] for row in confusion.tolist()],
        )


def compute_metrics(
    logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]
) -> ClassificationMetrics:
    """Compute every metric over a whole set in one call.

    Args:
        logits: (N, K) scores or probabilities.
        labels: (N,) integer class indices in [0, K).
        class_names: K names, in logit-column order.

    Returns:
        A `ClassificationMetrics`; identical to feeding the same data to a `MetricAccumulator` in batches.
    """
    accumulator = MetricAccumulator(class_names)
    accumulator.update(logits, labels)
    return accumulator.compute()


def _build_metrics(num_classes: int) -> Any:
    """Create the torchmetrics collection that holds the running counts."""
    from torchmetrics import MetricCollection
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassConfusionMatrix,
        MulticlassF1Score,
        MulticlassPrecision,
        MulticlassRecall,
    )

    # Inputs are validated in _check_inputs, so torchmetrics' own (slower) checks are switched off.
    # Each process's figures are of the images it was given: under torchrun rank 0 validates on all of
    # them alone, so torchmetrics must not gather from the other ranks (it would wait for them).
    common: dict[str, Any] = {"num_classes": num_classes, "validate_args": False, "sync_on_compute": False}
    scores: dict[str, Any] = {**common, "zero_division": 0}
    metrics = {
        "top1": MulticlassAccuracy(top_k=1, average="micro", **common),
        "topk": MulticlassAccuracy(top_k=top_k_for(num_classes), average="micro", **common),
        "precision": MulticlassPrecision(average="none", **scores),
        "recall": MulticlassRecall(average="none", **scores),
        "f1": MulticlassF1Score(average="none", **scores),
        "macro_precision": MulticlassPrecision(average="macro", **scores),
        "macro_recall": MulticlassRecall(average="macro", **scores),
        "macro_f1": MulticlassF1Score(average="macro", **scores),
        "confusion": MulticlassConfusionMatrix(**common),
    }
    # compute_groups lets the six precision/recall/F1 metrics share one set of tp/fp/tn/fn counts.
    return MetricCollection(metrics, compute_groups=True)


def _check_inputs(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Validate one batch and return CPU copies ready for torchmetrics.

    Args:
        logits: expected (N, K) floating point.
        labels: expected (N,) integer in [0, K).
        num_classes: K.

    Returns:
        (logits as float32, labels as int64), both on the CPU.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise FovealError(
            f"expected logits and labels as torch tensors, got {type(logits).__name__} and "
            f"{type(labels).__name__}"
        )
    if logits.ndim != 2:
        raise FovealError(f"expected logits of shape (N, {num_classes}), got {tuple(logits.shape)}")
    if logits.shape[1] != num_classes:
        raise FovealError(
            f"expected logits with {num_classes} columns (one per class name), got {logits.shape[1]} "
            f"(shape {tuple(logits.shape)})"
        )
    if labels.ndim != 1:
        raise FovealError(f"expected labels of shape (N,), got {tuple(labels.shape)}")
    if labels.shape[0] != logits.shape[0]:
        raise FovealError(f"expected as many labels as logit rows ({logits.shape[0]}), got {labels.shape[0]}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise FovealError(f"expected integer class-index labels, got dtype {labels.dtype}")
    logits = logits.detach().to("cpu", torch.float32)
    labels = labels.detach().to("cpu", torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise FovealError(
            f"expected labels in [0, {num_classes}), got values from {int(labels.min())} to "
            f"{int(labels.max())}"
        )
    if not bool(torch.isfinite(logits).all()):
        # NaN/inf would rank arbitrarily and give meaningless accuracy; better to say so than report it.
        raise FovealError("expected finite logits, got NaN or infinity (did training diverge?)")
    return logits, labels


def _scalar(value: torch.Tensor) -> float:
    """Turn a 0-d tensor into a plain float."""
    return float(value.item())


def _floats(values: torch.Tensor) -> list[float]:
    """Turn a 1-d tensor into a list of plain floats."""
    return [float(v) for v in values.tolist()]
