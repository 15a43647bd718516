"""The MLflow pyfunc model of a Foveal classifier: image bytes or paths in, labels and probabilities out.

MLflow loads it from the exported folder (`foveal export RUN --format mlflow`, exporting/to_mlflow.py)
through its code file, exporting/mlflow_code.py ("models from code": no pickled object travels), and
calls `load_context` once, then `predict` per request:

    input   a pandas DataFrame, one row per image, with a column
              image   the image file's bytes (`mlflow models serve` takes them base64-encoded in JSON)
              path    or an image file's path, read where the model runs
    output  a pandas DataFrame, one row per image:
              label                 the most probable class, or "unknown" (see `foveal predict`)
              probability           its probability
              unknown               whether the image looks unlike every class the model knows
              familiarity           the model's familiarity score (None: no open-set threshold)
              probability_<class>   one column per class, in the model's class order

Loading and predicting go through Foveal's one loading path (`foveal.predictor.classifier.load`) and
one inference path (`Classifier.outputs` / `predictions`), decoding through `Preprocessing.decode`, so
the answers are `foveal predict`'s. mlflow and pandas are imported here at the top: only MLflow and
the MLflow export import this module.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from foveal.data.decode import ImageDecodeError
from foveal.errors import DataError
from foveal.exporting.to_mlflow import ARTIFACT, CLASS_COLUMN
from foveal.predictor.classifier import Classifier, load

INPUT_COLUMNS = ("image", "path")  # a row's image: its bytes, else its path


class ImageInputError(DataError, MlflowException):
    """Input the MLflow model cannot predict on (no image column, an image that does not decode). An
    MlflowException too, so that `mlflow models serve` answers 400 with this message, not 500."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


class FovealPythonModel(mlflow.pyfunc.PythonModel):
    """A Foveal classifier as an MLflow pyfunc model (see the module's docstring for the columns)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the bundle artifact once. model_config "device": where it runs [default: auto]."""
        config = context.model_config or {}
        self.classifier: Classifier = load(context.artifacts[ARTIFACT], config.get("device", "auto"))
        self.batch_size = int(config.get("batch_size", 256))

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Labels and probabilities of the images of `model_input` (a DataFrame with an image or path
        column); params "reject" (default True): False always answers a class, as --no-reject."""
        reject = bool((params or {}).get("reject", True))
        return predict_frame(self.classifier, model_input, reject=reject, batch_size=self.batch_size)


def predict_frame(
    classifier: Classifier, frame: pd.DataFrame, *, reject: bool = True, batch_size: int = 256
) -> pd.DataFrame:
    """The output DataFrame (one row per input row) for an input DataFrame of images.

    Args:
        frame: a column "image" (bytes, or base64 text) or "path" (str) per row; a row may give either.
        reject: mark images below the model's familiarity threshold "unknown", as `foveal predict`.

    Raises:
        ImageInputError: no image or path column, an empty frame, a row with neither, or an image that
            does not decode (the message names the row and the reason).
    """
    images = torch.stack([_decode(classifier, row, *source) for row, source in enumerate(_sources(frame))])
    outputs = classifier.outputs(images, batch_size)
    sources = [f"row {i}" for i in range(len(outputs))]
    predictions = classifier.predictions(outputs, sources, top_k=1, reject=reject)
    probabilities = outputs.logits.float().softmax(dim=1).tolist()  # (N, K), as `predictions` computes
    columns: dict[str, list] = {
        "label": [p.label for p in predictions],
        "probability": [p.probabilities[0] for p in predictions],
        "unknown": [p.unknown for p in predictions],
        "familiarity": [p.familiarity for p in predictions],
    }
    for k, name in enumerate(classifier.classes):
        columns[CLASS_COLUMN.format(name)] = [row[k] for row in probabilities]
    return pd.DataFrame(columns)


def _sources(frame: Any) -> list[tuple[str, Any]]:
    """(column, value) of each row's image: the image column's bytes where given, else its path."""
    if not isinstance(frame, pd.DataFrame) or not any(c in frame.columns for c in INPUT_COLUMNS):
        got = f"columns {list(frame.columns)}" if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise ImageInputError(
            f"expected a DataFrame with an 'image' column (image file bytes, base64 in JSON) or a 'path' "
            f"column, got {got}."
        )
    if len(frame) == 0:
        raise ImageInputError("expected at least one image, got an empty DataFrame.")
    chosen = []
    for row, record in enumerate(frame.to_dict("records")):
        given = [(c, record[c]) for c in INPUT_COLUMNS if _given(record.get(c))]
        if not given:
            raise ImageInputError(f"row {row}: expected an image (bytes) or a path, got neither.")
        chosen.append(given[0])
    return chosen


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)  # None and NaN: absent


def _decode(classifier: Classifier, row: int, column: str, value: Any) -> torch.Tensor:
    """uint8 (3, S, S) of one row's image, or an ImageInputError naming the row."""
    if column == "image" and isinstance(value, str):  # JSON without the model's schema: base64 text
        try:
            value = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ImageInputError(
                f"row {row}: expected image bytes (base64 in JSON), got other text."
            ) from None
    expected = (bytes, bytearray, memoryview) if column == "image" else (str,)
    if not isinstance(value, expected):
        what = "image bytes" if column == "image" else "a file path (text)"
        raise ImageInputError(f"row {row}: expected {what} in '{column}', got {type(value).__name__}.")
    try:
        return classifier.preprocessing.decode(value)
    except ImageDecodeError as error:
        raise ImageInputError(f"row {row}: {error.reason}; expected an image file (JPEG, PNG...).") from None
