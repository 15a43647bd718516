"""An exported model.onnx in Foveal's own commands (predict, evaluate, explain through onnxruntime),
its rollout output, and INT8 with its measured cost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import foveal_cli

import foveal
from foveal.errors import FovealError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(run, data, bundle): a tiny flip-view attention model, exported with its rollout map and INT8."""
    from synthetic import tiny_run

    base = tmp_path_factory.mktemp("onnx")
    run, data = tiny_run(base, "foveal-tiny", per_class=8, epochs=6, tta_flip=True)
    bundle = foveal.export(run, base / "bundle", format="int8", maps=["rollout"], data=str(data), force=True)
    return run, data, bundle


def test_predict_and_evaluate_on_model_onnx_give_foveal_s_labels(
    exported: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    run, data, bundle = exported
    files = sorted(data.rglob("*.png"))
    torch_model, onnx_model = foveal.load(run, device="cpu"), foveal.load(bundle / "model.onnx")
    assert onnx_model.preprocessing.test_time_views == "none"  # the flip is inside the graph
    expected, got = torch_model.predict(files, top_k=3), onnx_model.predict(files, top_k=3)
    assert [p.labels for p in got] == [p.labels for p in expected]
    assert np.allclose([p.probabilities for p in got], [p.probabilities for p in expected], atol=1e-5)
    done = foveal_cli("predict", str(bundle / "model.onnx"), str(files[0]), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["labels"][0] == expected[0].labels[0]
    from_onnx = foveal.evaluate(bundle / "model.onnx", str(data))
    from_torch = foveal.evaluate(run, str(data), device="cpu")
    assert from_onnx.metrics.top1 == from_torch.metrics.top1 and from_onnx.skipped == from_torch.skipped


@pytest.mark.parametrize("method", ["pool", "rollout"])
def test_explain_on_model_onnx_draws_the_pytorch_maps(
    exported: tuple[Path, Path, Path], tmp_path: Path, method: str
) -> None:
    run, data, bundle = exported
    files = sorted(data.rglob("*.png"))[:6]
    expected = foveal.explain(run, files, method=method, device="cpu")
    got = foveal.explain(bundle / "model.onnx", files, method=method)
    for e, g in zip(expected, got, strict=True):
        assert g.labels == e.labels and g.target == e.target and g.grid == e.grid
        assert np.abs(np.array(g.token_map) - np.array(e.token_map)).max() <= 1e-5
    done = foveal_cli("explain", str(bundle / "model.onnx"), str(files[0]), "--out", str(tmp_path / "x"))
    assert done.returncode == 0, done.stderr
    assert json.loads(next((tmp_path / "x").glob("*.json")).read_text())["method"] == "rollout"


def test_faithfulness_of_model_onnx_is_the_pytorch_models(exported: tuple[Path, Path, Path]) -> None:
    """The curves re-run the network on altered images: onnxruntime's answers are PyTorch's."""
    from foveal.data.files import decode_paths
    from foveal.explanation.workflow import measure_faithfulness

    run, data, bundle = exported
    torch_model, onnx_model = foveal.load(run, device="cpu"), foveal.load(bundle / "model.onnx")
    images, _, _ = decode_paths(sorted(data.rglob("*.png"))[:8], torch_model.preprocessing)
    expected = measure_faithfulness(torch_model, images, ["pool", "rollout"], steps=4)
    got = measure_faithfulness(onnx_model, images, ["pool", "rollout"], steps=4)
    assert [s.method for s in got] == [s.method for s in expected] == ["pool", "rollout", "random"]
    for e, g in zip(expected, got, strict=True):
        assert g.deletion_auc == pytest.approx(e.deletion_auc, abs=1e-4)
        assert g.insertion_auc == pytest.approx(e.insertion_auc, abs=1e-4)


def test_what_model_onnx_cannot_show_is_said_in_one_line(
    exported: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    run, data, bundle = exported
    image = str(sorted(data.rglob("*.png"))[0])
    model = str(bundle / "model.onnx")
    for args, words in (
        (["explain", model, image, "--method", "gradcam"], "its maps: pool, rollout"),
        (["explain", model, image, "--method", "rollout", "--head-fusion", "max"], "head-fusion mean"),
    ):
        done = foveal_cli(*args)
        assert done.returncode == 1 and words in done.stderr, (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    done = foveal_cli("predict", str(garbage), image)
    assert done.returncode == 1 and "not a readable ONNX model" in done.stderr
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2).eval(), (torch.zeros(1, 3),), str(foreign), dynamo=True)
    done = foveal_cli("predict", str(foreign), image)
    assert done.returncode == 1 and "Foveal did not export" in done.stderr


def test_the_rollout_output_matches_pytorch_in_parity_json(exported: tuple[Path, Path, Path]) -> None:
    _, _, bundle = exported
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["max_rollout_difference"] is not None and parity["max_rollout_difference"] <= 1e-5
    outputs = json.loads((bundle / "config.json").read_text())["onnx"]["outputs"]
    assert outputs == ["logits", "pooled", "pool_weights", "rollout"]


def test_int8_records_its_accuracy_and_speed_against_fp32(exported: tuple[Path, Path, Path]) -> None:
    import onnx

    _, data, bundle = exported
    check = json.loads((bundle / "int8.json").read_text())
    assert check["images"] == 24 and 0 <= check["int8_top1"] <= 1 and 0 <= check["top1_agreement"] <= 1
    assert check["accuracy_change_points"] == pytest.approx((check["int8_top1"] - check["fp32_top1"]) * 100)
    assert check["speedup"] == pytest.approx(
        check["fp32_batch1_p50_ms"] / check["int8_batch1_p50_ms"], rel=1e-2
    )
    ops = {node.op_type for node in onnx.load(str(bundle / "model.int8.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops  # the linear layers really are int8
    assert "ConvInteger" not in ops  # convolutions stay fp32 (see exporting/quantize.py)
    labels = [p.label for p in foveal.load(bundle / "model.int8.onnx").predict(sorted(data.rglob("*.png")))]
    assert len(labels) == 24  # Foveal runs the INT8 file as it runs the fp32 one


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_int8_that_loses_too_much_is_refused_with_its_figures(
    exported: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real accuracy check, given an "INT8" model that is really an untrained network."""
    import foveal.exporting.to_onnx as to_onnx
    from foveal.exporting.graph import output_names
    from foveal.predictor.classifier import Classifier
    from foveal.predictor.network import TorchNetwork

    run, data, _ = exported
    trained = foveal.load(run, device="cpu")
    untrained = foveal.create_model("foveal-tiny", num_classes=3, img_size=16).eval()
    broken = Classifier(TorchNetwork(untrained), trained.info, torch.device("cpu"))

    def quantize_badly(source: Path, destination: Path) -> Path:
        return to_onnx.write_onnx(broken, destination, output_names(broken))

    monkeypatch.setattr(to_onnx, "quantize_int8", quantize_badly)
    with pytest.raises(FovealError, match=r"INT8 loses .* points of top-1 .*--force"):
        foveal.export(run, tmp_path / "b", format="int8", data=str(data))
    assert (tmp_path / "b" / "model.onnx").is_file()  # the fp32 export stands
    assert not (tmp_path / "b" / "model.int8.onnx").exists() and not list((tmp_path / "b").glob(".*"))


def test_maps_that_a_model_cannot_give_are_refused_before_writing(tmp_path: Path) -> None:
    from synthetic import tiny_run

    run, _ = tiny_run(tmp_path, "cnn-resnet8", per_class=4)
    done = foveal_cli("export", str(run), "--format", "onnx", "--maps", "rollout")
    assert done.returncode == 1 and "needs attention layers" in done.stderr
    assert not (tmp_path / "runs" / "train-bundle").exists()
    done = foveal_cli("export", str(run), "--maps", "rollout")
    assert done.returncode == 1 and "--format onnx or int8" in done.stderr


def test_onnxruntime_runs_on_as_many_threads_as_pytorch(exported: tuple[Path, Path, Path]) -> None:
    """`foveal serve --threads N` sets PyTorch's count before loading; an ONNX model takes the same."""
    _, _, bundle = exported
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            session = foveal.load(bundle / "model.onnx").network.session
            assert session.get_session_options().intra_op_num_threads == threads
    finally:
        torch.set_num_threads(before)
