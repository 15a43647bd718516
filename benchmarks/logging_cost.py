"""What experiment tracking costs a training run: train images/s with no logger, TensorBoard, and
MLflow to a tracking server on loopback, side by side (issue #34; goal: within 2% of no logger).

    python benchmarks/logging_cost.py --data ../shared/data/cifar10 --repeats 3
    python benchmarks/logging_cost.py --quick          # CI: digits, 1 repeat

Each run is `foveal train DATA --epochs E --no-report` in its own process, the loggers' runs
interleaved (none, tensorboard, mlflow, none, ...) so that a drift of the machine's speed falls on all
of them alike; the figure is the run's last epoch's train images/s (results.csv: its steps, their
logging included). One `mlflow server` (sqlite store) runs on loopback for the whole benchmark.
Reported: the median of each logger's runs, its spread (min-max), and its median over no logger's.

Whole runs differ by several per cent from one to the next on a shared 2-core machine, more than
the 2% the loggers may cost, so the loggers are also timed directly, in this process: an epoch's
worth of their calls (a step's loss and learning rate each step, the epoch's row, the flush at its
checkpoint), through the same `open_trackers` the loop uses, against the same server; their seconds
over the epoch seconds of the runs without a logger are what they add to training.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import load_average, save

LOGGERS = {"none": [], "tensorboard": ["--log", "tensorboard"], "mlflow": ["--log", "mlflow"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="../shared/data/cifar10", help="What to train on.")
    parser.add_argument("--model", help="A preset [default: what foveal train picks for the data].")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each logger.")
    parser.add_argument("--name", default="logging_cost")
    parser.add_argument("--out", type=Path, help="Results folder [default: benchmarks/results].")
    parser.add_argument("--quick", action="store_true", help="CI: digits, 1 epoch, 1 repeat.")
    parser.add_argument(
        "--reuse-runs", type=Path, help="Take the runs' images/s from an earlier record; time the calls only."
    )
    parser.add_argument("--steps-per-epoch", type=int, help="With --reuse-runs: the runs' steps an epoch.")
    parser.add_argument("--train-images", type=int, help="With --reuse-runs: the runs' training images.")
    args = parser.parse_args()
    if args.quick:
        args.data, args.repeats, args.epochs = "digits", 1, 1
    with tempfile.TemporaryDirectory() as scratch:
        with mlflow_server(Path(scratch)) as uri:
            measure(args, Path(scratch), uri)


class mlflow_server:
    """`mlflow server` on a free loopback port with a sqlite store in `folder`, for a `with` block."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1",
        ]  # fmt: skip
        # Without its job runners (a dozen processes polling a queue, about a core between them here),
        # which the tracking API does not use: the runs would share the CPU with them.
        quiet_server = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=quiet_server,
        )
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    return uri
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise SystemExit("mlflow server did not answer on loopback within 120 s")

    def __exit__(self, *_: object) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(timeout=30)


def measure(args: argparse.Namespace, scratch: Path, uri: str) -> None:
    load_before = load_average()
    runs: dict[str, list[float]] = {name: [] for name in LOGGERS}
    seconds: dict[str, list[float]] = {name: [] for name in LOGGERS}
    steps: dict[str, int] = {}
    if args.reuse_runs:  # the runs of an earlier record; an epoch's seconds from its images/s
        earlier = json.loads(args.reuse_runs.read_text())
        for name, row in earlier["loggers"].items():
            runs[name] = row["images_per_second"]
            seconds[name] = [args.train_images / v for v in runs[name]]
        steps["none"] = args.steps_per_epoch
        args.repeats = len(runs["none"])
    else:
        train(args, scratch, "warm-up", [])  # not counted: the data's cache filled, the files read once
    for repeat in range(0 if args.reuse_runs else args.repeats):
        for name, options in LOGGERS.items():
            run_name = f"{name}-{repeat}"
            server = ["--mlflow-uri", uri, "--mlflow-experiment", "logging-cost"] if name == "mlflow" else []
            row = train(args, scratch, run_name, [*options, *server])
            runs[name].append(float(row["images_per_second"]))
            seconds[name].append(float(row["seconds"]))
            steps[name] = steps_of(scratch / "runs" / run_name)
            print(f"{run_name}: {runs[name][-1]:.1f} train images/s", flush=True)
    epoch_seconds = statistics.median(seconds["none"])
    direct = {name: direct_cost(name, uri, scratch, args.repeats, steps["none"]) for name in LOGGERS}
    base = statistics.median(runs["none"])
    rows = {
        name: {
            "images_per_second": [round(v, 1) for v in values],
            "median": round(statistics.median(values), 1),
            "spread": [round(min(values), 1), round(max(values), 1)],
            "median_over_none": round(statistics.median(values) / base, 4),
            "direct_seconds_per_epoch": round(direct[name], 4),
            "direct_share_of_an_epoch": round((direct[name] - direct["none"]) / epoch_seconds, 5),
        }
        for name, values in runs.items()
    }
    for name, row in rows.items():
        print(f"{name:<12} median {row['median']:>8.1f} images/s  spread {row['spread']}  "
              f"x{row['median_over_none']:.4f} of no logger; timed directly "
              f"{row['direct_share_of_an_epoch']:.3%} of an epoch")  # fmt: skip
    save(
        args.name,
        {
            "quick": args.quick,
            "runs_from": json.loads(args.reuse_runs.read_text())["command"] if args.reuse_runs else None,
            "data": args.data,
            "model": args.model or "foveal train's choice",
            "epochs": args.epochs,
            "steps_per_epoch": steps["none"],
            "repeats": args.repeats,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "loggers": rows,
        },
        args.out,
    )


def train(args: argparse.Namespace, scratch: Path, run_name: str, options: list[str]) -> dict[str, str]:
    """One `foveal train` process; its last epoch's results.csv row."""
    command = [
        sys.executable, "-m", "foveal", "train", args.data, "--epochs", str(args.epochs), "--no-report",
        "--quiet", "--out", str(scratch / "runs"), "--name", run_name, *options,
        *(["--model", args.model] if args.model else []),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with (scratch / "runs" / run_name / "results.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))[-1]


def steps_of(run_dir: Path) -> int:
    """Optimizer steps in one epoch of the run: its training images over its batch size."""
    record = json.loads((run_dir / "config.json").read_text())
    return math.ceil(record["train_images"] / record["train"]["optim"]["batch_size"])


def direct_cost(name: str, uri: str, scratch: Path, repeats: int, steps: int) -> float:
    """Median seconds an epoch of `name`'s calls take (with results.csv, which every run writes)."""
    from foveal.config import TrackingConfig, make_train_config
    from foveal.tracking import open_trackers
    from foveal.tracking.interface import RunStart

    timings = []
    for repeat in range(repeats):
        run_dir = scratch / "direct" / f"{name}-{repeat}"
        run_dir.mkdir(parents=True)
        settings = TrackingConfig(log=tuple(LOGGERS[name][1:]), mlflow_uri=uri, mlflow_experiment="direct")
        trackers = open_trackers(settings)
        trackers.start(RunStart(run_dir, make_train_config(), {}, {"model": "none"}))
        row = {"epoch": 1, "train_loss": 1.0, "train_top1": 0.5, "val_loss": 1.0, "val_top1": 0.5,
               "val_top5": 0.9, "lr": 1e-3, "seconds": 100.0, "images_per_second": 300.0}  # fmt: skip
        started = time.perf_counter()
        for step in range(1, steps + 1):
            trackers.step(step, {"train/loss": 1.0 / step, "train/lr": 1e-3})
        trackers.epoch(steps, [row])
        trackers.checkpointed(steps)
        timings.append(time.perf_counter() - started)
        trackers.close("finished")
    return statistics.median(timings)


if __name__ == "__main__":
    main()
