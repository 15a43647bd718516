"""What the commands that load a model are told (`foveal predict`, `evaluate`, `explain`, `report`):
where it runs and how it predicts. Their options are these fields (cli/options.py); light to import,
as the command line is generated from these classes before any command runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from foveal.config import check, option


@dataclass(frozen=True)
class LoadSettings:
    """Where a loaded model runs (`foveal report`'s one option)."""

    device: str = option(
        "auto",
        "Where the model runs: auto, cpu, cuda, cuda:N or mps.",
        summary="auto, cpu, cuda, cuda:N or mps.",
    )


@dataclass(frozen=True)
class InferenceSettings(LoadSettings):
    """How a loaded model answers for many images."""

    batch_size: int = option(256, "Images per forward pass.")
    reject: bool = option(
        True,
        'Answer "unknown" for unfamiliar images: an image unlike every class the model knows (below '
        "the familiarity threshold calibrated on its held-out images) is unknown; --no-reject: always "
        "answer a class.",
        summary='Answer "unknown" for unfamiliar images.',
    )

    def __post_init__(self) -> None:
        check((self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"))


@dataclass(frozen=True)
class PredictSettings(InferenceSettings):
    """What `foveal predict` prints for each image."""

    top_k: int = option(5, "Labels per image.", short="-k")
    format: Literal["table", "json", "csv"] = option("table", "table, json or csv.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            (self.top_k >= 1, f"--top-k must be >= 1, got {self.top_k}"),
            (
                self.format in ("table", "json", "csv"),
                f"--format must be table, json or csv, got {self.format!r}",
            ),
        )
