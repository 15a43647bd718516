"""An MLflow model of a saved Foveal model: `foveal export RUN --format mlflow`.

    RUN-mlflow/
      MLmodel                   the pyfunc flavour, its signature (input and output columns), metadata
      code/mlflow_code.py       the model's code: names FovealPythonModel (exporting/mlflow_model.py)
      artifacts/foveal_model/   the Foveal bundle (config.json, model.safetensors, README.md)
      requirements.txt, python_env.yaml, conda.yaml, input_example.json, serving_input_example.json

`mlflow.pyfunc.load_model(folder)` and `mlflow models serve -m folder` load it through Foveal's one
loading path and predict through its one inference path; see exporting/mlflow_model.py for the
columns. The model is written whole in a staging folder beside `out`, then renamed into place.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from foveal import __version__
from foveal.errors import FovealError
from foveal.exporting.bundle import write_bundle

EXTRA_HINT = "pip install 'foveal[mlflow]'"
CODE_FILE = Path(__file__).with_name("mlflow_code.py")  # given to MLflow by path, never imported here
LIBRARY_NAME = "foveal"  # the MLmodel's metadata says who wrote it: such a folder may be overwritten
ARTIFACT = "foveal_model"  # the artifact's key: the Foveal bundle folder (model.safetensors inside)
CLASS_COLUMN = "probability_{}"  # one output column per class
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # read by MLflow on each copy


def require_mlflow() -> None:
    """A FovealError naming the extra to install when MLflow is missing."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise FovealError(f"--format mlflow needs MLflow, which is not installed: {EXTRA_HINT}") from None


def write_mlflow_model(
    model: str | Path, out: str | Path, *, license: str = "other", name: str | None = None
) -> Path:
    """Write an MLflow pyfunc model of the saved model `model` (as for `write_bundle`) into `out`.

    Args:
        license: the bundle's model card's license identifier.
        name: the model's name on its card [default: the folder `out`'s name].

    Returns:
        The MLflow model folder.

    Raises:
        FovealError: MLflow is missing, `out` holds something other than a Foveal MLflow model, or
            `model` is not a saved model (ModelFileError).
    """
    require_mlflow()
    out = Path(out)
    _check_destination(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        bundle = write_bundle(model, staging / ARTIFACT, license=license, name=name or out.resolve().name)
        _save_pyfunc(bundle, staging / "model")
        if out.exists():  # checked above: empty, or an MLflow model Foveal wrote
            shutil.rmtree(out)
        (staging / "model").rename(out)
    except OSError as error:
        raise FovealError(f"cannot write the MLflow model into {out} ({error.strerror or error}).") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _save_pyfunc(bundle: Path, path: Path) -> None:
    import mlflow.pyfunc

    config = json.loads((bundle / "config.json").read_text())
    classes = [config["id2label"][str(i)] for i in range(config["num_labels"])]
    with _quietly():  # MLflow loads the model and predicts its input example: a check of its own
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(CODE_FILE),
            artifacts={ARTIFACT: str(bundle)},
            signature=signature(classes),
            input_example=input_example(config["preprocessing"]["img_size"]),
            pip_requirements=requirements(),
            metadata={"library_name": LIBRARY_NAME, "foveal_version": __version__, "classes": classes},
        )


@contextmanager
def _quietly() -> Iterator[None]:
    """MLflow's INFO lines and progress bars off while it saves: `foveal export` says one line."""
    logger, bar = logging.getLogger("mlflow"), os.environ.get(PROGRESS_BAR)
    level = logger.level
    logger.setLevel(logging.WARNING)
    os.environ[PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        logger.setLevel(level)
        if bar is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = bar


def signature(classes: list[str]):
    """The model's signature: input columns image (bytes) or path (text), each optional, a row giving
    one; output columns label, probability, unknown, familiarity and probability_<class> per class; the
    param reject (True: an unfamiliar image is "unknown", as `foveal predict`)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("binary", "image", required=False), ColSpec("string", "path", required=False)])
    outputs = Schema(
        [
            ColSpec("string", "label"),
            ColSpec("double", "probability"),
            ColSpec("boolean", "unknown"),
            ColSpec("double", "familiarity", required=False),  # None for a model without a threshold
            *(ColSpec("double", CLASS_COLUMN.format(name)) for name in classes),
        ]
    )
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("reject", "boolean", True)]))


def input_example(img_size: int):
    """One row: the PNG bytes of a mid-grey image at the model's size (what a request carries)."""
    import pandas as pd
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (img_size, img_size), (128, 128, 128)).save(buffer, format="PNG")
    return pd.DataFrame({"image": [buffer.getvalue()]})


def requirements() -> list[str]:
    """What a fresh environment installs to load the model: this Foveal and the versions of its
    runtime here (without a local build tag such as +cpu, which the package index does not know)."""
    runtime = ("torch", "torchvision", "pillow")
    return [f"foveal=={__version__}", *(f"{n}=={metadata.version(n).split('+')[0]}" for n in runtime)]


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FovealError(f"{out} is a file; give a folder for the MLflow model.")
    if out.is_dir() and any(out.iterdir()) and not _is_foveal_mlflow_model(out):
        raise FovealError(f"{out} is not empty and holds no Foveal MLflow model; give a new or empty folder.")


def _is_foveal_mlflow_model(folder: Path) -> bool:
    import yaml

    try:
        described = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return False
    said = described.get("metadata") if isinstance(described, dict) else None
    return isinstance(said, dict) and said.get("library_name") == LIBRARY_NAME
