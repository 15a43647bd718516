"""Starting from learned weights with a Foveal source (`--init-from`): what is carried and said, what is
refused, the preprocessing that travels, each fine-tuning mode, layer decay, frozen batch norm, the
budget's plan and exact resume. (Public ViT sources: test_public_vit.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli
from safetensors.torch import load_file, save_file
from synthetic import make_class_folder
from test_resume import copy_run_until, losses, weights

from foveal.errors import ConfigError
from foveal.models import create_model
from foveal.predictor.saved import load_model
from foveal.training import train
from foveal.training.finetune import finetune_recipe
from foveal.training.layer_decay import layer_ids
from foveal.training.schedule import build_optimizer
from foveal.training.state import list_checkpoints, load_checkpoint
from foveal.training.transfer import read_source, resample_position_table, transfer_weights

SOURCE_OPTIONS = {"epochs": 1, "batch_size": 8, "img_size": 16, "report": False}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hybrid-nano (trunk with batch norm, attention, attention pooling) trained on three shapes."""
    root = tmp_path_factory.mktemp("source")
    data = make_class_folder(root / "shapes", per_class=12, seed=1)
    return train(
        data=str(data), model="hybrid-nano", out=str(root / "runs"), quiet=True, **SOURCE_OPTIONS
    ).run_dir


@pytest.fixture
def other_classes(tmp_path: Path) -> Path:
    """Two new classes: the source's head cannot be kept."""
    root = make_class_folder(tmp_path / "new", per_class=12, seed=5)
    for extra in sorted(root.iterdir())[2:]:
        for file in extra.iterdir():
            file.unlink()
        extra.rmdir()
    for folder in sorted(root.iterdir()):
        folder.rename(root / f"new-{folder.name}")
    return root


def finetune(data: Path, source: Path, tmp_path: Path, **options) -> Path:
    settings = {**SOURCE_OPTIONS, "img_size": None, "out": str(tmp_path / "runs"), **options}
    return train(data=str(data), init_from=str(source), quiet=True, **settings).run_dir


def test_new_classes_get_a_new_head_and_everything_else_is_kept(
    source_run: Path, other_classes: Path, tmp_path: Path
) -> None:
    run = finetune(other_classes, source_run, tmp_path, finetune="full")
    record = json.loads((run / "config.json").read_text())["init_from"]
    source = load_file(str(source_run / "weights" / "best.safetensors"))
    assert record["new"] == ["head.weight", "head.bias"]
    assert record["replaced"] == ["head.weight", "head.bias"]
    assert record["kept"] == len(source) - 2 and record["resampled"] == []
    assert record["line"].startswith(f"init from {source_run}: {len(source) - 2} tensors kept, 2 new")
    model, info = load_model(run)
    assert info.classes == ["new-circle", "new-square"] and model.head.weight.shape[0] == 2


def test_the_sources_preprocessing_travels_not_the_new_datas_statistics(
    source_run: Path, other_classes: Path, tmp_path: Path
) -> None:
    run = finetune(other_classes, source_run, tmp_path, finetune="full")
    _, source_info = load_model(source_run)
    _, info = load_model(run)
    assert info.preprocessing.mean == source_info.preprocessing.mean
    assert info.preprocessing.std == source_info.preprocessing.std
    assert info.preprocessing.img_size == source_info.preprocessing.img_size == 16
    from foveal.data.preprocess import channel_stats
    from foveal.data.sources import load_training_data

    own_mean, _ = channel_stats(load_training_data(str(other_classes), 16).train)
    assert own_mean != info.preprocessing.mean  # the test could see the data's statistics used instead


def test_the_probe_trains_the_head_alone(source_run: Path, other_classes: Path, tmp_path: Path) -> None:
    run = finetune(other_classes, source_run, tmp_path, finetune="probe", probe_epochs=20)
    source = load_file(str(source_run / "weights" / "best.safetensors"))
    tuned = load_file(str(run / "weights" / "best.safetensors"))
    pooling_and_head = [k for k in tuned if k.startswith(("head.", "attention_pool."))]
    backbone = [k for k in tuned if k not in pooling_and_head]
    assert all(torch.equal(source[k], tuned[k]) for k in backbone)  # batch-norm statistics included
    assert not all(torch.equal(source[k], tuned[k]) for k in pooling_and_head if k in source)
    events = (run / "events.log").read_text()
    assert "probe: 20 epochs over the cached features of" in events
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 2  # the probe is the run's one epoch


def test_lp_ft_probes_first_then_trains_every_weight(
    source_run: Path, other_classes: Path, tmp_path: Path
) -> None:
    run = finetune(other_classes, source_run, tmp_path, finetune="lp-ft", epochs=1, freeze_batch_norm=False)
    source = load_file(str(source_run / "weights" / "best.safetensors"))
    tuned = load_file(str(run / "weights" / "best.safetensors"))
    assert "probe: " in (run / "events.log").read_text()
    assert not torch.equal(source["trunk.groups.0.conv1.weight"], tuned["trunk.groups.0.conv1.weight"])
    assert not torch.equal(
        source["trunk.groups.0.norm1.running_mean"], tuned["trunk.groups.0.norm1.running_mean"]
    )


def test_frozen_batch_norm_keeps_the_sources_statistics(
    source_run: Path, other_classes: Path, tmp_path: Path
) -> None:
    run = finetune(other_classes, source_run, tmp_path, finetune="full", freeze_batch_norm=True)
    source = load_file(str(source_run / "weights" / "best.safetensors"))
    tuned = load_file(str(run / "weights" / "best.safetensors"))
    statistics = [k for k in source if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(source[k], tuned[k]) for k in statistics)
    assert not torch.equal(source["trunk.groups.0.conv1.weight"], tuned["trunk.groups.0.conv1.weight"])


def test_another_image_size_resamples_the_position_table(
    source_run: Path, other_classes: Path, tmp_path: Path
) -> None:
    run = finetune(other_classes, source_run, tmp_path, finetune="full", img_size=32)
    record = json.loads((run / "config.json").read_text())["init_from"]
    assert record["resampled"] == ["pos_embed.weight"]
    assert "1 resampled (pos_embed.weight 4x4 -> 8x8, bicubic)" in record["line"]


def test_a_vit_table_keeps_its_class_token_apart() -> None:
    grid = torch.arange(16, dtype=torch.float32).reshape(1, 16, 1).repeat(1, 1, 4)  # (1, 4x4, D=4)
    table = torch.cat([torch.full((1, 1, 4), -7.0), grid], dim=1)  # class token first
    resized = resample_position_table(table, torch.Size([1, 1 + 64, 4]), (4, 4), (8, 8))
    assert resized.shape == (1, 65, 4)
    assert torch.equal(resized[:, 0], table[:, 0])  # the class token untouched
    corners = resized[0, 1:, 0].reshape(8, 8)
    assert corners[0, 0] < corners[-1, -1]  # the grid's order kept, row by row


def test_a_tensor_that_does_not_fit_is_refused_and_nothing_is_written(
    source_run: Path, other_classes: Path, tmp_path: Path
) -> None:
    model_file = source_run / "weights" / "best.safetensors"
    from safetensors import safe_open

    with safe_open(str(model_file), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(model_file))
    state["blocks.0.mlp.fc1.weight"] = state["blocks.0.mlp.fc1.weight"][:-1]  # one row short
    damaged = tmp_path / "damaged.safetensors"
    save_file(state, str(damaged), metadata=metadata)
    result = foveal_cli(
        "train", str(other_classes), "--init-from", str(damaged), "--out", str(tmp_path / "runs")
    )
    assert result.returncode == 1
    assert "blocks.0.mlp.fc1.weight" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_missing_source_tensor_is_refused(source_run: Path) -> None:
    source = read_source(str(source_run))
    del source.state["blocks.0.norm1.weight"]
    model = create_model("hybrid-nano", num_classes=3, img_size=16)
    with pytest.raises(ConfigError, match="blocks.0.norm1.weight .* is missing from the source.*nothing was"):
        transfer_weights(source, model, source.classes)


def test_layer_decay_scales_each_layer_below_the_head() -> None:
    model = create_model("vit-tiny-4", num_classes=3, img_size=32)
    ids, count = layer_ids(model)
    assert (
        ids["cls_token"] == 0
        and ids["blocks.0.attn.qkv.weight"] == 1
        and ids["blocks.3.attn.qkv.weight"] == 4
    )
    assert ids["head.weight"] == count - 1 == 5
    from foveal.config import make_train_config

    optimizer = build_optimizer(model, make_train_config(lr=1e-3, optimizer="adamw").optim, 0.5)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(named["blocks.3.attn.qkv.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["blocks.0.attn.qkv.weight"])] == pytest.approx(1e-3 * 0.5**4)
    assert lr_of[id(named["cls_token"])] == pytest.approx(1e-3 * 0.5**5)


def test_the_budget_chooses_the_probe_when_few_passes_fit() -> None:
    from foveal.config import make_train_config

    model = create_model("hybrid-nano", num_classes=2, img_size=16)
    options = {"data": "x", "init_from": "x"}
    short, estimate = finetune_recipe(make_train_config(time_budget=1, **options), model, 100_000, 16, 1.0)
    assert short.finetune.finetune == "probe" and estimate["full_passes"] < 3
    long, estimate = finetune_recipe(make_train_config(time_budget=600, **options), model, 100, 16, 50.0)
    assert long.finetune.finetune == "lp-ft" and estimate["full_passes"] >= 3
    assert long.optim.optimizer == "adamw" and long.optim.batch_size == 16  # 100 images: 20 steps an epoch
    chosen, _ = finetune_recipe(
        make_train_config(finetune="full", time_budget=1, **options), model, 10**5, 16, 1.0
    )
    assert chosen.finetune.finetune == "full"  # the user's choice is kept


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_a_fine_tuning_run_resumes_exactly(source_run: Path, other_classes: Path, tmp_path: Path) -> None:
    """Also when its source has gone since: the run folder holds the architecture and preprocessing."""
    source_copy = tmp_path / "source.safetensors"
    source_copy.write_bytes((source_run / "weights" / "best.safetensors").read_bytes())
    full = finetune(
        other_classes,
        source_copy,
        tmp_path,
        finetune="lp-ft",
        epochs=2,
        probe_epochs=5,
        checkpoint_every_steps=1,
        keep_checkpoints=100,
    )
    middle = next(
        p
        for p in list_checkpoints(full / "checkpoints")
        if (load_checkpoint(p)["progress"]["epoch"], load_checkpoint(p)["progress"]["step"]) == (1, 2)
    )
    resumed = copy_run_until(full, tmp_path / "resumed", middle)
    source_copy.unlink()
    done = foveal_cli("train", "--resume", str(resumed), "--quiet")
    assert done.returncode == 0, done.stderr
    expected, got = weights(full), weights(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert losses(resumed) == losses(full)
    assert (resumed / "events.log").read_text().count("probe: ") == 1  # not probed again


def test_the_budget_raises_the_image_size_by_multiples_of_the_sources_while_passes_allow(
    source_run: Path, tmp_path: Path
) -> None:
    from foveal.config import make_train_config
    from foveal.training.finetune import plan_img_size

    photos = make_class_folder(tmp_path / "photos", per_class=10, size=64)  # the data's own size: 64 px
    source = read_source(str(source_run))  # trained at 16 px
    options = {"data": str(photos), "init_from": str(source_run)}
    roomy = make_train_config(time_budget=600, **options)
    assert plan_img_size(roomy, source, training_gflops=1_000.0) == 64  # 16 x 4, the data's size
    tight = make_train_config(time_budget=1, **options)
    assert plan_img_size(tight, source, training_gflops=1.0) == 16  # the source's own
    assert plan_img_size(make_train_config(**options), source, training_gflops=None) == 16  # no budget
