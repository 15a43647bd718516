"""What experiment tracking costs a training run: train images/s with no logger, TensorBoard, and
MLflow to a tracking server on loopback, side by side (issue #34; goal: within 2% of no logger).

    python benchmarks/logging_cost.py --data ../shared/data/cifar10 --repeats 3
    python benchmarks/logging_cost.py --quick          # CI: digits, 1 repeat

Each run is `foveal train DATA --epochs E --no-report` in its own process, the loggers' runs
interleaved (none, tensorboard, mlflow, none, ...) so that a drift of the machine's speed falls on all
of them alike; the figure is the run's last epoch's train images/s (results.csv: its steps, their
logging included). One `mlflow server` (sqlite store) runs on loopback for the whole benchmark.
Reported: the median of each logger's runs, its spread (min-max), and its median over no logger's.
"""

from __future__ import annotations

import argparse
import csv
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
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
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
    train(args, scratch, "warm-up", [])  # not counted: the data's cache filled, the files read once
    for repeat in range(args.repeats):
        for name, options in LOGGERS.items():
            run_name = f"{name}-{repeat}"
            server = ["--mlflow-uri", uri, "--mlflow-experiment", "logging-cost"] if name == "mlflow" else []
            runs[name].append(train(args, scratch, run_name, [*options, *server]))
            print(f"{run_name}: {runs[name][-1]:.1f} train images/s", flush=True)
    base = statistics.median(runs["none"])
    rows = {
        name: {
            "images_per_second": [round(v, 1) for v in values],
            "median": round(statistics.median(values), 1),
            "spread": [round(min(values), 1), round(max(values), 1)],
            "median_over_none": round(statistics.median(values) / base, 4),
        }
        for name, values in runs.items()
    }
    for name, row in rows.items():
        print(f"{name:<12} median {row['median']:>8.1f} images/s  spread {row['spread']}  "
              f"x{row['median_over_none']:.4f} of no logger")  # fmt: skip
    save(
        args.name,
        {
            "quick": args.quick,
            "data": args.data,
            "model": args.model or "foveal train's choice",
            "epochs": args.epochs,
            "repeats": args.repeats,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "loggers": rows,
        },
        args.out,
    )


def train(args: argparse.Namespace, scratch: Path, run_name: str, options: list[str]) -> float:
    """One `foveal train` process; its last epoch's train images/s."""
    command = [
        sys.executable, "-m", "foveal", "train", args.data, "--epochs", str(args.epochs), "--no-report",
        "--quiet", "--out", str(scratch / "runs"), "--name", run_name, *options,
        *(["--model", args.model] if args.model else []),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with (scratch / "runs" / run_name / "results.csv").open(newline="") as handle:
        return float(list(csv.DictReader(handle))[-1]["images_per_second"])


if __name__ == "__main__":
    main()
