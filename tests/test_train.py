"""Training: the step learns, runs write what they promise, saving round-trips, seeds decide bits."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import foveal
from foveal.data.preprocess import Preprocessing
from foveal.errors import ConfigError, ModelFileError
from foveal.predictor.saved import ModelInfo, load_model, save_model
from foveal.runs import RunRecord
from foveal.runtime import resolve_precision, to_fast_layout
from foveal.training import make_train_config, train, train_step


def test_a_tiny_batch_is_overfitted() -> None:
    torch.manual_seed(0)
    model = foveal.create_model(
        "foveal-tiny", num_classes=4, img_size=16, drop_path_rate=0.0, attn_drop_rate=0.0
    )
    images, labels = torch.randn(8, 3, 16, 16), torch.arange(8) % 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    criterion = torch.nn.CrossEntropyLoss()
    first = train_step(model, images, labels, optimizer, criterion, grad_clip=1.0)
    for _ in range(150):
        last = train_step(model, images, labels, optimizer, criterion, grad_clip=1.0)
    assert first.loss > 1.0 and last.loss < 0.05 and last.correct == 8


def test_a_non_finite_loss_skips_the_update() -> None:
    model = foveal.create_model("foveal-tiny", num_classes=3, img_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(4, 3, 16, 16)
    images[0, 0, 0, 0] = float("inf")
    result = train_step(
        model,
        images,
        torch.zeros(4, dtype=torch.long),
        torch.optim.AdamW(model.parameters()),
        torch.nn.CrossEntropyLoss(),
    )
    assert not result.applied
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_run_writes_weights_records_and_pictures(class_folder: Path, tiny_train_options: dict) -> None:
    result = train(data=str(class_folder), quiet=True, **tiny_train_options)
    run = result.run_dir
    assert run.name == "train"
    for name in (
        "config.json",
        "results.csv",
        "results.png",
        "split.json",
        "metrics.json",
        "confusion_matrix.png",
        "weights/best.safetensors",
        "weights/last.safetensors",
    ):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["val_top1"]) <= 1.0 for r in rows)
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["classes"] == ["circle", "square", "triangle"]
    # "auto" is recorded as the arithmetic it chose, so a resume on another machine keeps it
    assert recorded["train"]["run"]["precision"] == resolve_precision(torch.device("cpu"))
    assert 0.0 <= result.best_top1 <= 1.0 and result.metrics.num_samples == 3  # 10% of 12 per class
    again = train(data=str(class_folder), quiet=True, **tiny_train_options)
    assert again.run_dir.name == "train2"


def test_a_relative_data_path_is_recorded_absolute(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(class_folder.parent)
    run = train(data=class_folder.name, quiet=True, **tiny_train_options).run_dir
    recorded = json.loads((run / "config.json").read_text())["train"]["data"]["source"]
    assert recorded == str(class_folder.resolve())
    monkeypatch.chdir(run)  # a later command (report, export, bench), elsewhere, finds the images
    assert len(RunRecord.read(run).load_data("the test").val) == 3


def test_save_then_load_gives_identical_logits(tmp_path: Path) -> None:
    # Trained and loaded models both live in the channels-last layout; compare like with like.
    model = to_fast_layout(foveal.create_model("foveal-small", num_classes=3, img_size=16)).eval()
    info = ModelInfo(model.config, ["a", "b", "c"], Preprocessing(16))
    path = save_model(tmp_path / "m.safetensors", model, info)
    loaded, loaded_info = load_model(path)
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))
    assert loaded_info.classes == ["a", "b", "c"] and loaded_info.config == model.config
    assert set(load_file(str(path))) == set(model.state_dict())  # plain safetensors, no pickle
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\xff" * 8 + b"{}", None])
def test_a_corrupt_or_foreign_model_file_is_refused(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.safetensors"
    if content is None:  # a valid safetensors file that Foveal did not write
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(path))
    else:
        path.write_bytes(content)
    with pytest.raises(ModelFileError):
        load_model(path)


def test_a_truncated_model_file_is_refused(tmp_path: Path) -> None:
    model = foveal.create_model("foveal-tiny", num_classes=3, img_size=16)
    path = save_model(
        tmp_path / "m.safetensors", model, ModelInfo(model.config, ["a", "b", "c"], Preprocessing(16))
    )
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(path)


def test_same_seed_same_bits_different_seed_different_weights(
    class_folder: Path, tiny_train_options: dict
) -> None:
    options = {**tiny_train_options, "epochs": 1}
    runs = [train(data=str(class_folder), seed=s, quiet=True, **options).run_dir for s in (5, 5, 6)]
    weights = [load_file(str(r / "weights" / "last.safetensors")) for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_misspelled_training_options_fail_loudly() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        make_train_config(epoch=3)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        make_train_config(batch_size=0)


def test_reduced_precision_only_where_the_hardware_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from foveal import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.autocast_for(cpu) is None  # AVX2-only: fp32
    assert runtime.resolve_precision(cpu) == "fp32"
    forced = runtime.autocast_for(cpu, "bf16")  # the user's --precision bf16 holds anywhere
    assert forced is not None and forced.fast_dtype == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    autocast = runtime.autocast_for(cpu)
    assert autocast is not None and autocast.fast_dtype == torch.bfloat16
    assert runtime.autocast_for(cpu, "fp32") is None
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    monkeypatch.undo()
    # AVX-512 BF16 (AMD Zen 4) counts as well as AMX: bf16 trains 1.8x faster there (docs/benchmarks.md)
    assert runtime.cpu_has_native_bf16() == ("amx_bf16" in flags or "avx512_bf16" in flags)


def test_the_default_thread_count_is_the_users_share_of_the_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from foveal import runtime

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a shared machine's share, a test worker's
        assert runtime.default_threads() == 1 and runtime.set_threads(None) == 1 == torch.get_num_threads()
        assert runtime.set_threads(3) == 3 == torch.get_num_threads()  # --threads wins
        for unusable in ("", "0", "two", "-4"):
            monkeypatch.setenv("OMP_NUM_THREADS", unusable)
            assert runtime.default_threads() == runtime.available_cores()
        cores = runtime.available_cores()  # shared by N processes (serve's workers, torchrun's ranks)
        assert runtime.cores_each(1) == cores and runtime.cores_each(2 * cores) == 1
        if hasattr(os, "sched_getaffinity"):  # the cores this process may run on, not the machine's
            assert runtime.available_cores() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_a_slow_first_decoding_says_how_far_it_is_unless_quiet(
    class_folder: Path,
    tiny_train_options: dict,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from foveal.data import folders

    monkeypatch.setattr(folders, "DECODE_LINE_EVERY_S", 0.0)  # as if every image took that long
    monkeypatch.setenv("FOVEAL_NO_CACHE", "1")  # decode for real each time
    train(data=str(class_folder), **tiny_train_options)
    said = capsys.readouterr().err
    line = r"data: decoded 1 of \d+ images to 16 px \([\d,]+ images/s, about \d+ s left\); they are cached"
    assert re.search(line, said), said
    train(data=str(class_folder), **{**tiny_train_options, "quiet": True})
    assert capsys.readouterr().err == ""  # quiet reaches the decoding too


def test_an_epoch_says_how_it_goes_in_plain_lines_without_a_terminal(
    class_folder: Path,
    tiny_train_options: dict,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from foveal.training import progress

    monkeypatch.setattr(progress, "PLAIN_LINE_EVERY_S", 0.0)  # a line after every step
    run = train(data=str(class_folder), **tiny_train_options).run_dir  # stderr captured: no terminal
    said = capsys.readouterr().err
    line = r"epoch 1/2: step 1/\d+, loss \d+\.\d{3}, [\d,]+ img/s, about \d+ s left in the epoch"
    first_step = re.search(line, said)
    assert first_step, said
    assert 0 <= said.index(f"run folder {run}") < first_step.start()  # the folder is named at the start
