"""The Python API of the README: train, load, predict, evaluate, create_model."""

from __future__ import annotations

from pathlib import Path

import torch

import foveal
import foveal.evaluation  # noqa: F401  (importing the subpackages must not shadow the functions)
import foveal.explanation  # noqa: F401
import foveal.exporting  # noqa: F401
import foveal.reporting  # noqa: F401
import foveal.training  # noqa: F401


def test_the_readme_python_tour_works(class_folder: Path, tiny_train_options: dict) -> None:
    result = foveal.train(data=str(class_folder), quiet=True, **tiny_train_options)
    assert 0.0 <= result.best_top1 <= 1.0 and result.run_dir.is_dir()
    classifier = foveal.load(result.run_dir, device="cpu")
    files = sorted((class_folder / "circle").glob("*.png"))[:2]
    predictions = classifier.predict(files, top_k=3)
    assert [p.source for p in predictions] == [str(f) for f in files]
    assert all(len(p.labels) == 3 for p in predictions)
    evaluation = foveal.evaluate(result.run_dir, str(class_folder), device="cpu")
    assert evaluation.metrics.num_samples == 36 and "circle" in evaluation.metrics.summary_table()
    maps = foveal.explain(result.run_dir, files[:1], method="rollout", out=result.run_dir / "explain")
    assert maps[0].labels[0] == predictions[0].labels[0] and len(maps[0].token_map) == maps[0].grid[0]
    assert (result.run_dir / "explain" / "0000_000.json").is_file()
    assert foveal.report(result.run_dir) == result.run_dir / "report.html"
    bundle = foveal.export(result.run_dir)
    assert bundle == result.run_dir.with_name("train-bundle") and (bundle / "README.md").is_file()
    model = foveal.create_model("cct-7-3x1", num_classes=10)
    out = model.forward_explained(torch.randn(1, 3, 32, 32))
    assert out.logits.shape == (1, 10) and out.pool_weights.shape == (1, 256) and len(out.attentions) == 7


def test_dir_lists_the_lazy_entry_points() -> None:
    listed = dir(foveal)
    entry_points = ["train", "load", "evaluate", "explain", "report", "export", "Classifier", "TrainConfig"]
    assert set(entry_points + ["create_model", "list_models", "FovealError"]) <= set(listed)
    assert set(foveal.__all__) <= set(listed) and listed == sorted(listed)
    assert all(callable(getattr(foveal, name)) for name in entry_points)  # each name dir() shows resolves
