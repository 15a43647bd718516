"""Typed, grouped training settings: one place for each default, the command line generated from
them, config files (an earlier run's config.json works as it is), and help that reads at 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foveal.cli.main import app
from foveal.cli.options import option_flag, without_none
from foveal.config import (
    GROUPS,
    TrainConfig,
    config_fields,
    load_config_file,
    make_train_config,
)
from foveal.errors import ConfigError

FIELDS = config_fields()


def help_text(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_setting_has_one_flat_name_a_help_text_and_a_group() -> None:
    flat = [f.flat for f in FIELDS]
    # Foveal 0.1.0's 40, then lr_decay, alternate_flips, ..., lookahead, muon_lr, muon_matrix_lr; the
    # six of fine-tuning (#32: init_from, finetune, head, layer_decay, probe_epochs, freeze_batch_norm);
    # the three of tracking (#34: log, mlflow_uri, mlflow_experiment)
    assert len(flat) == len(set(flat)) == 57
    assert {f.group for f in FIELDS} == set(GROUPS)
    assert all(f.help.strip() for f in FIELDS)
    # --help's line: one short line, its whole text in docs/options.md
    for f in FIELDS:
        assert "\n" not in f.summary and len(f.summary) <= 50, f"{f.flat}'s summary is long: {f.summary!r}"


def shown(f) -> str:
    """How --help writes a setting's flag: --epochs, or --[no-]hflip for an on/off pair."""
    flag = option_flag(f)
    return f"--[no-]{flag[2:]}" if without_none(f.type) is bool else flag


def test_every_setting_is_an_option_of_train_and_the_help_reads_at_80_columns() -> None:
    text = help_text("train")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len(lines) <= 150  # it was 324 lines of 20-character columns (#31)
    for f in FIELDS:
        if f.flat != "data":  # DATA is the command's argument
            assert f"│ {shown(f)} " in text, f"{shown(f)} is missing or cut off"
    # Defaults are shown (Rich would have eaten a "[default: ...]" it read as markup).
    assert text.count("[default:") >= 20
    assert "docs/options.md" in text  # where the whole texts are
    panels = [line.split("─ ", 1)[1].split(" ")[0] for line in lines if line.startswith("╭─ ")]
    assert panels == [
        "Arguments",
        "Options",
        "Data",
        "Model",
        "Optimisation",
        "Fine-tuning",
        "Augmentation",
        "Checkpoints",
        "Run",
        "Tracking",
    ]


def test_an_option_takes_one_line_of_help_where_its_name_leaves_room() -> None:
    lines = help_text("train").splitlines()
    for f in FIELDS:
        if f.flat != "data" and len(f"{shown(f)} {f.summary} [default: {f.default}]") <= 70:
            (row,) = [i for i, line in enumerate(lines) if line.startswith(f"│ {shown(f)} ")]
            assert not lines[row + 1].startswith("│  "), (
                f"{shown(f)}'s help wraps:\n{lines[row]}\n{lines[row + 1]}"
            )


def test_compare_takes_the_same_training_options() -> None:
    text = help_text("compare")
    assert len(text.splitlines()) <= 150
    for f in FIELDS:
        if f.flat not in ("data", "model", "name"):  # compare's own: DATA, --models, the folder --name
            assert shown(f) in text
    assert "--img-size" in text and "--models" in text


def capture_training(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Make `foveal train` hand its TrainConfig over instead of training; returns where it lands."""
    import foveal.api

    seen: dict = {}

    def capture(config: TrainConfig, **_: object) -> None:
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(foveal.api, "train", capture)
    return seen


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.flat)
def test_each_option_given_on_the_command_line_reaches_the_config(f, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = capture_training(monkeypatch)
    example = _example(f)
    args = ["train", "digits"] if f.flat != "data" else ["train", str(example)]
    if f.group == "finetune" and f.flat != "init_from":  # how to start from weights: needs the weights
        args += ["--init-from", "runs/flowers"]
    if f.flat != "data":
        flag = option_flag(f)
        if isinstance(example, bool):
            args.append(flag if example else f"--no-{flag[2:]}")
        elif isinstance(example, tuple):  # a repeatable option: once per value
            args += [item for value in example for item in (flag, value)]
        else:
            args += [flag, str(example)]
    CliRunner().invoke(app, args)
    assert "config" in seen, f"{args} did not reach training"
    expected = 120.0 if f.flat == "time_budget" else example
    assert seen["config"].flat()[f.flat] == expected != f.default


def _example(f) -> object:
    """A valid value for setting `f` that differs from its default."""
    examples = {
        "data": "somewhere",
        "model": "foveal-nano",
        "time_budget": "2m",
        "optimizer": "adam",
        "auto_augment": "rand",
        "data_storage": "disk",
        "device": "cpu",
        "split_manifest": "split.json",
        "out": "elsewhere",
        "name": "run",
        "patience": 3,
        "val_fraction": 0.2,
        "label_smoothing": 0.2,
        "random_erase": 0.5,
        "ema_decay": 0.5,
        "drop_path_rate": 0.2,
        "min_lr_ratio": 0.2,
        "lr_decay": "linear",
        "precision": "fp32",
        "init_from": "runs/flowers",
        "finetune": "probe",
        "head": "attention",
        "layer_decay": 0.75,
        "freeze_batch_norm": True,
        "log": ("tensorboard", "mlflow"),
        "mlflow_uri": "http://127.0.0.1:5000",
        "mlflow_experiment": "mine",
    }
    if f.flat in examples:
        return examples[f.flat]
    if f.flat in ("hflip", "alternate_flips", "tta_flip", "lookahead"):  # None: the recipe decides
        return f.flat != "hflip"
    if isinstance(f.default, bool):
        return not f.default
    return 0.5 if isinstance(f.default, float) else 7


def test_a_run_folder_config_json_is_a_config_file(tmp_path: Path) -> None:
    config = make_train_config(data="digits", epochs=3, lr=2e-3, tta_flip=True, time_budget=None)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"train": config.to_dict(), "classes": []}))
    assert load_config_file(tmp_path / "run" / "config.json") == config
    assert load_config_file(tmp_path / "run") == config
    flat_old = {**config.flat(), "epochs": 4}  # Foveal 0.1.0 recorded the settings flat
    (tmp_path / "old.json").write_text(json.dumps({"train": flat_old}))
    assert load_config_file(tmp_path / "old.json").optim.epochs == 4
    (tmp_path / "grouped.yaml").write_text("optim:\n  epochs: 5\naugment:\n  tta_flip: true\n")
    yaml_config = load_config_file(tmp_path / "grouped.yaml")
    assert yaml_config.optim.epochs == 5 and yaml_config.augment.tta_flip is True


def test_the_command_line_overrides_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = capture_training(monkeypatch)
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"data": {"source": "digits"}, "optim": {"epochs": 3, "lr": 0.002}}))
    CliRunner().invoke(app, ["train", "--config", str(file), "--epochs", "9"])
    config = seen["config"]
    assert (config.data.source, config.optim.epochs, config.optim.lr) == ("digits", 9, 0.002)


def test_bad_settings_and_files_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        make_train_config(epoch=3)
    with pytest.raises(ConfigError, match="unknown optim option 'lrr'"):
        TrainConfig.from_dict({"optim": {"lrr": 1}})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "missing.json")


def test_defaults_live_in_the_config_alone() -> None:
    defaults = TrainConfig()
    for f in FIELDS:
        assert defaults.flat()[f.flat] == f.default
    assert TrainConfig.from_dict(defaults.to_dict()) == defaults


def test_paths_are_accepted_where_text_is_and_recorded_as_text(tmp_path: Path) -> None:
    config = make_train_config(data=tmp_path / "images", out=tmp_path / "runs")
    assert config.data.source == str(tmp_path / "images") and config.run.out == str(tmp_path / "runs")
    json.dumps(config.to_dict())  # the run folder's config.json
