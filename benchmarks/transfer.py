"""Issue #32: what starting from learned weights buys, against training from scratch for the same time.

    python benchmarks/transfer.py DATA --source RUN_OR_CHECKPOINT --time 2m --seeds 0 1 2 --name NAME
    python benchmarks/transfer.py --quick           # CI: tiny folders, a tiny source, 5-second budgets

Each condition is `foveal train DATA --time T --seed S` in its own process, one after another (nothing
else running: the budget is wall-clock): `scratch` (the default recipe), and `probe`, `lp-ft`, `full`
(`--init-from SOURCE --finetune MODE`). Recorded per run: top-1 on DATA's held-out images (its test/ or
val/ folder: the run's final evaluation), the seconds the command took, the passes over the data and the
start line's plan; per condition the mean, the spread (max - min) and the standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import load_average, save

CONDITIONS = ("scratch", "probe", "lp-ft", "full")


def run_condition(
    condition: str, data: str, source: str, budget: str, seed: int, runs: Path, scratch_model: str | None
) -> dict:
    """One `foveal train` of `condition`, in a process of its own; its figures."""
    name = f"{condition}-seed{seed}"
    command = [sys.executable, "-m", "foveal", "train", data, "--time", budget, "--seed", str(seed)]
    command += ["--out", str(runs), "--name", name, "--no-report"]
    if condition != "scratch":
        command += ["--init-from", source, "--finetune", condition]
    elif scratch_model:
        command += ["--model", scratch_model]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    run = _run_folder(done.stdout + done.stderr, runs, name)
    metrics = json.loads((run / "metrics.json").read_text())
    rows = (run / "results.csv").read_text().splitlines()
    plan = [
        line for line in done.stderr.splitlines() if line.startswith(("init from", "fine-tuning:", "model:"))
    ]
    return {
        "condition": condition,
        "seed": seed,
        "top1": round(metrics["top1"], 4),
        "held_out_images": metrics["num_samples"],
        "seconds": round(seconds, 1),
        "epochs": len(rows) - 1,
        "start_lines": plan,
        "run": str(run),
    }


def _run_folder(output: str, runs: Path, name: str) -> Path:
    """The run folder the command made (runs/NAME, or NAME-2... when it existed)."""
    for line in reversed(output.splitlines()):
        if "run folder " in line:
            return Path(line.rsplit("run folder ", 1)[1].strip())
    return runs / name


def source_preset(source: str) -> str | None:
    """The preset a Foveal source run was trained as (scratch trains the same model), else None."""
    record = Path(source) / "config.json"
    if not record.is_file():
        return None
    return json.loads(record.read_text())["train"]["model"]["preset"]


def summary(results: list[dict]) -> dict[str, dict]:
    """Per condition: mean top-1, spread (max - min), standard deviation, seeds."""
    out = {}
    for condition in dict.fromkeys(r["condition"] for r in results):
        top1 = [r["top1"] for r in results if r["condition"] == condition]
        out[condition] = {
            "mean_top1": round(statistics.mean(top1), 4),
            "spread": round(max(top1) - min(top1), 4),
            "stdev": round(statistics.stdev(top1), 4) if len(top1) > 1 else 0.0,
            "runs": len(top1),
        }
    return out


def quick_setup(folder: Path) -> tuple[str, str]:
    """Tiny folders and a tiny source model (CI): (data, source)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from synthetic import make_class_folder

    source_data = make_class_folder(folder / "source", per_class=12, seed=1)
    target = folder / "target"
    make_class_folder(target / "train", per_class=10, seed=2)
    make_class_folder(target / "val", per_class=4, seed=3)
    subprocess.run(
        [sys.executable, "-m", "foveal", "train", str(source_data), "--model", "hybrid-nano", "--epochs", "1"]
        + ["--img-size", "16", "--out", str(folder / "runs"), "--name", "source", "--no-report", "-q"],
        check=True,
    )
    return str(target), str(folder / "runs" / "source")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="the target data set (a root with train/ and test/ or val/)")
    parser.add_argument("--source", help="what --init-from is given: a run folder or a public checkpoint")
    parser.add_argument("--time", default="2m", help="each run's budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--scratch-model", help="scratch's --model [default: the source run's preset]")
    parser.add_argument("--runs", type=Path, default=None, help="where the run folders go (default: temp)")
    parser.add_argument("--name", default="transfer")
    parser.add_argument("--quick", action="store_true", help="tiny data, 5-second budgets, one seed")
    parser.add_argument("--out", type=Path, default=None, help="results folder [default: benchmarks/results]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        runs = args.runs or Path(temp) / "runs"
        if args.quick:
            args.data, args.source = quick_setup(Path(temp))
            args.time, args.seeds, args.name = "5s", [0], "transfer_quick"
        if not args.data or not args.source:
            parser.error("give DATA and --source (or --quick)")
        scratch_model = args.scratch_model or source_preset(args.source)
        load_before = load_average()
        results = []
        for seed in args.seeds:  # seeds outermost: a drift of the machine's speed touches every condition
            for condition in args.conditions:
                result = run_condition(
                    condition, args.data, args.source, args.time, seed, runs, scratch_model
                )
                print(f"{condition} seed {seed}: top-1 {result['top1']:.2%} in {result['seconds']:.0f} s")
                results.append(result)
        record = {
            "data": args.data,
            "source": args.source,
            "budget": args.time,
            "scratch_model": scratch_model,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "summary": summary(results),
            "runs": results,
        }
        save(args.name, record, out=args.out)


if __name__ == "__main__":
    main()
