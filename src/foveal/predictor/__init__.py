"""A trained model you call: loading and saving it, the one inference path, the ONNX runtime and
open-set rejection, behind one `Network` protocol (PyTorch or onnxruntime).

    classifier = foveal.predictor.classifier.load("runs/train")   # or foveal.load(...)
    classifier.predict(["cat.jpg"])          # Prediction: labels, probabilities, unknown
    classifier.outputs(images)               # Outputs: logits (N, K) and pooled features (N, C)

Under the workflows (evaluation, explanation, exporting, serving, training, reporting), over the
models and data. This package re-exports nothing, so that `foveal.predictor.settings`, which the
command line reads at start-up, does not pull in torch.
"""
