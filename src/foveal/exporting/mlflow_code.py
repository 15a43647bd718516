"""The code file of an exported MLflow model ("models from code", MLflow's recommended way since 2.12):
`foveal export --format mlflow` gives MLflow this file, which copies it into the model's code/ folder
and runs it when the model loads. It names the model through the installed Foveal, so no pickled
object travels with the model. Not imported by Foveal itself."""

from mlflow.models import set_model

from foveal.exporting.mlflow_model import FovealPythonModel

set_model(FovealPythonModel())
