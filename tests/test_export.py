"""`foveal export`: a bundle that describes itself, loads everywhere a model does, and predicts the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from clirun import foveal_cli
from synthetic import with_threshold

import foveal
from foveal.errors import FovealError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from synthetic import tiny_run

    return tiny_run(tmp_path_factory.mktemp("export"), "foveal-tiny", per_class=8, epochs=2, tta_shift=True)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_a_bundle_describes_itself_and_predicts_like_the_run(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, data = trained
    bundle = foveal.export(run, tmp_path / "shapes-model", license="apache-2.0")
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((bundle / "config.json").read_text())
    assert config["id2label"] == {"0": "circle", "1": "square", "2": "triangle"}
    assert config["label2id"] == {"circle": 0, "square": 1, "triangle": 2}
    assert (
        config["preprocessing"]["test_time_views"] == "flip-shift"
        and config["preprocessing"]["img_size"] == 16
    )
    assert config["architecture"]["family"] == "attention" and config["num_labels"] == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert config["evaluation"]["top1"] == metrics["top1"]
    files = sorted(data.rglob("*.png"))[:5]
    from_run = foveal.load(run, device="cpu").probabilities(files)
    from_bundle = foveal.load(bundle, device="cpu")
    assert from_bundle.preprocessing == foveal.load(run, device="cpu").preprocessing
    assert torch.equal(from_bundle.probabilities(files), from_run)


def test_the_model_card_carries_hub_metadata_and_the_run_s_results(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, _ = trained
    card = (foveal.export(run, tmp_path / "card", license="mit") / "README.md").read_text()
    matter = front_matter(card)
    assert matter["pipeline_tag"] == "image-classification" and matter["library_name"] == "foveal"
    assert matter["license"] == "mit" and "attention" in matter["tags"]
    assert "datasets" not in matter  # a local folder: the Hub's `datasets` names Hub data sets only
    result = matter["model-index"][0]["results"][0]
    assert result["dataset"]["type"] == "imagefolder"
    top1 = json.loads((run / "metrics.json").read_text())["top1"]
    assert result["task"]["type"] == "image-classification"
    assert {m["name"]: m["value"] for m in result["metrics"]}["top-1 accuracy"] == round(top1, 4)
    for section in ("## Data", "## Results", "## Input", "## Intended use and limits", "## How to use"):
        assert section in card
    assert "mirror image" in card  # the test-time view is stated


def test_every_command_accepts_a_bundle(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained
    done = foveal_cli("export", str(run), "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    bundle = tmp_path / "b"
    image = str(sorted(data.rglob("*.png"))[0])
    for args in (
        ["predict", str(bundle), image],
        ["evaluate", str(bundle), str(data), "--out", str(tmp_path / "e")],
        ["explain", str(bundle), image, "--out", str(tmp_path / "x")],
    ):
        done = foveal_cli(*args)
        assert done.returncode == 0, (args, done.stderr)
    again = foveal.export(bundle, tmp_path / "again")  # a bundle exported again keeps what it said
    assert json.loads((again / "config.json").read_text())["evaluation"] is not None


def test_a_model_without_its_run_is_exported_and_says_it_was_not_evaluated(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, _ = trained
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes((run / "weights" / "best.safetensors").read_bytes())
    bundle = foveal.export(alone)
    assert bundle == tmp_path / "alone-bundle"
    assert json.loads((bundle / "config.json").read_text())["evaluation"] is None
    card = (bundle / "README.md").read_text()
    assert "model-index" not in front_matter(card) and "Not evaluated" in card


def test_bad_exports_get_one_clear_line(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = trained
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"not a model")
    done = foveal_cli("export", str(fake), "--out", str(tmp_path / "out"))
    assert done.returncode == 1 and done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FovealError, match="not empty"):
        foveal.export(run, busy)
    assert (busy / "notes.txt").read_text() == "mine"  # the user's files are untouched
    blocked = tmp_path / "file"
    blocked.write_text("")
    done = foveal_cli("export", str(run), "--out", str(blocked / "inside"))
    assert done.returncode == 1 and "Traceback" not in done.stderr


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_onnx_export_matches_foveal_on_held_out_images_at_any_batch_size(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    import onnx
    import onnxruntime

    run, data = trained
    done = foveal_cli("export", str(run), "--format", "onnx", "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    bundle = tmp_path / "b"
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["batch_sizes"] == [1, 7, 64] and parity["images"] == 3  # the run's held-out images
    assert parity["max_logit_difference"] <= 1e-4 and parity["max_pool_weight_difference"] <= 1e-5
    assert parity["top1_agreement"] == 1.0 and "top-1 agreement 100.00%" in done.stdout
    model = onnx.load(str(bundle / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["preprocessing"])["test_time_views"] == "flip-shift"
    assert json.loads(meta["id2label"]) == {"0": "circle", "1": "square", "2": "triangle"}
    assert not list(bundle.glob("*.data")) and not list(bundle.glob(".*"))  # one file, nothing left over
    assert json.loads((bundle / "config.json").read_text())["onnx"]["outputs"] == [
        "logits",
        "pooled",
        "pool_weights",
    ]
    # The real runtime, on real images, at a batch size it was not traced with: the labels predict gives.
    classifier = foveal.load(run, device="cpu")
    files = sorted(data.rglob("*.png"))[:5]
    pixels = classifier.preprocessing.normalize(
        torch.stack([foveal.data.decode.decode_image(f, 16) for f in files])
    )
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, pooled, weights = session.run(None, {"pixel_values": pixels.contiguous().numpy()})
    plain = classifier.predict(files, reject=False)
    assert [classifier.classes[i] for i in logits.argmax(1)] == [p.label for p in plain]
    # The open-set threshold travels in the metadata and marks the same images unknown.
    exported = foveal.load(bundle / "model.onnx")
    assert exported.rejection == classifier.rejection is not None
    marked, marked_onnx = classifier.predict(files), exported.predict(files)
    assert [p.unknown for p in marked_onnx] == [p.unknown for p in marked]
    assert [p.familiarity for p in marked_onnx] == pytest.approx([p.familiarity for p in marked], abs=1e-4)
    assert weights.shape == (5, 64) and abs(weights.sum(1) - 1).max() < 1e-5
    # The bundle's own example (numpy + Pillow + onnxruntime, no Foveal) reproduces the preprocessing.
    done = subprocess.run(
        [sys.executable, str(bundle / "predict.py"), *map(str, files), "--top-k", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = [line.split()[1].split(":") for line in done.stdout.splitlines()]
    expected = classifier.predict(files, top_k=1, reject=False)
    assert [label for label, _ in printed] == [p.label for p in expected]
    assert [float(p) for _, p in printed] == pytest.approx([p.probabilities[0] for p in expected], abs=1e-4)
    said_unknown = [line.endswith(" unknown") for line in done.stdout.splitlines()]
    assert said_unknown == [p.unknown for p in marked]  # the same images rejected without Foveal
    # With the threshold between them, predict.py (numpy's Mahalanobis distance) and Foveal reject the
    # same 2 of the 5.
    scores = sorted(p.familiarity for p in marked)
    middle = (scores[1] + scores[2]) / 2  # halfway: round-off cannot move an image across it
    model = with_threshold(run, tmp_path / "m.safetensors", middle)
    halved = foveal.export(model, tmp_path / "m", format="onnx", data=str(data))
    done = subprocess.run(
        [sys.executable, str(halved / "predict.py"), *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said_unknown = [line.endswith(" unknown") for line in done.stdout.splitlines()]
    assert said_unknown == [p.familiarity < middle for p in marked] and sum(said_unknown) == 2, done.stderr
    missing = subprocess.run(
        [sys.executable, str(halved / "predict.py"), str(tmp_path / "no.jpg")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")
    assert "Traceback" not in missing.stderr


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_onnx_parity_that_fails_keeps_no_onnx_file_and_says_why(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import foveal.exporting.parity as parity

    run, data = trained
    monkeypatch.setitem(parity.PARITY_BOUNDS, "max_logit_difference", -1.0)  # no export can meet it
    with pytest.raises(FovealError, match="does not match Foveal"):
        foveal.export(run, tmp_path / "b", format="onnx", data=str(data))
    assert not (tmp_path / "b" / "model.onnx").exists() and not list((tmp_path / "b").glob(".*"))
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes((run / "weights" / "best.safetensors").read_bytes())
    done = foveal_cli("export", str(alone), "--format", "onnx")
    assert done.returncode == 1 and "give --data" in done.stderr and not (tmp_path / "alone-bundle").exists()


def test_a_cnn_exports_to_onnx_with_logits_only(tmp_path: Path) -> None:
    from synthetic import tiny_run

    run, _ = tiny_run(tmp_path, "cnn-resnet8", per_class=4)
    bundle = foveal.export(run, format="onnx", parity_images=5)
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["max_pool_weight_difference"] is None and parity["top1_agreement"] == 1.0
    assert json.loads((bundle / "config.json").read_text())["onnx"]["outputs"] == ["logits", "pooled"]


def test_the_bundle_example_preprocesses_as_foveal_does(tmp_path: Path) -> None:
    """predict.py (no Foveal) repeats Foveal's decoding by hand: the same pixels on every kind of shape,
    with every resize (a public checkpoint's bicubic and crop_pct too; an older bundle's config.json
    has neither key), and the same refusal of an image over 50:1."""
    import importlib.util

    import numpy as np
    from PIL import Image

    from foveal.data.decode import decode_image
    from foveal.data.preprocess import Preprocessing
    from foveal.exporting.to_onnx import EXAMPLE

    spec = importlib.util.spec_from_file_location("predict_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rng = np.random.default_rng(0)
    resizes = [("bilinear", 1.0), ("bicubic", 0.9), ("bilinear", 0.875), ("bicubic", 1.0)]
    for interpolation, crop_pct in resizes:
        pre = Preprocessing(
            24, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), interpolation=interpolation, crop_pct=crop_pct
        )
        for width, height in [(24, 24), (10, 7), (7, 300), (300, 40), (97, 61), (61, 97), (1, 50), (26, 27)]:
            path = tmp_path / f"{width}x{height}.png"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
            ours = pre.normalize(pre.decode(path)[None])[0].numpy()
            theirs = example.preprocess(str(path), pre.to_dict())
            assert np.abs(theirs - ours).max() < 1e-5, (width, height, interpolation, crop_pct)
    older = {key: value for key, value in pre.to_dict().items() if key not in ("interpolation", "crop_pct")}
    default = Preprocessing(24, pre.mean, pre.std)
    ours = default.normalize(decode_image(path, 24)[None])[0].numpy()
    assert np.abs(example.preprocess(str(path), older) - ours).max() < 1e-5
    Image.new("RGB", (1, 51)).save(tmp_path / "thin.png")
    with pytest.raises(ValueError, match="aspect ratio"):
        example.preprocess(str(tmp_path / "thin.png"), pre.to_dict())


def test_the_card_names_hub_data_sets_and_never_a_path(trained: tuple[Path, Path]) -> None:
    from foveal.exporting.card import dataset_type, front_matter
    from foveal.exporting.facts import RunFacts

    info = foveal.load(trained[0], device="cpu").info
    assert front_matter("m", info, RunFacts(source="cifar10"), "mit")["datasets"] == ["uoft-cs/cifar10"]
    assert "datasets" not in front_matter("m", info, RunFacts(source="/home/me/photos"), "mit")
    assert dataset_type("digits") == "digits"  # built-in, not on the Hub: its own name
    assert dataset_type("/home/me/photos") == "imagefolder" and dataset_type(None) == "imagefolder"
