"""Explanations: the maps' maths, that explaining never changes predictions, the outputs, the
faithfulness curves, and clear answers to what cannot be explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli
from synthetic import make_class_folder
from torch import nn

import foveal
from foveal.explanation.faithfulness import area_under, faithfulness_table, probability_curves
from foveal.explanation.pixels import upsample
from foveal.models.maps import ExplainError, compute_maps, rollout, to_grid


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A foveal-tiny run that learned a separable 3-class folder, and that folder."""
    base = tmp_path_factory.mktemp("explain")
    data = make_class_folder(base / "shapes", per_class=16)
    result = foveal.train(
        data=str(data),
        model="foveal-tiny",
        epochs=8,
        batch_size=8,
        img_size=16,
        lr=3e-3,
        out=str(base / "runs"),
        report=False,
        quiet=True,
    )
    return result.run_dir, data


def test_rollout_of_uniform_attention_is_the_mixed_identity() -> None:
    n = 4
    uniform = torch.full((1, 2, n, n), 1.0 / n)  # every token attends to all equally, both heads
    result = rollout([uniform])
    expected = (uniform[0, 0] + torch.eye(n)) / 2  # (A + I), rows renormalised
    assert torch.allclose(result[0], expected)
    two_blocks = rollout([uniform, uniform])
    assert torch.allclose(two_blocks[0], expected @ expected)
    assert torch.allclose(two_blocks.sum(-1), torch.ones(1, n))


def test_rollout_discard_drops_the_weakest_links_and_keeps_rows_normalised() -> None:
    attention = torch.softmax(torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0)), -1)
    kept = rollout([attention], discard_ratio=0.5)
    assert torch.allclose(kept.sum(-1), torch.ones(2, 6))
    off_diagonal = kept[0] * (1 - torch.eye(6))
    assert int((off_diagonal == 0).sum()) >= 6 * 3 - 6  # half of each row dropped, the diagonal kept


def test_a_map_that_does_not_fit_the_grid_is_refused() -> None:
    with pytest.raises(ExplainError, match="grid is 3x3"):
        to_grid(torch.rand(2, 10), (3, 3))


def test_explaining_many_images_says_how_far_it_is(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    from foveal.explanation.workflow import explain_images

    run, data = trained
    classifier = foveal.load(run, device="cpu")
    images = torch.stack([foveal.data.decode.decode_image(f, 16) for f in sorted(data.rglob("*.png"))[:5]])
    explain_images(classifier, images, ["x"] * 5, method="pool", batch_size=2, quiet=False)
    said = capsys.readouterr().err.splitlines()
    assert said == [f"explain: {n} of 5 images (pool)" for n in (2, 4, 5)]
    explain_images(classifier, images, ["x"] * 5, method="pool", batch_size=2)  # quiet by default
    assert capsys.readouterr().err == ""


def test_explaining_does_not_change_predictions(trained: tuple[Path, Path]) -> None:
    run, data = trained
    classifier = foveal.load(run, device="cpu")
    files = sorted(data.rglob("*.png"))[:6]
    before = classifier.probabilities(files)
    for method in ("pool", "rollout", "grad-rollout", "gradcam"):
        explanations = foveal.explain(classifier, files, method=method, top_k=3)
        assert len(explanations) == len(files)
        for e, probs in zip(explanations, before):
            # The explicit attention path gives the fused path's probabilities.
            assert e.labels[0] == classifier.classes[int(probs.argmax())]
            assert abs(e.probabilities[0] - float(probs.max())) < 1e-4
            assert e.pixel_map.shape == (16, 16) and 0 <= e.pixel_map.min() <= e.pixel_map.max() <= 1
    after = classifier.probabilities(files)
    assert torch.equal(before, after)
    assert not classifier.model.training


def test_pool_maps_are_the_pooling_weights_and_sum_to_one(trained: tuple[Path, Path]) -> None:
    run, data = trained
    classifier = foveal.load(run, device="cpu")
    explanation = foveal.explain(classifier, sorted(data.rglob("*.png"))[:1], method="pool")[0]
    h, w = explanation.grid
    assert len(explanation.token_map) == h and len(explanation.token_map[0]) == w
    assert abs(sum(map(sum, explanation.token_map)) - 1.0) < 1e-4


def test_grad_rollout_depends_on_the_class_explained(trained: tuple[Path, Path]) -> None:
    run, data = trained
    classifier = foveal.load(run, device="cpu")
    file = sorted(data.rglob("*.png"))[:1]
    maps = [foveal.explain(classifier, file, method="grad-rollout", target=c)[0] for c in classifier.classes]
    assert [m.target for m in maps] == classifier.classes
    assert maps[0].token_map != maps[1].token_map or maps[1].token_map != maps[2].token_map


def test_deletion_finds_the_pixels_a_model_uses_and_random_maps_do_not() -> None:
    """A model that reads only the top-left quadrant: the map pointing there must delete faster."""

    class TopLeft(nn.Module):  # class 0 when the top-left quadrant has texture (blurring removes it)
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            evidence = images[:, :, :8, :8].pow(2).mean(dim=(1, 2, 3)) * 6 - 3
            return torch.stack([evidence, torch.zeros_like(evidence)], dim=1)

    checkerboard = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1  # +-1
    images = checkerboard.expand(4, 3, 16, 16).clone()
    targets = torch.zeros(4, dtype=torch.long)
    right = torch.zeros(4, 2, 2)
    right[:, 0, 0] = 1.0
    wrong = torch.zeros(4, 2, 2)
    wrong[:, 1, 1] = 1.0
    model = TopLeft()
    right_del, right_ins = probability_curves(model, images, upsample(right, (16, 16)), targets, steps=8)
    wrong_del, wrong_ins = probability_curves(model, images, upsample(wrong, (16, 16)), targets, steps=8)
    assert area_under(right_del).mean() < area_under(wrong_del).mean() - 0.2
    assert area_under(right_ins).mean() > area_under(wrong_ins).mean() + 0.2
    assert torch.allclose(right_del[:, 0], wrong_del[:, 0])  # nothing deleted yet: same start
    # Deleting to a blurred copy instead of the mean colour: the same verdict.
    right_blur, _ = probability_curves(
        model, images, upsample(right, (16, 16)), targets, 8, deletion_fill="blur"
    )
    wrong_blur, _ = probability_curves(
        model, images, upsample(wrong, (16, 16)), targets, 8, deletion_fill="blur"
    )
    assert area_under(right_blur).mean() < area_under(wrong_blur).mean() - 0.2


def test_explain_cli_writes_pictures_json_and_a_contact_sheet(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, data = trained
    out = tmp_path / "maps"
    done = foveal_cli("explain", str(run), str(data / "circle"), "--method", "rollout", "--out", str(out))
    assert done.returncode == 0, done.stderr
    pngs = sorted(out.glob("0*.png"))
    assert len(pngs) == 16 and (out / "contact_sheet.png").stat().st_size > 1000
    record = json.loads(sorted(out.glob("*.json"))[0].read_text())
    assert record["method"] == "rollout" and record["true_label"] == "circle"
    assert len(record["map"]) == record["grid"][0] and len(record["map"][0]) == record["grid"][1]


def test_faithfulness_cli_prints_each_method_against_random(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, data = trained
    done = foveal_cli(
        "explain", str(run), str(data), "--faithfulness", "--images", "24", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    said = "curves of pool, rollout, grad-rollout, gradcam and random maps on 24 images"
    assert said in done.stderr
    for method in ("pool", "rollout", "grad-rollout", "gradcam", "random"):
        assert f"| {method} |" in done.stdout
    saved = json.loads((tmp_path / "faithfulness.json").read_text())
    assert saved["images"] == 24 and len(saved["scores"]) == 5 and saved["deletion_fill"] == "mean"
    random = saved["scores"][-1]
    for score in saved["scores"][:-1]:  # the per-image margin averages to the difference of the means
        assert score["deletion_vs_random"] == pytest.approx(
            score["deletion_auc"] - random["deletion_auc"], abs=1e-6
        )
        assert score["insertion_vs_random_sem"] > 0


def test_faithfulness_table_reports_the_margin_over_random() -> None:
    from foveal.explanation.faithfulness import CurveScores

    scores = [
        CurveScores("rollout", 0.2, 0.01, 0.7, 0.01, [], [], -0.3, 0.004, 0.3, 0.005),
        CurveScores("random", 0.5, 0.01, 0.4, 0.01, [], []),
    ]
    table = faithfulness_table(scores)
    assert "| rollout | 0.200 ± 0.010 | -0.300 ± 0.004 | 0.700 ± 0.010 | +0.300 ± 0.005 |" in table
    assert "| random | 0.500 ± 0.010 |  | 0.400 ± 0.010 |  |" in table


def test_a_cnn_gets_gradcam_or_a_clear_message(tmp_path: Path) -> None:
    data = make_class_folder(tmp_path / "shapes", per_class=6)
    result = foveal.train(
        data=str(data), model="cnn-resnet8", epochs=1, batch_size=8, img_size=16,
        out=str(tmp_path / "runs"), report=False, quiet=True,
    )  # fmt: skip
    done = foveal_cli("explain", str(result.run_dir), str(data / "square"), "--method", "rollout")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "not available for this model" in done.stderr and "gradcam" in done.stderr
    maps = foveal.explain(result.run_dir, [str(data / "square")])  # default for a CNN: gradcam
    assert maps[0].method == "gradcam" and maps[0].pixel_map.shape == (16, 16)


def test_bad_input_gets_one_clear_line(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained
    image = str(sorted(data.rglob("*.png"))[0])
    unknown_class = foveal_cli("explain", str(run), image, "--class", "circel")
    assert unknown_class.returncode == 1 and "Did you mean 'circle'" in unknown_class.stderr
    unknown_method = foveal_cli("explain", str(run), image, "--method", "saliency")
    assert unknown_method.returncode == 1 and "expected one of pool" in unknown_method.stderr
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    only_broken = foveal_cli("explain", str(run), str(broken))
    assert only_broken.returncode == 1 and "could be decoded" in only_broken.stderr
    one_broken = foveal_cli("explain", str(run), str(broken), image, "--out", str(tmp_path / "o"))
    assert one_broken.returncode == 0 and "skipped" in one_broken.stderr
    for done in (unknown_class, unknown_method, only_broken):
        assert "Traceback" not in done.stderr


def test_methods_compute_on_a_batch_of_normalised_images() -> None:
    model = foveal.create_model("foveal-tiny", num_classes=4, img_size=16).eval()
    images = torch.randn(3, 3, 16, 16)
    for method in ("pool", "rollout", "grad-rollout", "gradcam"):
        maps = compute_maps(model, images, method)
        assert maps.maps.shape[0] == 3 and maps.maps.ndim == 3 and (maps.maps >= 0).all()
        with torch.no_grad():
            assert maps.targets.tolist() == model(images).argmax(1).tolist()
