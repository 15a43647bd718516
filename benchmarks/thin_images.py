"""Issue #30: what one thin or wide image costs `foveal serve`, beside a square image of the same pixel
count: the server's peak resident memory and the time of one POST /predict, on loopback.

    python benchmarks/thin_images.py runs/train             # a run folder, bundle or model.onnx
    python benchmarks/thin_images.py --quick                # CI: a tiny model, 4 images
    git worktree add /tmp/foveal-before COMMIT              # the servers on another commit's code:
    python benchmarks/thin_images.py runs/train --src /tmp/foveal-before/src --name thin_images_before

The images (solid-colour PNGs, a few hundred KB at most): strips 1 x N for N = 10^5, 10^6 and the
largest N the server's pixel limit allows; images at the 50:1 aspect bound, 10,000 x 200 and at that
limit; beside each a square of about the same pixel count. Each image gets a fresh server (`--src`:
that source tree on its PYTHONPATH), started under an address-space cap (`prlimit --as`, default 8 GB):
resizing a whole 1 x 50,000,000 strip asks for tens of GB, and the cap turns that into a failed request
rather than a machine out of memory. Once the server is ready its peak resident memory is reset
(/proc/PID/clear_refs), so the peak read after the answer (VmHWM) is the request's own. Recorded per
image: the answer, the request's seconds, the server's resident memory when idle, its peak during the
request, and the growth beside that of the square.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import os
import tempfile
import time
from pathlib import Path

import httpx
from common import load_average, save
from PIL import Image
from serve_load import quick_model

from foveal.serving.process import ServerProcess
from foveal.serving.settings import ServeSettings

MAX_PIXELS = ServeSettings.max_pixels  # the server's default pixel limit: the longest strip it allows
SQUARE_50M = round(MAX_PIXELS**0.5)  # 7,071: 49,999,041 pixels
# (width, height, the square it is compared with): strips, then images at the 50:1 aspect bound.
IMAGES = [
    (1, 100_000, (316, 316)),
    (1, 1_000_000, (1_000, 1_000)),
    (1, MAX_PIXELS, (SQUARE_50M, SQUARE_50M)),
    (10_000, 200, (1_414, 1_414)),  # upscaled to 224 px as a whole: 11,200 x 224
    (50 * 1_000, 1_000, (SQUARE_50M, SQUARE_50M)),
    (1_000, 50 * 1_000, (SQUARE_50M, SQUARE_50M)),
]
QUICK_IMAGES = [(1, 100_000, (316, 316)), (1_000, 20, (141, 141))]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {field} in /proc/{pid}/status: memory is measured on Linux only")


def measure(model: str, width: int, height: int, cap: int, threads: int) -> dict:
    """POST one width x height PNG to a fresh server; its answer, seconds and peak memory."""
    body = png(width, height)
    server = ServerProcess([model, "--threads", str(threads)])
    if cap:
        server.args = ["prlimit", f"--as={cap}", *server.args]  # prlimit execs the server: the same pid
    with server:
        pid = server.process.pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak from here on
        idle = memory_mb(pid, "VmRSS")
        load_before, started = load_average(), time.perf_counter()
        try:
            response = httpx.post(
                server.url + "/predict", content=body, headers={"Content-Type": "image/png"}, timeout=600
            )
            answer = {"status": response.status_code, "seconds": round(time.perf_counter() - started, 3)}
            if response.status_code != 200:
                answer["error"] = response.text[:300]
        except httpx.HTTPError as error:  # the server died or hung up
            answer = {"status": None, "error": f"{type(error).__name__}: {error}"}
        alive = server.process.poll() is None
        peak = memory_mb(pid, "VmHWM") if alive else None
    return {
        "image": f"{width} x {height}",
        "pixels": width * height,
        "png_bytes": len(body),
        **answer,
        "server_alive_after": alive,
        "idle_rss_mb": idle,
        "request_peak_rss_mb": peak,
        "request_growth_mb": round(peak - idle, 1) if peak is not None else None,
        "load_average_before": load_before,
    }


def run_images(model: str, images: list, cap: int, threads: int) -> list[dict]:
    """Each image and, once, each square it is compared with; a strip's row names its square."""
    rows: dict[str, dict] = {}
    for width, height, square in images:
        for w, h in ((width, height), square):
            if f"{w} x {h}" not in rows:
                rows[f"{w} x {h}"] = measure(model, w, h, cap, threads)
                print(rows[f"{w} x {h}"], flush=True)
        row, square_row = rows[f"{width} x {height}"], rows[f"{square[0]} x {square[1]}"]
        row["square"] = square_row["image"]
        if row["request_growth_mb"] is not None and square_row["request_growth_mb"]:
            row["growth_vs_square"] = round(row["request_growth_mb"] / square_row["request_growth_mb"], 3)
    return list(rows.values())


def decode_source(src: Path | None) -> dict:
    """Which foveal the servers ran: the source tree and its decode module's digest."""
    path = (
        src / "foveal/data/decode.py" if src else Path(importlib.util.find_spec("foveal.data.decode").origin)
    )
    return {"src": str(src or "installed"), "decode_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", help="a run folder, bundle or model.onnx")
    parser.add_argument("--src", type=Path, help="run the servers on this source tree (its PYTHONPATH)")
    parser.add_argument(
        "--as-limit", type=int, default=8_000_000_000, help="server address space (0: no cap)"
    )
    parser.add_argument("--threads", type=int, default=2, help="the server's model threads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.src:  # the servers inherit it
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(args.src.resolve()), os.getenv("PYTHONPATH")])
        )
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            args.model, _ = quick_model(Path(scratch))
        if not args.model:
            parser.error("give MODEL (or --quick)")
        images = QUICK_IMAGES if args.quick else IMAGES
        rows = run_images(args.model, images, args.as_limit, args.threads)
    name = args.name or ("quick_thin_images" if args.quick else "thin_images")
    record = {
        "model": args.model if not args.quick else "a tiny foveal-nano at 16 px (quick)",
        **decode_source(args.src),
        "address_space_cap_bytes": args.as_limit or None,
        "rows": rows,
    }
    save(name, record, args.out)
    print("\n| image | answer | seconds | server idle -> request peak MB (growth) |")
    print("|---|---|---|---|")
    for row in rows:
        answer = row["status"] if row["status"] == 200 else f"{row['status']}: {row.get('error', '')[:80]}"
        print(
            f"| {row['image']} | {answer} | {row.get('seconds')} | {row['idle_rss_mb']} -> "
            f"{row['request_peak_rss_mb']} ({row['request_growth_mb']}) |"
        )


if __name__ == "__main__":
    main()
