"""The mutable pieces of a run (optimizer, schedule, loss, progress, clock): built, checkpointed,
restored."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from foveal.config import TrainConfig
from foveal.errors import FovealError
from foveal.tracking import Trackers
from foveal.training import distributed
from foveal.training.clock import Clock
from foveal.training.ema import make_ema
from foveal.training.lookahead import Lookahead
from foveal.training.progress import say
from foveal.training.records import append_event
from foveal.training.schedule import StepPlan, build_optimizer, lr_schedule
from foveal.training.setup import RunSetup
from foveal.training.state import Progress, latest_checkpoint, restore_rng, save_checkpoint


@dataclass
class Trainer:
    """The mutable pieces of a run: optimizer, schedule, loss, and where the run stands."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    criterion: nn.Module
    progress: Progress
    plan: StepPlan
    ema: AveragedModel | None  # the weight average that is validated and saved, when EMA is on
    lookahead: Lookahead | None  # the slow weights the model is synced to, when lookahead is on
    last_save: float  # clock.now() of the last checkpoint
    started: float  # clock.now() when the command started: the time budget counts from here
    clock: Clock  # the run's one clock (clock.py): SystemClock, or a test's FakeClock
    step_seconds: float = 0.0  # time spent in training steps by this process
    steps_timed: int = 0
    validation_seconds: float = 0.0  # the last validation pass's duration
    evaluation_seconds_per_view: float | None = None  # measured once, until a validation is timed
    report_methods: list[str] | None = None  # the map methods the report will show: probed once (replan)
    resumed: bool = False
    replica: nn.Module | None = None  # what train_step runs: the model, or its DDP wrapper under torchrun
    trackers: Trackers = field(default_factory=lambda: Trackers([]))  # where the run is recorded (rank 0)

    def model_to_keep(self, model: nn.Module) -> nn.Module:
        """What gets validated and saved: the EMA of the weights when EMA is on, else the model."""
        return self.ema.module if self.ema is not None else model


def build_trainer(run: RunSetup, started: float, clock: Clock) -> Trainer:
    config = run.config
    optimizer = build_optimizer(run.model, config.optim, config.finetune.layer_decay)
    # With a time budget the total is provisional until the step time is measured (replan.py).
    plan = StepPlan(
        run.steps_per_epoch * config.optim.epochs, round(config.optim.warmup_epochs * run.steps_per_epoch)
    )
    scheduler = lr_schedule(optimizer, plan, config.optim)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    ema = make_ema(run.model, config.optim.ema_decay)
    lookahead = Lookahead() if config.optim.lookahead else None
    return Trainer(
        optimizer, scheduler, criterion, Progress(), plan, ema, lookahead, clock.now(), started, clock
    )


def restore(run: RunSetup, trainer: Trainer, quiet: bool) -> None:
    """Load the newest checkpoint into the model, optimizer, schedule, RNG and progress (a time-budget
    run's plan is then laid out again: replan.apply_plan)."""
    if distributed.is_main():
        for stale in run.checkpoints.glob(".*.tmp"):  # a write that a crash interrupted: never used
            stale.unlink(missing_ok=True)
    distributed.barrier()  # the others read the folder only once it is tidy
    path, state = latest_checkpoint(run.checkpoints)
    progress = Progress(**state["progress"])
    # Training done but killed before its final evaluation (metrics.json, written last): finish it.
    if progress.finished and (run.run_dir / "metrics.json").is_file():
        raise FovealError(f"{run.run_dir} already finished; nothing to resume.")
    run.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.ema is not None:
        trainer.ema.load_state_dict(state["ema"])
    if trainer.lookahead is not None:
        trainer.lookahead.load_state_dict(state.get("lookahead"), run.device)
    restore_rng(state)
    trainer.progress = progress
    trainer.resumed = True
    if distributed.is_main():
        append_event(run.run_dir, f"resumed from {path.name}")
    say(f"resuming {run.run_dir} at epoch {progress.epoch}, step {progress.step} ({path.name})", quiet)


def checkpoint_due(config: TrainConfig, trainer: Trainer) -> bool:
    """Whether a checkpoint is due after this step: every N steps, or N minutes of the run's clock."""
    if (
        config.checkpoint.checkpoint_every_steps
        and trainer.progress.step % config.checkpoint.checkpoint_every_steps == 0
    ):
        return True
    minutes = config.checkpoint.checkpoint_every_minutes
    return bool(minutes) and trainer.clock.now() - trainer.last_save >= minutes * 60


def checkpoint(run: RunSetup, trainer: Trainer) -> None:
    """Rank 0 writes the training state (the model and optimizer are the same on every rank under
    DDP); every rank waits for the write, so none goes on, or ends, before it is on disk."""
    if distributed.is_main():
        save_checkpoint(
            run.checkpoints,
            run.model,
            trainer.optimizer,
            trainer.scheduler,
            trainer.progress,
            run.config.checkpoint.keep_checkpoints,
            ema=trainer.ema,
            lookahead=trainer.lookahead.state_dict() if trainer.lookahead is not None else None,
        )
        trainer.trackers.checkpointed(trainer.progress.global_step)
    distributed.barrier()
    trainer.last_save = trainer.clock.now()
