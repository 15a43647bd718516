"""The benchmark commands run in their quick mode and record what docs/benchmarks.md quotes.

Each runs a benchmark script in a child process for several seconds to minutes, so all but the
quickest (throughput) are marked `slow`: `python -m pytest -m slow` runs them, and so does `.ci/run`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10"


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """`python benchmarks/SCRIPT ARGS` from the repository root, its output captured."""
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def check_record(path: Path) -> dict:
    record = json.loads(path.read_text())
    keys = ("command", "machine", "wall_seconds", "final_top1", "train_images_per_second", "mfu_vs_cpu_peak")
    for key in (*keys, "load_average_before"):
        assert key in record, key
    assert record["quick"] is True and record["epochs"] == 1
    assert 0.0 <= record["final_top1"] <= 1.0 and record["train_images_per_second"] > 0
    assert record["forward_mflops_per_image"] > 0
    return record


@pytest.mark.slow
def test_quick_digits_benchmark(tmp_path: Path) -> None:
    done = run_script("train_time.py", "digits", "--quick", "--name", "quick_digits", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    check_record(tmp_path / "quick_digits.json")


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
def test_quick_cifar10_benchmark(tmp_path: Path) -> None:
    done = run_script(
        "train_time.py", str(CIFAR), "--quick", "--name", "quick_cifar10", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    record = check_record(tmp_path / "quick_cifar10.json")
    assert record["img_size"] == 32


def test_quick_throughput_benchmark(tmp_path: Path) -> None:
    done = run_script("throughput.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "throughput.json").read_text())["rows"]
    assert row["images_per_second"] > 0 and 0 < row["mfu_vs_cpu_peak"] < 1


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
def test_quick_loader_benchmark(tmp_path: Path) -> None:
    done = run_script("loader.py", str(CIFAR), "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_loader.json").read_text())
    assert record["loader_images_per_second"] > record["step_images_per_second"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
def test_quick_ablation_and_reference_pipeline(tmp_path: Path) -> None:
    done = run_script("ablation.py", str(CIFAR), "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "quick_ablation.json").read_text())["rows"]
    assert [row["variant"] for row in rows] == ["default", "ema"]
    assert all(0.0 <= row["test_top1"] <= 1.0 and row["passes"] > 0 for row in rows)
    assert all(row["epochs"] >= 1 and row["last_epoch_lr"] >= 0.0 for row in rows)
    done = run_script("reference_pipeline.py", str(CIFAR), "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_reference_pipeline.json").read_text())
    assert record["train_images_per_second"] > 0 and 0.0 <= record["test_top1"] <= 1.0


@pytest.mark.slow
def test_quick_pointing_game_benchmark(tmp_path: Path) -> None:
    done = run_script("pointing_game.py", "--quick", "--name", "quick_pointing", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_pointing.json").read_text())
    (model,) = record["models"]
    assert [s["method"] for s in model["scores"]] == ["pool", "rollout", "grad-rollout", "gradcam"]
    assert all(0 <= s["score"] <= 1 and s["mosaics"] == 16 for s in model["scores"])
    assert (tmp_path / "quick_pointing_0.png").stat().st_size > 5_000


@pytest.mark.slow
def test_quick_logging_cost_benchmark(tmp_path: Path) -> None:
    """No logger, TensorBoard and MLflow to a real `mlflow server` on loopback, one run each."""
    done = run_script("logging_cost.py", "--quick", "--name", "quick_logging", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_logging.json").read_text())
    assert record["quick"] is True and list(record["loggers"]) == ["none", "tensorboard", "mlflow"]
    assert all(row["median"] > 0 for row in record["loggers"].values())
    assert record["loggers"]["none"]["median_over_none"] == 1.0


@pytest.mark.slow
def test_quick_explain_benchmark(tmp_path: Path) -> None:
    done = run_script("explain_maps.py", "--quick", "--name", "quick_explain", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_explain.json").read_text())
    assert [s["method"] for s in record["scores"]] == ["pool", "rollout", "grad-rollout", "gradcam", "random"]
    assert all(0 <= s["deletion_auc"] <= 1 and 0 <= s["insertion_auc"] <= 1 for s in record["scores"])
    assert (tmp_path / "quick_explain.png").stat().st_size > 5_000


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
def test_quick_mapped_data_benchmark(tmp_path: Path) -> None:
    done = run_script("mapped_data.py", str(CIFAR), "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_mapped_data.json").read_text())
    by_storage = {run["storage"]: run for run in record["runs"]}
    assert set(by_storage) == {"memory", "disk"} and not any("failed" in run for run in record["runs"])
    # The same batches from either storage, at a recorded rate.
    assert by_storage["memory"]["checksum"] == by_storage["disk"]["checksum"]
    assert record["disk_vs_memory_batch_rate"] > 0


@pytest.mark.slow
def test_quick_export_benchmark(tmp_path: Path) -> None:
    done = run_script("export_onnx.py", "--quick", "--name", "quick_export", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_export.json").read_text())
    assert record["parity"]["top1_agreement"] == 1.0 and record["parity"]["batch_sizes"] == [1, 7, 64]
    assert record["machine"]["cpu_flags"] is not None and record["load_average_before"]
    for runtime in ("pytorch_eager", "onnxruntime"):
        assert record["batch1_latency"][runtime]["p50_ms"] > 0


@pytest.mark.slow
def test_quick_int8_benchmark(tmp_path: Path) -> None:
    done = run_script("int8.py", "--quick", "--name", "quick_int8", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "quick_int8.json").read_text())["presets"]
    for check in (row["int8"], row["with_conv"]):
        assert check["images"] == 359  # the digits held out
        assert check["int8_batch1_p50_ms"] > 0 and check["speedup"] > 0
    assert "Conv" in row["with_conv"]["quantized_ops"] and "Conv" not in row["int8"]["quantized_ops"]


@pytest.mark.slow
def test_quick_step_profile(tmp_path: Path) -> None:
    done = run_script("step_profile.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "quick_step_profile.json").read_text())["rows"]
    assert row["model"] == "hybrid-nano" and row["images_per_second"] > 0
    assert sum(row["share_by_kind"].values()) == pytest.approx(1.0, abs=0.01)
    assert {"convolution", "attention"} <= set(row["share_by_kind"])  # a hybrid has both


@pytest.mark.slow
def test_quick_serve_load(tmp_path: Path) -> None:
    """Both modes run against a real server; batching off really runs one image per model call."""
    done = run_script("serve_load.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_serve_load.json").read_text())
    on, off = record["rows"]
    for row in (on, off):
        assert row["requests"] > 0 and row["errors_other_than_503"] == 0 and row["requests_per_second"] > 0
    assert off["mean_batch"] == 1.0 and on["model_calls"] > 0


@pytest.mark.slow
def test_quick_precision(tmp_path: Path) -> None:
    done = run_script("precision.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_precision.json").read_text())
    assert record["auto_precision"] in ("fp32", "bf16") and record["matmul_1024_gflops"]["fp32"] > 0
    (row,) = record["rows"]
    assert row["fp32_images_per_second"] > 0 and row["bf16_images_per_second"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
def test_quick_open_set(tmp_path: Path) -> None:
    done = run_script("open_set.py", str(CIFAR), "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "quick_open_set.json").read_text())["rows"]
    assert [r["score"] for r in rows] == ["mahalanobis", "msp", "energy"] * 2
    assert [r["shipped"] for r in rows] == [True, False, False] * 2  # mahalanobis: its saved threshold
    for row in rows:
        assert 0.0 <= row["auroc"] <= 1.0 and 0.0 <= row["far"] <= 1.0 and row["out_images"] > 0


@pytest.mark.slow
def test_quick_thin_images(tmp_path: Path) -> None:
    """A strip is refused from its header, a 50:1 image is answered; the server lives through both."""
    done = run_script("thin_images.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quick_thin_images.json").read_text())
    rows = {row["image"]: row for row in record["rows"]}
    assert list(rows) == ["1 x 100000", "316 x 316", "1000 x 20", "141 x 141"]
    assert rows["1 x 100000"]["status"] == 422 and "extreme aspect ratio" in rows["1 x 100000"]["error"]
    assert rows["1 x 100000"]["square"] == "316 x 316" and rows["1000 x 20"]["square"] == "141 x 141"
    assert [rows[name]["status"] for name in ("316 x 316", "1000 x 20", "141 x 141")] == [200] * 3
    assert all(row["server_alive_after"] and row["request_peak_rss_mb"] > 0 for row in rows.values())


@pytest.mark.slow
def test_quick_transfer(tmp_path: Path) -> None:
    """Scratch against probe, LP-FT and full fine-tuning from a tiny source, one seed each."""
    done = run_script("transfer.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "transfer_quick.json").read_text())
    assert list(record["summary"]) == ["scratch", "probe", "lp-ft", "full"]
    assert all(0.0 <= row["top1"] <= 1.0 and row["held_out_images"] == 12 for row in record["runs"])
    assert any("init from" in line for line in record["runs"][1]["start_lines"])


@pytest.mark.slow
def test_quick_vit_cpu(tmp_path: Path) -> None:
    """A tiny ViT's training, inference and probe speeds, and what a 10-minute budget buys."""
    done = run_script("vit_cpu.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    [result] = json.loads((tmp_path / "vit_cpu_quick.json").read_text())["results"]
    assert result["model"] == "deit-tiny" and result["train_images_per_second"] > 0
    assert result["probe_speedup_per_epoch"] > 1 and result["in_10_minutes"]["full_passes"] > 0


@pytest.mark.slow
def test_side_by_side_alternates_variants_and_collects_them_again(tmp_path: Path) -> None:
    from synthetic import make_class_folder

    data = make_class_folder(tmp_path / "shapes", per_class=16)
    runs = tmp_path / "runs"
    common = [str(data), "--time", "15s", "--seeds", "0", "--runs", str(runs), "--out", str(tmp_path)]
    common += ["--variant", f"plain={ROOT / 'src'}", "--variant", f"tiny={ROOT / 'src'}:--model foveal-tiny"]
    common += ["--train-args=--img-size 16 --no-report"]
    done = run_script("side_by_side.py", *common, "--name", "made")
    assert done.returncode == 0, done.stderr
    made = json.loads((tmp_path / "made.json").read_text())
    assert list(made["runs"]) == ["plain-s0", "tiny-s0"]  # one seed of every variant, in order
    for run in made["runs"].values():
        assert 0.0 <= run["test_top1"] <= 1.0 and run["epochs"] >= 1 and run["exit_status"] == 0
        assert run["wall_s"] > 0 and run["peak_rss_mb"] > 0 and run["done_line"].startswith("done in")
    assert "foveal-tiny" in made["runs"]["tiny-s0"]["start_line"]
    again = run_script("side_by_side.py", *common, "--name", "collected", "--collect")
    assert again.returncode == 0, again.stderr
    collected = json.loads((tmp_path / "collected.json").read_text())
    assert collected["summary"] == made["summary"]  # read back from the run folders, nothing retrained
    assert collected["runs"]["plain-s0"]["wall_s"] == made["runs"]["plain-s0"]["wall_s"]
