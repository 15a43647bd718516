"""Train the same command with two or more variants of Foveal, alternating, one run at a time, and
record each run's held-out top-1, epochs, speed, wall clock and peak memory side by side.

    git worktree add /tmp/before <commit>        # the code to compare against
    python benchmarks/side_by_side.py ../shared/data/pets --time 10m --seeds 0 1 \
        --variant before=/tmp/before/src --variant after=src --train-args="--img-size 160 --no-report" \
        --runs runs/grid --name pets_grid_10m
    python benchmarks/side_by_side.py ... --collect     # record runs already made by the same commands

A variant is NAME=SRC[:EXTRA ARGS]: SRC goes first on PYTHONPATH (a checkout's `src` of another commit),
EXTRA ARGS are added to that variant's command (e.g. `--model hybrid-airbench-half`). Runs go in the
order seed 0 of every variant, then seed 1 of every variant, ..., so that a machine that drifts over the
session drifts under every variant alike. Nothing else should run beside it (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import load_average, save

DONE_LINE = re.compile(r"^done in .*", re.MULTILINE)
START_LINE = re.compile(r"^model: .*", re.MULTILINE)
TIME_V_WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)")
TIME_V_PEAK = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    name, _, rest = text.partition("=")
    source, _, extra = rest.partition(":")
    if not name or not source:
        raise SystemExit(f"--variant {text!r}: expected NAME=SRC[:EXTRA ARGS]")
    return name, str(Path(source).resolve()), shlex.split(extra)


def command_of(args: argparse.Namespace, extra: list[str], seed: int, run_name: str) -> list[str]:
    return [
        sys.executable, "-m", "foveal", "train", args.data, "--time", args.time, "--seed", str(seed),
        *shlex.split(args.train_args), *extra, "--out", str(args.runs), "--name", run_name,
    ]  # fmt: skip


def run_one(command: list[str], source: str, log: Path) -> dict:
    """Run `command` with `source` first on PYTHONPATH; its output to `log`; wall clock and peak RSS."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    load_before, started = load_average(), time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    facts = {
        "exit_status": os.waitstatus_to_exitcode(status),
        "wall_s": round(time.monotonic() - started, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # kilobytes on Linux
        "load_before": load_before,
        "load_after": load_average(),
    }
    log.with_suffix(".json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def recorded_facts(log: Path) -> dict:
    """The facts of a run made before: its .json beside the log, else `/usr/bin/time -v`'s lines in it."""
    sidecar = log.with_suffix(".json")
    if sidecar.exists():
        return json.loads(sidecar.read_text())
    text = log.read_text()
    wall, peak = TIME_V_WALL.search(text), TIME_V_PEAK.search(text)
    minutes, _, seconds = wall.group(1).rpartition(":") if wall else ("", "", "")
    return {
        "wall_s": round(60 * float(minutes or 0) + float(seconds), 1) if wall else None,
        "peak_rss_mb": round(int(peak.group(1)) / 1024) if peak else None,
    }


def read_run(run_dir: Path, log: Path) -> dict:
    """Top-1, epochs and the run's own lines from its folder and log."""
    text = log.read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    done, start = DONE_LINE.search(text), START_LINE.search(text)
    speed = re.search(r"(\d+) train images/s", done.group(0)) if done else None
    return {
        "test_top1": round(metrics["top1"], 4),
        "epochs": metrics["epoch"],
        "train_images_per_second": int(speed.group(1)) if speed else None,
        "start_line": start.group(0) if start else None,
        "done_line": done.group(0) if done else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data")
    parser.add_argument("--time", default="10m", help="each run's --time budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variant", action="append", required=True, help="NAME=SRC[:EXTRA ARGS]")
    parser.add_argument("--train-args", default="", help="options of every run: --train-args=\"...\"")
    parser.add_argument("--runs", type=Path, default=Path("runs/side_by_side"), help="run folders and logs")
    parser.add_argument("--collect", action="store_true", help="record the runs already in --runs")
    parser.add_argument("--what", default="", help="one line for the record: what is compared")
    parser.add_argument("--name", default="side_by_side")
    parser.add_argument("--out", type=Path, help="Results folder [default: benchmarks/results].")
    args = parser.parse_args()
    args.runs = args.runs.resolve()
    args.runs.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(text) for text in args.variant]
    runs: dict[str, dict] = {}
    for seed in args.seeds:
        for name, source, extra in variants:
            run_name = f"{name}-s{seed}"
            command = command_of(args, extra, seed, run_name)
            log = args.runs / f"{run_name}.log"
            if args.collect and not log.exists():
                print(f"{run_name}: not run, left out", flush=True)
                continue
            if not args.collect:
                print(f"{time.strftime('%H:%M:%S')} {run_name}: {shlex.join(command)}", flush=True)
                if run_one(command, source, log)["exit_status"]:
                    raise SystemExit(f"{run_name} failed: see {log}")
            runs[run_name] = {
                "variant": name,
                "seed": seed,
                "source": source,
                "command": shlex.join(command[1:]),
                **read_run(args.runs / run_name, log),
                **recorded_facts(log),
            }
            run = runs[run_name]
            print(f"{run_name}: top-1 {run['test_top1']:.2%}, {run['epochs']} epochs", flush=True)
    summary = {}
    for name, _, _ in variants:
        scores = [run["test_top1"] for run in runs.values() if run["variant"] == name]
        summary[name] = {
            "test_top1": scores,
            "mean": round(statistics.mean(scores), 4),
            "spread": round(max(scores) - min(scores), 4),
        }
        print(f"{name}: top-1 {', '.join(f'{s:.2%}' for s in scores)}; mean {summary[name]['mean']:.2%}")
    save(args.name, {"what": args.what, "time": args.time, "summary": summary, "runs": runs}, args.out)


if __name__ == "__main__":
    main()
