"""Public checkpoints (foveal/pretrained/): timm folders, bare weights files and hub ids are read into a
timm-vit model with the source's own logits, classes and preprocessing; predict, explain, evaluate,
export and serve take them directly; what cannot be read is refused in one line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli
from public_checkpoints import LABELS, fill_hub_cache, photo_files, save_timm_folder, tiny_timm
from safetensors.torch import save_file
from synthetic import CLASSES

import foveal
from foveal.data.decode import decode_image
from foveal.errors import ConfigError, ModelFileError
from foveal.models import build_model
from foveal.predictor.saved import ModelInfo, load_model, resolve_model_path, save_model
from foveal.pretrained.checkpoint import PretrainedSource, is_public_checkpoint, read_public_checkpoint
from foveal.pretrained.timm_config import class_names

pytest.importorskip("timm")
pytest.importorskip("huggingface_hub")

WIDE = {"embed_dim": 128, "num_heads": 2, "depth": 1}  # 64 channels a head: readable from bare weights


def images_of(files: list[Path], size: int = 32, preprocessing=None) -> torch.Tensor:
    """uint8 (N, 3, size, size); with `preprocessing`, decoded as a prediction from a file is (its
    interpolation and crop_pct: timm's DeiT reads bicubic, 0.875)."""
    if preprocessing is not None:
        return torch.stack([preprocessing.decode(path) for path in files])
    return torch.stack([decode_image(path, size) for path in files])


def timm_logits(source: torch.nn.Module, images: torch.Tensor, preprocessing) -> torch.Tensor:
    with torch.no_grad():
        return source(preprocessing.normalize(images))


@pytest.fixture
def timm_folder(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    source = tiny_timm(seed=7)
    return source, save_timm_folder(source, tmp_path / "deit_tiny")


def test_a_timm_folder_reads_as_the_source_is(timm_folder, tmp_path: Path) -> None:
    source, folder = timm_folder
    read = read_public_checkpoint(folder)
    assert isinstance(read, PretrainedSource) and read.reference == str(folder)
    config = read.config
    assert config.family == "timm-vit" and config.architecture == "deit_tiny_patch16_224"
    assert config.name == "deit_tiny_patch16_224.fb_in1k"  # the architecture and its weights' tag
    shape = (config.img_size, config.patch_size, config.embed_dim, config.depth, config.num_heads)
    assert shape == (32, 8, 32, 2, 2)
    assert config.pooling == "source" and config.global_pool == "token" and config.num_classes == 3
    assert read.classes == LABELS
    pre = read.preprocessing
    assert (pre.img_size, pre.interpolation, pre.crop_pct) == (32, "bicubic", 0.9)
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)  # DeiT's: ImageNet's
    assert read.files == [folder / "config.json", folder / "model.safetensors"]
    assert set(read.state) == set(build_model(config).state_dict())
    assert all(k.startswith("vit.") for k in read.state)
    classifier = foveal.load(folder, device="cpu")
    images = images_of(photo_files(tmp_path / "photos"))
    torch.testing.assert_close(classifier.logits(images), timm_logits(source, images, pre), atol=1e-5, rtol=0)
    assert classifier.source == folder / "model.safetensors"
    assert classifier.info.extra == {"source": str(folder)}


def test_a_folder_of_pytorch_model_bin_without_labels(tmp_path: Path) -> None:
    source = tiny_timm("vit_small_patch16_224", seed=8, num_classes=4)
    folder = save_timm_folder(source, tmp_path / "vit", labels=None, safe=False)
    assert (folder / "pytorch_model.bin").is_file() and not (folder / "model.safetensors").exists()
    read = read_public_checkpoint(folder)
    assert read.classes == ["class_0", "class_1", "class_2", "class_3"]
    assert read.preprocessing.mean == (0.5, 0.5, 0.5) and read.preprocessing.crop_pct == 0.9  # AugReg's
    images = images_of(photo_files(tmp_path / "photos"))
    logits = foveal.load(folder, device="cpu").logits(images)
    torch.testing.assert_close(logits, timm_logits(source, images, read.preprocessing), atol=1e-5, rtol=0)


def test_a_bare_weights_file_in_any_wrapper_gives_the_same_model(tmp_path: Path) -> None:
    source = tiny_timm(seed=9, **WIDE)
    state = source.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "vit.safetensors")
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "vit.pth")
    torch.save({"state_dict": state}, tmp_path / "vit.bin")
    images = images_of(photo_files(tmp_path / "photos"))
    configs = []
    for name in ("vit.safetensors", "vit.pth", "vit.bin"):
        assert is_public_checkpoint(tmp_path / name)
        read = read_public_checkpoint(tmp_path / name)
        configs.append(read.config)
        assert read.classes == ["class_0", "class_1", "class_2"] and read.files == [tmp_path / name]
        # no config.json: timm's defaults (ImageNet statistics, bicubic, crop 0.875)
        assert read.preprocessing.crop_pct == 0.875 and read.preprocessing.interpolation == "bicubic"
        logits = foveal.load(tmp_path / name, device="cpu").logits(images)
        expected = timm_logits(source, images, read.preprocessing)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert configs[0] == configs[1] == configs[2]
    inferred = configs[0]  # read from the tensors: 128 / 64 channels a head = 2 heads
    assert (inferred.embed_dim, inferred.num_heads, inferred.depth, inferred.img_size) == (128, 2, 1, 32)
    assert inferred.architecture == "vision_transformer" and inferred.name == "vit"


def test_a_weights_file_beside_timms_config_json_takes_its_architecture(timm_folder) -> None:
    _, folder = timm_folder  # embed_dim 32: 2 heads of 16, which the tensors alone cannot say
    read = read_public_checkpoint(folder / "model.safetensors")
    assert read.config.num_heads == 2 and read.classes == LABELS


def test_a_pickle_holding_more_than_tensors_is_refused_in_one_line(tmp_path: Path) -> None:
    # A training checkpoint with its arguments (DeiT's own scripts saved an argparse.Namespace): an object
    # of a class, which weights_only=True refuses to rebuild.
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": tiny_timm(**WIDE).state_dict(), "args": argparse.Namespace(lr=5e-4)}, path)
    with pytest.raises(ModelFileError, match="holds more than tensors; Foveal loads only weights") as error:
        read_public_checkpoint(path)
    assert "\n" not in str(error.value)
    done = foveal_cli("predict", str(path), str(photo_files(tmp_path / "photos", 1)[0]))
    assert done.returncode == 1 and "holds more than tensors" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("architecture", "args", "expected"),
    [
        ("deit_tiny_distilled_patch16_224", {}, "VisionTransformerDistilled"),
        ("vit_tiny_patch16_224", {"init_values": 1e-5}, "parts a timm-vit model does not rebuild"),
        ("vit_tiny_patch16_224", {"qk_norm": True}, "parts a timm-vit model does not rebuild"),
        ("resnet18", None, "timm ResNet"),
    ],
)
def test_architectures_this_family_does_not_rebuild_are_refused(
    architecture: str, args: dict | None, expected: str, tmp_path: Path
) -> None:
    import timm

    if args is None:
        source = timm.create_model(architecture, pretrained=False, num_classes=3)
    else:
        source = tiny_timm(architecture, **WIDE, **args)  # 64 channels a head: bare weights read too
    folder = save_timm_folder(source, tmp_path / "source")
    with pytest.raises(ConfigError, match=expected) as error:
        read_public_checkpoint(folder)
    assert "Foveal reads" in str(error.value) and "\n" not in str(error.value)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "bare.safetensors")
    with pytest.raises((ConfigError, ModelFileError), match="Foveal reads"):
        read_public_checkpoint(tmp_path / "bare.safetensors")


def test_what_counts_as_a_public_checkpoint(timm_folder, tmp_path: Path) -> None:
    source, folder = timm_folder
    read = read_public_checkpoint(folder)
    model = build_model(read.config)
    model.load_state_dict(read.state)
    saved = save_model(
        tmp_path / "foveal.safetensors", model, ModelInfo(read.config, LABELS, read.preprocessing)
    )
    assert is_public_checkpoint(folder) and is_public_checkpoint(folder / "model.safetensors")
    assert is_public_checkpoint("hf-hub:timm/deit_tiny_patch16_224.fb_in1k")
    assert not is_public_checkpoint(saved) and not is_public_checkpoint(tmp_path / "missing.pth")
    assert not is_public_checkpoint(tmp_path)  # a folder without timm's config.json
    loaded, info = load_model(saved)  # a Foveal model of a public checkpoint is a Foveal model
    assert info.config == read.config and resolve_model_path(folder) == folder / "model.safetensors"


def test_a_loaded_public_checkpoint_saves_and_loads_as_a_foveal_model(timm_folder, tmp_path: Path) -> None:
    _, folder = timm_folder
    model, info = load_model(folder)
    path = save_model(tmp_path / "kept.safetensors", model, info)
    again, info_again = load_model(path)
    assert info_again.extra == {"source": str(folder)} and info_again.classes == LABELS
    assert info_again.preprocessing == info.preprocessing
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(images), model(images), atol=0, rtol=0)


def test_a_hub_id_reads_from_the_cache_offline_and_a_miss_says_what_to_fetch(
    timm_folder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, folder = timm_folder
    cache = tmp_path / "hf" / "hub"
    snapshot = fill_hub_cache(cache, "timm/deit_tiny_test.fb_in1k", folder)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reference = "hf-hub:timm/deit_tiny_test.fb_in1k"
    read = read_public_checkpoint(reference)
    assert read.reference == reference and read.classes == LABELS
    assert read.files == [snapshot / "config.json", snapshot / "model.safetensors"]
    photos = photo_files(tmp_path / "photos", 2)
    done = foveal_cli("predict", reference, *map(str, photos), "--format", "json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    expected = timm_logits(source, images_of(photos, preprocessing=read.preprocessing), read.preprocessing)
    expected = expected.softmax(1)
    assert [a["labels"][0] for a in answers] == [LABELS[i] for i in expected.argmax(1).tolist()]
    assert answers[0]["probabilities"][0] == pytest.approx(expected[0].max().item(), abs=1e-5)

    with pytest.raises(ModelFileError) as error:
        read_public_checkpoint("hf-hub:timm/not_cached_vit")
    message = str(error.value)
    assert "\n" not in message and str(cache) in message and "offline" in message
    assert (
        "hf download timm/not_cached_vit" in message
        and "huggingface-cli download timm/not_cached_vit" in message
    )
    done = foveal_cli("explain", "hf-hub:timm/not_cached_vit", str(photos[0]))
    assert done.returncode == 1 and done.stderr.startswith("error: hf-hub:timm/not_cached_vit is not in")
    assert len(done.stderr.strip().splitlines()) == 1


def test_predict_and_explain_take_a_timm_folder_on_the_command_line(timm_folder, tmp_path: Path) -> None:
    source, folder = timm_folder
    photos = photo_files(tmp_path / "photos", 3)
    done = foveal_cli("predict", str(folder), str(tmp_path / "photos"), "--format", "json", "-k", "3")
    assert done.returncode == 0, done.stderr
    answers = {Path(a["source"]).name: a for a in json.loads(done.stdout)}
    preprocessing = read_public_checkpoint(folder).preprocessing
    expected = timm_logits(source, images_of(photos, preprocessing=preprocessing), preprocessing).softmax(1)
    for photo, probabilities in zip(photos, expected):
        answer = answers[photo.name]
        assert sorted(answer["labels"]) == sorted(LABELS)
        assert answer["probabilities"] == pytest.approx(
            probabilities.sort(descending=True).values.tolist(), abs=1e-5
        )
    out = tmp_path / "explained"
    done = foveal_cli("explain", str(folder), str(photos[0]), "--out", str(out), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["method"] == "rollout" and len(list(out.glob("*.png"))) >= 1


def test_evaluate_and_export_take_a_public_checkpoint(tmp_path: Path, class_folder: Path) -> None:
    pytest.importorskip("onnxruntime")
    source = tiny_timm(seed=10)
    folder = save_timm_folder(source, tmp_path / "deit", labels=list(CLASSES))
    evaluation = foveal.evaluate(folder, str(class_folder), device="cpu")
    assert evaluation.metrics.num_samples == 36
    bundle = foveal.export(
        folder, tmp_path / "bundle", format="onnx", data=str(class_folder), maps=["rollout"]
    )
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["top1_agreement"] == 1.0 and parity["max_logit_difference"] < 1e-4
    assert parity["max_pool_weight_difference"] is None  # the class token: no pooling weights
    config = json.loads((bundle / "config.json").read_text())
    assert config["architecture"]["family"] == "timm-vit" and config["id2label"]["0"] == CLASSES[0]
    images = images_of(sorted(class_folder.rglob("*.png"))[:6])
    from_bundle = foveal.load(bundle, device="cpu")  # a Foveal model now, with Foveal's header
    torch.testing.assert_close(
        from_bundle.logits(images), foveal.load(folder, device="cpu").logits(images), atol=0, rtol=0
    )
    torch.testing.assert_close(
        foveal.load(bundle / "model.onnx").logits(images), from_bundle.logits(images), atol=1e-4, rtol=0
    )


@pytest.mark.filterwarnings("ignore:Using `httpx`")  # starlette 1.x asks for httpx2 in its TestClient
def test_serve_loads_a_public_checkpoint(timm_folder, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    import time

    from fastapi.testclient import TestClient

    from foveal.serving.app import create_app
    from foveal.serving.settings import ServeSettings

    _, folder = timm_folder
    photo = photo_files(tmp_path / "photos", 1)[0]
    with TestClient(create_app(ServeSettings(model=str(folder), threads=1))) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = client.post("/predict", content=photo.read_bytes(), headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200, answer.text
    expected = foveal.load(folder, device="cpu").predict([photo])[0]
    assert answer.json()["label"] == expected.label


def test_imagenet_heads_get_imagenets_names_and_names_stay_unique() -> None:
    names = class_names({}, 1000)
    assert names[0] == "tench" and len(set(names)) == 1000
    assert class_names({"label_names": {"0": "a", "1": "b"}}, 2) == ["a", "b"]
    assert class_names({"label_names": ["x", "x"]}, 2) == ["x (0)", "x (1)"]
    assert class_names({"label_names": ["a"]}, 2) == ["class_0", "class_1"]  # the wrong length: not its names
