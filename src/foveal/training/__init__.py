"""Training: config, the one train_step, the loop, schedule and run records."""

from foveal.config import TrainConfig, make_train_config
from foveal.training.loop import TrainResult, train
from foveal.training.step import StepResult, train_step

__all__ = ["StepResult", "TrainConfig", "TrainResult", "make_train_config", "train", "train_step"]
