"""Load test of `foveal serve`: N concurrent clients for T seconds against a real server process on
loopback, with dynamic batching on and off, side by side (issue #14).

    python benchmarks/serve_load.py runs/train --images ../shared/data/cifar10/test --clients 16 --seconds 60
    python benchmarks/serve_load.py --quick        # CI: a tiny model, 4 clients, 3 seconds each

For each mode a fresh server starts (`--max-batch 32` on, `--max-batch 1` off, the same model and
threads); the clients (asyncio, one connection each, in this process) post images from `--images` in
turn to /predict as fast as they are answered (plain HTTP/1.1 keep-alive over asyncio streams: the
clients share the server's two cores, so they must cost little). Recorded: requests/s, latency
p50/p95/p99, answers by status, the batch sizes the server ran (its /metrics), and its resident
memory after warm-up and at the end. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from common import load_average, save

from foveal.data.decode import is_image_file
from foveal.serving.process import ServerProcess

MODES = {"batching on": ["--max-batch", "32"], "batching off": ["--max-batch", "1"]}
MAX_IMAGES = 256  # distinct images the clients cycle through


async def client(port: int, images: list[bytes], offset: int, deadline: float, record: list) -> None:
    """One client on one keep-alive connection: post, read the whole answer, post the next. Plain HTTP/1.1
    over asyncio streams, so that the load generator, which shares this machine's cores with the
    server, costs as little CPU as it can."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < deadline:
            body = images[i % len(images)]
            started = time.perf_counter()
            try:
                head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                status, closing = int((await reader.readline()).split()[1]), False
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    closing |= name.lower() == b"connection" and b"close" in value.lower()
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
                status, closing = type(error).__name__, True
            record.append((status, time.perf_counter() - started))
            if closing:  # the server ended the connection (or it broke): a new one
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            i += 1
    finally:
        writer.close()


async def load(port: int, images: list[bytes], clients: int, seconds: float) -> tuple[list, float]:
    record: list = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client(port, images, k * 7, deadline, record) for k in range(clients)))
    return record, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values or [0.0])[0]


def batch_sizes(metrics: str) -> dict:
    """Mean images per model call, from the server's /metrics."""
    total = float(re.search(r"^foveal_batch_size_sum ([\d.e+]+)", metrics, re.M).group(1))
    count = float(re.search(r"^foveal_batch_size_count ([\d.e+]+)", metrics, re.M).group(1))
    return {"model_calls": int(count), "mean_batch": round(total / count, 2) if count else 0.0}


def measure(model: str, images: list[bytes], mode: str, clients: int, seconds: float, threads: int) -> dict:
    args = [model, "--threads", str(threads), "--max-queue", str(4 * clients), *MODES[mode]]
    with ServerProcess(args) as server:
        asyncio.run(load(server.port, images, clients, 1.0))  # warm-up, not counted
        rss_start = server.rss_bytes()
        load_before = load_average()
        record, elapsed = asyncio.run(load(server.port, images, clients, seconds))
        rss_end = server.rss_bytes()
        metrics = httpx.get(server.url + "/metrics").text
    ok = [seconds for status, seconds in record if status == 200]
    statuses: dict[str, int] = {}
    for status, _ in record:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "mode": mode,
        "requests": len(record),
        "requests_per_second": round(len(ok) / elapsed, 1),
        "latency_ms": {f"p{q}": round(percentile(ok, q) * 1000, 1) for q in (50, 95, 99)},
        "answers_by_status": statuses,
        "errors_other_than_503": sum(n for s, n in statuses.items() if s not in ("200", "503")),
        **batch_sizes(metrics),
        "rss_start_mb": round(rss_start / 2**20, 1),
        "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth_percent": round(100 * (rss_end - rss_start) / rss_start, 2),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def quick_model(scratch: Path) -> tuple[str, Path]:
    """(run folder, image folder): foveal-nano trained for one epoch on 2 classes of plain colours."""
    import numpy as np
    from PIL import Image

    import foveal

    rng = np.random.default_rng(0)
    for name, channel in (("red", 0), ("blue", 2)):
        (scratch / "data" / name).mkdir(parents=True)
        for i in range(16):
            pixels = rng.integers(0, 90, (24, 24, 3), dtype=np.uint8)
            pixels[..., channel] = 200
            Image.fromarray(pixels).save(scratch / "data" / name / f"{i}.jpg")
    result = foveal.train(
        data=str(scratch / "data"), model="foveal-nano", epochs=1, batch_size=8, img_size=16,
        out=str(scratch / "runs"), report=False, quiet=True,
    )  # fmt: skip
    return str(result.run_dir), scratch / "data"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", help="a run folder, bundle or model.onnx")
    parser.add_argument("--images", type=Path, help="a folder of images to post (searched recursively)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2, help="the server's model threads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            args.model, args.images = quick_model(Path(scratch))
            args.clients, args.seconds = 4, 3.0
        if not args.model or not args.images:
            parser.error("give MODEL and --images (or --quick)")
        files = sorted(p for p in args.images.rglob("*") if is_image_file(p))[:MAX_IMAGES]
        images = [p.read_bytes() for p in files]
        rows = [measure(args.model, images, mode, args.clients, args.seconds, args.threads) for mode in MODES]
    speedup = rows[0]["requests_per_second"] / max(rows[1]["requests_per_second"], 1e-9)
    name = args.name or ("quick_serve_load" if args.quick else "serve_load")
    save(
        name,
        {
            "model": args.model if not args.quick else "a tiny foveal-nano (quick)",
            "clients": args.clients,
            "seconds": args.seconds,
            "images": len(images),
            "rows": rows,
            "batching_speedup": round(speedup, 2),
        },
        args.out,
    )
    print(
        "\n| mode | requests/s | p50 / p95 / p99 ms | answers by status | mean batch | RSS start -> end MB |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        latency = row["latency_ms"]
        print(
            f"| {row['mode']} | {row['requests_per_second']} | {latency['p50']} / {latency['p95']} / "
            f"{latency['p99']} | {row['answers_by_status']} | {row['mean_batch']} | "
            f"{row['rss_start_mb']} -> {row['rss_end_mb']} ({row['rss_growth_percent']:+}%) |"
        )
    print(f"dynamic batching: {speedup:.2f}x the requests/s of one-at-a-time serving")


if __name__ == "__main__":
    main()
