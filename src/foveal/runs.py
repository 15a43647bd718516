"""Run folders: how they are numbered and what they say about themselves (config.json, results.csv,
skipped.txt). Training writes them; the report, `compare` and resume read them through here."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from foveal.config import TrainConfig
from foveal.data.sources import BUILTINS, DataSplits, load_training_data
from foveal.errors import ConfigError, FovealError


def next_run_dir(out: str | Path, name: str) -> Path:
    """Create and return the first free folder among out/name, out/name2, out/name3, ..."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        candidate = out / (name if number == 1 else f"{name}{number}")
        try:
            candidate.mkdir()  # atomic: two runs started together never share a folder
            return candidate
        except FileExistsError:
            number += 1


def read_run_record(run_dir: str | Path, purpose: str) -> dict:
    """The config.json a run folder was started with; `purpose` ("resumed", ...) ends the error
    message when the folder is not a run folder or the file is damaged."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FovealError(
            f"{run_dir} is not a Foveal run folder (no config.json); pass the folder a "
            "`foveal train` run created, e.g. runs/train."
        )
    try:
        record = json.loads(path.read_text())
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise FovealError(
            f"{path} is damaged (not valid JSON: {error}); the run cannot be {purpose}."
        ) from None
    if not isinstance(record, dict):
        raise FovealError(
            f"{path} is damaged: it is not a JSON object of settings; the run cannot be {purpose}."
        )
    if not isinstance(record.get("train"), dict):  # every run records the options it was started with
        problem = "are missing" if "train" not in record else "are not a JSON object"
        raise FovealError(
            f'{path} is damaged: the training options the run started with (its "train" entry) {problem}; '
            f"the run cannot be {purpose}."
        )
    return record


@dataclass
class RunRecord:
    """What a run folder says about itself: config.json, results.csv, skipped.txt."""

    run_dir: Path
    config: dict
    results: list[dict[str, str]]
    skipped: list[tuple[str, str]]

    @property
    def train_config(self) -> TrainConfig:
        """The training settings the run was started with (either config.json layout), at the image
        size it trained at (runs of Foveal 0.1.0, and runs whose size the data chose before the
        budget could, record it only with their preprocessing)."""
        try:
            config = TrainConfig.from_dict(self.config["train"])
        except ConfigError as error:
            raise ConfigError(
                f"{self.run_dir}/config.json has settings this Foveal cannot use: {error}"
            ) from None
        trained_size = self.config.get("preprocessing", {}).get("img_size")
        if config.data.img_size is None and trained_size is not None:
            config = config.replace(img_size=trained_size)
        return config

    def load_data(self, purpose: str) -> DataSplits:
        """The run's images, split as it was (its split.json) and resized as its recorded preprocessing
        says: for `purpose` (e.g. "the report"), which the error names when the data has gone."""
        data = self.train_config.data
        split = self.run_dir / "split.json"
        if data.img_size is None:
            raise FovealError(
                f"{self.run_dir}/config.json does not record the image size; it cannot be reloaded."
            )
        if data.source not in BUILTINS and not Path(data.source).exists():
            raise FovealError(
                f"the run's data {data.source} is not there any more; {purpose} needs its held-out images."
            )
        recorded = self.config.get("preprocessing", {})  # without interpolation, crop_pct: bilinear, 1
        return load_training_data(
            data.source,
            data.img_size,
            interpolation=recorded.get("interpolation", "bilinear"),
            crop_pct=float(recorded.get("crop_pct", 1.0)),
            val_fraction=data.val_fraction,
            split_manifest=split if split.is_file() else data.split_manifest,
            max_pixels=data.max_image_pixels,
            storage=data.data_storage,
        )

    @classmethod
    def read(cls, run_dir: str | Path, purpose: str = "reported") -> RunRecord:
        """Read a run folder's records; `purpose` ("resumed", ...) ends the error message of a
        folder that is no run folder."""
        run_dir = Path(run_dir)
        config = read_run_record(run_dir, purpose)
        results_path = run_dir / "results.csv"
        results = list(csv.DictReader(results_path.open())) if results_path.is_file() else []
        skipped_path = run_dir / "skipped.txt"
        skipped = []
        if skipped_path.is_file():
            for line in skipped_path.read_text().splitlines():
                path, _, reason = line.partition("\t")
                skipped.append((path, reason))
        return cls(run_dir, config, results, skipped)
