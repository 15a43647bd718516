"""`foveal bench`: every backend timed side by side, with what the figures depend on, in JSON and a table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from clirun import foveal_cli

import foveal

QUICK = ("--samples", "12", "--warmup", "2", "--batches", "2", "--batch-size", "8")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthetic import tiny_run

    return tiny_run(tmp_path_factory.mktemp("bench"), "foveal-tiny", per_class=6, tta_flip=True)[0]


def check_figures(result: dict) -> None:
    for key in ("batch1_ms", "end_to_end_ms"):
        figures = result[key]
        assert 0 < figures["p50"] <= figures["p90"] <= figures["p99"], (key, figures)
        assert figures["samples"] == 12
    assert result["throughput_images_per_second"] > 0 and result["batch_ms"]["samples"] == 2


@pytest.mark.slow  # ~10 s: compiles and times four backends (the default suite keeps the one-model bench)
def test_bench_times_every_backend_and_records_the_machine(run: Path) -> None:
    done = foveal_cli("bench", str(run), "--no-compile", *QUICK)
    assert done.returncode == 0, done.stderr
    record = json.loads((run / "bench.json").read_text())  # the default: inside the run folder
    assert record["format"] == "foveal.bench/1" and record["command"].startswith("foveal bench ")
    assert list(record["backends"]) == ["eager", "onnx-fp32", "onnx-int8"]  # compile opted out
    for result in record["backends"].values():
        assert result["error"] is None
        check_figures(result)
    assert record["backends"]["onnx-fp32"]["vs_eager"]["top1_agreement"] == 1.0
    assert record["backends"]["onnx-fp32"]["vs_eager"]["max_logit_difference"] < 1e-4
    assert set(record["speedup_vs_eager"]) == {"onnx-fp32", "onnx-int8"}
    machine, libraries = record["machine"], record["libraries"]
    assert machine["cpu"] and isinstance(machine["cpu_flags"], list) and machine["cores"] >= 1
    assert libraries["torch"] and libraries["onnxruntime"] and libraries["foveal"] == foveal.__version__
    assert record["threads"]["torch_intra_op"] == record["threads"]["onnxruntime_intra_op"] >= 1
    assert record["load_average_before"] and record["load_average_after"]
    assert record["model"]["preset"] == "foveal-tiny" and record["model"]["parameters"] > 0
    assert not record["images"]["synthesized"] and "held-out" in record["images"]["source"]
    assert "onnx-int8" in done.stdout and ("faster" in done.stdout or "slower" in done.stdout)
    again = foveal_cli("bench", str(run), "--no-compile", *QUICK)  # its own record is replaced
    assert again.returncode == 0, again.stderr


def test_a_model_alone_is_timed_on_synthetic_jpegs_beside_itself(run: Path, tmp_path: Path) -> None:
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes((run / "weights" / "best.safetensors").read_bytes())
    done = foveal_cli("bench", str(alone), "--no-compile", "--threads", "1", *QUICK)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "alone.bench.json").read_text())
    assert record["images"]["synthesized"] and "synthetic" in record["images"]["source"]
    assert record["threads"]["torch_intra_op"] == 1 == record["threads"]["onnxruntime_intra_op"]


def test_without_onnxruntime_the_onnx_rows_say_how_to_install_it(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    out = tmp_path / "b.json"
    done = foveal_cli("bench", str(run), "--no-compile", "--out", str(out), "--images", str(run), *QUICK)
    assert done.returncode == 0, done.stderr
    backends = json.loads(out.read_text())["backends"]
    check_figures(backends["eager"])
    for name in ("onnx-fp32", "onnx-int8"):
        assert backends[name]["error"] == "not installed: pip install 'foveal[export]'"
    assert "not installed" in done.stdout


def test_bad_input_gets_one_line(run: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"not a model")
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": true}')
    blocked = tmp_path / "file"
    blocked.write_text("")
    for args in (
        [str(fake)],
        [str(tmp_path / "missing")],
        [str(run), "--samples", "0"],
        [str(run), "--batch-size", "0"],
        [str(run), "--out", str(blocked / "inside.json")],
        [str(run), "--out", str(mine)],
        [str(run), "--out", str(tmp_path)],
        [str(run), "--images", str(tmp_path / "nowhere")],
    ):
        done = foveal_cli("bench", *args, "--no-compile")
        assert done.returncode == 1, (args, done.stdout)
        assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1, (args, done.stderr)
    assert mine.read_text() == '{"mine": true}'  # another program's file is never overwritten


@pytest.mark.slow
def test_compile_is_timed_with_its_compile_time_apart(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    done = foveal_cli("bench", str(run), "--out", str(out), *QUICK)
    assert done.returncode == 0, done.stderr
    compiled = json.loads(out.read_text())["backends"]["compile"]
    if compiled["error"] is None:
        check_figures(compiled)
        assert compiled["setup_seconds"] > 0 and compiled["vs_eager"]["top1_agreement"] == 1.0
        assert "compiling" in done.stdout
    else:  # no C compiler, say: the row says why and the others are measured
        assert "not measured" in done.stdout
