"""One contract, one inference path: every family answers the same interface, and `explain` shows
exactly the labels and probabilities `predict` gives, with or without test-time flips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import foveal
from foveal.data.imageset import ImageSet
from foveal.data.preprocess import Preprocessing
from foveal.evaluation.workflow import evaluate, save_evaluation
from foveal.models import model_config
from foveal.models.layers.output import Features, ModelOutput
from foveal.models.maps import METHODS, available_methods
from foveal.predictor.classifier import Classifier
from foveal.predictor.inference import view_logits
from foveal.predictor.network import TorchNetwork
from foveal.predictor.saved import ModelInfo, load_model, save_model

ALL_MODELS = foveal.list_models()
EXPECTED_METHODS = {
    "attention": list(METHODS),
    "vit": ["rollout", "grad-rollout", "gradcam"],  # a class token: no pooling weights
    "cnn": ["gradcam"],
    "hybrid": list(METHODS),
    "airbench": ["gradcam"],  # the hybrid trunk without attention, max-pooled
}
FAMILIES = {  # one small model of each kind of head: attention pooling, a class token, a CNN
    "attention": ("foveal-tiny", {}),
    "vit": ("vit-tiny-4", {"embed_dim": 32, "depth": 1}),
    "cnn": ("cnn-resnet8", {"widths": (8, 16), "blocks": (1, 1)}),
    "hybrid": ("hybrid-nano", {"widths": (8, 16)}),
    "airbench": ("cnn-airbench", {"widths": (8, 8, 16)}),
}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_preset_keeps_the_contract(name: str) -> None:
    size = min(model_config(name).img_size, 64)
    model = foveal.create_model(name, num_classes=5, img_size=size).eval()
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = model.forward_features(images)
        pooled, weights = model.pool(features.tokens)
        logits = model.forward_head(pooled)
        out = model.forward_explained(images)
        fused = model(images)
    assert isinstance(features, Features) and isinstance(out, ModelOutput)
    h, w = features.grid
    B, N, C = features.tokens.shape
    assert B == 2 and N == features.prefix_tokens + h * w and features.image_tokens.shape == (2, h * w, C)
    assert pooled.shape == (2, C) and logits.shape == (2, 5)
    torch.testing.assert_close(out.logits, fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, fused, atol=1e-5, rtol=1e-5)
    assert out.features.tokens.shape == features.tokens.shape and out.grid == (h, w)
    if weights is not None:
        assert weights.shape == (2, h * w) and out.pool_weights.shape == (2, h * w)
    assert "gradcam" in available_methods(model)
    assert ("rollout" in available_methods(model)) == bool(out.attentions)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_constructors_are_keyword_only(name: str) -> None:
    model = foveal.create_model(name, num_classes=3, img_size=min(model_config(name).img_size, 64))
    with pytest.raises(TypeError):
        type(model)(model.config)  # positional: refused
    for module in model.modules():
        if type(module).__module__.startswith("foveal.") and module is not model:
            signature = type(module).__init__.__code__
            assert signature.co_argcount == 1, f"{type(module).__name__} takes positional arguments"


def small_classifier(family: str, views: str, tmp_path: Path) -> Classifier:
    """A saved and reloaded model of `family`, its weights perturbed so that a mirror image changes
    its answer, with test-time `views`."""
    preset, overrides = FAMILIES[family]
    torch.manual_seed(0)
    config = model_config(preset, num_classes=3, img_size=16, **overrides)
    model = foveal.create_model(preset, num_classes=3, img_size=16, **overrides)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.3 * parameter.abs().mean().clamp_min(0.05))
    preprocessing = Preprocessing(16, (0.4, 0.5, 0.6), (0.25, 0.25, 0.25), test_time_views=views)
    path = save_model(
        tmp_path / f"{family}-{views}.safetensors", model, ModelInfo(config, ["a", "b", "c"], preprocessing)
    )
    loaded, info = load_model(path)
    return Classifier(TorchNetwork(loaded), info, torch.device("cpu"))


@pytest.mark.parametrize("views", ["none", "flip", "flip-shift"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_explain_shows_what_predict_gives(family: str, views: str, tmp_path: Path) -> None:
    classifier = small_classifier(family, views, tmp_path)
    images = torch.randint(
        0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    predictions = classifier.predict(images, top_k=3)
    with torch.no_grad():
        single_view = classifier.model(classifier.preprocessing.normalize(images)).softmax(1)
    if views != "none":  # the views must matter here, or this test could not see a single-pass explain
        assert (single_view - classifier.probabilities(images)).abs().max() > 1e-3
    methods = available_methods(classifier.model)
    assert methods == EXPECTED_METHODS[family]
    for method in methods:
        explanations = foveal.explain(classifier, images, method=method, top_k=3)
        for explanation, prediction in zip(explanations, predictions, strict=True):
            assert explanation.labels == prediction.labels
            assert explanation.probabilities == pytest.approx(prediction.probabilities, abs=2e-6)
            assert explanation.target == prediction.labels[0]  # the map explains the class shown


def test_flip_shift_averages_the_six_views_airbench_uses() -> None:
    x = torch.randn(2, 1, 5, 6)

    def pixel(images: torch.Tensor) -> torch.Tensor:  # a "model" whose logit is the pixel at (1, 1)
        return images[:, 0, 1, 1:2]

    center = (x[:, 0, 1, 1] + x[:, 0, 1, 4]) / 2  # the image and its mirror (column W - 2)
    up_left = (x[:, 0, 2, 2] + x[:, 0, 2, 5]) / 2  # content moved up-left by one, then mirrored
    down_right = (x[:, 0, 0, 0] + x[:, 0, 0, 3]) / 2
    expected = center / 2 + (up_left + down_right) / 4
    torch.testing.assert_close(view_logits(pixel, x, "flip-shift")[:, 0], expected)
    torch.testing.assert_close(view_logits(pixel, x, "flip")[:, 0], center)


def test_the_inference_path_is_the_one_predict_evaluate_and_the_report_use(tmp_path: Path) -> None:
    classifier = small_classifier("attention", "flip", tmp_path)
    images = torch.randint(
        0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    evaluation = evaluate(
        classifier.model, ImageSet(images, labels, ["a", "b", "c"]), classifier.preprocessing
    )
    torch.testing.assert_close(evaluation.logits, classifier.logits(images), atol=0, rtol=0)
    expected_top1 = float((classifier.logits(images).argmax(1) == labels).float().mean())
    assert evaluation.metrics.top1 == pytest.approx(expected_top1)


def test_one_evaluation_is_nan_safe_and_writes_one_layout(tmp_path: Path) -> None:
    class Diverged(torch.nn.Module):  # what a run whose weights went to NaN answers
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.full((images.shape[0], 3), float("nan"))

    images = ImageSet(
        torch.zeros(4, 3, 16, 16, dtype=torch.uint8), torch.tensor([0, 1, 2, 0]), ["a", "b", "c"]
    )
    diverged = evaluate(Diverged(), images, Preprocessing(16))
    assert (
        diverged.metrics.top1 != diverged.metrics.top1 and diverged.loss != diverged.loss
    )  # NaN, not raised
    classifier = small_classifier("cnn", "none", tmp_path)
    good = evaluate(classifier.model, images, classifier.preprocessing, data="four blanks", epoch=3)
    save_evaluation(good, tmp_path / "a")
    save_evaluation(diverged, tmp_path / "b")
    layouts = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b")]
    assert (
        layouts[0].keys()
        == layouts[1].keys()
        >= {"model", "data", "epoch", "loss", "top1", "top5", "skipped"}
    )
    assert layouts[0]["epoch"] == 3 and layouts[0]["num_samples"] == 4


def test_a_training_run_and_foveal_evaluate_write_the_same_metrics_layout(
    class_folder: Path, tiny_train_options: dict, tmp_path: Path
) -> None:
    result = foveal.train(data=str(class_folder), quiet=True, **{**tiny_train_options, "epochs": 1})
    foveal.evaluate(result.run_dir, str(class_folder), device="cpu", out=tmp_path / "evaluation")
    trained = json.loads((result.run_dir / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert trained.keys() == evaluated.keys()
    assert trained["model"].endswith("best.safetensors") and trained["epoch"] == result.best_epoch
