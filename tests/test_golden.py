"""Golden outputs: models saved to disk, with the logits they gave when saved. A change that alters
numerics, renames a weight or breaks loading an older file fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import foveal
from foveal.data.preprocess import PREPROCESSING_VERSION
from foveal.models import AirbenchCNNConfig, HybridConfig
from foveal.predictor.inference import predict_logits
from foveal.predictor.saved import load_model

GOLDEN = Path(__file__).parent / "golden"
V1 = load_file(str(GOLDEN / "v1-expected.safetensors"))  # written by Foveal 0.1.0 (make_v1_models.py)
V2 = load_file(str(GOLDEN / "v2-expected.safetensors"))
V2_HYBRID = load_file(
    str(GOLDEN / "v2-hybrid-expected.safetensors")
)  # written before #31 (make_v2_hybrid.py)
V1_MODELS = {"v1-attention-flip": "flip", "v1-attention": "none", "v1-vit": "none", "v1-cnn-flip": "flip"}


@pytest.mark.parametrize("stem", list(V1_MODELS))
def test_a_model_saved_by_the_previous_release_predicts_the_same(stem: str) -> None:
    classifier = foveal.load(GOLDEN / f"{stem}.safetensors", device="cpu")
    # The test-time flip, a training option in 0.1.0, is migrated into the preprocessing object.
    assert classifier.preprocessing.test_time_views == V1_MODELS[stem]
    assert classifier.preprocessing.version == PREPROCESSING_VERSION
    assert classifier.preprocessing.img_size == 16
    logits = classifier.logits(V1["inputs"])
    torch.testing.assert_close(logits, V1[f"{stem}.logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        classifier.probabilities(V1["inputs"]), V1[f"{stem}.probabilities"], atol=1e-6, rtol=0
    )
    predicted = [p.indices[0] for p in classifier.predict(V1["inputs"], top_k=1)]
    assert predicted == V1[f"{stem}.probabilities"].argmax(1).tolist()


def test_the_migrated_flip_is_what_makes_the_old_answers() -> None:
    """Without the migrated flip the v1 flip models would answer differently: the test above is
    able to see a lost setting."""
    for stem in ("v1-attention-flip", "v1-cnn-flip"):
        model, info = load_model(GOLDEN / f"{stem}.safetensors")
        single = predict_logits(model, V1["inputs"], info.preprocessing.with_views("none"))
        assert (single - V1[f"{stem}.logits"]).abs().max() > 1e-4


def test_the_current_format_gives_its_golden_logits() -> None:
    model, info = load_model(GOLDEN / "v2-attention-flip.safetensors")
    assert info.preprocessing.test_time_views == "flip"
    logits = predict_logits(model, V1["inputs"], info.preprocessing)
    torch.testing.assert_close(logits, V2["v2-attention-flip.logits"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("stem", "family"), [("v2-hybrid", "hybrid"), ("v2-cnn-airbench", "cnn-airbench")])
def test_a_saved_hybrid_gives_its_golden_outputs(stem: str, family: str) -> None:
    model, info = load_model(GOLDEN / f"{stem}.safetensors")
    # v2-cnn-airbench was saved as family "hybrid", before the airbench CNNs had a family of their own.
    assert info.config.family == family and isinstance(info.config, HybridConfig)
    assert isinstance(info.config, AirbenchCNNConfig) == (family == "cnn-airbench")
    logits = predict_logits(model, V1["inputs"], info.preprocessing)
    torch.testing.assert_close(logits, V2_HYBRID[f"{stem}.logits"], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        explained = model.forward_explained(V1["inputs"].float() / 255)
    attentions = {f"{stem}.attention.{i}": probs for i, probs in enumerate(explained.attentions)}
    if explained.pool_weights is not None:
        attentions[f"{stem}.pool_weights"] = explained.pool_weights
    assert sorted(attentions) == sorted(
        k for k in V2_HYBRID if k.startswith(f"{stem}.") and k != f"{stem}.logits"
    )
    for key, value in attentions.items():
        torch.testing.assert_close(value, V2_HYBRID[key], atol=1e-6, rtol=1e-5)
