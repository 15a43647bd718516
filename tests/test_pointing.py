"""The grid pointing game (explanation/pointing.py) and the class-specific readout it relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from synthetic import make_class_folder

import foveal
from foveal.data.sources import load_evaluation_data
from foveal.errors import ConfigError
from foveal.explanation.pointing import CHANCE, cell_shares, make_mosaics, pointing_game
from foveal.models.maps import compute_maps, pooled_contributions


def constant_images(labels: list[int], size: int = 9) -> torch.Tensor:
    """uint8 (N, 3, size, size): image i is flat grey at 40 * (its label + 1)."""
    values = torch.tensor([40 * (label + 1) for label in labels], dtype=torch.uint8)
    return values[:, None, None, None].expand(-1, 3, size, size).clone()


@pytest.mark.parametrize("num_classes", [2, 5])
def test_each_mosaic_holds_its_target_in_its_cell_and_other_classes_elsewhere(num_classes: int) -> None:
    labels = [i % num_classes for i in range(40)]
    size = 9  # odd: the cells split 4 | 5 pixels
    mosaics = make_mosaics(constant_images(labels, size), torch.tensor(labels), count=60, seed=3)
    assert mosaics.images.shape == (60, 3, size, size) and mosaics.images.dtype == torch.uint8
    spans = [(0, 4), (4, 9)]
    for image, cell, target in zip(mosaics.images, mosaics.cells.tolist(), mosaics.targets.tolist()):
        for index in range(4):
            (top, bottom), (left, right) = spans[index // 2], spans[index % 2]
            values = image[:, top:bottom, left:right].unique().tolist()
            assert len(values) == 1  # one whole image shrunk into the cell
            label = values[0] // 40 - 1
            assert (label == target) == (index == cell)
    assert set(mosaics.cells.tolist()) == {0, 1, 2, 3}  # the target moves around
    assert set(mosaics.targets.tolist()) == set(range(num_classes))


def test_the_score_is_the_share_of_positive_mass_in_the_cell() -> None:
    maps = torch.zeros(4, 8, 8)
    maps[0, :4, :4] = 1.0  # all in cell 0
    maps[1] = 1.0  # uniform
    maps[2, 4:, 4:] = 3.0  # all in cell 3, asked about cell 2
    maps[2, :4, :4] = -5.0  # negative mass does not count
    cells = torch.tensor([0, 1, 2, 3])  # map 3 is blank: it points nowhere
    assert cell_shares(maps, cells).tolist() == [1.0, 0.25, 0.0, 0.0]


def test_a_single_class_cannot_make_a_mosaic() -> None:
    with pytest.raises(ConfigError, match="at least 2 classes"):
        make_mosaics(constant_images([0, 0, 0, 0]), torch.zeros(4, dtype=torch.long), count=1)


def test_pooled_contributions_add_up_to_the_logit_and_make_grad_rollout_class_specific() -> None:
    torch.manual_seed(0)
    model = foveal.create_model("hybrid-nano", num_classes=3, img_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    out = model.forward_explained(images)
    targets = torch.tensor([0, 2])
    contributions = pooled_contributions(model, out, targets)  # (2, 64)
    expected = out.logits.gather(1, targets[:, None])[:, 0] - model.head.bias[targets]
    torch.testing.assert_close(contributions.sum(dim=1), expected.detach(), atol=1e-5, rtol=1e-5)
    # Asked about two different classes, the same image gets two different maps.
    first = compute_maps(model, images[:1], "grad-rollout", torch.tensor([0])).maps
    second = compute_maps(model, images[:1], "grad-rollout", torch.tensor([1])).maps
    assert not torch.allclose(first, second, atol=1e-4)


def test_a_model_that_learnt_its_classes_points_at_them(tmp_path: Path) -> None:
    # Each class is a bright stripe of its own colour: a trained model must point at the cell whose
    # stripe has the colour asked about. The class-blind maps stay at chance.
    data = make_class_folder(tmp_path / "stripes", per_class=40, size=32)
    result = foveal.train(
        data=str(data), model="hybrid-nano", epochs=4, batch_size=16, img_size=32,
        out=str(tmp_path / "runs"), report=False, quiet=True,
    )  # fmt: skip
    classifier = foveal.load(result.run_dir, device="cpu")
    images, _ = load_evaluation_data(str(data), classifier.classes, classifier.info.preprocessing)
    mosaics = make_mosaics(images.images, images.labels, count=48)
    scores = {s.method: s for s in pointing_game(classifier, mosaics)}
    assert set(scores) == {"pool", "rollout", "grad-rollout", "gradcam"}
    for method in ("grad-rollout", "gradcam"):
        assert scores[method].score > 2 * CHANCE - 0.1, scores  # chance is 0.25
    for method in ("pool", "rollout"):
        assert abs(scores[method].score - CHANCE) < 0.05, scores
    assert all(s.mosaics == 48 for s in scores.values())
