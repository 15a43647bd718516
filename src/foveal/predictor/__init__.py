"""A trained model you call: loading and saving it, the one inference path, the ONNX runtime and
open-set rejection, behind one `Network` protocol (PyTorch or onnxruntime).

    classifier = load("runs/train")          # or a bundle, a .safetensors file, a model.onnx
    classifier.predict(["cat.jpg"])          # Prediction: labels, probabilities, unknown
    classifier.outputs(images)               # Outputs: logits (N, K) and pooled features (N, C)

Under the workflows (evaluation, explanation, exporting, serving, training, reporting), over the
models and data.
"""

from foveal.predictor.classifier import Classifier, Prediction, load, predict_files
from foveal.predictor.network import Network, TorchNetwork

__all__ = ["Classifier", "Network", "Prediction", "TorchNetwork", "load", "predict_files"]
