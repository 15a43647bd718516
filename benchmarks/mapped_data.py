"""Decoded images held in memory against memory-mapped from disk, under a memory limit below their size.

    python benchmarks/mapped_data.py ../shared/data/cifar10 --img-size 96 --limit-mb 1536 --train-minutes 3
    python benchmarks/mapped_data.py ../shared/data/cifar10 --quick     # CI: 40 images a class, no limit

Each measurement is a fresh process that loads the training split (`load_training_data` with
`storage=memory` or `disk`) and makes one epoch of training batches (`EpochBatches`, random crop and
flip), recording batches/s, peak resident memory and anonymous memory (what the kernel cannot
drop). With --limit-mb the process runs in a memory control group with that limit (cgroup v1 or
v2; needs the right to create one, e.g. root): the limited runs are a data set larger than the
memory it may use. The first run decodes into an empty cache, so it times decoding to disk as well.
With --train-minutes, `foveal train --time` then runs under the same limit with the default
`--data-storage auto`, which must see the limit and keep the images on disk by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import load_average, save
from train_time import subset_folder

CHILD_TIMEOUT = 300  # seconds a measurement may take; at a memory limit it may thrash instead of failing
CGROUP_ROOTS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup"))  # v1 memory controller, v2


def measure_in_this_process(data: str, img_size: int, storage: str) -> dict:
    """Load, then make one epoch of batches; the figures the parent records for one run."""
    from foveal.data.mapped import decoded_bytes
    from foveal.data.sources import load_training_data
    from foveal.training.batches import Augmentation, EpochBatches

    started = time.perf_counter()
    splits = load_training_data(data, img_size, storage=storage)
    load_seconds = time.perf_counter() - started
    batches = EpochBatches(splits.train, epoch=0, seed=0, batch_size=256, augmentation=Augmentation(4, True))
    started = time.perf_counter()
    checksum = 0
    for step in range(len(batches)):
        images, _ = batches[step]
        checksum += int(images[:, :, 0, 0].sum())  # touch the batch so nothing is optimised away
    pass_seconds = time.perf_counter() - started
    return {
        "storage": storage,
        "train_images": len(splits.train),
        "held_out_images": len(splits.val),
        "decoded_mb": round(decoded_bytes(len(splits.train) + len(splits.val), img_size) / 1e6, 1),
        "load_seconds": round(load_seconds, 2),
        "epoch_of_batches_seconds": round(pass_seconds, 2),
        "batch_images_per_second": round(len(splits.train) / pass_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "anonymous_mb_at_end": round(_status_kb("RssAnon") / 1024, 1),
        "checksum": checksum,
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def make_cgroup(limit_mb: int) -> Path | None:
    """A new memory control group limited to `limit_mb`, or None where one cannot be made."""
    for root in CGROUP_ROOTS:
        limit_file = "memory.limit_in_bytes" if root.name == "memory" else "memory.max"
        if not (root / "cgroup.procs").exists():
            continue
        group = root / f"foveal-bench-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            (group / limit_file).write_text(str(limit_mb << 20))
            return group
        except OSError:
            continue
    return None


def run_child(args: argparse.Namespace, data: str, storage: str, home: str, group: Path | None) -> dict:
    """Measure `storage` in a fresh process (inside `group` when given); the record of that run."""
    command = [sys.executable, __file__, data, "--img-size", str(args.img_size), "--child", storage]
    env = {**os.environ, "FOVEAL_HOME": home}

    def enter_group() -> None:
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    started = time.perf_counter()
    record = {"storage": storage, "memory_limit_mb": args.limit_mb if group else None}
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, preexec_fn=enter_group, timeout=CHILD_TIMEOUT
        )
    except subprocess.TimeoutExpired:  # at its limit a process can thrash for ever instead of dying
        record.update(wall_seconds=CHILD_TIMEOUT, failed=f"no result in {CHILD_TIMEOUT} s (killed)")
        print(json.dumps(record), flush=True)
        return record
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    if done.returncode == 0:
        record.update(json.loads(done.stdout.strip().splitlines()[-1]))
    else:  # killed by the kernel's OOM killer (-9), or an error
        record["failed"] = f"exit status {done.returncode}: {done.stderr.strip()[-300:]}"
    print(json.dumps(record), flush=True)
    return record


def train_in_group(args: argparse.Namespace, data: str, home: str, group: Path, scratch: str) -> dict:
    """`foveal train --time` inside the memory-limited `group`: does auto storage get it through?"""
    out = Path(scratch) / "runs"
    command = [
        sys.executable, "-m", "foveal", "train", data, "--img-size", str(args.img_size),
        "--time", f"{args.train_minutes}m", "--model", "foveal-nano", "--batch-size", "32",
        "--eval-batch-size", "32", "--out", str(out), "--no-report", "--quiet",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command,
        env={**os.environ, "FOVEAL_HOME": home},
        capture_output=True,
        text=True,
        preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
    )
    record = {"command": " ".join(["foveal", *command[3:]]), "memory_limit_mb": args.limit_mb}
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        record["failed"] = f"exit status {done.returncode}: {done.stderr.strip()[-300:]}"
        return record
    run = next(out.iterdir())
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    record.update(
        images_memory_mapped=config["images_memory_mapped"],
        held_out_top1=metrics.get("top1"),
        epochs_done=len((run / "results.csv").read_text().splitlines()) - 1,
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data")
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--limit-mb", type=int, default=None, help="memory limit of the limited runs")
    parser.add_argument("--train-minutes", type=int, default=0, help="then train under the limit")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=("memory", "disk"), help=argparse.SUPPRESS)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_in_this_process(args.data, args.img_size, args.child)))
        return
    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if args.quick:
            data = str(subset_folder(Path(data), Path(scratch) / "subset", per_class=40))
            args.img_size = 32
        home = str(Path(scratch) / "foveal_home")  # an empty decode cache
        group = make_cgroup(args.limit_mb) if args.limit_mb else None
        if args.limit_mb and group is None:
            print("could not create a memory control group; the limited runs are skipped", file=sys.stderr)
        runs = []
        try:
            if group is not None:
                runs.append({"case": "limited, cold cache", **run_child(args, data, "disk", home, group)})
                runs.append({"case": "limited, warm cache", **run_child(args, data, "memory", home, group)})
            for storage in ("memory", "disk"):
                runs.append({"case": "no limit, warm cache", **run_child(args, data, storage, home, None)})
            training = (
                train_in_group(args, data, home, group, scratch) if group and args.train_minutes else None
            )
        finally:
            if group is not None:
                group.rmdir()
    unlimited = {run["storage"]: run for run in runs if run["memory_limit_mb"] is None}
    ratio = unlimited["disk"]["batch_images_per_second"] / unlimited["memory"]["batch_images_per_second"]
    record = {
        "quick": args.quick,
        "img_size": args.img_size,
        "memory_limit_mb": args.limit_mb if group is not None else None,
        "runs": runs,
        "disk_vs_memory_batch_rate": round(ratio, 3),
        "training_under_the_limit": training,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    save(args.name or ("quick_mapped_data" if args.quick else "mapped_data"), record, args.out)


if __name__ == "__main__":
    main()
