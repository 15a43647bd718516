"""Tests for foveal.evaluation: metric values checked by hand, streaming equivalence, errors and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from foveal.errors import FovealError
from foveal.evaluation.metrics import (
    ClassificationMetrics,
    MetricAccumulator,
    compute_metrics,
    shows_top_k,
    top_k_for,
)
from foveal.evaluation.plots import plot_confusion_matrix, plot_training_curves

NAMES3 = ["cat", "dog", "bird"]


def _logits_for(preds: list[int], num_classes: int) -> torch.Tensor:
    """Logits whose argmax is `preds`."""
    return torch.nn.functional.one_hot(torch.tensor(preds), num_classes).float() * 3.0


def _hand_example() -> ClassificationMetrics:
    # true:  0 0 0 0 | 1 1 1 | 2 2 2
    # pred:  0 0 0 1 | 1 1 0 | 2 1 1
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    preds = [0, 0, 0, 1, 1, 1, 0, 2, 1, 1]
    return compute_metrics(_logits_for(preds, 3), labels, NAMES3)


def test_hand_checked_three_classes() -> None:
    m = _hand_example()
    # Confusion rows (true) x columns (predicted), counted by hand from the lists above.
    assert m.confusion == [[3, 1, 0], [1, 2, 0], [0, 2, 1]]
    assert m.support == [4, 3, 3]
    assert m.num_samples == 10
    assert m.top1 == pytest.approx(6 / 10)
    assert m.top_k == 2  # top-3 of 3 classes would be a certain 100%
    # Second place is a tie of zero logits, which torch gives the lower class: only the two birds
    # taken for dogs (logits [0, 3, 0]: top 2 = dog, cat) miss.
    assert m.top5 == pytest.approx(8 / 10)
    # precision = diagonal / column sum: 3/4, 2/5, 1/1
    assert m.precision == pytest.approx([3 / 4, 2 / 5, 1.0])
    # recall = diagonal / row sum: 3/4, 2/3, 1/3
    assert m.recall == pytest.approx([3 / 4, 2 / 3, 1 / 3])
    # F1 = 2PR/(P+R): 3/4; 2*(2/5)(2/3)/(16/15) = 1/2; 2*(1)(1/3)/(4/3) = 1/2
    assert m.f1 == pytest.approx([3 / 4, 1 / 2, 1 / 2])
    assert m.macro_precision == pytest.approx((3 / 4 + 2 / 5 + 1.0) / 3)
    assert m.macro_recall == pytest.approx((3 / 4 + 2 / 3 + 1 / 3) / 3)
    assert m.macro_f1 == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)


def test_never_predicted_class_gets_zero() -> None:
    m = compute_metrics(_logits_for([0, 1, 1], 3), torch.tensor([0, 1, 2]), NAMES3)
    assert m.precision == pytest.approx([1.0, 0.5, 0.0])
    assert m.recall == pytest.approx([1.0, 1.0, 0.0])
    assert m.f1[2] == 0.0


def test_perfect_predictions_are_all_one() -> None:
    labels = torch.arange(12) % 4
    m = compute_metrics(_logits_for(labels.tolist(), 4), labels, ["a", "b", "c", "d"])
    assert m.top1 == 1.0 and m.top5 == 1.0
    assert m.precision == [1.0] * 4 and m.recall == [1.0] * 4 and m.f1 == [1.0] * 4
    assert m.macro_precision == m.macro_recall == m.macro_f1 == 1.0
    assert m.confusion == [[3 if i == j else 0 for j in range(4)] for i in range(4)]


def test_top5_counts_third_ranked_true_class() -> None:
    num_classes = 10
    ranking = torch.arange(num_classes, 0, -1).float()  # class 0 scores highest, class 9 lowest
    logits = ranking.repeat(4, 1)
    # Sample 0: true class 0 (rank 1). Samples 1-2: true class 2 (rank 3). Sample 3: class 7 (rank 8).
    labels = torch.tensor([0, 2, 2, 7])
    m = compute_metrics(logits, labels, [f"c{i}" for i in range(num_classes)])
    assert m.top1 == pytest.approx(1 / 4)
    assert m.top5 == pytest.approx(3 / 4)


def test_batched_equals_one_shot() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(257, 7, generator=gen)
    labels = torch.randint(0, 7, (257,), generator=gen)
    names = [f"class{i}" for i in range(7)]
    one_shot = compute_metrics(logits, labels, names)
    acc = MetricAccumulator(names)
    for start in range(0, 257, 32):
        acc.update(logits[start : start + 32], labels[start : start + 32])
    acc.update(logits[:0], labels[:0])  # an empty batch changes nothing
    assert acc.num_samples == 257
    assert acc.compute().to_dict() == one_shot.to_dict()


def test_probabilities_give_the_same_result_as_logits() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 6, generator=gen)
    labels = torch.randint(0, 6, (50,), generator=gen)
    names = list("abcdef")
    assert compute_metrics(logits.softmax(-1), labels, names) == compute_metrics(logits, labels, names)


@pytest.mark.parametrize(
    ("logits", "labels"),
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long)),  # logits not 2-d
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)),  # K != len(class_names)
        (torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.long)),  # labels not 1-d
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long)),  # N mismatch
        (torch.zeros(4, 3), torch.tensor([0, 1, 2, 3])),  # label out of range
        (torch.zeros(4, 3), torch.tensor([0, -1, 2, 1])),  # negative label
        (torch.zeros(4, 3), torch.zeros(4)),  # float labels
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)),  # no samples
        (torch.full((2, 3), float("nan")), torch.zeros(2, dtype=torch.long)),  # non-finite logits
    ],
)
def test_bad_inputs_raise(logits: torch.Tensor, labels: torch.Tensor) -> None:
    with pytest.raises(FovealError, match="expected"):
        compute_metrics(logits, labels, NAMES3)


def test_too_few_class_names_raise() -> None:
    with pytest.raises(FovealError, match="expected at least 2"):
        MetricAccumulator(["only"])


def test_to_dict_is_json_ready_and_table_reads() -> None:
    m = _hand_example()
    data = json.loads(json.dumps(m.to_dict()))
    assert data["top_k"] == 2
    assert data["per_class"][1] == {
        "name": "dog",
        "precision": m.precision[1],
        "recall": m.recall[1],
        "f1": m.f1[1],
        "support": 3,
    }
    table = m.summary_table()
    assert all(name in table for name in NAMES3)
    assert "macro avg" in table and "top-1 accuracy" in table and "top-2 accuracy" in table
    assert " 60.00%" in table


def _png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_confusion_plot_three_and_hundred_classes(tmp_path: Path) -> None:
    small = plot_confusion_matrix(_hand_example().confusion, NAMES3, tmp_path / "cm3.png")
    gen = torch.Generator().manual_seed(2)
    big_counts = torch.randint(0, 20, (100, 100), generator=gen).tolist()
    big_names = [f"a rather long class name number {i}" for i in range(100)]
    big = plot_confusion_matrix(big_counts, big_names, tmp_path / "sub" / "cm100.png", normalize=False)
    small_w, small_h = _png_size(small)
    big_w, big_h = _png_size(big)
    assert 400 <= small_w <= 2000 and 400 <= small_h <= 2000
    assert big_w > small_w and big_h > small_h and big_w <= 5000
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left


def test_confusion_plot_rejects_mismatched_names(tmp_path: Path) -> None:
    with pytest.raises(FovealError, match="expected a 2 x 2"):
        plot_confusion_matrix([[1, 2, 3]] * 3, ["a", "b"], tmp_path / "cm.png")


def test_training_curves_one_and_five_rows(tmp_path: Path) -> None:
    header = "epoch,train_loss,val_loss,val_top1,val_top5,lr,seconds\n"
    one = tmp_path / "one.csv"
    one.write_text(header + "1,2.3,2.1,0.25,0.6,0.001,12.5\n", encoding="utf-8")
    five = tmp_path / "five.csv"
    five.write_text(
        header
        + "1,2.3,2.1,0.25,0.6,0.0001,12.5\n"
        + "2,1.9,,,,0.001,11.0\n"  # no validation this epoch
        + "3,1.5,1.6,0.5,0.8,0.0008,\n"
        + "4,,1.4,0.6,0.85,0.0005,11.2\n"
        + "5,1.1,1.3,0.65,0.9,0.0001,11.1\n",
        encoding="utf-8",
    )
    for csv_path in (one, five):
        out = plot_training_curves(csv_path, tmp_path / f"{csv_path.stem}.png")
        width, height = _png_size(out)
        assert 800 <= width <= 3000 and 600 <= height <= 2000


def test_training_curves_name_the_k_of_top_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from foveal.evaluation import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    results = tmp_path / "results.csv"
    results.write_text("epoch,val_top1,val_top5\n1,0.7,1.0\n2,0.8,1.0\n", encoding="utf-8")
    plot_training_curves(results, tmp_path / "three.png", top_k=2)  # a 3-class run: top-2
    plot_training_curves(results, tmp_path / "two.png", top_k=None)  # a 2-class run: top-1 alone
    plot_training_curves(results, tmp_path / "many.png")
    legends = [
        [text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()]
        for fig in figures
    ]
    assert legends == [["val top-1", "val top-2"], [], ["val top-1", "val top-5"]]  # one curve: no legend


def test_training_curves_missing_columns_and_file(tmp_path: Path) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("train_loss\n1.0\n0.8\n", encoding="utf-8")  # no epoch column at all
    _png_size(plot_training_curves(partial, tmp_path / "partial.png"))
    with pytest.raises(FovealError, match="expected"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")


def test_two_classes_show_no_top_k_and_k_stays_below_the_class_count() -> None:
    """Top-k of k classes is a certain 100%, and top-1 of 2 repeats top-1: neither is shown."""
    assert [top_k_for(n) for n in (2, 3, 5, 6, 10, 1000)] == [1, 2, 4, 5, 5, 5]
    assert [shows_top_k(top_k_for(n), n) for n in (2, 3, 10)] == [False, True, True]
    assert not shows_top_k(3, 3)  # a run saved before: its top-3 of 3 is not shown either
    two = compute_metrics(_logits_for([0, 1, 1, 0], 2), torch.tensor([0, 1, 0, 0]), ["ant", "bee"])
    assert not two.shows_top_k
    table = two.summary_table()
    assert "top-1 accuracy" in table and "top-2" not in table
